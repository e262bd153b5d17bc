// What the nft backend hands libnftables, over a runner that records it and
// touches no kernel: a batch of puts names each set once (one `add element`
// for a run of puts into it), and reconciliation diffs the kernel's listing
// against the desired entries — stale elements out, missing ones back (or
// deferred, one entry per missing element, for the reinstall's batches).
// The kernel's side of both is proven in lab-nft, lab-snat and lab-restart.

import t from 'tap';
import type { DesiredEntry, FirewallEntry } from '../src/firewall/backend.js';
import { NftBackend } from '../src/firewall/nft/backend.js';
import type { NftCommand, NftRunner } from '../src/firewall/nft/run.js';
import { createLogger } from '../src/log.js';
import { mustParseIp } from '../src/net/address.js';

/** A kernel that lists `listed` in each set named, takes every batch, and keeps them. */
function recorder(listed: Record<string, unknown[]> = {}) {
  const batches: NftCommand[][] = [];
  const runner: NftRunner = {
    kind: 'library',
    batch: async (commands) => (batches.push([...commands]), { ok: true, stdout: '', stderr: '' }),
    script: async () => ({ ok: true, stdout: '', stderr: '' }),
    list: async (args) => {
      const name = args[args.length - 1] as string;
      const elem = listed[name];
      return { ok: true, items: elem ? [{ set: { name, elem } }] : [] };
    },
  };
  return { runner, batches };
}

async function backend(listed?: Record<string, unknown[]>) {
  const rec = recorder(listed);
  const fw = new NftBackend({ family: 'inet', table: 'portcullis', embedded: false }, { wans: ['wan0'], lan: ['br-lan'], mark: 0x10000, guarded: { udp: [5351], tcp: [] } }, createLogger({ level: 'error', write: () => undefined }), rec.runner);
  await fw.start();
  fw.renewInPlace = true;
  rec.batches.length = 0;
  return { fw, batches: rec.batches };
}

const pinhole = (i: number): FirewallEntry => {
  const a = mustParseIp(`2001:db8::${(i + 1).toString(16)}`);
  return { family: 6, protocol: 17, externalAddress: a, externalPort: 40_000, internalAddress: a, internalPort: 40_000, filters: [] };
};
const elements = (c: NftCommand) => (c.add as { element: { name: string; elem: unknown[] } }).element;

t.test('a batch of puts into one set is one add element command with every element', async (t) => {
  const { fw, batches } = await backend();
  const puts = Array.from({ length: 2048 }, (_, i) => ({ op: 'put' as const, entry: pinhole(i), timeoutSeconds: 600 }));
  t.same(await fw.apply(puts), puts.map(() => true));
  t.equal(batches.length, 1, 'one transaction');
  t.equal(batches[0]!.length, 1, 'one command for the run of puts');
  const add = elements(batches[0]![0]!);
  t.equal(add.name, 'pinholes6');
  t.equal(add.elem.length, 2048, 'every element in it');
  t.same(add.elem[7], { elem: { val: { concat: ['2001:db8::8', 'udp', 40_000] }, timeout: 600 } }, 'in the order given, each with its timeout');
});

t.test('a removal between puts keeps its place: put, vanish (add, delete), put', async (t) => {
  const { fw, batches } = await backend();
  await fw.apply([
    { op: 'put', entry: pinhole(0), timeoutSeconds: 60 },
    { op: 'remove', entry: pinhole(1) },
    { op: 'put', entry: pinhole(2), timeoutSeconds: 60 },
    { op: 'put', entry: pinhole(3), timeoutSeconds: 60 },
  ]);
  t.same(
    batches[0]!.map((c) => `${Object.keys(c)[0]} ${(Object.values(c)[0] as { element: { elem: unknown[] } }).element.elem.length}`),
    ['add 1', 'add 1', 'delete 1', 'add 2'],
  );
});

t.test('reconcile: stale elements out, missing ones back, present ones left alone', async (t) => {
  const listed = { pinholes6: [{ elem: { val: { concat: ['2001:db8::1', 'udp', 40_000] }, timeout: 600, expires: 500 } }, { elem: { val: { concat: ['2001:db8::99', 'udp', 40_000] }, timeout: 600, expires: 500 } }] };
  const desired: DesiredEntry[] = [0, 1, 2].map((i) => ({ entry: pinhole(i), timeoutSeconds: 300 }));
  {
    const { fw, batches } = await backend(listed);
    const r = await fw.reconcile(desired);
    t.same({ added: r.added, removed: r.removed, deferred: r.deferred }, { added: 2, removed: 1, deferred: undefined });
    const cmds = batches.at(-1)!;
    t.same(cmds.map((c) => Object.keys(c)[0]), ['add', 'delete', 'add'], 'the stale element vanishes first, then the missing come');
    t.same((cmds[1]!.delete as { element: { elem: unknown[] } }).element.elem, [{ elem: { val: { concat: ['2001:db8::99', 'udp', 40_000] } } }]);
    t.same(elements(cmds[2]!).elem.map((e) => (e as { elem: { val: { concat: unknown[] } } }).elem.val.concat[0]), ['2001:db8::2', '2001:db8::3']);
  }
  {
    const { fw, batches } = await backend(listed);
    const r = await fw.reconcile(desired, { defer: true });
    t.same({ added: r.added, removed: r.removed }, { added: 0, removed: 1 });
    t.same(r.deferred, [desired[1]!.entry, desired[2]!.entry], 'deferred: exactly the entries whose elements are missing, each once');
    t.same(batches.at(-1)!.map((c) => Object.keys(c)[0]), ['add', 'delete'], 'only the removal now');
  }
});

t.test('reconcile into an empty kernel with defer: the reinstall batches bring back every element a full reconcile would add at once', async (t) => {
  const v4 = (internal: string, protocol: number, internalPort: number, externalPort: number, filtered = false): FirewallEntry => ({
    family: 4,
    protocol,
    externalAddress: mustParseIp('198.51.100.1'),
    externalPort,
    internalAddress: mustParseIp(internal),
    internalPort,
    filters: filtered ? [{ prefix: { address: mustParseIp('203.0.113.7'), length: 32 }, port: 0 }] : [],
  });
  // Two entries of one internal endpoint share its SNAT element; UDP and TCP on one external port are two held ports.
  const entries = [v4('192.168.77.2', 17, 5000, 5000), pinhole(1), v4('192.168.77.2', 17, 5000, 5000, true), v4('192.168.77.3', 6, 6000, 7000), pinhole(2), v4('192.168.77.4', 17, 6001, 7000)];
  const desired: DesiredEntry[] = entries.map((entry, i) => ({ entry, timeoutSeconds: 300 + i }));
  const added = (batches: NftCommand[][]) =>
    batches
      .flat()
      .filter((c) => 'add' in c && (c.add as { element?: unknown }).element)
      .flatMap((c) => elements(c).elem.map((e) => `${elements(c).name} ${JSON.stringify(e)}`))
      .sort();

  const full = await backend();
  await full.fw.reconcile(desired);
  const want = added(full.batches);
  t.ok(want.some((e) => e.startsWith('snat4 ')) && want.some((e) => e.startsWith('held4 ')), 'the full reconcile adds shared elements');

  const deferring = await backend();
  const r = await deferring.fw.reconcile(desired, { defer: true });
  t.same(r.deferred, entries, 'every entry is deferred');
  // (Both made the backend's canary elements: this runner lists none, so the table reads as recreated.)
  const before = added(deferring.batches);
  t.same(before.filter((e) => /192\.168\.77|2001:db8/.test(e)), [], 'no entry\'s element is added before the reinstall');
  // The reinstall: two entries a batch, in order.
  for (let i = 0; i < desired.length; i += 2) {
    t.same(await deferring.fw.apply(desired.slice(i, i + 2).map((d) => ({ op: 'put' as const, entry: d.entry, timeoutSeconds: d.timeoutSeconds }))), [true, true]);
  }
  t.same([...new Set(added(deferring.batches))].sort(), want, 'the same elements, shared ones included, with the same data and timeouts');
});
