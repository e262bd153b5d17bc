// What holds the heap after a restart with N mappings, in-process: a store
// of N IPv6 pinholes (as the bench's PCP rows make them, a nonce each) is
// written through the journal and folded into a snapshot, opened again as a restart opens it, and put into a service over
// the memory firewall; V8's used heap is read (after a full GC) at each step.
//
//   node --expose-gc dist/bench/heap.js [N]
//
// Prints one JSON line: bytes per mapping held by the store (its map of
// what it committed: since the store keeps the restored mappings themselves,
// the keys and map entries only), the service's table, and what the start
// left behind (the loaded array).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryFirewall } from '../src/firewall/memory.js';
import { DurableStore } from '../src/state/store.js';
import { clock, quietService, usedAfterGc as used, writeState } from './heap-state.js';

const N = Number(process.argv[2] ?? 100_000);

const dir = mkdtempSync(join(tmpdir(), 'portcullis-heap-'));
try {
  await writeState(dir, N);
  const base = used();
  const { store, state } = await DurableStore.open(dir, clock.wall());
  // Before any GC: what the open left on the heap, garbage included (the start's peak is at least this).
  const openedWithGarbage = process.memoryUsage().heapUsed;
  const opened = used();
  const service = quietService(new MemoryFirewall(clock));
  // As the daemon restores (daemon/state.ts): the store keeps the restored mappings in place of the records read.
  const r = service.restore(state.mappings, state.lastWriteWall, (key, from, m) => store.adopt(key, from, m));
  const restored = used();
  state.mappings.length = 0;
  const steady = used();
  (store as unknown as { committed: Map<string, unknown> }).committed.clear();
  const withoutStoreCopy = used();
  if (state.status !== 'loaded' || r.restored !== N) throw new Error(`store ${state.status}, ${r.restored} of ${N} restored`);
  const per = (bytes: number) => Math.round(bytes / N);
  process.stdout.write(
    `${JSON.stringify({
      mappings: N,
      restored: r.restored,
      heapAfterRestartMiB: +((steady - base) / 2 ** 20).toFixed(1),
      heapAfterOpenBeforeGcMiB: +((openedWithGarbage - base) / 2 ** 20).toFixed(1),
      bytesPerMapping: { storeOpened: per(opened - base), tableAdded: per(restored - opened), loadedArrayFreed: per(restored - steady), steady: per(steady - base), storeCopy: per(steady - withoutStoreCopy), table: per(withoutStoreCopy - base) },
    })}\n`,
  );
  await store.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
