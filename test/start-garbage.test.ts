// The start's garbage handed back once (src/daemon/start-garbage.ts): a full
// collection without --expose-gc on the command line, and no `gc` left
// behind for anything else in the process to call.

import t from 'tap';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { collectStartGarbage } from '../src/daemon/start-garbage.js';

/** MiB of the old generation V8 holds but nothing lives in. */
function oldSpaceUnused(): number {
  const old = getHeapSpaceStatistics().find((s) => s.space_name === 'old_space');
  if (!old) throw new Error('no old_space in this V8');
  return (old.space_size - old.space_used_size) / 1_048_576;
}

/** A plain full collection, for the test's own use. */
function plainGc(): void {
  setFlagsFromString('--expose-gc');
  try {
    (runInNewContext('gc') as () => void)();
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}

/** Objects promoted to the old generation, of which one in twenty stays: every page part-used. */
function fragmented(tag: string): unknown[] {
  let all: unknown[] | undefined = Array.from({ length: 600_000 }, (_, i) => ({ i, s: `${tag}${i}` }));
  plainGc();
  plainGc();
  const kept = all.filter((_, i) => i % 20 === 0);
  all = undefined;
  return kept;
}

t.test('one full collection frees what the start left, without --expose-gc', async (t) => {
  t.notOk(process.execArgv.includes('--expose-gc'), 'this process was not started with --expose-gc');
  // Garbage the size of a restart's records, out of reach before the call.
  let lines: string[] | undefined = Array.from({ length: 200_000 }, (_, i) => JSON.stringify(['put', i, [i, 'map', 6, `2001:db8::${i.toString(16)}`]]));
  t.equal(lines.length, 200_000);
  lines = undefined;
  const c = collectStartGarbage();
  t.ok(c, 'a collection was made');
  if (!c) return;
  t.ok(c.heapUsedMiB.before - c.heapUsedMiB.after >= 10, `the heap gave back what was out of reach (${c.heapUsedMiB.before} → ${c.heapUsedMiB.after} MiB)`);
  t.ok(c.ms >= 0, 'and says how long it took');
});

t.test('the collection moves the survivors together, and only that one does', async (t) => {
  const first = fragmented('a');
  const c = collectStartGarbage();
  t.ok(c, 'a collection was made');
  const afterStart = oldSpaceUnused();
  t.ok(afterStart < 4, `the old generation keeps little it does not use after the start's collection (${afterStart.toFixed(1)} MiB)`);
  // The same shape again, freed by a later, ordinary full collection: V8's
  // own choice of pages again (the flag was put back), which here keeps them.
  const second = fragmented('b');
  plainGc();
  const afterPlain = oldSpaceUnused();
  t.ok(afterPlain > 12, `a later collection does not compact every page (${afterPlain.toFixed(1)} MiB unused)`);
  t.equal(first.length + second.length, 60_000);
});

t.test('no gc is left exposed to the rest of the process', async (t) => {
  collectStartGarbage();
  t.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'the main context has no gc');
  t.equal(runInNewContext('typeof gc'), 'undefined', 'nor does a context made after it');
});
