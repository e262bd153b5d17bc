// Flows that are already running when an opening closes: a listener on a LAN
// host counts what arrives on one port (UDP datagrams, each echoed back: a
// UDP flow one way only stays `ct state new` and meets the pinholes at every
// datagram, which is no established flow; TCP data), and a
// sender on the WAN host keeps one UDP flow (a fixed source port, a datagram
// every 150 ms) and one TCP connection (opened once, a line every 150 ms)
// going to it. Both processes end on their own after at most LIFETIME_S.

import type { ChildProcess } from 'node:child_process';
import type { Lab } from './lab.js';
import { until } from './wait.js';

const LIFETIME_S = 120;
const EVERY_MS = 150;

export interface LiveFlows {
  /** Arrivals so far at the LAN host: datagrams, and TCP data reads. */
  counts(): { udp: number; tcp: number };
  /** Whether the sender's TCP connection was established. */
  connected(): boolean;
  stop(): void;
}

/** Starts the listener in `lan` on `port`, then the sender in `wan` toward `to`:`toPort` from source ports `sourcePort` (UDP) and `sourcePort + 1` (TCP). */
export async function liveFlows(lab: Lab, o: { port: number; to: string; toPort: number; sourcePort: number }): Promise<LiveFlows> {
  const v6 = o.to.includes(':');
  const listener = lab.spawn('lan', [process.execPath, '-e', `
    const dgram = require('node:dgram'), net = require('node:net');
    const host = ${JSON.stringify(v6 ? '::' : '0.0.0.0')};
    let ready = 0;
    const u = dgram.createSocket(${JSON.stringify(v6 ? 'udp6' : 'udp4')});
    u.on('message', (m, r) => { console.log('udp'); u.send(m, r.port, r.address, () => {}); });
    u.bind(${o.port}, host, () => ++ready === 2 && console.log('ready'));
    const s = net.createServer((c) => { c.on('data', () => console.log('tcp')); c.on('error', () => {}); });
    s.listen(${o.port}, host, () => ++ready === 2 && console.log('ready'));
    setTimeout(() => process.exit(0), ${LIFETIME_S * 1000});`]);
  const got = { udp: 0, tcp: 0, ready: false, connected: false };
  lines(listener, (l) => {
    if (l === 'udp') got.udp++;
    else if (l === 'tcp') got.tcp++;
    else if (l === 'ready') got.ready = true;
  });
  if (!(await until(() => got.ready, 15_000, 50))) throw new Error('the LAN listener never bound');
  const sender = lab.spawn('wan', [process.execPath, '-e', `
    const dgram = require('node:dgram'), net = require('node:net');
    const u = dgram.createSocket(${JSON.stringify(v6 ? 'udp6' : 'udp4')});
    u.bind(${o.sourcePort}, () => setInterval(() => u.send('x', ${o.toPort}, ${JSON.stringify(o.to)}, () => {}), ${EVERY_MS}));
    const c = net.connect({ host: ${JSON.stringify(o.to)}, port: ${o.toPort}, localPort: ${o.sourcePort + 1} }, () => {
      console.log('connected');
      setInterval(() => c.write('y\\n'), ${EVERY_MS});
    });
    c.on('error', (e) => console.log('tcp-error ' + e.code));
    setTimeout(() => process.exit(0), ${LIFETIME_S * 1000});`]);
  lines(sender, (l) => {
    if (l === 'connected') got.connected = true;
  });
  return {
    counts: () => ({ udp: got.udp, tcp: got.tcp }),
    connected: () => got.connected,
    stop() {
      for (const c of [sender, listener]) if (c.exitCode === null) c.kill('SIGKILL');
    },
  };
}

function lines(child: ChildProcess, onLine: (line: string) => void): void {
  let partial = '';
  child.stdout?.on('data', (d: Buffer) => {
    const all = (partial + d.toString()).split('\n');
    partial = all.pop() ?? '';
    for (const l of all) onLine(l.trim());
  });
}
