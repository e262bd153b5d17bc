// What holds the heap after a restart with N mappings, in-process: a store
// of N IPv6 pinholes (as the bench's PCP rows make them, a nonce each) is
// written through the journal and folded into a snapshot, opened again as a restart opens it, and put into a service over
// the memory firewall; V8's used heap is read (after a full GC) at each step.
//
//   node --expose-gc dist/bench/heap.js [N]
//
// Prints one JSON line: bytes per mapping held by the store's copy, the
// service's table, and what the start left behind (the loaded array).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { MemoryFirewall } from '../src/firewall/memory.js';
import { makeMapping } from '../src/domain/mapping.js';
import { mustParseIp } from '../src/net/address.js';
import { builtinPolicy } from '../src/policy/load.js';
import { DEFAULT_SERVICE_CONFIG, MappingService } from '../src/service/mapping-service.js';
import { monotonicClock } from '../src/state/clock.js';
import { Epoch } from '../src/state/epoch.js';
import { putRecord } from '../src/state/records.js';
import { DurableStore, type StoredMapping } from '../src/state/store.js';
import { createLogger } from '../src/log.js';

const N = Number(process.argv[2] ?? 100_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const used = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

const clock = monotonicClock;
const dir = mkdtempSync(join(tmpdir(), 'portcullis-heap-'));
try {
  // The state a daemon with N mappings leaves: written through the journal, folded into a snapshot.
  {
    const { store } = await DurableStore.open(dir, clock.wall());
    // A fresh directory gets its first snapshot (and epoch) as the daemon's start writes it.
    await store.compact([], { wall: clock.wall(), mono: clock.now(), bootId: clock.bootId() }, clock.wall());
    const now = clock.now();
    const kept: StoredMapping[] = [];
    for (let i = 0; i < N; i += 1000) {
      const records = [];
      for (let j = i; j < Math.min(N, i + 1000); j++) {
        const client = mustParseIp(`2001:db8:77::1:${((j % 256) + 1).toString(16)}`);
        const port = 10_000 + Math.floor(j / 256);
        const m = makeMapping(
          { kind: 'map', family: 6, internalAddress: client, protocol: 17, internalPort: port, externalAddress: client, externalPort: port, filters: [], nonce: randomBytes(12), origin: 'pcp', client, description: '', lifetime: 3600, clientPort: 5350 },
          j,
          now,
        );
        const r = putRecord(m, clock);
        if (r.op === 'put') kept.push(r.m);
        records.push(r);
      }
      store.append(records);
      await store.flush();
    }
    // Folded into a snapshot, as a daemon that ran a while leaves it (the journal read back is line by line anyway).
    await store.compact(
      kept,
      { wall: clock.wall(), mono: clock.now(), bootId: clock.bootId() },
      clock.wall(),
    );
    await store.close();
  }
  const base = used();
  const { store, state } = await DurableStore.open(dir, clock.wall());
  // Before any GC: what the open left on the heap, garbage included (the start's peak is at least this).
  const openedWithGarbage = process.memoryUsage().heapUsed;
  const opened = used();
  const fw = new MemoryFirewall(clock);
  const service = new MappingService(DEFAULT_SERVICE_CONFIG, builtinPolicy().policy, fw, { externalIPv4: () => undefined, isLanHost: () => true, isRouterAddress: () => false }, clock, new Epoch(clock), createLogger({ level: 'error', write: () => undefined }));
  const r = service.restore(state.mappings, state.lastWriteWall);
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
