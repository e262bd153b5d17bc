// MappingService rules that no single wire vector shows: quotas, port
// ownership, expiry, rollback, idempotence under concurrency, group commit,
// FILTER enforcement (in the memory firewall), cross-protocol identity.

import t from 'tap';
import { mustParseIp, parsePrefix, type Prefix } from '../src/net/address.js';
import { encodePcpRequest, decodePcpResponse } from '../src/protocols/pcp/codec.js';
import { OptionCode } from '../src/protocols/pcp/constants.js';
import { encodeNatPmpMapRequest, decodeNatPmpResponse } from '../src/protocols/natpmp/codec.js';
import { mappingKey } from '../src/domain/mapping.js';
import { EXTERNAL, harness } from './helpers/harness.js';
import { mapRequests } from './helpers/map-request.js';
import { until } from './helpers/wait.js';

const A = mustParseIp('192.168.77.10');
const B = mustParseIp('192.168.77.11');
const C = mustParseIp('192.168.77.12');
const A6 = mustParseIp('2001:db8:77::10');
const REMOTE = mustParseIp('203.0.113.5');
const OTHER_REMOTE = mustParseIp('203.0.113.6');
const NONCE = Buffer.from('0102030405060708090a0b0c', 'hex');

const req = mapRequests({ client: A, nonce: NONCE });

t.test('per-client quota: USER_EX_QUOTA at 129, other clients unaffected', async (t) => {
  const h = harness();
  for (let i = 0; i < 128; i++) {
    const r = await h.service.map(req({ internalPort: 20000 + i }));
    if (!r.ok) t.fail(`mapping ${i} refused: ${r.refusal}`);
  }
  const over = await h.service.map(req({ internalPort: 30000 }));
  t.match(over, { ok: false, refusal: 'USER_EX_QUOTA' });
  t.match(await h.service.map(req({ client: B, internalAddress: B, internalPort: 30000 })), { ok: true });
  // A renewal of an existing mapping is not a new one: still allowed at the cap.
  t.match(await h.service.map(req({ internalPort: 20000 })), { ok: true });
  // Quotas count across protocols (XP-11).
  t.match(await h.service.map(req({ via: 'natpmp', nonce: undefined, internalPort: 30001 })), { ok: false, refusal: 'USER_EX_QUOTA' });
});

t.test('global cap: NO_RESOURCES', async (t) => {
  // Two hosts fill it: one host alone may hold only its share (a quarter, rounded up).
  const h = harness({ config: { maxMappings: 2 } });
  t.match(await h.service.map(req({ internalPort: 40001 })), { ok: true });
  t.match(await h.service.map(req({ client: B, internalAddress: B, internalPort: 40002 })), { ok: true });
  t.match(await h.service.map(req({ client: C, internalAddress: C, internalPort: 40003 })), { ok: false, refusal: 'NO_RESOURCES', detail: 'mapping table full' });
});

t.test('two clients never share an external port; the companion port stays with its holder', async (t) => {
  const h = harness();
  const a = await h.service.map(req({ protocol: 6, internalPort: 40010, suggestedExternalPort: 40010 }));
  t.match(a, { ok: true, mapping: { externalPort: 40010 } });
  const b = await h.service.map(req({ client: B, internalAddress: B, protocol: 6, internalPort: 40010, suggestedExternalPort: 40010 }));
  t.ok(b.ok && b.mapping.externalPort !== 40010, 'B gets another TCP port');
  // RFC 6886 §3.3: UDP 40010 is reserved for A, who holds TCP 40010.
  const bu = await h.service.map(req({ client: B, internalAddress: B, protocol: 17, internalPort: 40011, suggestedExternalPort: 40010 }));
  t.ok(bu.ok && bu.mapping.externalPort !== 40010, 'B cannot take the companion UDP port');
  const au = await h.service.map(req({ protocol: 17, internalPort: 40011, suggestedExternalPort: 40010 }));
  t.match(au, { ok: true, mapping: { externalPort: 40010 } }, 'A can');
});

t.test('lifetimes run out on the monotonic clock; the firewall entry goes too', async (t) => {
  const h = harness();
  const r = await h.service.map(req({ lifetime: 120 }));
  t.ok(r.ok);
  t.equal(h.firewall.list().length, 1);
  h.clock.advance(119_000);
  h.service.expireDue();
  t.equal(h.service.count(), 1, 'alive before its lifetime ends');
  h.clock.advance(2_000);
  h.service.expireDue();
  t.equal(h.service.count(), 0, 'gone after');
  t.equal(h.firewall.list().length, 0, 'the (memory) kernel expired it by itself');
  // The port is free again for another client once its reuse time is over (RFC 6887 §15).
  h.clock.advance(120_000);
  t.match(await h.service.map(req({ client: B, internalAddress: B, suggestedExternalPort: 40000 })), { ok: true, mapping: { externalPort: 40000 } });
});

t.test('renewal counts the lifetime from now and keeps one entry', async (t) => {
  const h = harness();
  await h.service.map(req({ lifetime: 600 }));
  h.clock.advance(500_000);
  const r = await h.service.map(req({ lifetime: 600 }));
  t.ok(r.ok);
  h.clock.advance(200_000);
  h.service.expireDue();
  t.equal(h.service.count(), 1, 'still alive 700 s after creation');
  t.equal(h.firewall.list().length, 1);
});

t.test('a failed firewall commit is refused (PCP NO_RESOURCES, NAT-PMP 3) and leaves no trace', async (t) => {
  const h = harness();
  h.firewall.failBatches = 1;
  t.match(await h.service.map(req()), { ok: false, refusal: 'FIREWALL_FAILED' });
  h.firewall.failBatches = 1;
  const pcpWire = encodePcpRequest({ opcode: 1, lifetime: 3600, clientAddress: A, map: { nonce: NONCE, protocol: 17, internalPort: 40000, externalPort: 0, externalAddress: mustParseIp('0.0.0.0') } });
  t.match(decodePcpResponse((await h.send(A, pcpWire)) as Buffer), { ok: true, msg: { result: 8, lifetime: 30 } }, 'PCP NO_RESOURCES, short lifetime');
  h.firewall.failBatches = 1;
  t.match(decodeNatPmpResponse((await h.send(A, encodeNatPmpMapRequest(1, 40000, 40000, 3600))) as Buffer), { ok: true, msg: { result: 3 } }, 'NAT-PMP 3');
  t.equal(h.service.count(), 0);
  t.ok(h.table.isExternalPortFree(17, 40000), 'port released');
  t.match(await h.service.map(req()), { ok: true, mapping: { externalPort: 40000 } });
  // A failed renewal keeps the previous mapping as it was.
  const before = h.service.byKey('map|192.168.77.10|17|40000');
  h.firewall.failBatches = 1;
  t.match(await h.service.map(req({ lifetime: 7200 })), { ok: false, refusal: 'FIREWALL_FAILED' });
  t.equal(h.service.byKey('map|192.168.77.10|17|40000'), before);
  // A failed delete keeps the mapping (the kernel still has it).
  h.firewall.failBatches = 1;
  t.match(await h.service.remove({ via: 'pcp', client: A, internalAddress: A, protocol: 17, internalPort: 40000, nonce: NONCE }), { ok: false });
  t.equal(h.service.count(), 1);
});

t.test('ten identical requests at once: one mapping, one entry, ten identical answers', async (t) => {
  const h = harness();
  const wire = encodePcpRequest({
    opcode: 1,
    lifetime: 3600,
    clientAddress: A,
    map: { nonce: NONCE, protocol: 17, internalPort: 40000, externalPort: 0, externalAddress: mustParseIp('0.0.0.0') },
  });
  const replies = await Promise.all(Array.from({ length: 10 }, () => h.send(A, wire)));
  const hex = new Set(replies.map((r) => r?.toString('hex')));
  t.equal(hex.size, 1, 'identical replies');
  t.equal(h.service.count(), 1);
  t.equal(h.firewall.list().length, 1);
});

t.test('group commit: requests arriving together share firewall batches', async (t) => {
  const h = harness();
  const outs = await Promise.all(Array.from({ length: 100 }, (_, i) => h.service.map(req({ internalPort: 41000 + i }))));
  t.ok(outs.every((o) => o.ok));
  t.ok(h.firewall.batches <= 2, `100 requests in ${h.firewall.batches} batch(es)`);
});

t.test('FILTER admits only the named remote; a renewal adds; prefix 0 clears', async (t) => {
  const h = harness();
  const only5 = { prefix: parsePrefix('203.0.113.5/32') as Prefix, port: 0 };
  await h.service.map(req({ filters: [only5] }));
  const probe = (source: typeof REMOTE) => h.firewall.route({ protocol: 17, source, sourcePort: 5555, destination: EXTERNAL, destinationPort: 40000 });
  t.same(probe(REMOTE), { address: A, port: 40000 }, 'allowed remote reaches the client');
  t.equal(probe(OTHER_REMOTE), undefined, 'another remote is dropped');
  t.equal(h.firewall.route({ protocol: 6, source: REMOTE, sourcePort: 5555, destination: EXTERNAL, destinationPort: 40000 }), undefined, 'TCP to a UDP mapping is dropped');
  t.equal(h.firewall.route({ protocol: 17, source: REMOTE, sourcePort: 5555, destination: EXTERNAL, destinationPort: 40001 }), undefined, 'neighbouring port is dropped');
  // §13.3: filters in a renewal are added to the existing ones.
  await h.service.map(req({ filters: [{ prefix: parsePrefix('203.0.113.6/32') as Prefix, port: 0 }] }));
  t.ok(probe(OTHER_REMOTE), 'added remote now reaches it');
  // A renewal without FILTER leaves them alone.
  await h.service.map(req());
  t.equal(probe(mustParseIp('203.0.113.7')), undefined, 'still filtered');
  await h.service.map(req({ filters: ['clear'] }));
  t.ok(probe(mustParseIp('203.0.113.7')), 'prefix 0 removed every filter');
  t.equal(h.firewall.list().length, 1, 'one entry, replaced not duplicated');
});

t.test('FILTER with a remote port and an IPv6 pinhole', async (t) => {
  const h = harness();
  await h.service.map(req({ client: A6, internalAddress: A6, filters: [{ prefix: parsePrefix('2001:db8:ff::/64') as Prefix, port: 443 }] }));
  const probe = (source: string, sourcePort: number) => h.firewall.route({ protocol: 17, source: mustParseIp(source), sourcePort, destination: A6, destinationPort: 40000 });
  t.ok(probe('2001:db8:ff::9', 443));
  t.equal(probe('2001:db8:ff::9', 444), undefined, 'other remote port');
  t.equal(probe('2001:db8:fe::9', 443), undefined, 'other prefix');
  t.equal(h.firewall.route({ protocol: 17, source: mustParseIp('2001:db8:ff::9'), sourcePort: 443, destination: mustParseIp('2001:db8:77::11'), destinationPort: 40000 }), undefined, 'another LAN host stays closed');
});

t.test('a client may switch protocols: PCP and NAT-PMP see one mapping', async (t) => {
  const h = harness();
  const pmp = decodeNatPmpResponse((await h.send(A, encodeNatPmpMapRequest(1, 40000, 40005, 7200))) as Buffer);
  t.match(pmp, { ok: true, msg: { result: 0, externalPort: 40005 } });
  const wire = encodePcpRequest({
    opcode: 1,
    lifetime: 3600,
    clientAddress: A,
    map: { nonce: NONCE, protocol: 17, internalPort: 40000, externalPort: 0, externalAddress: mustParseIp('0.0.0.0') },
  });
  const pcp = decodePcpResponse((await h.send(A, wire)) as Buffer);
  t.match(pcp, { ok: true, msg: { result: 0, map: { externalPort: 40005 } } }, 'PCP renews the NAT-PMP mapping');
  t.equal(h.service.count(), 1);
  // The PCP nonce is adopted: another nonce is now refused.
  const other = Buffer.from(wire);
  other[24] = (other[24] ?? 0) ^ 0xff;
  t.match(decodePcpResponse((await h.send(A, other)) as Buffer), { ok: true, msg: { result: 2 } });
  // NAT-PMP (no nonce) from the same host may still delete it.
  t.match(decodeNatPmpResponse((await h.send(A, encodeNatPmpMapRequest(1, 40000, 0, 0))) as Buffer), { ok: true, msg: { result: 0 } });
  t.equal(h.service.count(), 0);
});

t.test('PEER never shortens a mapping and shares the MAP external port', async (t) => {
  const h = harness();
  const peer = { via: 'pcp' as const, client: A, internalAddress: A, protocol: 17, internalPort: 40000, suggestedExternalPort: 0, remotePeerAddress: REMOTE, remotePeerPort: 443, nonce: NONCE };
  const first = await h.service.peer({ ...peer, lifetime: 3600 });
  t.match(first, { ok: true, lifetime: 3600 });
  const shorter = await h.service.peer({ ...peer, lifetime: 200 });
  t.match(shorter, { ok: true, lifetime: 3600 }, 'remaining lifetime kept');
  t.same(h.firewall.route({ protocol: 17, source: REMOTE, sourcePort: 443, destination: EXTERNAL, destinationPort: first.ok ? first.mapping.externalPort : 0 }), { address: A, port: 40000 });
  t.equal(h.firewall.route({ protocol: 17, source: OTHER_REMOTE, sourcePort: 443, destination: EXTERNAL, destinationPort: 40000 }), undefined, 'only the peer gets in');
  const map = await h.service.map(req({ suggestedExternalPort: 41000 }));
  t.match(map, { ok: true, mapping: { externalPort: first.ok ? first.mapping.externalPort : -1 } }, 'MAP reuses the PEER binding');
});

t.test('mappings never point at the router or outside the LAN', async (t) => {
  const h = harness();
  t.match(await h.service.map(req({ client: mustParseIp('192.168.77.1'), internalAddress: mustParseIp('192.168.77.1') })), { ok: false, refusal: 'NOT_AUTHORIZED' });
  t.match(await h.service.map(req({ internalAddress: mustParseIp('8.8.8.8') })), { ok: false, refusal: 'NOT_AUTHORIZED' });
  t.match(await h.service.map(req({ internalAddress: B })), { ok: false, refusal: 'THIRD_PARTY_NOT_ALLOWED' }, 'a LAN third party is a policy matter');
  t.match(await h.service.map(req({ client: mustParseIp('fe80::10'), internalAddress: mustParseIp('fe80::10') })), { ok: false, refusal: 'NOT_AUTHORIZED' }, 'link-local pinholes are useless');
  // The asker being the host proves nothing: a door may take a host's other
  // address (a ULA outside every LAN prefix) for the host (igd-fuzz, seed 382791714).
  const ula = mustParseIp('fd00::10');
  for (const via of ['pcp', 'natpmp', 'upnp'] as const) {
    t.match(await h.service.map(req({ via, client: ula, internalAddress: ula })), { ok: false, refusal: 'NOT_AUTHORIZED', detail: /not a LAN host/ }, `${via}: its own address outside the LAN`);
  }
  t.match(await h.service.peer({ via: 'pcp', client: ula, internalAddress: ula, protocol: 17, internalPort: 40000, suggestedExternalPort: 0, remotePeerAddress: mustParseIp('2001:db8:ff::9'), remotePeerPort: 443, lifetime: 3600, nonce: NONCE }), { ok: false, refusal: 'NOT_AUTHORIZED' }, 'PEER too');
  t.equal(h.firewall.list().length, 0);
  t.equal(h.service.mappings(() => true).length, 0);
});

t.test('epoch counts seconds on the monotonic clock', async (t) => {
  const h = harness();
  t.equal(h.service.epochSeconds(), 0);
  h.clock.advance(5_400);
  t.equal(h.service.epochSeconds(), 5);
  const ann = decodePcpResponse((await h.send(A, encodePcpRequest({ opcode: 0, lifetime: 0, clientAddress: A }))) as Buffer);
  t.match(ann, { ok: true, msg: { epoch: 5 } });
});

t.test('every decision is logged once, with who asked what and the verdict', async (t) => {
  const h = harness();
  await h.service.map(req({ lifetime: 999999 }));
  await h.service.map(req({ internalPort: 80 }));
  const maps = h.log.lines.filter((l) => l.event === 'map');
  t.equal(maps.length, 2);
  t.match(maps[0], { via: 'pcp', client: A, protocol: 17, internalPort: 40000, verdict: 'granted', lifetime: 86400 });
  t.match(maps[1], { verdict: 'refused', refusal: 'NOT_AUTHORIZED' });
});

t.test('DESCRIPTION: stored clipped to 128 octets on a character boundary, control characters stripped', async (t) => {
  const h = harness();
  const r = await h.service.map(req({ description: 'é'.repeat(100) + '\n\u0007x' }));
  t.ok(r.ok && Buffer.byteLength(r.mapping.description) <= 128 && !r.mapping.description.includes('\n'));
  t.ok(r.ok && /^é+$/.test(r.mapping.description));
  t.equal(OptionCode.DESCRIPTION, 128);
});

t.test('renewals do not grow the expiry heap: one entry per live mapping', async (t) => {
  const h = harness();
  // One client renewing as fast as it may: each renewal used to leave its
  // old heap entry behind until the old expiry, so memory grew per request.
  for (let i = 0; i < 2000; i++) {
    h.clock.advance(1000);
    const r = await h.service.map(req({ lifetime: 3600 }));
    if (!r.ok) t.fail(`renewal ${i} refused: ${r.refusal}`);
  }
  await h.service.map(req({ internalPort: 40001, lifetime: 120 }));
  t.equal(h.service.count(), 2);
  t.equal(h.table.scheduled, 2, 'the heap holds exactly the live mappings');
  t.equal(h.table.nextExpiry(), h.service.byKey(mappingKey('map', A, 17, 40001))?.expiresAt, 'the next wake-up is a live mapping\'s');
  // Expiry still happens at the renewed time, and the heap empties with the table.
  h.clock.advance(121_000);
  h.service.expireDue();
  t.equal(h.service.count(), 1, 'the short one expired');
  t.equal(h.table.scheduled, 1);
  h.clock.advance(3600_000);
  h.service.expireDue();
  t.equal(h.service.count(), 0);
  t.equal(h.table.scheduled, 0);
});

t.test("the admin's removal ends the flows through a mapping; a client's delete and an expiry do not (issue 13)", async (t) => {
  const h = harness();
  const req6 = mapRequests({ client: A6, nonce: NONCE });
  t.match(await h.service.map(req({ internalPort: 40100 })), { ok: true });
  t.match(await h.service.map(req6({ protocol: 6, internalPort: 40200 })), { ok: true });
  t.match(await h.service.map(req({ internalPort: 40300 })), { ok: true });
  t.match(await h.service.map(req({ internalPort: 40400, lifetime: 60 })), { ok: true });
  // A client deletes its own (RFC 6887 asks nothing of its running flows); another one expires.
  t.match(await h.service.remove({ via: 'pcp', client: A, internalAddress: A, protocol: 17, internalPort: 40300, nonce: NONCE }), { ok: true });
  h.clock.advance(200_000);
  h.service.expireDue();
  await until(() => h.service.count() === 2, 5_000, 10);
  t.equal(h.service.count(), 2, 'the deleted and the expired mapping are gone');
  t.same(h.firewall.flowsEnded, [], 'no flow ended by a client or by time');
  const r = await h.service.removeAsAdmin((m) => m.internalPort === 40100 || m.internalPort === 40200);
  t.equal(r.removed.length, 2);
  t.same(
    h.firewall.flowsEnded,
    [
      { by: 'destination', protocol: 17, address: A, port: 40100 },
      { by: 'source', protocol: 17, address: A, port: 40100 },
      { by: 'destination', protocol: 6, address: A6, port: 40200 },
      { by: 'source', protocol: 6, address: A6, port: 40200 },
    ],
    "the flows reaching each internal endpoint (IPv4 after DNAT, IPv6 the pinhole's own address) and those it began",
  );
});
