// The start's garbage handed back (src/daemon/garbage.ts): a full
// collection without --expose-gc on the command line, then a compacting one
// later and the C heap's trim (src/firewall/malloc-trim.ts), and no `gc`
// left behind for anything else in the process to call.

import t from 'tap';
import { getHeapSpaceStatistics } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { IdleGarbage, collectGarbage, fullCollection, type Collected } from '../src/daemon/garbage.js';
import type { Logger } from '../src/log.js';
import { loadMallocTrim } from '../src/firewall/malloc-trim.js';

/** MiB of the old generation V8 holds but nothing lives in. */
function oldSpaceUnused(): number {
  const old = getHeapSpaceStatistics().find((s) => s.space_name === 'old_space');
  if (!old) throw new Error('no old_space in this V8');
  return (old.space_size - old.space_used_size) / 1_048_576;
}

/** A plain full collection, for the test's own use. */
function plainGc(): void {
  const gc = fullCollection();
  if (!gc) throw new Error('no full collection could be had');
  gc();
}

/**
 * Objects promoted to the old generation, of which every other one stays:
 * every page half used, as the start leaves them (pages sparser than that,
 * V8's own second full collection would compact by itself).
 */
function fragmented(tag: string): unknown[] {
  let all: unknown[] | undefined = Array.from({ length: 600_000 }, (_, i) => ({ i, s: `${tag}${i}` }));
  plainGc();
  plainGc();
  const kept = all.filter((_, i) => i % 2 === 0);
  all = undefined;
  return kept;
}

t.test('one full collection frees what the start left, without --expose-gc', async (t) => {
  t.notOk(process.execArgv.includes('--expose-gc'), 'this process was not started with --expose-gc');
  // Garbage the size of a restart's records, out of reach before the call.
  let lines: string[] | undefined = Array.from({ length: 200_000 }, (_, i) => JSON.stringify(['put', i, [i, 'map', 6, `2001:db8::${i.toString(16)}`]]));
  t.equal(lines.length, 200_000);
  lines = undefined;
  const garbage = collectGarbage(() => undefined);
  t.ok(garbage, 'a collection was made');
  if (!garbage) return;
  garbage.cancel();
  const c = garbage.collected;
  t.ok(c.heapUsedMiB.before - c.heapUsedMiB.after >= 10, `the heap gave back what was out of reach (${c.heapUsedMiB.before} → ${c.heapUsedMiB.after} MiB)`);
  t.ok(c.ms >= 0, 'and says how long it took');
});

/** The compacting collection's timer does not hold the process open (the daemon's must not): the test does, while it waits. */
async function held<T>(p: Promise<T>): Promise<T> {
  const keep = setInterval(() => undefined, 1_000);
  try {
    return await p;
  } finally {
    clearInterval(keep);
  }
}

/** The start's collections with the compacting one after `afterMs`: resolves with what each did, and the old generation's unused MiB just after the first and the second. */
async function startCollections(afterMs: number): Promise<{ first: Collected; second: Collected; unusedAfterFirst: number; unusedAfterSecond: number }> {
  let unusedAfterFirst = NaN;
  let first: Collected | undefined;
  const second = new Promise<{ c: Collected; unused: number }>((resolve) => {
    const g = collectGarbage((c) => resolve({ c, unused: oldSpaceUnused() }), { afterMs });
    if (!g) throw new Error('no collection could be asked for');
    unusedAfterFirst = oldSpaceUnused();
    first = g.collected;
  });
  const { c, unused } = await held(second);
  if (!first) throw new Error('no first collection');
  return { first, second: c, unusedAfterFirst, unusedAfterSecond: unused };
}

t.test('a later collection moves the survivors together, and only that one does', async (t) => {
  const first = fragmented('a');
  const r = await startCollections(50);
  t.ok(r.unusedAfterFirst > 8, `the first collection frees without moving: its pages stay part-used (${r.unusedAfterFirst.toFixed(1)} MiB unused)`);
  t.ok(r.second.ms >= 0, 'the second says how long it took');
  const afterStart = r.unusedAfterSecond;
  t.ok(afterStart < 4, `the old generation keeps little it does not use after the second (${afterStart.toFixed(1)} MiB)`);
  // The same shape again, freed by a later, ordinary full collection: V8's
  // own choice of pages again (the flag was put back), which here keeps them.
  const second = fragmented('b');
  plainGc();
  const afterPlain = oldSpaceUnused();
  t.ok(afterPlain > 8, `a later collection does not compact every page (${afterPlain.toFixed(1)} MiB unused)`);
  t.equal(first.length + second.length, 600_000);
});

t.test('the compacting collection waits, and a stopping daemon can drop it', async (t) => {
  let compacted = 0;
  const g = collectGarbage(() => compacted++, { afterMs: 100 });
  t.ok(g, 'a collection was made');
  await held(new Promise((r) => setTimeout(r, 20)));
  t.equal(compacted, 0, 'not made with the first');
  g?.cancel();
  await held(new Promise((r) => setTimeout(r, 200)));
  t.equal(compacted, 0, 'not made once dropped');
  await held(new Promise<void>((r) => collectGarbage(() => r(), { afterMs: 10 })));
  t.pass('made after its wait when not dropped');
});

t.test('the C heap is trimmed after the compacting collection, not before, and not once dropped', async (t) => {
  const order: string[] = [];
  let trims = 0;
  const trimC = () => {
    trims++;
    order.push('trim');
  };
  const g = collectGarbage((c) => order.push(`compacted ${c.trimRssMiB !== undefined}`), { afterMs: 50, trimC });
  t.ok(g, 'a collection was made');
  t.equal(trims, 0, 'the first collection does not trim');
  await held(new Promise((r) => setTimeout(r, 150)));
  t.same(order, ['trim', 'compacted true'], 'trimmed with the compaction, and the line gives the RSS around it');
  const dropped = collectGarbage(() => order.push('late'), { afterMs: 50, trimC });
  dropped?.cancel();
  await held(new Promise((r) => setTimeout(r, 150)));
  t.equal(trims, 1, 'a dropped compaction does not trim either');
  const plain = await held(new Promise<Collected>((r) => collectGarbage(r, { afterMs: 10 })));
  t.equal(plain.trimRssMiB, undefined, 'without a trim, no trim is reported');
});

t.test("glibc's trim gives back the pages C code freed, which a collection alone does not", async (t) => {
  const trimC = await loadMallocTrim();
  if (!trimC) throw new Error('no malloc_trim: this test needs glibc and koffi, as the daemon on Debian has');
  // Buffers of 64 KiB are malloc'd (under glibc's mmap threshold); every
  // other one let go leaves holes of whole pages in the arena that free()
  // alone cannot hand back (only the arena's top goes back by itself).
  let dropped: Buffer[] | undefined = [];
  const kept: Buffer[] = [];
  for (let i = 0; i < 2_000; i++) (i % 2 ? kept : dropped).push(Buffer.allocUnsafeSlow(64 << 10).fill(i));
  dropped = undefined;
  plainGc();
  plainGc();
  await held(new Promise((r) => setTimeout(r, 50)));
  const before = process.memoryUsage.rss();
  const c = await held(new Promise<Collected>((r) => collectGarbage(r, { afterMs: 10, trimC })));
  const gaveBack = (before - process.memoryUsage.rss()) / 1_048_576;
  t.ok(gaveBack > 30, `the RSS fell by most of the 62.5 MiB let go (${gaveBack.toFixed(1)} MiB)`);
  const r = c.trimRssMiB;
  t.ok(r && r.before - r.after > 30, `and the line's RSS around the trim says so (${r?.before} → ${r?.after} MiB)`);
  t.equal(kept.length, 1_000, 'what is still held stays');
  t.equal(kept[999]?.[0], 1_999 & 0xff, 'unchanged');
});

t.test('no gc is left exposed to the rest of the process', async (t) => {
  await held(new Promise<void>((r) => collectGarbage(() => r(), { afterMs: 0 })));
  t.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'the main context has no gc');
  t.equal(runInNewContext('typeof gc'), 'undefined', 'nor does a context made after it');
});

t.test('after a burst, the collections come once the heap stops growing', async (t) => {
  const MiB = 1 << 20;
  let used = 60 * MiB;
  let now = 0;
  const made: number[] = [];
  const compactions: (() => void)[] = [];
  let cancelled = 0;
  const lines: Record<string, unknown>[] = [];
  const log = { debug: (o: Record<string, unknown>) => lines.push(o) } as unknown as Logger;
  const idle = new IdleGarbage(log, {
    heapUsed: () => used,
    now: () => now,
    collect: (compacted) => {
      made.push(used);
      used = 62 * MiB; // what the collection left
      compactions.push(() => compacted({ ms: 200, heapUsedMiB: { before: 62, after: 60 } }));
      return { collected: { ms: 60, heapUsedMiB: { before: made.at(-1)! / MiB, after: 62 } }, cancel: () => cancelled++ };
    },
  });
  const tick = (to: number, ms = 10_000) => {
    used = to * MiB;
    now += ms;
    idle.check();
  };
  tick(75); // +15 MiB: not enough growth
  tick(140); // +80 MiB, but it grew 65 MiB in this check: the burst goes on
  t.equal(made.length, 0, 'nothing collected while the heap still grows fast');
  tick(143); // +83 MiB in all, +3 MiB in this check: quiet
  t.equal(made.length, 1, 'collected once it is quiet');
  t.equal(lines.at(-1)?.event, 'idle-garbage');
  t.equal(lines.at(-1)?.grownMiB, 83, 'the line says how much the heap had grown');
  compactions.shift()?.();
  t.equal(lines.at(-1)?.event, 'idle-compacted', 'the compacting one is told too');
  tick(99); // +37 MiB from the 62 left, in this check: growing
  tick(100); // +38 MiB, quiet now, but 20 s after the last
  t.equal(made.length, 1, 'not again within a minute');
  tick(101, 60_000);
  t.equal(made.length, 2, 'again after a minute, the growth counted from what the last left');
  // V8's own collection lowers the heap: growth counts from there.
  tick(40, 70_000);
  tick(70); // +30 MiB from V8's 40: under 32 MiB
  tick(71);
  t.equal(made.length, 2, 'growth counts from the lower heap V8 left');
  tick(80);
  t.equal(made.length, 2, 'still growing by more than 8 MiB a check');
  tick(81);
  t.equal(made.length, 3, '+41 MiB from 40 and quiet: collected');
  const stop = idle.start(5);
  stop();
  t.equal(cancelled, 1, 'stopping drops the compacting collection still to come');
});

t.test('the real collections, asked for by the idle check', async (t) => {
  plainGc();
  const lines: Record<string, unknown>[] = [];
  const log = { debug: (o: Record<string, unknown>) => lines.push(o) } as unknown as Logger;
  const idle = new IdleGarbage(log);
  // A burst: much made, then let go of, with no full collection since.
  let burst: unknown[] | undefined = Array.from({ length: 1_000_000 }, (_, i) => ({ i, s: `b${i}` }));
  t.equal(burst.length, 1_000_000);
  burst = undefined;
  idle.check();
  t.notOk(lines.some((l) => l.event === 'idle-garbage'), 'not while the heap has just grown');
  idle.check();
  const line = lines.find((l) => l.event === 'idle-garbage') as { grownMiB: number; heapUsedMiB: { before: number; after: number } } | undefined;
  t.ok(line, 'collected on the next, quiet look');
  if (line) t.ok(line.heapUsedMiB.before - line.heapUsedMiB.after > 20, `and the heap gave back the burst's garbage (${line.heapUsedMiB.before} → ${line.heapUsedMiB.after} MiB, it had grown ${line.grownMiB})`);
  idle.start(1_000)();
});

t.test('the idle collections trim the C heap too', async (t) => {
  let trims = 0;
  let heap = 100 << 20;
  const lines: Record<string, unknown>[] = [];
  const log = { debug: (o: Record<string, unknown>) => lines.push(o) } as unknown as Logger;
  const idle = new IdleGarbage(log, { heapUsed: () => heap, trimC: () => trims++ });
  heap += 80 << 20;
  idle.check();
  idle.check();
  t.equal(lines.at(-1)?.event, 'idle-garbage', 'collected once quiet');
  t.equal(trims, 0, 'not trimmed with the first collection');
  await held(new Promise<void>((r) => setTimeout(r, 1_200)));
  t.equal(lines.at(-1)?.event, 'idle-compacted');
  t.equal(trims, 1, 'trimmed with the compacting one');
});
