// Garbage handed back when the daemon has made much and is quiet again:
// after the start, and after a burst of requests.
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
// 150–188 MiB from run to run. Moving the survivors together leaves a heap of
// 77 MiB and an RSS of 133–137 MiB, for one pause of ~200–250 ms. It waits
// for the first to have handed back the garbage's pages: made at once, the
// copies it moves came on top of them, and the process' peak rose from
// 226–238 MiB (the restore's own) to 247–290; a second later, 228–246.
//
// A burst leaves the same behind: 100 000 mappings made over PCP at full
// speed left 150–157 MiB of heap used (67 live) and an RSS of 248–268 MiB
// that stayed so while the daemon sat idle; the two collections took it to
// 148–152 MiB. `IdleGarbage` watches the heap and makes them once it has
// grown by half again (at least 32 MiB) since the last collection and has
// stopped growing: at most once a minute, never in the middle of the burst.
//
// The compacting collection is followed by a trim of the C heap (glibc's
// malloc_trim, firewall/malloc-trim.ts): what libnftables and koffi freed
// during a burst stays in glibc's arenas otherwise (libnftables trims only
// after calls that moved much text, and a burst's commits are small). After
// 100 000 PCP mappings made at full speed the RSS settled at 140–142 MiB
// with it, 149–153 without; the trim takes a few ms.
//
// Node offers no collection on demand without --expose-gc, and the daemon
// must not depend on how it is launched: the flag is set for one new
// context, whose `gc` is taken and the flag put back. Where that fails (a
// runtime that refuses the flag), nothing is collected and the daemon runs
// on as before.

import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from '../log.js';

export interface Collected {
  ms: number;
  heapUsedMiB: { before: number; after: number };
  /**
   * The process' RSS just before and after the C heap's trim that follows
   * the compacting collection (pages V8 hands back meanwhile count too).
   */
  trimRssMiB?: { before: number; after: number };
}

const mib = (n: number) => Math.round((n / 1_048_576) * 10) / 10;

/** A plain full collection to call (the compacting one and the tests use it too); undefined where none can be had. */
export function fullCollection(): (() => void) | undefined {
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

export interface Garbage {
  /** The freeing collection, made at once. */
  collected: Collected;
  /** Drops the compacting collection if it has not run yet (the daemon stops). */
  cancel(): void;
}

const heapUsed = () => getHeapStatistics().used_heap_size;

function timed(collect: () => void): Collected {
  const before = heapUsed();
  const started = performance.now();
  collect();
  return { ms: Math.round(performance.now() - started), heapUsedMiB: { before: mib(before), after: mib(heapUsed()) } };
}

/** The compacting collection, then the C heap's trim (when there is one), timed together. */
function compactedAndTrimmed(gc: () => void, trimC: (() => void) | undefined): Collected {
  const c = timed(() => compacting(gc));
  if (!trimC) return c;
  const started = performance.now();
  const before = process.memoryUsage.rss();
  trimC();
  return { ...c, ms: c.ms + Math.round(performance.now() - started), trimRssMiB: { before: mib(before), after: mib(process.memoryUsage.rss()) } };
}

export interface CollectOptions {
  /** Between the freeing collection and the compacting one (COMPACT_AFTER_MS). */
  afterMs?: number;
  /** The C heap's trim that follows the compacting collection (firewall/malloc-trim.ts), where there is one. */
  trimC?: () => void;
}

/**
 * One full collection now (tens of milliseconds at 100 000 mappings) and a
 * compacting one `afterMs` later (~200–250 ms), followed by `trimC` (the C
 * heap's trim) and told to `compacted`; undefined where no collection can
 * be asked for.
 */
export function collectGarbage(compacted: (c: Collected) => void, { afterMs = COMPACT_AFTER_MS, trimC }: CollectOptions = {}): Garbage | undefined {
  const gc = fullCollection();
  if (!gc) return undefined;
  const collected = timed(gc);
  const timer = setTimeout(() => compacted(compactedAndTrimmed(gc, trimC)), afterMs);
  timer.unref();
  return { collected, cancel: () => clearTimeout(timer) };
}

/** How often the heap is looked at. */
export const IDLE_CHECK_MS = 10_000;
/** Growth since the last collection that is worth one: half the heap then, and at least this. */
export const IDLE_GROWTH_BYTES = 32 << 20;
/** Growth within one check under which the daemon counts as quiet (a young generation's worth). */
export const IDLE_QUIET_BYTES = 8 << 20;
/** Between two idle collections at least. */
export const IDLE_MIN_GAP_MS = 60_000;

export interface IdleGarbageDeps {
  /** Bytes the heap holds now, live and garbage alike. */
  heapUsed?: () => number;
  /** Makes the collections; undefined where none can be asked for. */
  collect?: (compacted: (c: Collected) => void) => Garbage | undefined;
  /** The C heap's trim for the default collections (CollectOptions.trimC). */
  trimC?: () => void;
  now?: () => number;
}

/** Collects after a burst, once the daemon is quiet (see the head of this file). */
export class IdleGarbage {
  private readonly heapUsed: () => number;
  private readonly collect: NonNullable<IdleGarbageDeps['collect']>;
  private readonly now: () => number;
  /** The heap after the last collection (ours or V8's own): what growth is counted from. */
  private floor: number;
  private last: number;
  private lastCollection = Number.NEGATIVE_INFINITY;
  private pending: Garbage | undefined;

  constructor(
    private readonly log: Logger,
    deps: IdleGarbageDeps = {},
  ) {
    this.heapUsed = deps.heapUsed ?? heapUsed;
    this.collect = deps.collect ?? ((compacted) => collectGarbage(compacted, { trimC: deps.trimC }));
    this.now = deps.now ?? (() => performance.now());
    this.floor = this.last = this.heapUsed();
  }

  /** One look at the heap; collects when it grew enough and has stopped growing. */
  check(): void {
    const used = this.heapUsed();
    const since = used - this.last;
    this.last = used;
    // A collection of V8's own lowered it: growth counts from there.
    if (used < this.floor) this.floor = used;
    if (used - this.floor < Math.max(IDLE_GROWTH_BYTES, this.floor / 2)) return;
    if (since > IDLE_QUIET_BYTES || this.now() - this.lastCollection < IDLE_MIN_GAP_MS) return;
    this.lastCollection = this.now();
    const grownMiB = mib(used - this.floor);
    this.pending = this.collect((c) => {
      this.floor = this.last = this.heapUsed();
      this.log.debug({ event: 'idle-compacted', ...c });
    });
    if (!this.pending) return;
    this.floor = this.last = this.heapUsed();
    this.log.debug({ event: 'idle-garbage', grownMiB, ...this.pending.collected });
  }

  /** Looks every IDLE_CHECK_MS; returns the stop. */
  start(everyMs = IDLE_CHECK_MS): () => void {
    const timer = setInterval(() => this.check(), everyMs);
    timer.unref();
    return () => {
      clearInterval(timer);
      this.pending?.cancel();
    };
  }
}
