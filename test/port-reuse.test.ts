// RFC 6887 §15: an external port freed by a mapping's end (deleted,
// expired, revoked) is held back for the NAT's reuse time (120 s): its last
// client may reclaim it, nobody else gets it, and afterwards anyone may.

import t from 'tap';
import { mustParseIp } from '../src/net/address.js';
import { decodeNatPmpResponse, encodeNatPmpMapRequest } from '../src/protocols/natpmp/codec.js';
import { DEFAULT_SERVICE_CONFIG } from '../src/service/mapping-service.js';
import type { MapRequest } from '../src/domain/requests.js';
import { DEFAULT_POLICY, policyFromDocument } from '../src/policy/load.js';
import { harness, unthrottledDefault } from './helpers/harness.js';
import { mapRequests } from './helpers/map-request.js';

const A = mustParseIp('192.168.77.10');
const B = mustParseIp('192.168.77.11');
const A6 = mustParseIp('2001:db8:77::10');
const B6 = mustParseIp('2001:db8:77::11');
const REMOTE = mustParseIp('203.0.113.5');
const NONCE_A = Buffer.alloc(12, 0xa);
const NONCE_B = Buffer.alloc(12, 0xb);

const req = mapRequests({ client: A, lifetime: 600, nonce: NONCE_A });
const fromB = (o: Partial<MapRequest> = {}) => req({ client: B, internalAddress: B, nonce: NONCE_B, ...o });
const deleteA = { via: 'pcp' as const, client: A, internalAddress: A, protocol: 17, internalPort: 40000, nonce: NONCE_A };

t.test('the default reuse time is the 2 minutes of RFC 4787 REQ-5', async (t) => {
  t.equal(DEFAULT_SERVICE_CONFIG.portReuseSeconds, 120);
});

t.test('a deleted mapping\'s port: refused to another client for 120 s, then anyone may have it', async (t) => {
  const h = harness();
  t.match(await h.service.map(req({ suggestedExternalPort: 45000 })), { ok: true, mapping: { externalPort: 45000 } });
  t.match(await h.service.remove(deleteA), { ok: true });
  t.ok(h.table.isExternalPortFree(17, 45000), 'no mapping holds it');

  const b = await h.service.map(fromB({ suggestedExternalPort: 45000 }));
  t.ok(b.ok && b.mapping.externalPort !== 45000, `B's suggestion is not honoured: another port (${b.ok ? b.mapping.externalPort : b.refusal})`);
  t.match(
    await h.service.map(fromB({ internalPort: 40001, suggestedExternalPort: 45000, preferFailure: true })),
    { ok: false, refusal: 'CANNOT_PROVIDE_EXTERNAL' },
    'PREFER_FAILURE on it: CANNOT_PROVIDE_EXTERNAL',
  );
  t.match(
    await h.service.peer({ via: 'pcp', client: B, internalAddress: B, protocol: 17, internalPort: 40002, suggestedExternalPort: 45000, remotePeerAddress: REMOTE, remotePeerPort: 9, lifetime: 600, nonce: NONCE_B }),
    { ok: false, refusal: 'CANNOT_PROVIDE_EXTERNAL' },
    'a PEER that suggests it: CANNOT_PROVIDE_EXTERNAL (§12.1)',
  );
  h.clock.advance(119_000);
  t.match(await h.service.map(fromB({ internalPort: 40003, suggestedExternalPort: 45000, preferFailure: true })), { ok: false, refusal: 'CANNOT_PROVIDE_EXTERNAL' }, 'still held at 119 s');
  h.clock.advance(1_000);
  t.match(await h.service.map(fromB({ internalPort: 40003, suggestedExternalPort: 45000, preferFailure: true })), { ok: true, mapping: { externalPort: 45000 } }, 'free at 120 s');
  t.equal(h.table.heldBackCount, 0, 'the record is gone');
});

t.test('the same client reclaims it, and gets it back without suggesting it', async (t) => {
  const h = harness();
  await h.service.map(req({ suggestedExternalPort: 45000 }));
  await h.service.remove(deleteA);
  h.clock.advance(60_000);
  // Without the hold, internal port 40000 (free) would be the first choice.
  t.match(await h.service.map(req()), { ok: true, mapping: { externalPort: 45000 } }, 'no suggestion: the port it had');
  await h.service.remove(deleteA);
  t.match(await h.service.map(req({ suggestedExternalPort: 45000, preferFailure: true })), { ok: true, mapping: { externalPort: 45000 } }, 'PREFER_FAILURE on it: granted');
  await h.service.remove(deleteA);
  const other = await h.service.map(req({ nonce: Buffer.alloc(12, 0xc), suggestedExternalPort: 45000 }));
  t.ok(other.ok && other.mapping.externalPort !== 45000, 'another nonce is another client');
});

t.test('an expired mapping\'s port is held back too; NAT-PMP (no nonce) from the same host and port reclaims it', async (t) => {
  const h = harness();
  await h.service.map(req({ via: 'natpmp', nonce: undefined, suggestedExternalPort: 45000, lifetime: 60 }));
  h.clock.advance(61_000);
  h.service.expireDue();
  t.equal(h.service.count(), 0);
  const wire = decodeNatPmpResponse((await h.send(B, encodeNatPmpMapRequest(1, 40000, 45000, 600))) as Buffer);
  t.ok(wire.ok && wire.msg.result === 0 && wire.msg.externalPort !== 45000, 'NAT-PMP from another host: another port');
  const again = decodeNatPmpResponse((await h.send(A, encodeNatPmpMapRequest(1, 40000, 0, 600))) as Buffer);
  t.match(again, { ok: true, msg: { result: 0, externalPort: 45000 } }, 'the same host and port: its port back');
});

t.test('a revoked mapping\'s port is held back', async (t) => {
  const h = harness();
  await h.service.map(req({ suggestedExternalPort: 45000 }));
  const doc = structuredClone(DEFAULT_POLICY);
  for (const r of doc.rules) if (r.limits) r.limits.requestsPerSecond = 0;
  doc.rules.unshift({ name: 'not-a', action: 'deny', match: { client: '192.168.77.10' } });
  const swap = await h.service.swapPolicy(policyFromDocument(doc, 'deny A', () => h.clock.now()).policy, []);
  t.equal(swap.removed.length, 1);
  t.match(await h.service.map(fromB({ suggestedExternalPort: 45000, preferFailure: true })), { ok: false, refusal: 'CANNOT_PROVIDE_EXTERNAL' });
  await h.service.swapPolicy(unthrottledDefault(h.clock), []);
});

t.test('a reservation rolled back holds nothing; IPv6 pinholes allocate nothing', async (t) => {
  const h = harness();
  h.firewall.failBatches = 1;
  t.match(await h.service.map(req({ suggestedExternalPort: 45000 })), { ok: false, refusal: 'FIREWALL_FAILED' });
  t.equal(h.table.heldBackCount, 0);
  t.match(await h.service.map(fromB({ suggestedExternalPort: 45000, preferFailure: true })), { ok: true, mapping: { externalPort: 45000 } });
  await h.service.map(req({ client: A6, internalAddress: A6 }));
  await h.service.remove({ ...deleteA, client: A6, internalAddress: A6 });
  t.equal(h.table.heldBackCount, 0, 'a pinhole frees no external port');
  t.match(await h.service.map(req({ client: B6, internalAddress: B6, nonce: NONCE_B })), { ok: true, mapping: { externalPort: 40000 } });
});

t.test('bounded: one record per freed port, and records expire', async (t) => {
  const h = harness();
  for (let i = 0; i < 50; i++) {
    t.match(await h.service.map(req({ suggestedExternalPort: 45000 })), { ok: true, mapping: { externalPort: 45000 } }, `round ${i}`);
    await h.service.remove(deleteA);
    h.clock.advance(1_000);
  }
  t.equal(h.table.heldBackCount, 1, '50 frees of one port: one record');
  for (let i = 0; i < 100; i++) {
    await h.service.map(req({ internalPort: 30000 + i, suggestedExternalPort: 30000 + i }));
    await h.service.remove({ ...deleteA, internalPort: 30000 + i });
  }
  t.equal(h.table.heldBackCount, 101);
  h.clock.advance(120_000);
  t.equal(h.table.heldBack(17, 30000, h.clock.now()), undefined, 'expired');
  t.equal(h.table.heldBackCount, 0, 'every expired record pruned');
});
