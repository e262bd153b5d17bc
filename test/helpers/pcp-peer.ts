// A PCP PEER request (RFC 6887 §12.1) from the lab's LAN host
// (192.168.77.2) to its router (192.168.77.1), built byte by byte here:
// `portcullis pcp` has no PEER, and the bytes share no code with src/.

import type { Lab } from './lab.js';

export interface PeerAnswer {
  result: number;
  lifetime: number;
  externalAddress: string;
  externalPort: number;
}

/** PEER for UDP `internalPort` → `remote`:`remotePort` (IPv4), nonce 0x5a…; the response's fields. */
export function pcpPeer(lab: Lab, internalPort: number, remote: string, remotePort: number, lifetime: number): PeerAnswer {
  const script = `
const b = Buffer.alloc(80);
b[0] = 2; b[1] = 2; b.writeUInt32BE(${lifetime}, 4);
b.writeUInt16BE(0xffff, 18); Buffer.from([192, 168, 77, 2]).copy(b, 20);
Buffer.alloc(12, 0x5a).copy(b, 24); b[36] = 17; b.writeUInt16BE(${internalPort}, 40);
b.writeUInt16BE(0xffff, 54);
b.writeUInt16BE(${remotePort}, 60); b.writeUInt16BE(0xffff, 74); Buffer.from(${JSON.stringify(remote.split('.').map(Number))}).copy(b, 76);
const s = require('node:dgram').createSocket('udp4');
s.on('message', (m) => {
  console.log(JSON.stringify({ result: m[3], lifetime: m.readUInt32BE(4), externalPort: m.readUInt16BE(42), externalAddress: [...m.subarray(56, 60)].join('.') }));
  process.exit(0);
});
s.bind(0, '192.168.77.2', () => s.send(b, 5351, '192.168.77.1'));
setTimeout(() => process.exit(1), 9000);`;
  return JSON.parse(lab.exec('lan', [process.execPath, '-e', script], { timeoutMs: 15_000 }).stdout) as PeerAnswer;
}
