// Static forwards: the admin's IPv4 port forwards from the policy file, as
// mappings of origin 'static' in the table, and how a new set of them
// differs from the one in the table. (Static pinholes are firewall rules
// alone: the table does not list them.)

import { parsePrefix, type IpAddress, type Prefix } from '../net/address.js';
import { STATIC_LIFETIME, filterKey, keyOf, type Mapping, type MappingTerms, type StaticOpening } from '../domain/mapping.js';
import type { MappingTable } from '../state/table.js';

export type StaticForward = Extract<StaticOpening, { kind: 'forward' }>;

/** A static forward's terms, on the router's external address (0.0.0.0 while it has none). */
export function forwardTerms(f: StaticForward, externalAddress: IpAddress | undefined): MappingTerms {
  return {
    kind: 'map',
    family: 4,
    internalAddress: f.to,
    protocol: f.protocol,
    internalPort: f.toPort,
    externalAddress: externalAddress ?? ('0.0.0.0' as IpAddress),
    externalPort: f.port,
    // `from` patterns are addresses or CIDR prefixes (the loader refuses masks there).
    filters: (f.from ?? []).map((p) => ({ prefix: parsePrefix(p.text) as Prefix, port: 0 })),
    origin: 'static',
    client: f.to,
    description: `static:${f.name}`,
    lifetime: STATIC_LIFETIME,
  };
}

/** What a policy swap did to the live table. */
export interface PolicySwapReport {
  /** Mappings the new policy no longer allows, removed from the kernel. */
  removed: { mapping: Mapping; rule: string; reason: string }[];
  staticsAdded: number;
  staticsRemoved: number;
  /** Client mappings that held a port a new static forward now takes. */
  evicted: Mapping[];
}

/** What tells two static forwards apart: equal strings, the same forward. */
function forwardKey(m: Mapping): string {
  return `${keyOf(m)}|${m.externalPort}|${m.description}|${m.filters.map(filterKey).join(',')}`;
}

/**
 * The table's static forwards against `want` (the new set, as mappings): the
 * ones to add, the ones to take out, and the client mappings the added ones
 * evict. An unchanged forward is in neither list, so it is never touched.
 */
export function diffStaticForwards(
  want: readonly Mapping[],
  table: Pick<MappingTable, 'values' | 'get' | 'onExternalPort'>,
): { add: Mapping[]; remove: Mapping[]; evicted: Mapping[] } {
  const wanted = new Map(want.map((m) => [forwardKey(m), m]));
  const have = new Map<string, Mapping>();
  for (const m of table.values()) if (m.origin === 'static') have.set(forwardKey(m), m);
  const remove = [...have].filter(([k]) => !wanted.has(k)).map(([, m]) => m);
  const add = [...wanted].filter(([k]) => !have.has(k)).map(([, m]) => m);
  // The admin's forward wins over a client's mapping of the same host and
  // port, or of the same external port.
  const evicted = new Map<string, Mapping>();
  const leaving = new Set(remove.map(keyOf));
  for (const m of add) {
    const same = table.get(keyOf(m));
    if (same && same.origin !== 'static') evicted.set(keyOf(same), same);
    if (same?.origin === 'static' && !leaving.has(keyOf(same))) remove.push(same);
    for (const holder of table.onExternalPort(m.protocol, m.externalPort)) if (holder.origin !== 'static') evicted.set(keyOf(holder), holder);
  }
  return { add, remove, evicted: [...evicted.values()] };
}
