// The upstream PCP client on the wire (src/client/upstream-pcp.ts) against a
// scripted PCP server on loopback: what it sends, which answers count (only
// the server's address and port, only for an outstanding request), §8.1.1
// retransmission within the asker's patience, one request per mapping, the
// cap on requests in flight, the §8.5 epoch check and unsolicited ANNOUNCEs.

import t from 'tap';
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { mustParseIp } from '../src/net/address.js';
import { decodePcpRequest, encodePcpErrorEcho, encodePcpResponse, type PcpRequest } from '../src/protocols/pcp/codec.js';
import { Opcode, OptionCode, ResultCode } from '../src/protocols/pcp/constants.js';
import { UpstreamPcpClient } from '../src/client/upstream-pcp.js';
import type { UpstreamAsk } from '../src/service/upstream.js';
import { memoryLogger } from './helpers/memory-logger.js';
import { fakeServer } from './helpers/fake-pcp-server.js';

const LOOP = mustParseIp('127.0.0.1');
const PUBLIC = mustParseIp('203.0.113.9');

async function wire(serverPort: number, o: { maxInFlight?: number; irtMs?: number } = {}) {
  const log = memoryLogger();
  const w = new UpstreamPcpClient({ server: LOOP, serverPort, bindAddress: '127.0.0.1', bindPort: 0, irtMs: o.irtMs ?? 100, maxInFlight: o.maxInFlight, log });
  await w.start();
  return { w, log };
}

const ask = (o: Partial<UpstreamAsk> = {}): UpstreamAsk => ({
  protocol: 17,
  internalPort: 40001,
  suggestedExternalPort: 0,
  lifetime: 3600,
  nonce: randomBytes(12),
  preferFailure: false,
  client: mustParseIp('100.64.0.2'),
  patienceMs: 2000,
  ...o,
});

t.test('a MAP goes out as asked, and the answer is upstream\'s address, port and lifetime', async (t) => {
  const srv = await fakeServer();
  const { w } = await wire(srv.port);
  t.teardown(() => (w.stop(), srv.sock.close()));
  const a = ask({ preferFailure: true, suggestedExternalPort: 50001, thirdParty: mustParseIp('192.168.77.2') });
  const out = await w.map(a);
  t.same(out, { ok: true, externalAddress: PUBLIC, externalPort: 50001, lifetime: 900 });
  const req = srv.seen[0]!.req;
  t.equal(req.opcode, Opcode.MAP);
  t.ok(req.map?.nonce.equals(a.nonce), 'nonce');
  t.equal(req.map?.internalPort, 40001);
  t.equal(req.map?.externalPort, 50001, 'suggested port');
  t.ok(req.options.some((o) => o.code === OptionCode.PREFER_FAILURE), 'PREFER_FAILURE');
  t.ok(req.options.some((o) => o.code === OptionCode.THIRD_PARTY && 'address' in o && o.address === '192.168.77.2'), 'THIRD_PARTY');
  t.equal(w.status().epoch, 1000, 'the server\'s epoch seen');
});

t.test('only the server\'s address and port, only for the outstanding request, count', async (t) => {
  const srv = await fakeServer();
  const { w } = await wire(srv.port);
  const stranger = createSocket('udp4');
  await new Promise<void>((r) => stranger.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => (w.stop(), srv.sock.close(), stranger.close()));
  const a = ask();
  srv.answer = (r) => {
    if (!r.map) return undefined;
    const forged = encodePcpResponse({ opcode: Opcode.MAP, result: ResultCode.SUCCESS, lifetime: 100, epoch: 1, map: { ...r.map, externalAddress: mustParseIp('198.51.100.66'), externalPort: 666 } });
    const from = srv.seen.at(-1)!.from;
    // From another port of the same host: not the server.
    stranger.send(forged, from.port, from.address);
    // From the server, but another nonce: not ours.
    srv.sock.send(encodePcpResponse({ opcode: Opcode.MAP, result: ResultCode.SUCCESS, lifetime: 100, epoch: 1000, map: { ...r.map, nonce: randomBytes(12), externalPort: 667 } }), from.port, from.address);
    return encodePcpResponse({ opcode: Opcode.MAP, result: ResultCode.SUCCESS, lifetime: 300, epoch: 1000, map: { ...r.map, externalAddress: PUBLIC, externalPort: 50002 } });
  };
  srv.delayMs = 30;
  const out = await w.map(a);
  t.same(out, { ok: true, externalAddress: PUBLIC, externalPort: 50002, lifetime: 300 }, 'the forged answers were ignored');
  t.equal(w.status().stateLosses, 0, 'and their epochs did not count');
});

t.test('silence: retransmitted per §8.1.1 (doubling), given up within the asker\'s patience', async (t) => {
  const srv = await fakeServer();
  const { w } = await wire(srv.port, { irtMs: 300 });
  t.teardown(() => (w.stop(), srv.sock.close()));
  srv.answer = () => undefined;
  const started = Date.now();
  const out = await w.map(ask({ patienceMs: 3000 }));
  const took = Date.now() - started;
  t.match(out, { ok: false, refusal: 'NETWORK_FAILURE' });
  // Given up at the asker's patience, not before; the upper bound catches a
  // hang (a loaded machine fires timers late, which only lengthens things).
  t.ok(took >= 2950 && took < 7000, `failed after ${took} ms (patience 3000)`);
  t.ok(srv.seen.length >= 2 && srv.seen.length <= 5, `${srv.seen.length} sends (about 0, 300, 900, 2100 ms)`);
  // §8.1.1: RT = (1 + RAND) × IRT, then (1 + RAND) × 2 × RTprev, RAND in
  // ±0.1: the factors compound, so gap i is at least IRT × 0.9^(i+1) × 2^i
  // (270, 486, 875 ms). Late timers only lengthen a gap, so the check is that
  // floor, less 5 % for when the fake server read each datagram.
  const gaps = srv.seen.slice(1).map((s, i) => s.at - srv.seen[i]!.at);
  t.ok(gaps.every((g, i) => g >= 0.95 * 300 * 0.9 ** (i + 1) * 2 ** i), `gaps grow: ${gaps.join(', ')} ms`);
});

t.test('the same request twice is one request upstream; a cap bounds what is in flight', async (t) => {
  const srv = await fakeServer();
  const { w } = await wire(srv.port, { maxInFlight: 2, irtMs: 1000 });
  t.teardown(() => (w.stop(), srv.sock.close()));
  srv.delayMs = 150;
  const a = ask();
  const [x, y] = await Promise.all([w.map(a), w.map({ ...a })]);
  t.same(x, y, 'both hear the same answer');
  t.equal(srv.seen.length, 1, 'one request upstream');
  srv.answer = () => undefined;
  const slow = [w.map(ask({ internalPort: 1, patienceMs: 500 })), w.map(ask({ internalPort: 2, patienceMs: 500 }))];
  const third = await w.map(ask({ internalPort: 3 }));
  t.match(third, { ok: false, refusal: 'NO_RESOURCES' }, 'beyond the cap: refused at once');
  t.equal(w.spare(), 0);
  await Promise.all(slow);
  t.equal(w.spare(), 2, 'room again once they ended');
});

t.test('upstream\'s refusals become the service\'s', async (t) => {
  const srv = await fakeServer();
  const { w } = await wire(srv.port);
  t.teardown(() => (w.stop(), srv.sock.close()));
  let result: number = ResultCode.NOT_AUTHORIZED;
  srv.answer = (r) => encodePcpErrorEcho(r.raw, result, 1800, srv.epoch, true);
  t.match(await w.map(ask()), { ok: false, refusal: 'NOT_AUTHORIZED', lifetime: 1800 });
  result = ResultCode.UNSUPP_OPTION;
  t.match(await w.map(ask({ thirdParty: mustParseIp('192.168.77.2') })), { ok: false, refusal: 'THIRD_PARTY_NOT_ALLOWED' }, 'THIRD_PARTY refused (RFC 6887 §13.1)');
  result = ResultCode.CANNOT_PROVIDE_EXTERNAL;
  t.match(await w.map(ask({ preferFailure: true, suggestedExternalPort: 50003 })), { ok: false, refusal: 'CANNOT_PROVIDE_EXTERNAL' });
  result = ResultCode.ADDRESS_MISMATCH;
  t.match(await w.map(ask()), { ok: false, refusal: 'NETWORK_FAILURE' }, 'our own request\'s fault is not the client\'s');
});

t.test('the epoch check (§8.5) and an unsolicited ANNOUNCE tell of a loss', async (t) => {
  const srv = await fakeServer();
  const { w } = await wire(srv.port);
  t.teardown(() => (w.stop(), srv.sock.close()));
  let losses = 0;
  w.onStateLost(() => losses++);
  t.ok((await w.map(ask())).ok);
  t.equal(losses, 0, 'first answer proves nothing');
  srv.epoch = 3;
  t.ok((await w.map(ask({ internalPort: 40002 }))).ok);
  t.equal(losses, 1, 'the epoch went back: state lost');
  const from = srv.seen.at(-1)!.from;
  const announce = encodePcpResponse({ opcode: Opcode.ANNOUNCE, result: ResultCode.SUCCESS, lifetime: 0, epoch: 0 });
  const stranger = createSocket('udp4');
  await new Promise<void>((r) => stranger.bind(0, '127.0.0.1', () => r()));
  stranger.send(announce, from.port, from.address);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(losses, 1, 'an ANNOUNCE from another port is nobody\'s');
  stranger.close();
  srv.sock.send(announce, from.port, from.address);
  for (const end = Date.now() + 5000; losses < 2 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
  t.equal(losses, 2, 'the server\'s ANNOUNCE, its epoch back at 0: make everything again');
  srv.sock.send(encodePcpResponse({ opcode: Opcode.ANNOUNCE, result: ResultCode.SUCCESS, lifetime: 0, epoch: 0 }), from.port, from.address);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(losses, 2, 'its repeat passes the epoch check: nothing more (no storm of resets from one restart)');
  t.ok(await w.probe(mustParseIp('100.64.0.2'), 1000), 'a probe is answered');
});

t.test('one LAN client gets a quarter of the cap, not all of it', async (t) => {
  const srv = await fakeServer();
  const { w } = await wire(srv.port, { maxInFlight: 8 });
  t.teardown(() => (w.stop(), srv.sock.close()));
  srv.answer = () => undefined;
  const hog = [1, 2].map((p) => w.map(ask({ internalPort: p, patienceMs: 400, owner: '192.168.77.2' })));
  t.match(await w.map(ask({ internalPort: 3, owner: '192.168.77.2' })), { ok: false, refusal: 'NO_RESOURCES', detail: /192\.168\.77\.2 has 2 upstream requests in flight/ }, 'its third is refused');
  const other = w.map(ask({ internalPort: 4, patienceMs: 400, owner: '192.168.77.3' }));
  t.equal(w.spare(), 5, 'another client still got its request out');
  await Promise.all([...hog, other]);
  srv.answer = (r) => encodePcpResponse({ opcode: Opcode.MAP, result: ResultCode.SUCCESS, lifetime: 600, epoch: srv.epoch, map: { ...r.map!, externalAddress: PUBLIC, externalPort: 50005 } });
  t.ok((await w.map(ask({ internalPort: 5, owner: '192.168.77.2' }))).ok, 'its share is back once they ended');
});

t.test('a PEER goes out as a PEER; only the answer for its remote peer counts', async (t) => {
  const srv = await fakeServer();
  const { w } = await wire(srv.port);
  t.teardown(() => (w.stop(), srv.sock.close()));
  const remotePeer = { address: mustParseIp('198.51.100.20'), port: 3478 };
  srv.answer = (r) => {
    if (!r.peer) return undefined;
    const from = srv.seen.at(-1)!.from;
    // First an answer about another remote peer (same nonce, port): not this request's.
    srv.sock.send(encodePcpResponse({ opcode: Opcode.PEER, result: ResultCode.SUCCESS, lifetime: 100, epoch: 1000, peer: { ...r.peer, remotePeerPort: 3479, externalAddress: PUBLIC, externalPort: 666 } }), from.port, from.address);
    return encodePcpResponse({ opcode: Opcode.PEER, result: ResultCode.SUCCESS, lifetime: 300, epoch: 1000, peer: { ...r.peer, externalAddress: PUBLIC, externalPort: 50003 } });
  };
  const out = await w.map(ask({ remotePeer, preferFailure: true, filters: ['clear'] }));
  t.same(out, { ok: true, externalAddress: PUBLIC, externalPort: 50003, lifetime: 300 });
  const req = srv.seen[0]!.req;
  t.equal(req.opcode, Opcode.PEER);
  t.match(req.peer, { internalPort: 40001, remotePeerAddress: '198.51.100.20', remotePeerPort: 3478 });
  t.same(req.options, [], 'neither PREFER_FAILURE nor FILTER with PEER (§11.2, §13.3)');
});

t.test('FILTER steps as options; upstream\'s UNSUPP_OPTION to them is the client\'s UNSUPP_OPTION', async (t) => {
  const srv = await fakeServer();
  const { w } = await wire(srv.port);
  t.teardown(() => (w.stop(), srv.sock.close()));
  const f = { prefix: { address: mustParseIp('198.51.100.0'), length: 24 }, port: 443 };
  t.match(await w.map(ask({ filters: ['clear', f] })), { ok: true });
  t.match(srv.seen[0]!.req.options, [
    { code: OptionCode.FILTER, prefixLength: 0 },
    { code: OptionCode.FILTER, prefixLength: 120, remotePeerPort: 443, remotePeerAddress: '198.51.100.0', v4: true },
  ], 'clear first, then the IPv4 prefix in 128-bit space');
  srv.answer = (r) => encodePcpErrorEcho(r.raw, ResultCode.UNSUPP_OPTION, 30, 1000, true);
  t.match(await w.map(ask({ internalPort: 40002, filters: ['clear', f] })), { ok: false, refusal: 'UNSUPP_OPTION' });
  t.match(await w.map(ask({ internalPort: 40003 })), { ok: false, refusal: 'NETWORK_FAILURE' }, 'without FILTER it is upstream\'s own trouble');
  t.match(await w.map(ask({ internalPort: 40004, lifetime: 0, filters: ['clear', f] })), { ok: false }, 'a removal');
  t.equal(srv.seen.at(-1)!.req.options.length, 0, 'carries no FILTER (§13.3: FILTER in a delete is malformed)');
});
