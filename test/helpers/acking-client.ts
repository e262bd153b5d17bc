// A PCP client for crash tests: sends MAP requests with a window outstanding
// and prints one line per SUCCESS the moment it arrives, so the test knows
// exactly which replies a client received before the daemon died.
//   node acking-client.js '{"server":"2001:db8:77::1","count":2000,"startPort":20000,"window":16,"lifetime":600}'

import { createSocket } from 'node:dgram';
import { mustParseIp } from '../../src/net/address.js';
import { encodePcpRequest } from '../../src/protocols/pcp/codec.js';
import { localAddressFor } from '../../src/client/pcp-client.js';

// retransmitMs: how long an unanswered request waits before it is sent again (500 unless told).
const spec = JSON.parse(process.argv[2] ?? '{}') as { server: string; count: number; startPort: number; window: number; lifetime: number; retransmitMs?: number };
const retransmitMs = spec.retransmitMs ?? 500;
const client = await localAddressFor(spec.server);
const sock = createSocket(spec.server.includes(':') ? 'udp6' : 'udp4');
await new Promise<void>((r) => sock.bind(0, () => r()));
const nonce = Buffer.alloc(12, 0x5a);
const inflight = new Map<number, number>();
let next = 0;
const send = (port: number) => {
  inflight.set(port, Date.now());
  sock.send(
    encodePcpRequest({ opcode: 1, lifetime: spec.lifetime, clientAddress: client, map: { nonce, protocol: 17, internalPort: port, externalPort: 0, externalAddress: mustParseIp(client.includes(':') ? '::' : '0.0.0.0') } }),
    5351,
    spec.server,
  );
};
const refill = () => {
  while (inflight.size < spec.window && next < spec.count) send(spec.startPort + next++);
  if (inflight.size === 0 && next >= spec.count) process.exit(0);
};
sock.on('message', (m) => {
  if (m.length < 60 || m[3] !== 0) return;
  const port = m.readUInt16BE(40);
  if (!inflight.delete(port)) return;
  process.stdout.write(`ack ${port} ${m.readUInt16BE(42)}\n`);
  refill();
});
// Retransmit what is unanswered (the daemon may be restarting).
setInterval(
  () => {
    const now = Date.now();
    for (const [port, at] of inflight) if (now - at > retransmitMs) send(port);
  },
  Math.min(100, retransmitMs),
);
refill();
// Bound and asking: a test can start the daemon once this is printed (a loaded machine starts node slowly).
process.stdout.write('sending\n');
