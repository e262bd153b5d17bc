// What one durable journal write costs on this disk, two ways, side by side:
// `node dist/bench/sync-cost.js [DIR] [N]`.
//
//   append     a record written past the end of the file, then fdatasync:
//              the file's size changes, so the sync must also commit that
//              metadata (on ext4, a journal transaction).
//   in place   the same record written over a region zero-filled (written,
//              not fallocate'd: an unwritten extent converts on first write,
//              which is metadata again) and synced beforehand, then
//              fdatasync: only the data block goes.
//
// The two alternate write by write, so whatever else the machine does falls
// on both alike. Prints p50/p90/p99/max in ms for each.

import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const RECORD = 480;

function summary(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))]!.toFixed(2);
  return `p50 ${at(50)} p90 ${at(90)} p99 ${at(99)} max ${s.at(-1)!.toFixed(2)} ms (n ${s.length})`;
}

export function syncCost(dir: string, n: number): { append: number[]; inPlace: number[] } {
  const record = Buffer.alloc(RECORD, 0x61);
  const appendFd = openSync(join(dir, 'append'), 'w');
  const placeFd = openSync(join(dir, 'in-place'), 'w');
  // Zero-filled ahead, and synced: the blocks exist and are written.
  const zeros = Buffer.alloc(1 << 20);
  for (let done = 0; done < n * RECORD; done += zeros.length) writeSync(placeFd, zeros, 0, zeros.length, done);
  fdatasyncSync(placeFd);
  const append: number[] = [];
  const inPlace: number[] = [];
  for (let i = 0; i < n; i++) {
    let t = performance.now();
    writeSync(appendFd, record, 0, RECORD, i * RECORD);
    fdatasyncSync(appendFd);
    append.push(performance.now() - t);
    t = performance.now();
    writeSync(placeFd, record, 0, RECORD, i * RECORD);
    fdatasyncSync(placeFd);
    inPlace.push(performance.now() - t);
  }
  closeSync(appendFd);
  closeSync(placeFd);
  return { append, inPlace };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = mkdtempSync(join(process.argv[2] ?? tmpdir(), 'portcullis-sync-'));
  try {
    const { append, inPlace } = syncCost(dir, Number(process.argv[3] ?? 500));
    process.stdout.write(`append + fdatasync:   ${summary(append)}\nin place + fdatasync: ${summary(inPlace)}\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
