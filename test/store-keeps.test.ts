// What the durable store keeps of the mappings its files hold (records.ts,
// Kept): the table's own Mapping each record was made from, not a second
// copy in the stored form; after a restart, the restored mappings in place
// of the records read. Snapshots written from them must say what the
// records said.

import { copyFileSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { mustParseIp } from '../src/net/address.js';
import { DurableStore, type StoredMapping } from '../src/state/store.js';
import { fromStored } from '../src/state/records.js';
import type { MapRequest } from '../src/domain/requests.js';
import { restoreState } from '../src/daemon/state.js';
import { fullCollection } from '../src/daemon/garbage.js';
import { NO_TELEMETRY } from '../src/telemetry.js';
import { harness, type Harness } from './helpers/harness.js';
import { storedMapping } from './helpers/stored.js';

/** A full collection: true when one was made. */
function collected(): boolean {
  const gc = fullCollection();
  gc?.();
  return gc !== undefined;
}

const dir = () => mkdtempSync(join(tmpdir(), 'portcullis-keeps-'));
const A = mustParseIp('192.168.77.10');
const B = mustParseIp('2001:db8:77::10');
const req = (client: typeof A, port: number, over: Partial<MapRequest> = {}): MapRequest => ({ via: 'pcp', client, internalAddress: client, protocol: 17, internalPort: port, suggestedExternalPort: port + 1, lifetime: 600, nonce: Buffer.alloc(12, port % 256), clientPort: 5555, ...over });
const byKey = (ms: readonly StoredMapping[]) => [...ms].sort((x, y) => x.key.localeCompare(y.key));
const nowOf = (h: Harness) => ({ mono: h.clock.now(), wall: h.clock.wall(), bootId: h.clock.bootId() });

/** What a store directory holds, read from a copy of its files (the original stays locked by its store). */
async function readCopy(d: string): Promise<StoredMapping[]> {
  const copy = dir();
  for (const f of ['snapshot', 'journal', 'journal.next']) if (existsSync(join(d, f))) copyFileSync(join(d, f), join(copy, f));
  const { store, state } = await DurableStore.open(copy, Date.now());
  await store.close();
  return byKey(state.mappings);
}

async function served(t: Test, d: string): Promise<{ h: Harness; store: DurableStore }> {
  const h = harness();
  const { store } = await DurableStore.open(d, h.clock.wall());
  await store.compact([], h.epoch.start(), h.clock.wall());
  h.service.attachStore(store);
  t.ok((await h.service.map(req(A, 40000))).ok);
  t.ok((await h.service.map(req(A, 40001, { via: 'natpmp', nonce: undefined }))).ok);
  t.ok((await h.service.map(req(B, 40002, { description: 'with a "description"\n' }))).ok);
  t.ok((await h.service.map(req(B, 40003))).ok);
  h.clock.advance(5_000);
  t.ok((await h.service.map(req(A, 40000, { lifetime: 1200 }))).ok, 'a renewal: a new mapping in the table and in the store');
  t.ok((await h.service.remove({ via: 'pcp', client: B, internalAddress: B, protocol: 17, internalPort: 40003, nonce: Buffer.alloc(12, 40003 % 256) })).ok);
  return { h, store };
}

t.test('a snapshot of the mappings the store keeps says what their records said', async (t) => {
  const d = dir();
  const { h, store } = await served(t, d);
  const fromJournal = await readCopy(d);
  t.equal(fromJournal.length, 3, 'three mappings recorded');
  h.clock.advance(1_000);
  await store.compactInBackground(nowOf(h));
  const fromSnapshot = await readCopy(d);
  t.same(fromSnapshot, fromJournal, 'the same records, field by field, written from the kept mappings');
  await store.close();
});

t.test('after a restart the store keeps the restored mappings, not the records it read', async (t) => {
  const d = dir();
  const first = await served(t, d);
  await first.store.close();

  const h = harness();
  h.clock.advance(first.h.clock.now() - h.clock.now() + 10_000); // same boot, 10 s later
  const opened = await DurableStore.open(d, h.clock.wall());
  // What the records said, as values: nothing here may hold the records themselves.
  const said = (ms: readonly StoredMapping[]) => byKey(ms).map((m) => [m.key, m.externalPort, m.nonce, m.description, m.lifetime, m.expiresWall]);
  const read = said(opened.state.mappings);
  t.equal(read.length, 3);
  const record = new WeakRef(opened.state.mappings[0]!);
  restoreState(h.service, h.epoch, opened, h.clock, d, NO_TELEMETRY, h.log);
  t.equal(h.service.count(), 3, 'all three restored');
  t.equal(opened.state.mappings.length, 0, 'the list read is handed over');
  // A WeakRef holds its target to the end of the current job.
  await new Promise((r) => setImmediate(r));
  t.ok(collected(), 'a full collection');
  t.equal(record.deref(), undefined, 'nothing holds the record read any longer: the store keeps the restored mapping instead');

  h.clock.advance(1_000);
  await opened.store.compactInBackground(nowOf(h));
  const again = await readCopy(d);
  t.same(said(again), read, 'a snapshot from them holds the same mappings, ending when they did');
  await opened.store.close();
});

t.test('a record that came after the one read wins over a late adoption', async (t) => {
  const d = dir();
  const first = await served(t, d);
  await first.store.close();
  const h = harness();
  const { store, state } = await DurableStore.open(d, h.clock.wall());
  const old = state.mappings.find((m) => m.internalPort === 40002)!;
  // A newer record of the same key, written before the adoption.
  const newer: StoredMapping = { ...old, externalPort: 40999 };
  store.append([{ op: 'put', at: h.clock.wall(), m: newer }]);
  await store.flush();
  store.adopt(old.key, old, fromStored(old, 1, h.clock.now() + 60_000));
  await store.compactInBackground(nowOf(h));
  const after = await readCopy(d);
  t.equal(after.find((m) => m.key === old.key)?.externalPort, 40999, 'the newer record stays');
  await store.close();
});

t.test('a record under a key of an older form is adopted under that key', async (t) => {
  const d = dir();
  const h = harness();
  const { store } = await DurableStore.open(d, h.clock.wall());
  const legacy = storedMapping(40000, { key: 'legacy|40000', expiresWall: h.clock.wall() + 3_600_000, expiresMono: h.clock.now() + 3_600_000, bootId: h.clock.bootId() });
  await store.compact([legacy], h.epoch.start(), h.clock.wall());
  await store.close();
  const opened = await DurableStore.open(d, h.clock.wall());
  t.equal(opened.state.mappings[0]?.key, 'legacy|40000', 'read back under its own key');
  const record = new WeakRef(opened.state.mappings[0]!);
  restoreState(h.service, h.epoch, opened, h.clock, d, NO_TELEMETRY, h.log);
  t.equal(h.service.count(), 1);
  await new Promise((r) => setImmediate(r));
  t.ok(collected(), 'a full collection');
  t.equal(record.deref(), undefined, 'the store keeps the restored mapping in its place');
  await opened.store.close();
});
