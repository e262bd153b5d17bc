// Real traffic across the lab: a listener on a LAN host, a sender on the WAN
// host, and the answer to "did it arrive?".

import { once } from 'node:events';
import type { Lab, Node } from './lab.js';

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
  const listener = lab.spawn(p.listen, ['timeout', '4', 'socat', '-u', listenSpec, 'STDOUT']);
  let got = '';
  listener.stdout?.on('data', (d: Buffer) => (got += d.toString()));
  await new Promise((r) => setTimeout(r, 250));
  const host = v6 ? `[${p.to}]` : p.to;
  const bind = p.fromAddress ? `,bind=${p.fromAddress.includes(':') ? `[${p.fromAddress}]` : p.fromAddress}` : '';
  const sendSpec = p.proto === 'udp' ? `UDP${fam}-SENDTO:${host}:${p.toPort ?? p.port}${bind}` : `TCP${fam}:${host}:${p.toPort ?? p.port},connect-timeout=2${bind}`;
  lab.exec(p.from ?? 'wan', ['socat', '-u', 'STDIN', sendSpec], { input: `${token}\n`, allowFail: true, timeoutMs: 5000 });
  const deadline = Date.now() + 1500;
  while (!got.includes(token) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (listener.exitCode === null) {
    // SIGTERM: timeout(1) passes it on to socat, so the port is free for the next probe.
    listener.kill('SIGTERM');
    await once(listener, 'exit').catch(() => undefined);
  }
  return got.includes(token);
}
