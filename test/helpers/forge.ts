// A hostile sender for lab tests: one datagram or one TCP connection from a
// chosen source address (a forged LAN address, a WAN link-local one), and
// whatever came back. Runs as `node -e` inside a namespace.

import type { Lab, Node } from './lab.js';

export interface Sent {
  /** Bytes that came back (hex), if any did within the wait. */
  reply?: string;
  /** TCP: the handshake completed. */
  connected?: boolean;
  error?: string;
}

const SCRIPT = `
const [proto, dst, port, src, hex, wait] = process.argv.slice(1);
const out = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
const bytes = Buffer.from(hex, 'hex');
setTimeout(() => out(state), Number(wait));
const state = {};
if (proto === 'udp') {
  const s = require('node:dgram').createSocket(dst.includes(':') ? 'udp6' : 'udp4');
  s.on('error', (e) => out({ error: e.message }));
  s.on('message', (m) => out({ reply: m.toString('hex') }));
  s.bind(0, src, () => s.send(bytes, Number(port), dst));
} else {
  const c = require('node:net').connect({ host: dst, port: Number(port), localAddress: src });
  c.on('connect', () => { state.connected = true; c.write(bytes); });
  c.on('data', (d) => out({ connected: true, reply: d.toString('hex') }));
  c.on('error', (e) => out({ ...state, error: e.message }));
}
`;

/** Sends `payload` from `src` to `dst`:`port` in `node`'s namespace; waits up to `waitMs` for an answer. */
export function forge(lab: Lab, node: Node, p: { proto: 'udp' | 'tcp'; dst: string; port: number; src: string; payload: Buffer; waitMs?: number }): Sent {
  const wait = p.waitMs ?? 1500;
  const r = lab.exec(node, [process.execPath, '-e', SCRIPT, p.proto, p.dst, String(p.port), p.src, p.payload.toString('hex'), String(wait)], { allowFail: true, timeoutMs: wait + 30_000 });
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Sent;
  } catch {
    return { error: `${r.stderr}${r.stdout}`.trim() || `exit ${r.code}` };
  }
}

/** A NAT-PMP UDP mapping request (RFC 6886 §3.3). */
export function natpmpMapRequest(internalPort: number, externalPort: number, lifetime: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(0, 0);
  b.writeUInt8(1, 1);
  b.writeUInt16BE(internalPort, 4);
  b.writeUInt16BE(externalPort, 6);
  b.writeUInt32BE(lifetime, 8);
  return b;
}

export function ssdpSearch(host: string): Buffer {
  return Buffer.from(`M-SEARCH * HTTP/1.1\r\nHOST: ${host}\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n`);
}

/** A PCP MAP request (RFC 6887 §7.1, §11.1) claiming `client` as its source. */
export function pcpMapRequest(client: string, protocol: number, internalPort: number, lifetime: number): Buffer {
  const b = Buffer.alloc(60);
  b.writeUInt8(2, 0);
  b.writeUInt8(1, 1);
  b.writeUInt32BE(lifetime, 4);
  clientField(client).copy(b, 8);
  Buffer.from('hostile-test', 'latin1').copy(b, 24);
  b.writeUInt8(protocol, 36);
  b.writeUInt16BE(internalPort, 40);
  b.writeUInt16BE(internalPort, 42);
  return b;
}

function clientField(a: string): Buffer {
  const out = Buffer.alloc(16);
  if (!a.includes(':')) {
    out.writeUInt16BE(0xffff, 10);
    a.split('.').forEach((o, i) => out.writeUInt8(Number(o), 12 + i));
    return out;
  }
  const [head = '', tail = ''] = a.split('::');
  const groups = (s: string) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const h = groups(head);
  const t = groups(tail);
  [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t].forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}
