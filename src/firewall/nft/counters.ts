// Packet counts of pinholes (the only elements that count: ruleset.ts) for
// many entries at once: one listing of each pinhole set the entries use, not
// a `get element` per entry. A listing's size is the set's; the admin API asks
// once per request. An entry the listing's text does not name as we write it
// (a filtered pinhole's prefix, listed in another form) is asked with `get
// element`, at most FALLBACK_QUERIES per call.

import { entryKey, type FirewallEntry } from '../backend.js';
import type { NftRunner } from './run.js';
import { elementConcats, elementKey, elementTexts, setFor, type SetKey } from './ruleset.js';

const FALLBACK_QUERIES = 16;
type Ref = (set: SetKey) => { family: string; table: string; name: string };

/** One entry's packets with one `get element` (its elements' counters summed); undefined when unknown. */
export async function packetsOf(runner: NftRunner, ref: Ref, entry: FirewallEntry, nat44: boolean): Promise<number | undefined> {
  if (entry.family !== 6) return undefined;
  const r = ref(setFor(entry, nat44));
  const got = await runner.script(`get element ${r.family} ${r.table} ${r.name} { ${elementTexts(entry, nat44).join(', ')} }\n`);
  if (!got.ok) return undefined;
  let total = 0;
  for (const m of got.stdout.matchAll(/counter packets (\d+)/g)) total += Number(m[1]);
  return total;
}

/** Each IPv6 entry's packets (the sum over its elements), by entryKey; entries the listing lacks are left out. */
export async function packetCounts(runner: NftRunner, ref: Ref, entries: readonly FirewallEntry[], nat44: boolean): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const unmatched: FirewallEntry[] = [];
  const v6 = entries.filter((e) => e.family === 6);
  for (const set of new Set(v6.map((e) => setFor(e, nat44)))) {
    const r = ref(set);
    const listing = await runner.list(['list', 'set', r.family, r.table, r.name]);
    if (!listing.ok) continue;
    const s = listing.items.find((i) => i.set)?.set as { elem?: unknown[] } | undefined;
    const counted = new Map<string, number>();
    for (const raw of s?.elem ?? []) {
      const e = (raw as { elem?: { val?: { concat?: unknown[] }; counter?: { packets?: number } } }).elem;
      if (e?.val?.concat && typeof e.counter?.packets === 'number') counted.set(elementKey(set, e.val.concat), e.counter.packets);
    }
    for (const entry of v6) {
      if (setFor(entry, nat44) !== set) continue;
      const counts = elementConcats(entry, nat44).map((c) => counted.get(elementKey(set, c)));
      if (counts.every((c) => c !== undefined)) out.set(entryKey(entry), counts.reduce((a, b) => a + b, 0));
      else unmatched.push(entry);
    }
  }
  for (const entry of unmatched.slice(0, FALLBACK_QUERIES)) {
    const n = await packetsOf(runner, ref, entry, nat44);
    if (n !== undefined) out.set(entryKey(entry), n);
  }
  return out;
}
