// A mapping as the firewall holds it: its FirewallEntry, and the kernel
// changes that turn one mapping into another.

import type { FirewallChange, FirewallEntry } from '../firewall/backend.js';
import { remaining, sameFilters, type Mapping } from '../domain/mapping.js';

export function entryOf(m: Mapping): FirewallEntry {
  return {
    family: m.family,
    protocol: m.protocol,
    externalAddress: m.externalAddress,
    externalPort: m.externalPort,
    internalAddress: m.internalAddress,
    internalPort: m.internalPort,
    filters: m.filters,
  };
}

/** Whether two mappings of one internal endpoint are the same kernel entry (then a put renews it in place). */
export function sameEntry(a: Mapping, b: Mapping): boolean {
  return a.externalAddress === b.externalAddress && a.externalPort === b.externalPort && sameFilters(a.filters, b.filters);
}

/**
 * The kernel changes that put `next` in place of `previous` (same identity;
 * undefined: there was none) at monotonic `now`: the old entry comes out
 * first if it is another entry, and the new one is put with what it has left.
 */
export function replacement(previous: Mapping | undefined, next: Mapping, now: number): FirewallChange[] {
  const put: FirewallChange = { op: 'put', entry: entryOf(next), timeoutSeconds: remaining(next, now) };
  return previous && !sameEntry(previous, next) ? [{ op: 'remove', entry: entryOf(previous) }, put] : [put];
}

/**
 * The kernel changes that take mappings out. `endFlows` (the admin closed
 * them): the flows already running through them end as well.
 *
 * Only then. The forward chain accepts `ct state established,related`, so a
 * flow that entered through a mapping keeps going after its entry leaves,
 * until conntrack forgets it. When a client deletes its own mapping
 * (lifetime 0) or the mapping expires, that is what a stateful firewall is
 * expected to do: a deleted or lapsed mapping stops admitting *new* inbound
 * flows, and we read RFC 6887 as asking nothing of those already
 * established through it; a client that lets a mapping lapse
 * mid-session (or deletes it once its peer connected) would otherwise cut
 * its own calls.
 * The admin's Close is a decision about the traffic itself: whoever is
 * already talking must stop too.
 */
export function removals(mappings: readonly Mapping[], endFlows = false): FirewallChange[] {
  return mappings.map((m) => ({ op: 'remove', entry: entryOf(m), ...(endFlows ? { endFlows } : {}) }));
}
