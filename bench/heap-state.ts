// What heap.ts and restart-heap.ts start from: the state directory a daemon
// with N mappings leaves (written through the journal, folded into a
// snapshot), and a service as the daemon builds one, quiet.

import { randomBytes } from 'node:crypto';
import { makeMapping } from '../src/domain/mapping.js';
import type { FirewallBackend } from '../src/firewall/backend.js';
import { mustParseIp } from '../src/net/address.js';
import { builtinPolicy } from '../src/policy/load.js';
import { DEFAULT_SERVICE_CONFIG, MappingService } from '../src/service/mapping-service.js';
import { monotonicClock } from '../src/state/clock.js';
import { Epoch } from '../src/state/epoch.js';
import { putRecord } from '../src/state/records.js';
import { DurableStore, type StoredMapping } from '../src/state/store.js';
import { createLogger } from '../src/log.js';

export const clock = monotonicClock;

/** V8's used heap after full collections (run with node --expose-gc). */
export function usedAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc');
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/**
 * N mappings as the bench's PCP rows make them (a nonce each, 256 clients):
 * IPv6 pinholes, and every `v4Every`-th one an IPv4 mapping (DNAT, SNAT and
 * a held port in the kernel) when given.
 */
export async function writeState(dir: string, n: number, v4Every = 0): Promise<void> {
  const { store } = await DurableStore.open(dir, clock.wall());
  // A fresh directory gets its first snapshot (and epoch) as the daemon's start writes it.
  await store.compact([], { wall: clock.wall(), mono: clock.now(), bootId: clock.bootId() }, clock.wall());
  const now = clock.now();
  const kept: StoredMapping[] = [];
  for (let i = 0; i < n; i += 1000) {
    const records = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) {
      const v4 = v4Every > 0 && j % v4Every === 0;
      const client = mustParseIp(v4 ? `192.168.77.${(j % 200) + 10}` : `2001:db8:77::1:${((j % 256) + 1).toString(16)}`);
      // One internal endpoint each: (client, port) tells j apart.
      const port = 10_000 + Math.floor(j / (v4 ? 200 : 256));
      const external = v4 ? mustParseIp('198.51.100.1') : client;
      const m = makeMapping(
        { kind: 'map', family: v4 ? 4 : 6, internalAddress: client, protocol: 17, internalPort: port, externalAddress: external, externalPort: v4 ? 1024 + (Math.floor(j / v4Every) % 64_000) : port, filters: [], nonce: randomBytes(12).toString('hex'), origin: 'pcp', client, description: '', lifetime: 3600, clientPort: 5350 },
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
  await store.compact(kept, { wall: clock.wall(), mono: clock.now(), bootId: clock.bootId() }, clock.wall());
  await store.close();
}

export function quietService(fw: FirewallBackend): MappingService {
  return new MappingService(
    DEFAULT_SERVICE_CONFIG,
    builtinPolicy().policy,
    fw,
    { externalIPv4: () => mustParseIp('198.51.100.1'), isLanHost: () => true, isRouterAddress: () => false },
    clock,
    new Epoch(clock),
    createLogger({ level: 'error', write: () => undefined }),
  );
}
