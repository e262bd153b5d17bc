// A background snapshot holds what the store recorded, never a change still
// in flight: a mapping whose commit then fails must not come back at the
// next start, and one whose deletion fails must not be lost.

import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { FirewallChange } from '../src/firewall/backend.js';
import { mustParseIp } from '../src/net/address.js';
import type { MapRequest } from '../src/domain/requests.js';
import { DurableStore, type JournalRecord } from '../src/state/store.js';
import { harness } from './helpers/harness.js';
import { until } from './helpers/wait.js';

const A = mustParseIp('192.168.77.10');
const req = (port: number): MapRequest => ({ via: 'pcp', client: A, internalAddress: A, protocol: 17, internalPort: port, suggestedExternalPort: port, lifetime: 600, nonce: Buffer.alloc(12, 7) });

t.test('the background snapshot leaves out a mapping whose commit is in flight and then fails', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-snapshot-'));
  const h = harness();
  const { store } = await DurableStore.open(dir, h.clock.wall());
  await store.compact([], h.epoch.start(), h.clock.wall());
  // Grow the journal past the compaction threshold (4 MiB) with records that
  // cancel out, so that the next commit starts a background snapshot.
  const filler: JournalRecord[] = [];
  for (let i = 0; i < 14_000; i++) {
    filler.push({ op: 'del', at: h.clock.wall(), key: `filler-${i}-${'x'.repeat(300)}` });
  }
  store.append(filler);
  await store.flush();
  t.ok(store.wantsCompaction(), 'a compaction is due');
  h.service.attachStore(store);

  // The kernel refuses port 40001; 40000 goes through in the same batch.
  const apply = h.firewall.apply.bind(h.firewall);
  h.firewall.apply = async (batch: readonly FirewallChange[]) => {
    const results = await apply(batch.filter((c) => c.entry.externalPort !== 40001));
    let i = 0;
    return batch.map((c) => (c.entry.externalPort === 40001 ? false : (results[i++] ?? false)));
  };
  const snapshotBefore = statSync(join(dir, 'snapshot')).mtimeMs;
  const [ok, failed] = await Promise.all([h.service.map(req(40000)), h.service.map(req(40001))]);
  t.ok(ok.ok, '40000 granted');
  t.match(failed, { ok: false, refusal: 'FIREWALL_FAILED' }, '40001 refused by the kernel');

  // Wait for the background snapshot to finish (30 s: a loaded machine's disk may be slow).
  await until(() => !existsSync(join(dir, 'journal.next')) && statSync(join(dir, 'snapshot')).mtimeMs !== snapshotBefore, 30_000, 10);
  t.notOk(existsSync(join(dir, 'journal.next')), 'the snapshot completed');
  await store.close();

  const { store: again, state } = await DurableStore.open(dir, h.clock.wall());
  t.equal(state.status, 'loaded');
  t.same(state.mappings.map((m) => m.internalPort), [40000], 'only the committed mapping is stored');
  await again.close();
});
