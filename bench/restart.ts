// The bench's restart row (bench.ts runs it after the PCP rows): the
// daemon restarted with everything present and its table deleted, as after
// a reboot; how soon a client is answered, when the kernel is complete, and
// the RSS then.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { FirstAnswer, FirstAnswerSpec } from './first-answer.js';
import { CLI, FIRST_ANSWER, work, inNsAsync, dropTable, V6_CLIENTS, rssKiB, peakRssKiB, heapMiB, pidOf, spawnPortcullis, started, stop, kernelMappings, thousands, notes } from './lab.js';

export interface Restart {
  /** Mappings counted in the kernel before the stop. */
  before: number;
  /** What the daemon's "state" line says it restored. */
  restored: number;
  /** From spawning the daemon: the first success a client heard… */
  firstAnswerMs: number;
  /** …the time on its "started" line… */
  startedMs: number;
  /** …the time on its nft-reinstalled line (the kernel complete, by its account)… */
  kernelMs: number;
  /** …and the end of the count that confirmed it (an upper bound, counted). */
  countedMs: number;
  kernelCount: number;
  /** The daemon's RSS once the kernel was complete… */
  rssKiB: number;
  /** …and V8's heap then (MiB, from its metrics). */
  heapMiB: { used: number; total: number };
  /** The highest RSS the daemon had by then (VmHWM): the open's and the reinstall's peak. */
  peakRssKiB: number;
  /**
   * The RSS and heap SETTLE_MS after the reinstall, the daemon idle: the
   * reading at the reinstall's end is a moment in V8's cycle (how much
   * garbage the heap holds then depends on when it last collected).
   */
  settled: { rssKiB: number; heapMiB: { used: number; total: number } };
  /** The daemon's nft-reinstalled line. */
  reinstall: Record<string, unknown>;
}

export const SETTLE_MS = 10_000;

/**
 * Restart with everything present: a clean stop (done by the caller), the
 * daemon's table deleted as after a reboot, then a new daemon. From the
 * moment it is spawned: the first success a client hears (a PCP MAP for a
 * new port, asked every 10 ms from before the start), the daemon's
 * "started" and nft-reinstalled lines (their log times, same machine
 * clock), and a count of the kernel's mappings as soon as the latter
 * appears: every mapping before and the client's new one must be there, or
 * the row says MISMATCH. Then the daemon's RSS, its peak so far (VmHWM), and the RSS again
 * SETTLE_MS after the reinstall.
 */
export async function measureRestart(before: number): Promise<Restart> {
  dropTable('portcullis');
  let asking: () => void = () => undefined;
  const ready = new Promise<void>((r) => (asking = r));
  const spec: FirstAnswerSpec = { server: '2001:db8:77::1', client: V6_CLIENTS[0] as string, internalPort: 60_000, intervalMs: 10, deadlineMs: 120_000 };
  const probe = inNsAsync('lan', [process.execPath, FIRST_ANSWER, JSON.stringify(spec)], (err) => err.includes('asking') && asking()).then(
    (out) => JSON.parse(out) as FirstAnswer,
    (err: unknown) => {
      notes.push(`portcullis restart: no client was answered (${(err as Error).message.slice(0, 200)})`);
      return undefined;
    },
  );
  await Promise.race([ready, probe]);
  const t0 = Date.now();
  const d = spawnPortcullis();
  try {
    const logFile = join(work, 'portcullis.log');
    const line = (event: string) => {
      const l = readFileSync(logFile, 'utf8').split('\n').find((x) => x.includes(`"event":"${event}"`));
      return l ? (JSON.parse(l) as Record<string, unknown>) : undefined;
    };
    // A build from before the reinstall in batches (an older tree under
    // BENCH_DAEMON_CLI) logs no nft-reinstalled: it completed its kernel
    // before "started".
    const batched = readFileSync(join(dirname(CLI), 'daemon/firewall.js'), 'utf8').includes('nft-reinstalled');
    const cue = batched ? 'nft-reinstalled' : 'started';
    let reinstall: Record<string, unknown> | undefined;
    for (let i = 0; i < 12_000 && !(reinstall = line(cue)); i++) await new Promise((r) => setTimeout(r, 10));
    if (reinstall && !batched) reinstall = { ...reinstall, entries: 'before "started" (an older daemon)' };
    if (!reinstall) throw new Error(`no ${cue} line within 120 s: ${readFileSync(logFile, 'utf8').slice(-2000)}`);
    const reinstalledAt = Date.now();
    const rss = rssKiB(pidOf(d));
    const peak = peakRssKiB(pidOf(d));
    // Where the RSS is: V8's heap (used of total), and the rest (native: libnftables, buffers, code).
    const heap = heapMiB();
    const answer = await probe;
    const want = before + (answer ? 1 : 0);
    const kernelCount = kernelMappings();
    const countedMs = Date.now() - t0;
    await new Promise((r) => setTimeout(r, Math.max(0, reinstalledAt + SETTLE_MS - Date.now())));
    const settled = { rssKiB: rssKiB(pidOf(d)), heapMiB: heapMiB() };
    if (kernelCount !== want) notes.push(`portcullis: ${thousands(kernelCount)} mappings in the kernel when the restart's reinstall said it was done, ${thousands(want)} expected — MISMATCH`);
    const at = (l: Record<string, unknown> | undefined) => (l ? Date.parse(String(l.time)) - t0 : NaN);
    return {
      before,
      restored: Number(line('state')?.restored ?? NaN),
      firstAnswerMs: answer ? answer.answeredWall - t0 : NaN,
      startedMs: at(line('started')),
      kernelMs: at(reinstall),
      countedMs,
      kernelCount,
      rssKiB: rss,
      heapMiB: heap,
      peakRssKiB: peak,
      settled,
      reinstall,
    };
  } finally {
    await stop(d);
  }
}
