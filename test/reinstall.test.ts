// The kernel's entries come back after a start in bounded batches, each read
// afresh from the table (daemon/firewall.ts, syncFirewall): what changes
// between two batches is put back as it is then, or not at all.

import t from 'tap';
import { REINSTALL_BATCH, syncFirewall } from '../src/daemon/firewall.js';
import { entryKey, type DesiredEntry, type FirewallBackend, type FirewallChange, type Reconciled, type ReconcileOptions } from '../src/firewall/backend.js';
import { entryOf } from '../src/service/firewall-entries.js';
import { NO_TELEMETRY } from '../src/telemetry.js';
import { harness } from './helpers/harness.js';
import { memoryLogger } from './helpers/memory-logger.js';
import { storedMapping, EPOCH } from './helpers/stored.js';

/** The memory firewall after a reboot (empty), with a reconcile that defers every entry, and every batch seen. */
function rebootedKernel(h: ReturnType<typeof harness>) {
  const batches: FirewallChange[][] = [];
  let between: (() => void) | undefined;
  const fw: FirewallBackend = {
    name: 'test',
    start: () => h.firewall.start(),
    stop: () => h.firewall.stop(),
    setStatics: (s) => h.firewall.setStatics(s),
    apply: async (batch) => {
      batches.push([...batch]);
      const r = await h.firewall.apply(batch);
      between?.();
      between = undefined;
      return r;
    },
    intact: async () => true,
    reconcile: async (desired: readonly DesiredEntry[], opts?: ReconcileOptions): Promise<Reconciled> => ({ added: 0, removed: 0, recreated: false, ...(opts?.defer ? { deferred: desired.map((d) => d.entry) } : {}) }),
  };
  return { fw, batches, afterNextBatch: (fn: () => void) => (between = fn) };
}

t.test('a restart reinstalls in batches of REINSTALL_BATCH, reading the table at each', async (t) => {
  const h = harness();
  const count = 2 * REINSTALL_BATCH + 100;
  const stored = Array.from({ length: count }, (_, i) => storedMapping(20_000 + i));
  t.same(h.service.restore(stored, EPOCH.wall), { restored: count, expired: 0 });
  t.equal(h.firewall.list().length, 0, 'the kernel starts empty (a reboot)');

  const kernel = rebootedKernel(h);
  const log = memoryLogger();
  let repairs = 0;
  const reinstall = await syncFirewall(h.service, kernel.fw, { ...NO_TELEMETRY, repaired: () => repairs++ }, log);
  t.equal(reinstall.entries, count, 'every restored mapping is left to reinstall');
  t.equal(kernel.batches.length, 0, 'nothing is put back before run()');

  // Between the first and second batch a client's mapping (due in the last
  // batch) is removed and another one (due in the second) is renewed to a
  // shorter lifetime: the kernel must not get the first back, and must get
  // the second as it is now.
  const gone = h.service.byKey(storedMapping(20_000 + count - 1).key);
  const renewed = h.service.byKey(storedMapping(20_000 + REINSTALL_BATCH + 5).key);
  t.ok(gone && renewed);
  kernel.afterNextBatch(() => {
    void h.service.removeAsAdmin((m) => m === gone);
    h.clock.advance(1_000_000);
  });
  await reinstall.run(() => false);

  t.same(kernel.batches.map((b) => b.length), [REINSTALL_BATCH, REINSTALL_BATCH, 99], 'three bounded batches; the removed mapping is not among them');
  const inKernel = new Set(h.firewall.list().map(entryKey));
  const held = h.service.mappings((m) => m.origin !== 'static');
  t.equal(held.length, count - 1);
  t.ok(
    held.every((m) => inKernel.has(entryKey(entryOf(m)))),
    'the kernel holds every mapping the table holds',
  );
  t.equal(inKernel.size, count - 1, 'and nothing else');
  const second = kernel.batches[1]?.find((c) => c.op === 'put' && c.entry.internalPort === renewed?.internalPort);
  t.equal(second?.op === 'put' && second.timeoutSeconds, 3600 - 1000, 'a later batch carries the lifetime left at its own time');
  const line = log.lines.find((l) => l.event === 'nft-reinstalled');
  t.match(line, { entries: count - 1, batches: 3, refused: 0, stopped: false });
  t.equal(repairs, 1, 'the start counts one repair');
});

t.test('a start with nothing missing logs the reinstall and counts no repair', async (t) => {
  const h = harness();
  const kernel = rebootedKernel(h);
  const log = memoryLogger();
  let repairs = 0;
  const reinstall = await syncFirewall(h.service, kernel.fw, { ...NO_TELEMETRY, repaired: () => repairs++ }, log);
  await reinstall.run(() => false);
  t.equal(reinstall.entries, 0);
  t.match(log.lines.find((l) => l.event === 'nft-reinstalled'), { entries: 0, batches: 0 });
  t.equal(repairs, 0, 'a start with nothing to put back is no repair (the metric counts damage)');
});

t.test('a stop ends the reinstall between batches', async (t) => {
  const h = harness();
  h.service.restore(
    Array.from({ length: 3 * REINSTALL_BATCH }, (_, i) => storedMapping(10_000 + i)),
    EPOCH.wall,
  );
  const kernel = rebootedKernel(h);
  const reinstall = await syncFirewall(h.service, kernel.fw, NO_TELEMETRY, memoryLogger());
  let stopping = false;
  kernel.afterNextBatch(() => (stopping = true));
  await reinstall.run(() => stopping);
  t.equal(kernel.batches.length, 1, 'no batch starts once the daemon is stopping');
});
