// The RFC 7648 relay in the mapping service (src/service/upstream.ts) with a
// scripted upstream server: local first, then upstream; granted only when
// upstream granted; upstream's address, port and lifetime told; undone on
// refusal or silence; removals relayed; renewals before upstream's lifetime
// runs out; re-created after a loss; the daemon's own nonces stable.

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { harness, unthrottledDefault } from './helpers/harness.js';
import { mapRequests } from './helpers/map-request.js';
import { mustParseIp, type IpAddress } from '../src/net/address.js';
import { reachedAt } from '../src/domain/mapping.js';
import { mapRequestBytes } from '../src/client/pcp-client.js';
import { decodePcpResponse } from '../src/protocols/pcp/codec.js';
import { ResultCode } from '../src/protocols/pcp/constants.js';
import { decodeNatPmpResponse, encodeNatPmpMapRequest } from '../src/protocols/natpmp/codec.js';
import { fromStored, toStored } from '../src/state/records.js';
import type { UpstreamAnswer, UpstreamAsk, UpstreamServer } from '../src/service/upstream.js';
import type { PeerRequest } from '../src/domain/requests.js';

const PUBLIC = mustParseIp('203.0.113.7');
const LAN = mustParseIp('192.168.77.2');

/** An upstream that answers as told and remembers every ask. */
class ScriptedUpstream implements UpstreamServer {
  asks: UpstreamAsk[] = [];
  next: (a: UpstreamAsk) => UpstreamAnswer = (a) => ({ ok: true, externalAddress: PUBLIC, externalPort: 50000 + (a.internalPort % 1000), lifetime: Math.min(a.lifetime, 600) });
  room = 64;
  async map(a: UpstreamAsk): Promise<UpstreamAnswer> {
    this.asks.push(a);
    return this.next(a);
  }
  spare(): number {
    return this.room;
  }
}

function setup(thirdParty = false) {
  const h = harness({ nat44: !thirdParty });
  const up = new ScriptedUpstream();
  const relay = h.service.useUpstream({
    server: up,
    nonceKey: Buffer.alloc(32, 7),
    clientAddress: () => mustParseIp('100.64.0.2'),
    publicAddress: () => PUBLIC,
    thirdParty,
    patienceMs: 5000,
  });
  if (!relay) throw new Error('no relay');
  return { h, up, relay, req: mapRequests({ client: LAN }) };
}

t.test('a PCP mapping: local first, then upstream; the client hears upstream\'s address, port and the shorter lifetime', async (t) => {
  const { h, up, req } = setup();
  const nonce = randomBytes(12);
  const out = await h.service.map(req({ internalPort: 40001, lifetime: 3600, nonce }));
  t.ok(out.ok, 'granted');
  if (!out.ok) return;
  t.equal(up.asks.length, 1, 'one MAP upstream');
  const ask = up.asks[0]!;
  t.equal(ask.internalPort, out.mapping.externalPort, 'upstream maps this router\'s external port');
  t.equal(ask.client, '100.64.0.2', 'from the router\'s WAN address');
  t.ok(ask.nonce.equals(nonce), 'the PCP client\'s nonce relayed');
  t.same(reachedAt(out.mapping), { address: PUBLIC, port: 50000 + (out.mapping.externalPort % 1000) });
  t.equal(out.lifetime, 600, 'no longer than upstream granted');
  t.equal(h.service.remaining(out.mapping), 600, 'and the mapping here ends then too');
  t.equal(h.firewall.list().length, 1, 'the kernel entry stays');
  t.equal(h.service.externalIPv4(), PUBLIC, 'the face tells upstream\'s address');
});

t.test('upstream refuses: the client hears the refusal and nothing stays here', async (t) => {
  const { h, up, req } = setup();
  up.next = () => ({ ok: false, refusal: 'NOT_AUTHORIZED', detail: 'policy', lifetime: 1800 });
  const out = await h.service.map(req({ internalPort: 40002 }));
  t.match(out, { ok: false, refusal: 'NOT_AUTHORIZED', lifetime: 1800 });
  t.equal(h.service.count(), 0, 'no mapping in the table');
  t.equal(h.firewall.list().length, 0, 'none in the kernel');
});

t.test('upstream silent: NETWORK_FAILURE, and a renewal goes back to what it had', async (t) => {
  const { h, up, req } = setup();
  const first = await h.service.map(req({ internalPort: 40003, lifetime: 300 }));
  t.ok(first.ok);
  if (!first.ok) return;
  up.next = () => ({ ok: false, refusal: 'NETWORK_FAILURE', detail: 'no answer' });
  h.clock.advance(10_000);
  const renewal = await h.service.map(req({ internalPort: 40003, lifetime: 3600 }));
  t.match(renewal, { ok: false, refusal: 'NETWORK_FAILURE' });
  const kept = h.service.mappingOf(LAN, 17, 40003);
  t.ok(kept, 'the mapping upstream still holds stays');
  t.equal(kept && h.service.remaining(kept), 290, 'with the lifetime it had');
  t.same(kept && reachedAt(kept), reachedAt(first.mapping), 'and its upstream part');
});

t.test('a UPnP request waits for upstream less than a PCP or NAT-PMP one: its refusal is out before the control point\'s HTTP wait ends', async (t) => {
  const { h, up, req } = setup();
  for (const [via, port] of [['pcp', 40031], ['natpmp', 40032], ['upnp', 40033]] as const) await h.service.map(req({ via, internalPort: port }));
  t.same(up.asks.map((a) => a.patienceMs), [5000, 5000, 3500], 'the line\'s 5 s for PCP and NAT-PMP; 3.5 s for UPnP (miniupnpc waits 5 s)');
  up.asks = [];
  await h.service.map(req({ via: 'upnp', internalPort: 40031, nonce: undefined }));
  t.same(up.asks.map((a) => a.patienceMs), [3500], 'the door asking now decides: a PCP mapping renewed over UPnP waits 3.5 s');
});

t.test('NAT-PMP and UPnP mappings get a nonce of the daemon\'s own, the same after a restart', async (t) => {
  const { h, up, relay, req } = setup();
  const out = await h.service.map(req({ via: 'natpmp', internalPort: 40004 }));
  t.ok(out.ok);
  if (!out.ok) return;
  const nonce = up.asks[0]!.nonce;
  t.equal(nonce.length, 12);
  const stored = toStored(out.mapping, h.clock.wall(), h.clock.now(), h.clock.bootId());
  const back = fromStored(JSON.parse(JSON.stringify(stored)), 99, out.mapping.expiresAt);
  t.equal(back.upstream?.nonce, nonce.toString('hex'), 'the stored upstream part keeps the nonce');
  t.equal(back.upstream?.externalPort, out.mapping.upstream?.externalPort);
  t.equal(back.upstream?.expiresAt, out.mapping.upstream?.expiresAt, 'and when upstream ends it');
  const { upstream: _drop, ...old } = stored;
  t.equal(fromStored(old, 100, out.mapping.expiresAt).upstream, undefined, 'a record from before the proxy loads');
  t.equal(relay.nonceOf({ ...out.mapping, upstream: undefined }), nonce.toString('hex'), 'the key-derived nonce is stable');
});

t.test('removal, expiry and the admin\'s rm are relayed as lifetime 0 with the same nonce', async (t) => {
  const { h, up, req } = setup();
  const a = await h.service.map(req({ internalPort: 40005, via: 'natpmp' }));
  const b = await h.service.map(req({ internalPort: 40006, lifetime: 200 }));
  const c = await h.service.map(req({ internalPort: 40007, via: 'upnp' }));
  t.ok(a.ok && b.ok && c.ok);
  up.asks = [];
  await h.service.remove({ via: 'natpmp', client: LAN, internalAddress: LAN, protocol: 17, internalPort: 40005 });
  await new Promise((r) => setImmediate(r));
  t.match(up.asks, [{ lifetime: 0, internalPort: a.ok ? a.mapping.externalPort : -1 }], 'client removal relayed');
  h.clock.advance(201_000);
  h.service.expireDue();
  t.match(up.asks.slice(1), [{ lifetime: 0, internalPort: b.ok ? b.mapping.externalPort : -1 }], 'expiry relayed');
  await h.service.removeAsAdmin((m) => m.internalPort === 40007);
  t.match(up.asks.slice(2), [{ lifetime: 0 }], 'admin removal relayed');
  t.equal(up.asks.length, 3);
});

t.test('a UPnP mapping outliving upstream\'s lifetime is renewed between 1/2 and 5/8 of it', async (t) => {
  const { h, up, relay, req } = setup();
  const out = await h.service.map(req({ via: 'upnp', internalPort: 40008, lifetime: 7200, suggestedExternalPort: 40008, preferFailure: true }));
  t.ok(out.ok);
  if (!out.ok) return;
  t.equal(out.lifetime, 7200, 'a UPnP lease is kept here; upstream is renewed under it');
  t.equal(up.asks[0]?.preferFailure, true, 'an exact port asked upstream with PREFER_FAILURE (RFC 6970)');
  up.asks = [];
  await relay.pass();
  t.equal(up.asks.length, 0, 'nothing due at once');
  h.clock.advance(299_000);
  await relay.pass();
  t.equal(up.asks.length, 0, 'not before half of upstream\'s 600 s');
  h.clock.advance(76_000);
  await relay.pass();
  t.equal(up.asks.length, 1, 'renewed by 5/8');
  t.equal(up.asks[0]?.suggestedExternalPort, out.mapping.upstream?.externalPort, 'asking for the port it has');
});

t.test('after upstream lost its state every mapping is made again; moved ones are told', async (t) => {
  const { h, up, relay, req } = setup();
  for (const port of [41001, 41002, 41003]) t.ok((await h.service.map(req({ internalPort: port }))).ok);
  up.asks = [];
  let moved = 0;
  relay.onMoved = (ms) => (moved += ms.length);
  up.next = (a) => ({ ok: true, externalAddress: mustParseIp('203.0.113.8') as IpAddress, externalPort: a.suggestedExternalPort, lifetime: 600 });
  relay.recreateAll();
  h.clock.advance(1);
  await relay.pass();
  t.equal(up.asks.length, 3, 'three made again');
  t.equal(moved, 3, 'their clients are told of the new address');
  t.ok(h.service.mappings().every((m) => m.upstream?.externalAddress === '203.0.113.8'));
  up.asks = [];
  await relay.pass();
  t.equal(up.asks.length, 0, 'once');
});

t.test('background work is paced by the cap on requests in flight', async (t) => {
  const { h, up, relay, req } = setup();
  for (let i = 0; i < 5; i++) t.ok((await h.service.map(req({ internalPort: 42000 + i }))).ok);
  up.asks = [];
  up.room = 2;
  relay.recreateAll();
  h.clock.advance(1);
  await relay.pass();
  t.equal(up.asks.length, 2, 'no more than the wire has room for');
  up.room = 0;
  await h.service.removeAsAdmin(() => true);
  t.equal(up.asks.length, 2, 'removals beyond the cap are left to upstream\'s expiry, not queued without end');
});

t.test('IPv6 pinholes do not go upstream', async (t) => {
  const { h, up } = setup();
  const v6 = mustParseIp('2001:db8:77::2');
  const out = await h.service.map({ via: 'pcp', client: v6, internalAddress: v6, protocol: 17, internalPort: 40010, suggestedExternalPort: 0, lifetime: 600 });
  t.ok(out.ok);
  t.equal(up.asks.length, 0);
});

t.test('a static forward goes upstream too, with a nonce of the daemon\'s own, and is found by upstream\'s port', async (t) => {
  const { h, up, relay } = setup();
  await h.service.swapPolicy(unthrottledDefault(h.clock), [{ kind: 'forward', name: 'web', protocol: 6, port: 8080, to: LAN, toPort: 80 }]);
  t.equal(up.asks.length, 0, 'nothing asked while the policy is swapped');
  await relay.pass();
  t.match(up.asks, [{ protocol: 6, internalPort: 8080, suggestedExternalPort: 8080, lifetime: 86400 }], 'made upstream by the next pass');
  t.equal(up.asks[0]?.nonce.length, 12);
  const held = h.service.holderOf(6, 50080);
  t.equal(held?.origin, 'static', 'upstream\'s port names it');
  t.same(held && reachedAt(held), { address: PUBLIC, port: 50080 });
  h.clock.advance(301_000);
  await relay.pass();
  t.equal(up.asks.length, 1, 'not renewed before half of upstream\'s 600 s... ');
  h.clock.advance(80_000);
  await relay.pass();
  t.equal(up.asks.length, 2, '...renewed by 5/8, as it never ends here');
  t.ok(up.asks[1]?.nonce.equals(up.asks[0]!.nonce), 'with the same nonce');
});

t.test('DS-Lite (no NAT44 here): THIRD_PARTY names the LAN host; an upstream that will not allow it is heard in each door\'s words', async (t) => {
  const { h, up } = setup(true);
  up.next = (a) => (a.thirdParty ? { ok: false, refusal: 'THIRD_PARTY_NOT_ALLOWED', detail: 'UNSUPP_OPTION' } : { ok: true, externalAddress: PUBLIC, externalPort: 1, lifetime: 1 });
  const pcp = await h.send(LAN, mapRequestBytes({ client: LAN, protocol: 17, internalPort: 40020, lifetime: 600 }));
  t.equal(up.asks[0]?.thirdParty, LAN, 'RFC 7648 §3.3: THIRD_PARTY carries the LAN host');
  t.equal(up.asks[0]?.internalPort, 40020, 'and upstream\'s internal port is the LAN host\'s own');
  const d = pcp ? decodePcpResponse(pcp) : undefined;
  t.equal(d?.ok && d.msg.result, ResultCode.UNSUPP_OPTION, 'PCP: UNSUPP_OPTION (RFC 6887 §13.1)');
  const nat = await h.send(LAN, encodeNatPmpMapRequest(1, 40021, 40021, 600));
  const n = nat ? decodeNatPmpResponse(nat) : undefined;
  t.equal(n?.ok && n.msg.result, 2, 'NAT-PMP: 2, not authorized');
  t.equal(h.service.count(), 0, 'nothing kept here');
});

t.test('DS-Lite granted: upstream maps the LAN host\'s endpoint; here it is only admitted, untranslated; removal relayed', async (t) => {
  const { h, up, req } = setup(true);
  up.next = (a) => (a.lifetime === 0 ? { ok: true, externalAddress: PUBLIC, externalPort: 0, lifetime: 0 } : { ok: true, externalAddress: PUBLIC, externalPort: 61000, lifetime: 600 });
  const out = await h.service.map(req({ internalPort: 40025, lifetime: 600 }));
  t.ok(out.ok, 'granted');
  if (!out.ok) return;
  t.match(up.asks[0], { internalPort: 40025, thirdParty: LAN, client: '100.64.0.2' }, 'THIRD_PARTY, the LAN host\'s port, from this router\'s address toward upstream');
  t.same(reachedAt(out.mapping), { address: PUBLIC, port: 61000 }, 'the client hears upstream\'s address and port');
  const remote = mustParseIp('198.51.100.9');
  t.same(h.firewall.route({ protocol: 17, source: remote, sourcePort: 5000, destination: LAN, destinationPort: 40025 }), { address: LAN, port: 40025 }, 'what the AFTR sends to the LAN host is admitted');
  t.equal(h.firewall.route({ protocol: 17, source: remote, sourcePort: 5000, destination: out.mapping.externalAddress, destinationPort: out.mapping.externalPort }), undefined, 'no DNAT from this router\'s own address');
  t.equal(h.firewall.route({ protocol: 17, source: remote, sourcePort: 5000, destination: LAN, destinationPort: 40026 }), undefined, 'another port of the host stays closed');
  const gone = await h.service.remove({ via: 'pcp', client: LAN, internalAddress: LAN, protocol: 17, internalPort: 40025, nonce: out.mapping.nonce === undefined ? undefined : Buffer.from(out.mapping.nonce, 'hex') });
  t.ok(gone.ok, 'removed');
  await new Promise((r) => setImmediate(r));
  t.match(up.asks.at(-1), { lifetime: 0, internalPort: 40025, thirdParty: LAN }, 'the removal relayed for the LAN host');
  t.equal(h.firewall.route({ protocol: 17, source: remote, sourcePort: 5000, destination: LAN, destinationPort: 40025 }), undefined, 'closed');
});

t.test('removed while upstream was still asked: the client hears a failure and upstream the removal', async (t) => {
  const { h, up, req } = setup();
  let release!: () => void;
  const answered = new Promise<void>((r) => (release = r));
  const slow = up.map.bind(up);
  up.map = async (a) => {
    if (a.lifetime > 0) await answered;
    return slow(a);
  };
  const pending = h.service.map(req({ internalPort: 40030 }));
  await new Promise((r) => setImmediate(r));
  await h.service.removeAsAdmin((m) => m.internalPort === 40030);
  release();
  t.match(await pending, { ok: false, refusal: 'NETWORK_FAILURE' });
  await new Promise((r) => setImmediate(r));
  t.match(up.asks.at(-1), { lifetime: 0 }, 'the upstream mapping it made is removed');
  t.equal(h.service.count(), 0);
});

const REMOTE = mustParseIp('198.51.100.20');
const peerReq = (o: Partial<PeerRequest> = {}): PeerRequest => ({ via: 'pcp', client: LAN, internalAddress: LAN, protocol: 17, internalPort: 40040, suggestedExternalPort: 0, remotePeerAddress: REMOTE, remotePeerPort: 3478, lifetime: 3600, nonce: Buffer.alloc(12, 4), ...o });

t.test('PEER (RFC 7648 §3): local first, then a PEER upstream; the client hears upstream\'s address, port and the shorter lifetime', async (t) => {
  const { h, up } = setup();
  const out = await h.service.peer(peerReq());
  t.ok(out.ok, 'granted');
  if (!out.ok) return;
  t.equal(up.asks.length, 1, 'one request upstream');
  t.match(up.asks[0], { internalPort: out.mapping.externalPort, remotePeer: { address: REMOTE, port: 3478 }, client: '100.64.0.2', filters: undefined }, 'a PEER for this router\'s external port, to the same remote peer');
  t.ok(up.asks[0]?.nonce.equals(Buffer.alloc(12, 4)), 'the client\'s nonce relayed');
  t.same(reachedAt(out.mapping), { address: PUBLIC, port: 50000 + (out.mapping.externalPort % 1000) }, 'upstream\'s address and port told');
  t.equal(out.lifetime, 600, 'no longer than upstream granted');
  t.equal(h.service.holderOf(17, 50000 + (out.mapping.externalPort % 1000)), undefined, 'a PEER holds no inbound port for the doors');
  h.clock.advance(100_000);
  const renewed = await h.service.peer(peerReq());
  t.equal(up.asks.length, 2, 'a renewal goes upstream too');
  t.match(renewed, { ok: true, lifetime: 600 });
});

t.test('PEER refused or unanswered upstream: the client hears it, nothing stays here; no removal is sent for PEER', async (t) => {
  const { h, up } = setup();
  up.next = () => ({ ok: false, refusal: 'EXCESSIVE_REMOTE_PEERS', detail: 'too many' });
  t.match(await h.service.peer(peerReq()), { ok: false, refusal: 'EXCESSIVE_REMOTE_PEERS' });
  t.equal(h.service.count(), 0, 'no local half');
  up.next = () => ({ ok: false, refusal: 'NETWORK_FAILURE', detail: 'silence' });
  t.match(await h.service.peer(peerReq()), { ok: false, refusal: 'NETWORK_FAILURE' });
  t.equal(h.firewall.list().length, 0, 'nothing in the kernel');
  up.next = (a) => ({ ok: true, externalAddress: PUBLIC, externalPort: 50001, lifetime: Math.min(a.lifetime, 600) });
  t.ok((await h.service.peer(peerReq())).ok);
  up.asks = [];
  await h.service.removeAsAdmin(() => true);
  await new Promise((r) => setImmediate(r));
  t.equal(up.asks.length, 0, 'RFC 6887 §12.3: PEER cannot shorten it; upstream\'s lifetime ends it');
});

t.test('a PEER mapping is made again after upstream lost its state', async (t) => {
  const { h, up, relay } = setup();
  t.ok((await h.service.peer(peerReq())).ok);
  up.asks = [];
  relay.recreateAll();
  h.clock.advance(1);
  await relay.pass();
  t.match(up.asks, [{ remotePeer: { address: REMOTE, port: 3478 } }], 'as a PEER');
});

t.test('FILTER relayed: upstream\'s filters become the mapping\'s; refused, the client hears UNSUPP_OPTION', async (t) => {
  const { h, up, req } = setup();
  const f1 = { prefix: { address: mustParseIp('198.51.100.0'), length: 24 }, port: 0 };
  const f2 = { prefix: { address: mustParseIp('203.0.113.5'), length: 32 }, port: 443 };
  t.ok((await h.service.map(req({ internalPort: 40050, filters: [f1] }))).ok);
  t.same(up.asks[0]?.filters, ['clear', f1], 'cleared, then the mapping\'s one filter');
  t.ok((await h.service.map(req({ internalPort: 40050, filters: [f2] }))).ok);
  t.same(up.asks[1]?.filters, ['clear', f1, f2], 'a renewal that adds one: all of them');
  t.ok((await h.service.map(req({ internalPort: 40050, filters: ['clear'] }))).ok);
  t.same(up.asks[2]?.filters, ['clear'], 'the client cleared them: upstream clears them too');
  t.ok((await h.service.map(req({ internalPort: 40050, filters: ['clear'] }))).ok);
  t.equal(up.asks[3]?.filters, undefined, 'cleared again: nothing left to clear upstream');
  t.ok((await h.service.map(req({ internalPort: 40051 }))).ok);
  t.equal(up.asks[4]?.filters, undefined, 'no filters, no FILTER option');
  t.ok((await h.service.map(req({ via: 'upnp', internalPort: 40053, filters: ['clear'] }))).ok);
  t.equal(up.asks[5]?.filters, undefined, 'UPnP\'s clear with a wildcard RemoteHost sends no FILTER: an upstream without FILTER still maps it');
  up.next = (a) => (a.filters ? { ok: false, refusal: 'UNSUPP_OPTION', detail: 'no FILTER upstream' } : { ok: true, externalAddress: PUBLIC, externalPort: 50052, lifetime: 600 });
  const pcp = await h.send(LAN, mapRequestBytes({ client: LAN, protocol: 17, internalPort: 40052, lifetime: 600, filters: [{ prefix: '198.51.100.7/32', port: 0 }] }));
  const d = pcp ? decodePcpResponse(pcp) : undefined;
  t.equal(d?.ok && d.msg.result, ResultCode.UNSUPP_OPTION, 'PCP: UNSUPP_OPTION');
  t.equal(h.service.mappingOf(LAN, 17, 40052), undefined, 'nothing kept here');
});

t.test('DS-Lite: a MAP\'s FILTERs go up with THIRD_PARTY', async (t) => {
  const { h, up, req } = setup(true);
  up.next = (a) => ({ ok: true, externalAddress: PUBLIC, externalPort: 61000, lifetime: Math.min(a.lifetime, 600) });
  const f = { prefix: { address: mustParseIp('198.51.100.0'), length: 24 }, port: 0 };
  t.ok((await h.service.map(req({ internalPort: 40060, filters: [f] }))).ok);
  t.match(up.asks[0], { thirdParty: LAN, internalPort: 40060, filters: ['clear', f] });
});
