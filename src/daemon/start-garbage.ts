// The start's garbage, handed back once the start is over.
//
// A restart reads every record, builds every mapping and hands the kernel
// every entry: hundreds of MiB allocated for a table of tens. V8 grows its
// heap to hold that while it happens and, with the daemon then mostly idle,
// no later collection gives it back (the bench saw the RSS unchanged 10 s
// after a restart). One full collection when the kernel is complete frees
// it, and V8 returns the emptied pages to the system soon after.
//
// That collection also compacts. The start's garbage was promoted to the
// old generation between the mappings that stay, so a collection that only
// frees leaves most pages part-used, and V8 keeps them all: at 100 000
// mappings 67 MiB live in a heap of 91–129 MiB, the RSS 150–192 MB from run
// to run. Moving the survivors together gives back 77 MiB and an RSS of
// 136–140 MB, for a pause of ~250 ms instead of ~65, once, after the start.
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

/** One full, compacting collection (blocking: ~250 ms at 100 000 mappings); undefined where none can be asked for. */
export function collectStartGarbage(): Collected | undefined {
  const gc = fullCollection();
  if (!gc) return undefined;
  const before = process.memoryUsage().heapUsed;
  const started = performance.now();
  compacting(gc);
  return { ms: Math.round(performance.now() - started), heapUsedMiB: { before: mib(before), after: mib(process.memoryUsage().heapUsed) } };
}
