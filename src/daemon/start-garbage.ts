// The start's garbage, handed back once the start is over.
//
// A restart reads every record, builds every mapping and hands the kernel
// every entry: hundreds of MiB allocated for a table of tens. V8 grows its
// heap to hold that while it happens and, with the daemon then mostly idle,
// no later collection gives it back (the bench saw the RSS unchanged 10 s
// after a restart). One full collection when the kernel is complete frees
// it, and V8 returns the emptied pages to the system soon after.
//
// A second collection, a second later, compacts. The start's garbage was
// promoted to the old generation between the mappings that stay, so a
// collection that only frees leaves most pages part-used, and V8 keeps them
// all: at 100 000 mappings 67 MiB live in a heap of 91–129 MiB, the RSS
// 150–192 MB from run to run. Moving the survivors together leaves a heap of
// 77 MiB and an RSS of 136–140 MB, for one pause of ~200–250 ms. It waits
// for the first to have handed back the garbage's pages: made at once, the
// copies it moves came on top of them, and the process' peak rose from
// 231–244 MB (the restore's own) to 253–297; a second later, 233–252.
//
// Node offers no collection on demand without --expose-gc, and the daemon
// must not depend on how it is launched: the flag is set for one new
// context, whose `gc` is taken and the flag put back. Where that fails (a
// runtime that refuses the flag), nothing is collected and the daemon runs
// on as before.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export interface Collected {
  ms: number;
  heapUsedMiB: { before: number; after: number };
}

const mib = (n: number) => Math.round((n / 1_048_576) * 10) / 10;

function fullCollection(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    return typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}

/** One full collection that moves every survivor together; later collections choose their pages as V8 would. */
function compacting(gc: () => void): void {
  try {
    setFlagsFromString('--compact-on-every-full-gc');
    gc();
  } finally {
    setFlagsFromString('--no-compact-on-every-full-gc');
  }
}

/** Between the freeing collection and the compacting one. */
export const COMPACT_AFTER_MS = 1_000;

export interface StartGarbage {
  /** The freeing collection, made at once. */
  collected: Collected;
  /** Drops the compacting collection if it has not run yet (the daemon stops). */
  cancel(): void;
}

function timed(collect: () => void): Collected {
  const before = process.memoryUsage().heapUsed;
  const started = performance.now();
  collect();
  return { ms: Math.round(performance.now() - started), heapUsedMiB: { before: mib(before), after: mib(process.memoryUsage().heapUsed) } };
}

/**
 * One full collection now (tens of milliseconds at 100 000 mappings) and a
 * compacting one `afterMs` later (~200–250 ms), told to `compacted`;
 * undefined where no collection can be asked for.
 */
export function collectStartGarbage(compacted: (c: Collected) => void, afterMs = COMPACT_AFTER_MS): StartGarbage | undefined {
  const gc = fullCollection();
  if (!gc) return undefined;
  const collected = timed(gc);
  const timer = setTimeout(() => compacted(timed(() => compacting(gc))), afterMs);
  timer.unref();
  return { collected, cancel: () => clearTimeout(timer) };
}
