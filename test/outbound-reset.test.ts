// OutboundElements.reset (src/firewall/nft/outbound.ts): reconciliation's
// rebuild of the shared IPv4 elements from every desired entry. It is built
// directly rather than through stage() (a restart hands it 100 000 entries),
// so it is held here to what staging every entry as a put and committing
// would leave: the same elements to put, the same held ports and earliest
// end, and the same answers to whatever is staged after it.

import t from 'tap';
import fc from 'fast-check';
import { Holders, OutboundElements } from '../src/firewall/nft/outbound.js';
import type { FirewallEntry } from '../src/firewall/backend.js';
import type { IpAddress } from '../src/net/address.js';

const NOW = 1_000_000;

// Small pools, so that entries share elements: a MAP and PEERs of one
// internal endpoint share its SNAT element, mappings on one external port its held one.
const entry = fc.record({
  family: fc.constantFrom(4 as const, 4 as const, 6 as const),
  protocol: fc.constantFrom(6, 17),
  internal: fc.integer({ min: 2, max: 4 }),
  internalPort: fc.integer({ min: 5000, max: 5003 }),
  externalPort: fc.integer({ min: 7000, max: 7003 }),
  external: fc.constantFrom('198.51.100.1', '198.51.100.9'),
  filter: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
}).map((r): FirewallEntry => {
  const internalAddress = (r.family === 4 ? `192.168.77.${r.internal}` : `2001:db8:77::${r.internal}`) as IpAddress;
  return {
    family: r.family,
    protocol: r.protocol,
    externalAddress: (r.family === 4 ? r.external : internalAddress) as IpAddress,
    externalPort: r.externalPort,
    internalAddress,
    internalPort: r.internalPort,
    filters: r.filter === undefined ? [] : [{ prefix: { address: `203.0.113.${r.filter}` as IpAddress, length: 32 }, port: 0 }],
  };
});
// 0: already over (its holder does not count); the rest live.
const desired = fc.array(fc.record({ entry, timeoutSeconds: fc.constantFrom(0, 1, 30, 3600) }), { maxLength: 40 });
// What is staged after the reset: mostly the desired entries themselves
// (renewed or removed: that is what reads the holders, their data and the
// endpoint reset recorded), some new.
const later = fc.array(
  fc.record({ op: fc.constantFrom('put' as const, 'remove' as const), pick: fc.nat(), fresh: fc.option(entry, { freq: 4, nil: undefined }), timeoutSeconds: fc.constantFrom(1, 600) }),
  { maxLength: 12 },
);
type Later = { op: 'put' | 'remove'; pick: number; fresh: FirewallEntry | undefined; timeoutSeconds: number };
const changesOf = (l: readonly Later[], d: readonly { entry: FirewallEntry }[]) =>
  l.map((c) => {
    const e = c.fresh ?? d[c.pick % Math.max(1, d.length)]?.entry;
    if (!e) return undefined;
    return c.op === 'put' ? { op: 'put' as const, entry: e, timeoutSeconds: c.timeoutSeconds } : { op: 'remove' as const, entry: e };
  }).filter((c) => c !== undefined);

/** What reset replaced: every entry staged as a put, then committed, on fresh holdings. */
function staged(d: readonly { entry: FirewallEntry; timeoutSeconds: number }[]): { elements: OutboundElements; puts: unknown[] } {
  const elements = new OutboundElements(() => NOW);
  const s = elements.stage(d.map((x) => ({ op: 'put' as const, entry: x.entry, timeoutSeconds: x.timeoutSeconds })));
  s.commit();
  return { elements, puts: s.ops.filter((o) => o.op === 'put').map((o) => ({ set: o.set, elem: o.elem })) };
}

t.test('reset leaves what staging every entry as a put would', async (t) => {
  fc.assert(
    fc.property(desired, desired, later, (before, d, after) => {
      const ref = staged(d);
      // Holdings from an earlier state are forgotten by the reset.
      const subject = staged(before).elements;
      const puts = subject.reset(d);
      t.same(puts, ref.puts);
      t.same(subject.heldPorts().sort(), ref.elements.heldPorts().sort());
      t.equal(subject.earliestEnd, ref.elements.earliestEnd);
      // Its written data and endpoints: what is staged next must come out the same.
      const next = changesOf(after, d);
      const a = subject.stage(next);
      const b = ref.elements.stage(next);
      t.same(a.ops, b.ops);
      t.same(a.moved, b.moved);
      t.same(a.newlyHeld, b.newlyHeld);
      return true;
    }),
    { numRuns: 400 },
  );
});

t.test('an entry whose time is over holds nothing after a reset', async (t) => {
  const e: FirewallEntry = { family: 4, protocol: 17, externalAddress: '198.51.100.1' as IpAddress, externalPort: 7000, internalAddress: '192.168.77.2' as IpAddress, internalPort: 5000, filters: [] };
  const elements = new OutboundElements(() => NOW);
  t.same(elements.reset([{ entry: e, timeoutSeconds: 0 }]), []);
  t.same(elements.heldPorts(), []);
  t.equal(elements.earliestEnd, NOW, 'its end still counts, as staging counts it');
  const puts = elements.reset([{ entry: e, timeoutSeconds: 60 }]);
  t.equal(puts.length, 2, 'a SNAT element and a held port');
  t.same(elements.heldPorts(), [7000]);
});

t.test("a slot's holders behave as the Map they replace: order, size, ends, copies", async (t) => {
  const op = fc.oneof(
    fc.record({ op: fc.constant('set' as const), key: fc.constantFrom('a', 'b', 'c'), until: fc.integer({ min: 0, max: 20 }) }),
    fc.record({ op: fc.constant('delete' as const), key: fc.constantFrom('a', 'b', 'c') }),
    fc.record({ op: fc.constant('drop' as const), now: fc.integer({ min: 0, max: 20 }) }),
    fc.record({ op: fc.constant('copy' as const) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 30 }), (ops) => {
      let holders = new Holders();
      let ref = new Map<string, { value: string[]; until: number }>();
      for (const o of ops) {
        if (o.op === 'set') {
          const h = { value: [o.key], until: o.until };
          holders.set(o.key, h);
          ref.set(o.key, h);
        } else if (o.op === 'delete') {
          holders.delete(o.key);
          ref.delete(o.key);
        } else if (o.op === 'drop') {
          let earliest = Number.POSITIVE_INFINITY;
          for (const [k, h] of ref) {
            if (h.until <= o.now) ref.delete(k);
            else earliest = Math.min(earliest, h.until);
          }
          t.equal(holders.dropEnded(o.now), earliest);
        } else {
          // The copy goes on; the original, changed, must not change it.
          const copy = holders.copy();
          holders.set('z', { value: ['z'], until: 99 });
          holders = copy;
          ref = new Map(ref);
        }
        t.equal(holders.size, ref.size);
        t.same([...holders.values()], [...ref.values()]);
      }
      return true;
    }),
    { numRuns: 500 },
  );
});
