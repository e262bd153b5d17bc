// Where the daemon's event loop stalls: preloaded into the daemon under test
// (`BENCH_DAEMON_NODE_ARGS="--import /path/dist/bench/loop-probe.js"`), it
// writes one JSON line per stall of at least STALL_MS to LOOP_PROBE_FILE,
// with the child processes spawned and the GC pauses that fell inside it.
// A measuring tool only: nothing in the daemon depends on it.

import { ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { PerformanceObserver, monitorEventLoopDelay } from 'node:perf_hooks';

const FILE = process.env.LOOP_PROBE_FILE ?? '/tmp/loop-probe.jsonl';
const STALL_MS = Number(process.env.LOOP_PROBE_STALL_MS ?? 3);
const TICK_MS = 1;

type Event = { at: number; what: string; ms: number };
const recent: Event[] = [];
/** Per 5 s window: how many of each kind, and their summed ms on the loop. */
let window = new Map<string, { n: number; ms: number }>();
const note = (e: Event) => {
  const kind = e.what.split(' ').slice(0, 2).join(' ');
  const w = window.get(kind) ?? { n: 0, ms: 0 };
  window.set(kind, { n: w.n + 1, ms: +(w.ms + e.ms).toFixed(2) });
  recent.push(e);
  if (recent.length > 256) recent.shift();
};

// Every spawn (execFile and spawn both end here) timed on the loop thread.
type SpawnOptions = { file?: string; args?: string[] };
const proto = ChildProcess.prototype as unknown as { spawn: (this: ChildProcess, o: SpawnOptions) => unknown };
const spawnOf = proto.spawn;
proto.spawn = function (this: ChildProcess, options: SpawnOptions) {
  const t0 = performance.now();
  try {
    return spawnOf.call(this, options);
  } finally {
    note({ at: t0, what: `spawn ${(options.args ?? [options.file]).slice(0, 4).join(' ')}`, ms: performance.now() - t0 });
  }
};

new PerformanceObserver((list) => {
  for (const e of list.getEntries()) note({ at: e.startTime, what: `gc ${(e as unknown as { detail?: { kind?: number } }).detail?.kind ?? ''}`, ms: e.duration });
}).observe({ entryTypes: ['gc'] });

const h = monitorEventLoopDelay({ resolution: 1 });
h.enable();
let last = performance.now();
const tick = () => {
  const now = performance.now();
  const late = now - last - TICK_MS;
  if (late >= STALL_MS) {
    const inside = recent.filter((e) => e.at >= last - 1 && e.at <= now);
    appendFileSync(FILE, `${JSON.stringify({ wall: Date.now(), lateMs: +late.toFixed(2), inside: inside.map((e) => `${e.what} ${e.ms.toFixed(2)}ms`) })}\n`);
  }
  last = now;
  setTimeout(tick, TICK_MS).unref();
};
setTimeout(tick, TICK_MS).unref();
// Every 5 s the loop's delay percentiles, reset after.
setInterval(() => {
  appendFileSync(FILE, `${JSON.stringify({ wall: Date.now(), p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6, on: Object.fromEntries(window) })}\n`);
  h.reset();
  window = new Map();
}, 5000).unref();
