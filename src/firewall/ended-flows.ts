// Which running flows a firewall change ends: the selectors a committed batch
// or a new list of static openings hands to conntrack.ts. Pure functions.
//
// A flow that entered through an opening outlives the opening's kernel entry
// (the forward chain accepts established flows) until conntrack forgets it.
// It is forgotten when the admin closes the opening (a removal marked
// `endFlows`, or a static opening gone from the policy file), and when an
// endpoint's SNAT moved (outbound.ts: its flows must be translated afresh);
// not when a client deletes its mapping or it expires
// (service/firewall-entries.ts, removals).

import { parseIp } from '../net/address.js';
import type { StaticOpening } from '../domain/mapping.js';
import type { FirewallChange, FirewallEntry } from './backend.js';
import { selectorKey, type FlowSelector } from './flow-path.js';

/** Ports of one static pinhole's ranges looked at, at most; a wider pinhole's flows end on their own (logged). */
export const MAX_STATIC_PORTS = 256;

/**
 * The flows through an entry's LAN endpoint: those that reach it from
 * outside — after DNAT the internal address and port are the reply's source
 * (an IPv4 mapping); an IPv6 pinhole's original destination is its own
 * address and port, which is the reply's source too — and those it began
 * from that port (among them a TCP connection the kernel picked up again
 * from the endpoint's side: conntrack.ts, end()).
 */
export function flowsThrough(entry: Pick<FirewallEntry, 'protocol' | 'internalAddress' | 'internalPort'>): FlowSelector[] {
  const { protocol, internalAddress: address, internalPort: port } = entry;
  return [
    { by: 'destination', protocol, address, port },
    { by: 'source', protocol, address, port },
  ];
}

/** The flows of the removals that took (`results[i]` true) and that end their flows. */
export function endedFlows(batch: readonly FirewallChange[], results: readonly boolean[]): FlowSelector[] {
  return batch.flatMap((c, i) => (c.op === 'remove' && c.endFlows && results[i] ? flowsThrough(c.entry) : []));
}

/**
 * The flows through static openings that `before` had and `after` has not.
 * A forward's are the ones reaching its LAN endpoint; a pinhole's, each
 * protocol and port of it when it names one address (a prefix or an
 * interface-identifier pattern names no address conntrack can be asked
 * about: those flows end on their own, and `unbounded` names the pinhole).
 * An endpoint another opening of `after` still admits keeps its flows.
 */
export function closedStatics(before: readonly StaticOpening[], after: readonly StaticOpening[]): { selectors: FlowSelector[]; unbounded: string[] } {
  const still = new Set(after.flatMap((s) => staticFlows(s).selectors.map(keyOf)));
  const selectors = new Map<string, FlowSelector>();
  const unbounded: string[] = [];
  for (const s of before) {
    const f = staticFlows(s);
    if (f.unbounded) unbounded.push(s.name);
    for (const sel of f.selectors) if (!still.has(keyOf(sel))) selectors.set(keyOf(sel), sel);
  }
  return { selectors: [...selectors.values()], unbounded: unbounded.filter((n) => !after.some((s) => s.name === n)) };
}

function staticFlows(s: StaticOpening): { selectors: FlowSelector[]; unbounded: boolean } {
  if (s.kind === 'forward') return { selectors: flowsThrough({ protocol: s.protocol, internalAddress: s.to, internalPort: s.toPort }), unbounded: false };
  if (s.kind !== 'pinhole') return { selectors: [], unbounded: false };
  const address = s.to.form === 'exact' ? parseIp(s.to.text) : undefined;
  const width = s.ports.reduce((n, r) => n + (r.max - r.min + 1), 0) * s.protocols.length;
  if (!address || width > MAX_STATIC_PORTS) return { selectors: [], unbounded: true };
  const selectors: FlowSelector[] = [];
  for (const protocol of s.protocols) {
    for (const r of s.ports) for (let port = r.min; port <= r.max; port++) selectors.push(...flowsThrough({ protocol, internalAddress: address, internalPort: port }));
  }
  return { selectors, unbounded: false };
}

const keyOf = (s: FlowSelector) => selectorKey(s.by, s.protocol, s.address, s.port);
