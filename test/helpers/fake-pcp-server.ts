// A scripted PCP server on loopback for the proxy's tests: it hands each
// request to `answer` (undefined: silence) and remembers what it saw.

import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { mustParseIp, type IpAddress } from '../../src/net/address.js';
import { decodePcpRequest, encodePcpResponse, type PcpRequest } from '../../src/protocols/pcp/codec.js';
import { Opcode, ResultCode } from '../../src/protocols/pcp/constants.js';

const PUBLIC = mustParseIp('203.0.113.9');

export interface Seen {
  req: PcpRequest;
  from: RemoteInfo;
  at: number;
}

/** A PCP server that hands each request to `answer` (undefined: silence). */
export async function fakeServer(): Promise<{ sock: Socket; port: number; seen: Seen[]; epoch: number; external: IpAddress; answer: (r: PcpRequest) => Buffer | undefined; delayMs: number }> {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const s = {
    sock,
    port: sock.address().port,
    seen: [] as Seen[],
    epoch: 1000,
    /** The external address its MAP answers name. */
    external: PUBLIC,
    delayMs: 0,
    answer: (r: PcpRequest): Buffer | undefined =>
      r.map
        ? encodePcpResponse({ opcode: Opcode.MAP, result: ResultCode.SUCCESS, lifetime: Math.min(r.lifetime, 900), epoch: s.epoch, map: { ...r.map, externalAddress: s.external, externalPort: r.map.internalPort + 10000 } })
        : r.peer
          ? encodePcpResponse({ opcode: Opcode.PEER, result: ResultCode.SUCCESS, lifetime: Math.min(r.lifetime, 900), epoch: s.epoch, peer: { ...r.peer, externalAddress: s.external, externalPort: r.peer.internalPort + 10000 } })
          : encodePcpResponse({ opcode: Opcode.ANNOUNCE, result: ResultCode.SUCCESS, lifetime: 0, epoch: s.epoch }),
  };
  sock.on('message', (buf, from) => {
    const d = decodePcpRequest(buf);
    if (!d.ok) return;
    s.seen.push({ req: d.msg, from, at: Date.now() });
    const out = s.answer(d.msg);
    if (out) setTimeout(() => !closed && sock.send(out, from.port, from.address), s.delayMs);
  });
  let closed = false;
  sock.on('close', () => (closed = true));
  return s;
}

