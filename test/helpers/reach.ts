// Real traffic across the lab: a listener on a LAN host, a sender on the WAN
// host, and the answer to "did it arrive?".

import { once } from 'node:events';
import type { Lab, Node } from './lab.js';
import { until } from './wait.js';

export interface Probe {
  proto: 'udp' | 'tcp';
  /** Where the listener runs, and its port. */
  listen: Node;
  port: number;
  /** Address the WAN host sends to (external IPv4 or the LAN host's IPv6). */
  to: string;
  /** Port the WAN host sends to (the external port). */
  toPort?: number;
  from?: Node;
  /** Source address on the sender (to test FILTER). */
  fromAddress?: string;
}

/** True when a datagram or connection from the WAN host reached the LAN listener. */
export async function reaches(lab: Lab, p: Probe): Promise<boolean> {
  const v6 = p.to.includes(':');
  const fam = v6 ? '6' : '4';
  const token = `probe-${Math.random().toString(36).slice(2)}`;
  const listenSpec = p.proto === 'udp' ? `UDP${fam}-RECV:${p.port},reuseaddr` : `TCP${fam}-LISTEN:${p.port},reuseaddr`;
  const listener = lab.spawn(p.listen, ['timeout', '30', 'socat', '-u', listenSpec, 'STDOUT']);
  let got = '';
  listener.stdout?.on('data', (d: Buffer) => (got += d.toString()));
  await listening(lab, p.listen, p.proto, p.port);
  const host = v6 ? `[${p.to}]` : p.to;
  const bind = p.fromAddress ? `,bind=${p.fromAddress.includes(':') ? `[${p.fromAddress}]` : p.fromAddress}` : '';
  const sendSpec = p.proto === 'udp' ? `UDP${fam}-SENDTO:${host}:${p.toPort ?? p.port}${bind}` : `TCP${fam}:${host}:${p.toPort ?? p.port},connect-timeout=2${bind}`;
  lab.exec(p.from ?? 'wan', ['socat', '-u', 'STDIN', sendSpec], { input: `${token}\n`, allowFail: true, timeoutMs: 30_000 });
  const deadline = Date.now() + 3000;
  while (!got.includes(token) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (listener.exitCode === null) {
    // SIGTERM: timeout(1) passes it on to socat, so the port is free for the next probe.
    listener.kill('SIGTERM');
    await once(listener, 'exit').catch(() => undefined);
  }
  return got.includes(token);
}

/**
 * Waits until something listens on `proto` `port` in `node` (ss sees the
 * socket), at most 10 s: the listener's process is started, not yet bound,
 * when spawn returns, and a fixed pause (it was 250 ms) is too short on a
 * loaded machine, which made an open port look closed.
 */
async function listening(lab: Lab, node: Node, proto: 'udp' | 'tcp', port: number): Promise<void> {
  await until(() => lab.exec(node, ['ss', proto === 'udp' ? '-Hlnu' : '-Hlnt', `sport = :${port}`], { allowFail: true }).stdout.trim() !== '', 10_000, 50);
}

export interface SourceProbe {
  proto: 'udp' | 'tcp';
  /** Where the listener runs (IPv4, any address), and its port. */
  listen: Node;
  port: number;
  /** The sender, the address it sends to and the local port it sends from. */
  from: Node;
  to: string;
  toPort?: number;
  fromPort: number;
}

/**
 * The source address:port the listener saw on a datagram or connection from
 * `from`'s port `fromPort` (after whatever NAT the router applied), or
 * undefined when nothing arrived.
 */
export async function sourceSeen(lab: Lab, p: SourceProbe): Promise<string | undefined> {
  const listen = `
const done = (s) => { console.log(s); process.exit(0); };
if (${JSON.stringify(p.proto)} === 'udp') {
  const s = require('node:dgram').createSocket({ type: 'udp4', reuseAddr: true });
  s.on('message', (m, r) => done(r.address + ':' + r.port));
  s.bind(${p.port}, () => console.log('ready'));
} else {
  const srv = require('node:net').createServer((c) => done(c.remoteAddress.replace(/^::ffff:/, '') + ':' + c.remotePort));
  srv.listen(${p.port}, '0.0.0.0', () => console.log('ready'));
}
setTimeout(() => process.exit(0), 30000);
`;
  const send = `
if (${JSON.stringify(p.proto)} === 'udp') {
  const s = require('node:dgram').createSocket({ type: 'udp4', reuseAddr: true });
  s.bind(${p.fromPort}, () => {
    let n = 0;
    const tick = () => (n++ < 3 ? s.send('seen?', ${p.toPort ?? p.port}, ${JSON.stringify(p.to)}, () => setTimeout(tick, 100)) : s.close());
    tick();
  });
} else {
  const c = require('node:net').connect({ host: ${JSON.stringify(p.to)}, port: ${p.toPort ?? p.port}, localPort: ${p.fromPort} });
  c.on('connect', () => c.end('seen?'));
  c.on('error', () => undefined);
  setTimeout(() => c.destroy(), 2000);
}
`;
  const listener = lab.spawn(p.listen, [process.execPath, '-e', listen]);
  const lines: string[] = [];
  listener.stdout?.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
  const deadline = Date.now() + 15_000;
  while (!lines.includes('ready') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  lab.exec(p.from, [process.execPath, '-e', send], { allowFail: true, timeoutMs: 30_000 });
  const until = Date.now() + 5000;
  while (lines.length < 2 && Date.now() < until && listener.exitCode === null) await new Promise((r) => setTimeout(r, 20));
  if (listener.exitCode === null) {
    listener.kill('SIGKILL');
    await once(listener, 'exit').catch(() => undefined);
  }
  return lines.find((l) => l !== 'ready');
}

/**
 * A short PCP mapping (`lifetime` s, 12 by default) for the LAN host's UDP
 * `port` (`pcp` asks the lab's router), probed from the WAN host at `to`
 * while it lives and again after it expired (2 s after the lifetime, counted
 * from the answer): the answer and both probes, for the test to judge. Not
 * shorter: the probe starts processes, which took seconds on a loaded machine.
 */
export async function shortMapping(lab: Lab, pcp: (...args: string[]) => Record<string, unknown>, port: number, to: string, lifetime = 12): Promise<{ answer: Record<string, unknown>; openWhileItLives: boolean; openAfter: boolean }> {
  const answer = pcp('--proto', 'udp', '--port', String(port), '--lifetime', String(lifetime));
  const answeredAt = Date.now();
  const probe = () => reaches(lab, { proto: 'udp', listen: 'lan', port, to, toPort: answer.externalPort as number });
  const openWhileItLives = answer.result === 'SUCCESS' && (await probe());
  await new Promise((r) => setTimeout(r, Math.max(0, answeredAt + lifetime * 1000 + 2000 - Date.now())));
  return { answer, openWhileItLives, openAfter: await probe() };
}
