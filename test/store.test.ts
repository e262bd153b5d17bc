// The durable store: what survives, what is detected as damage, what a
// renewal costs on disk, and how lifetimes carry over restarts and reboots.

import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { mustParseIp } from '../src/net/address.js';
import { DurableStore, encodeLine as encodeLineForTest, epochStartMono, remainingMs, type JournalRecord, type StoredMapping } from '../src/state/store.js';
import type { MapRequest } from '../src/domain/requests.js';
import { harness } from './helpers/harness.js';
import { NO_TELEMETRY } from '../src/telemetry.js';
import { EPOCH, storedMapping } from './helpers/stored.js';

const dir = () => mkdtempSync(join(tmpdir(), 'portcullis-store-'));
const mapping = (port: number, over: Partial<StoredMapping> = {}): StoredMapping => storedMapping(port, { description: 'a\nb"}{', ...over });
const put = (m: StoredMapping): JournalRecord => ({ op: 'put', at: EPOCH.wall, m });

async function fresh(d: string): Promise<DurableStore> {
  const { store } = await DurableStore.open(d, EPOCH.wall);
  await store.compact([], EPOCH, EPOCH.wall);
  return store;
}

t.test('what was flushed comes back, with the epoch and device UUID', async (t) => {
  const d = dir();
  const s = await fresh(d);
  s.append([put(mapping(40000)), put(mapping(40001)), { op: 'del', at: EPOCH.wall, key: mapping(40001).key }]);
  await s.flush();
  const uuid = s.deviceUuid;
  await s.close();
  const { state } = await DurableStore.open(d, EPOCH.wall);
  t.equal(state.status, 'loaded');
  t.equal(state.mappings.length, 1);
  t.equal(state.mappings[0]?.description, 'a\nb"}{', 'a description with newline and quotes cannot inject records');
  t.same(state.epoch, EPOCH);
  t.equal(state.deviceUuid, uuid);
});

t.test('a torn last journal line (a crash mid-write) is ignored', async (t) => {
  const d = dir();
  const s = await fresh(d);
  s.append([put(mapping(40000))]);
  await s.flush();
  await s.close();
  appendFileSync(join(d, 'journal'), '0badc0de {"op":"put","at":1,"m":{"key":"x"');
  const { state } = await DurableStore.open(d, EPOCH.wall);
  t.equal(state.status, 'loaded');
  t.equal(state.mappings.length, 1);
});

t.test('damage before valid records is corruption: files moved aside, fresh start', async (t) => {
  const d = dir();
  const s = await fresh(d);
  s.append([put(mapping(40000)), put(mapping(40001)), put(mapping(40002))]);
  await s.flush();
  await s.close();
  const lines = readFileSync(join(d, 'journal'), 'utf8').split('\n');
  lines[1] = (lines[1] ?? '').replace('40001', '40009');
  writeFileSync(join(d, 'journal'), lines.join('\n'));
  const { state } = await DurableStore.open(d, EPOCH.wall);
  t.equal(state.status, 'corrupt');
  t.match(state.detail, /journal line 2 is damaged/);
  t.equal(state.mappings.length, 0);
  t.ok(state.movedAside && existsSync(join(state.movedAside, 'journal')), 'the damaged journal is kept aside');
  t.notOk(existsSync(join(d, 'snapshot')), 'nothing of it is used');
});

t.test('a truncated snapshot is corruption', async (t) => {
  const d = dir();
  const { store } = await DurableStore.open(d, EPOCH.wall);
  await store.compact([mapping(40000), mapping(40001)], EPOCH, EPOCH.wall);
  await store.close();
  const snap = readFileSync(join(d, 'snapshot'), 'utf8');
  writeFileSync(join(d, 'snapshot'), snap.slice(0, snap.length - 30));
  const { state } = await DurableStore.open(d, EPOCH.wall);
  t.equal(state.status, 'corrupt');
  t.ok(readdirSync(d).some((f) => f.startsWith('corrupt-')));
});

t.test('every kind of snapshot damage is told apart, and a sound one with the same records loads', async (t) => {
  const d = dir();
  const { store } = await DurableStore.open(d, EPOCH.wall);
  await store.compact([mapping(40000), mapping(40001), mapping(40002)], EPOCH, EPOCH.wall);
  await store.close();
  const sound = readFileSync(join(d, 'snapshot'), 'utf8');
  const lines = sound.split('\n');
  const cases: [string, string, string][] = [
    ['empty', '', 'snapshot is truncated or damaged'],
    ['no newline after the end line', sound.slice(0, -1), 'snapshot is truncated or damaged'],
    ['no end line', lines.slice(0, -2).join('\n') + '\n', 'snapshot is truncated or damaged'],
    ['a record line damaged', [lines[0], lines[1], lines[2]?.replace('40001', '40009'), ...lines.slice(3)].join('\n'), 'snapshot has a damaged line'],
    ['a record line missing', [lines[0], lines[1], ...lines.slice(3)].join('\n'), 'snapshot holds 2 mappings, its end line says 3'],
  ];
  for (const [what, text, detail] of cases) {
    const c = dir();
    writeFileSync(join(c, 'snapshot'), text);
    const { store: s, state } = await DurableStore.open(c, EPOCH.wall);
    await s.close();
    t.same([state.status, state.detail], ['corrupt', detail], what);
  }
  const c = dir();
  writeFileSync(join(c, 'snapshot'), sound);
  const { store: s, state } = await DurableStore.open(c, EPOCH.wall);
  await s.close();
  t.same([state.status, state.mappings.map((m) => m.internalPort)], ['loaded', [40000, 40001, 40002]], 'the sound copy loads');
  t.same(state.mappings[1], mapping(40001), 'a record comes back as written');
});

t.test('compaction folds the journal into a snapshot that loads the same', async (t) => {
  const d = dir();
  const s = await fresh(d);
  s.append(Array.from({ length: 50 }, (_, i) => put(mapping(41000 + i))));
  await s.flush();
  await s.compact(Array.from({ length: 50 }, (_, i) => mapping(41000 + i)), EPOCH, EPOCH.wall);
  t.equal(readFileSync(join(d, 'journal'), 'utf8'), '', 'journal empty after compaction');
  await s.close();
  const { state } = await DurableStore.open(d, EPOCH.wall);
  t.equal(state.mappings.length, 50);
});

t.test('a renewal appends one line: bytes per 1000 renewals do not grow with the store', async (t) => {
  const perThousand = async (live: number) => {
    const s = await fresh(dir());
    await s.compact(Array.from({ length: live }, (_, i) => mapping(1024 + (i % 60000), { key: `k${i}` })), EPOCH, EPOCH.wall);
    const before = s.bytesWritten;
    for (let i = 0; i < 1000; i++) {
      s.append([put(mapping(40000))]);
      await s.flush();
    }
    await s.close();
    return s.bytesWritten - before;
  };
  const small = await perThousand(10);
  const large = await perThousand(20_000);
  t.ok(small < 600_000, `${small} bytes per 1000 renewals with 10 mappings`);
  t.equal(large, small, `${large} bytes with 20 000 mappings: the same`);
});

t.test("the store's byte counter is every byte it put in the state directory, compaction included", async (t) => {
  const d = dir();
  const { store: s } = await DurableStore.open(d, EPOCH.wall);
  let told = 0;
  s.telemetry = { ...NO_TELEMETRY, storeWritten: (bytes) => (told += bytes) };
  const size = (name: string) => (existsSync(join(d, name)) ? statSync(join(d, name)).size : 0);
  await s.compact([], EPOCH, EPOCH.wall);
  t.equal(s.bytesWritten, size('snapshot'), 'the first snapshot');
  const live = Array.from({ length: 300 }, (_, i) => mapping(20000 + i));
  s.append(live.map(put));
  await s.flush();
  const journal = size('journal');
  t.ok(journal > 0);
  t.equal(s.bytesWritten, size('snapshot') + journal, 'snapshot and journal');
  const before = s.bytesWritten;
  await s.compact(live, EPOCH, EPOCH.wall);
  t.equal(s.bytesWritten - before, size('snapshot'), 'a compaction counts its whole new snapshot');
  t.ok(size('snapshot') > journal / 2, 'the new snapshot holds the 300 mappings');
  t.equal(told, s.bytesWritten, 'telemetry hears every byte (the benchmark reads it there)');
  await s.close();
});

t.test('remaining lifetime after a restart and after a reboot', async (t) => {
  const m = mapping(40000, { expiresMono: 2_000_000, expiresWall: 1_800_000_600_000, lifetime: 600, bootId: 'boot-1' });
  // Same boot: the monotonic clock decides, whatever the wall clock did.
  t.equal(remainingMs(m, { mono: 1_900_000, wall: 0, bootId: 'boot-1' }, 1_800_000_000_000), 100_000);
  // Reboot with a sane wall clock: wall time decides (downtime counts).
  t.equal(remainingMs(m, { mono: 5_000, wall: 1_800_000_500_000, bootId: 'boot-2' }, 1_800_000_100_000), 100_000);
  // Reboot into 1970 (no RTC): keep what it had when last written, counted from now.
  t.equal(remainingMs(m, { mono: 5_000, wall: 3_000, bootId: 'boot-2' }, 1_800_000_400_000), 200_000);
  // …never more than its lifetime, so nothing becomes immortal.
  t.equal(remainingMs(mapping(1, { lifetime: 60, expiresWall: 1_800_009_000_000 }), { mono: 1, wall: 3_000, bootId: 'boot-2' }, 1_800_000_000_000), 60_000);
  // The epoch continues across a reboot by the wall clock.
  t.equal(epochStartMono(EPOCH, { mono: 5_000, wall: EPOCH.wall + 100_000, bootId: 'boot-2' }, EPOCH.wall + 50_000), 5_000 - 100_000);
});

t.test('a service restored from its store: same mappings, ports held, epoch continuing', async (t) => {
  const d = dir();
  const a = harness();
  const { store } = await DurableStore.open(d, a.clock.wall());
  await store.compact([], a.epoch.start(), a.clock.wall());
  a.service.attachStore(store);
  const req = (port: number): MapRequest => ({ via: 'pcp', client: mustParseIp('192.168.77.10'), internalAddress: mustParseIp('192.168.77.10'), protocol: 17, internalPort: port, suggestedExternalPort: port + 1, lifetime: 600, nonce: Buffer.alloc(12, 7), clientPort: 5555 });
  await a.service.map(req(40000));
  await a.service.map(req(40010));
  await a.service.remove({ via: 'pcp', client: mustParseIp('192.168.77.10'), internalAddress: mustParseIp('192.168.77.10'), protocol: 17, internalPort: 40010, nonce: Buffer.alloc(12, 7) });
  a.clock.advance(100_000);
  await store.close();

  const b = harness();
  b.clock.advance(a.clock.now() - b.clock.now() + 50_000); // same boot, 50 s later
  const { state } = await DurableStore.open(d, b.clock.wall());
  t.equal(state.status, 'loaded');
  b.epoch.restore(epochStartMono(state.epoch as NonNullable<typeof state.epoch>, { mono: b.clock.now(), wall: b.clock.wall(), bootId: b.clock.bootId() }, state.lastWriteWall));
  const r = b.service.restore(state.mappings, state.lastWriteWall);
  t.same(r, { restored: 1, expired: 0 });
  t.equal(b.service.epochSeconds(), 150, 'epoch continued through the downtime');
  const m = b.service.mappings()[0];
  t.equal(m?.externalPort, 40001);
  t.equal(m?.clientPort, 5555);
  t.equal(b.service.remaining(m as NonNullable<typeof m>), 450, 'remaining, not full, lifetime');
  t.notOk(b.table.isExternalPortFree(17, 40001), 'its external port is held again');
  t.match(await b.service.map({ ...req(40000), nonce: Buffer.alloc(12, 8) }), { ok: false, refusal: 'NOT_AUTHORIZED' }, 'its nonce too');
  t.match(await b.service.map(req(40000)), { ok: true, mapping: { externalPort: 40001 } }, 'and the nonce it was made with renews it');
});

t.test('background compaction: appends continue meanwhile, nothing is lost, an interrupted one recovers', async (t) => {
  const d = dir();
  const s = await fresh(d);
  const live = Array.from({ length: 5000 }, (_, i) => mapping(1024 + i, { key: `k${i}` }));
  s.append(live.map(put));
  await s.flush();
  const compaction = s.compactInBackground({ mono: EPOCH.mono, wall: EPOCH.wall, bootId: EPOCH.bootId });
  // Changes while the snapshot is being written land in journal.next.
  s.append([{ op: 'del', at: EPOCH.wall, key: 'k0' }, put(mapping(9, { key: 'late' }))]);
  await s.flush();
  await compaction;
  await s.close();
  const { state } = await DurableStore.open(d, EPOCH.wall);
  t.equal(state.status, 'loaded');
  const keys = new Set(state.mappings.map((m) => m.key));
  t.equal(keys.size, 5000, '5000 - 1 deleted + 1 added');
  t.notOk(keys.has('k0'));
  t.ok(keys.has('late'));
  t.notOk(existsSync(join(d, 'journal.next')));

  // A crash between the rotation and the rename: snapshot (old), journal, journal.next.
  const d2 = dir();
  const s2 = await fresh(d2);
  s2.append([put(mapping(1, { key: 'a' }))]);
  await s2.flush();
  await s2.close();
  writeFileSync(join(d2, 'journal.next'), readFileSync(join(d2, 'journal'), 'utf8').replace(/.*\n/, '') + encodeLineForTest({ op: 'put', at: EPOCH.wall, m: mapping(2, { key: 'b' }) }));
  const { store: s2again, state: s2state } = await DurableStore.open(d2, EPOCH.wall);
  t.same(s2state.mappings.map((m) => m.key).sort(), ['a', 'b'], 'both journals replayed');
  t.ok(existsSync(join(d2, 'journal')), 'the old journal is kept until a snapshot covers it');
  await s2again.compact(s2state.mappings, EPOCH, EPOCH.wall);
  t.notOk(existsSync(join(d2, 'journal.next')), 'the next compaction folds them back into one');
  await s2again.close();
});
