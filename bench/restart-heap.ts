// What a restart allocates on the way, in-process: the state a daemon with N
// mappings leaves is opened, restored into a service, and the firewall made
// to match it the way the daemon does after a reboot (syncFirewall, then the
// reinstall's batches) — through the real nft backend over a stand-in
// runner that takes the JSON batches as libnftables would be given them
// (one JSON.stringify each) and touches no kernel: every set lists empty,
// as after a reboot. Read from the start of the open to the last batch:
// V8's used heap at every nft call, without forcing a collection (the peak
// the process carries), and every byte allocated (v8.GCProfiler: what each
// collection found, plus what is left), then the live heap after full GCs.
//
//   node --expose-gc dist/bench/restart-heap.js [N] [v4Every]
//
// BENCH_REAL_NFT=1: the real nftables (libnftables in-process, as the
// daemon) instead of the stand-in — run it inside a network namespace of
// its own (`ip netns exec NS node …`): it creates table inet portcullis there.
// Then the RSS includes what libnftables keeps.
//
// BENCH_ALLOC_TOP=20: also sample allocations from the open to the last
// batch (collected ones included) and print the functions that allocated
// most, to stderr.
//
// v4Every: every so many mappings is an IPv4 one (DNAT, SNAT, held port);
// 0 (default) for IPv6 pinholes only, as heap.js. Prints one JSON line.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GCProfiler } from 'node:v8';
import { allocationSampler } from './alloc-sampler.js';
import { NftBackend } from '../src/firewall/nft/backend.js';
import type { NftCommand, NftRunner } from '../src/firewall/nft/run.js';
import { startFirewall, syncFirewall } from '../src/daemon/firewall.js';
import { chooseRunner } from '../src/firewall/nft/choose.js';
import { createLogger } from '../src/log.js';
import { DurableStore } from '../src/state/store.js';
import { NO_TELEMETRY } from '../src/telemetry.js';
import { clock, quietService, usedAfterGc as used, writeState } from './heap-state.js';

const N = Number(process.argv[2] ?? 100_000);
const V4_EVERY = Number(process.argv[3] ?? 0);
const MiB = (b: number) => +(b / 2 ** 20).toFixed(1);

let peakHeap = 0;
let peakRss = 0;
const sample = () => {
  const u = process.memoryUsage();
  peakHeap = Math.max(peakHeap, u.heapUsed);
  peakRss = Math.max(peakRss, u.rss);
};

/** The kernel after a reboot: nothing listed, every batch taken; what the batches add is counted. */
const sent = { batches: 0, bytes: 0, elements: 0 };
const standIn: NftRunner = process.env.BENCH_REAL_NFT ? sampled(chooseRunner('library', createLogger({ level: 'error', write: () => undefined }))) : {
  kind: 'library',
  async batch(commands: readonly NftCommand[]) {
    standInCount(commands);
    return { ok: true, stdout: '', stderr: '' };
  },
  async script() {
    sample();
    return { ok: true, stdout: '', stderr: '' };
  },
  async list() {
    sample();
    return { ok: true, items: [] };
  },
};

/** BENCH_TRIM=1: what glibc's malloc_trim(0) gives back at the end (freed native memory the RSS still counted). */
async function trimmed(): Promise<{ rssAfterTrimMiB?: number }> {
  if (!process.env.BENCH_TRIM) return {};
  const koffi = (await import('koffi')).default;
  koffi.load('libc.so.6').func('int malloc_trim(size_t pad)')(0);
  return { rssAfterTrimMiB: MiB(process.memoryUsage().rss) };
}

/** The real runner, sampled at each call and counted as the stand-in counts. */
function sampled(real: NftRunner): NftRunner {
  return {
    kind: real.kind,
    batch: (commands) => (standInCount(commands), real.batch(commands)),
    script: (text) => (sample(), real.script(text)),
    list: (args) => (sample(), real.list(args)),
  };
}

function standInCount(commands: readonly NftCommand[]): void {
  sample();
  sent.batches++;
  sent.bytes += JSON.stringify({ nftables: commands }).length;
  for (const c of commands) {
    const add = c.add as { element?: { elem: unknown[] } } | undefined;
    // Read, not serialized: a JSON.stringify per element here added ~16 MiB to what this probe reported allocated at 100 000 (447 → 431).
    for (const e of add?.element?.elem ?? []) {
      const key = ((Array.isArray(e) ? e[0] : e) as { elem?: { val?: { concat?: unknown[] } } }).elem?.val?.concat ?? [];
      if (key.includes('udp') || key.includes('tcp')) sent.elements++;
    }
  }
}

const dir = mkdtempSync(join(tmpdir(), 'portcullis-restart-heap-'));
try {
  await writeState(dir, N, V4_EVERY);
  const log = createLogger({ level: 'error', write: () => undefined });
  const fw = new NftBackend({ family: 'inet', table: 'portcullis', embedded: false }, { wans: ['wan0'], lan: ['br-lan'], mark: 0x10000, nat44: true, guarded: { udp: [5351], tcp: [] } }, log, standIn);
  await startFirewall(fw, []);
  // What the kernel answers on this machine; the stand-in lists nothing, so its probe says no.
  fw.renewInPlace = true;
  if (process.env.BENCH_REAL_NFT) {
    // A reboot: the table gone (start made it), then made again by the reconcile.
    const gone = await chooseRunner('library', log).script('delete table inet portcullis\n');
    if (!gone.ok) throw new Error(gone.stderr);
  }
  const base = used();
  sent.batches = sent.bytes = sent.elements = 0;
  const top = Number(process.env.BENCH_ALLOC_TOP ?? 0);
  const sampler = top > 0 ? await allocationSampler() : undefined;
  const profiler = new GCProfiler();
  profiler.start();
  const started = performance.now();
  const { store, state } = await DurableStore.open(dir, clock.wall());
  sample();
  const service = quietService(fw);
  const r = service.restore(state.mappings, state.lastWriteWall);
  sample();
  const reinstall = await syncFirewall(service, fw, NO_TELEMETRY, log);
  sample();
  await reinstall.run(() => false);
  sample();
  const ms = Math.round(performance.now() - started);
  if (sampler) process.stderr.write(await sampler.stop(top));
  const endUsed = process.memoryUsage().heapUsed;
  const gcs = profiler.stop()?.statistics ?? [];
  // Allocated = what every collection freed + what is on the heap at the end, less what was there at the start.
  const freed = gcs.reduce((sum, g) => sum + (g.beforeGC.heapStatistics.usedHeapSize - g.afterGC.heapStatistics.usedHeapSize), 0);
  const allocated = endUsed + freed - base;
  const live = used();
  if (state.status !== 'loaded' || r.restored !== N) throw new Error(`store ${state.status} (${state.detail}), ${r.restored} of ${N} restored`);
  const v4 = V4_EVERY > 0 ? Math.ceil(N / V4_EVERY) : 0;
  // A pinhole is one element; an IPv4 mapping a DNAT, a SNAT and a held-port element.
  const expected = N - v4 + 3 * v4;
  if (sent.elements !== expected) throw new Error(`${sent.elements} elements sent, ${expected} expected`);
  process.stdout.write(
    `${JSON.stringify({
      mappings: N,
      ipv4: v4,
      ms,
      heapPeakMiB: MiB(peakHeap - base),
      allocatedMiB: MiB(allocated),
      collections: { scavenge: gcs.filter((g) => g.gcType === 'Scavenge').length, markCompact: gcs.filter((g) => g.gcType === 'MarkSweepCompact').length },
      liveAfterMiB: MiB(live - base),
      rssPeakMiB: MiB(peakRss),
      rssEndMiB: MiB(process.memoryUsage().rss),
      heapTotalEndMiB: MiB(process.memoryUsage().heapTotal),
      ...(await trimmed()),
      nft: { ...sent, bytes: MiB(sent.bytes) },
    })}\n`,
  );
  await store.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
