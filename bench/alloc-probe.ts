// Where the daemon's garbage comes from under load: preloaded into the daemon
// under test (`BENCH_DAEMON_NODE_ARGS="--import /path/dist/bench/alloc-probe.js"`),
// it samples every allocation (those the collector already took included)
// and every ALLOC_PROBE_WINDOW_MS appends the window's top allocators to
// ALLOC_PROBE_FILE. A measuring tool only: nothing in the daemon depends on it.

import { appendFileSync } from 'node:fs';
import { allocationSampler } from './alloc-sampler.js';

const FILE = process.env.ALLOC_PROBE_FILE ?? '/tmp/alloc-probe.txt';
const WINDOW_MS = Number(process.env.ALLOC_PROBE_WINDOW_MS ?? 5_000);
const TOP = Number(process.env.ALLOC_PROBE_TOP ?? 30);

async function window(): Promise<void> {
  const sampler = await allocationSampler();
  setTimeout(() => {
    void sampler.stop(TOP).then((report) => {
      appendFileSync(FILE, `--- ${new Date().toISOString()} (${WINDOW_MS} ms)\n${report}`);
      void window();
    });
  }, WINDOW_MS).unref();
}

void window();
