// Choosing an IPv4 external port: RFC 6887 §11.3's suggestions and
// PREFER_FAILURE, endpoint-independent mapping (RFC 4787 REQ-1), §15's reuse
// time, RFC 6886 §3.3's companion port. Pure: it reads the table through a
// narrow view and the policy's limits; the caller brings the time, and
// nothing here touches a clock, the store or the firewall.

import type { IpAddress } from '../net/address.js';
import { IPPROTO_TCP, IPPROTO_UDP } from '../net/ipproto.js';
import type { Limits } from '../policy/policy.js';
import { inRanges, nthPort, rangesSize } from '../domain/patterns.js';
import type { Mapping, NonceHex, Via } from '../domain/mapping.js';
import { heldBy, refuse, type Refused } from '../domain/requests.js';
import type { FreedPort } from '../state/table.js';

/** RFC 6887 §11.3: "A PCP server MUST NOT create client mappings for external UDP ports 5350 or 5351." */
const RESERVED_UDP_PORTS: ReadonlySet<number> = new Set([5350, 5351]);

/** What allocation reads of the table (MappingTable has it). */
export interface PortView {
  /** The external port an internal endpoint holds, if it holds one. */
  bindingFor(internal: string): { readonly externalPort: number } | undefined;
  /** The internal endpoint that holds an external port. */
  holderOfExternalPort(protocol: number, port: number): { readonly internal: string } | undefined;
  /** The MAP-kind mapping that holds an external port (what a refusal names). */
  mapOnExternalPort(protocol: number, port: number): Mapping | undefined;
  heldBack(protocol: number, port: number, now: number): FreedPort | undefined;
  heldFor(internal: string, now: number): FreedPort | undefined;
}

/** Who asks for an external port: its internal endpoint and how it proves it is the same client. */
export interface Claimant {
  via: Via;
  /** internalEndpoint(address, protocol, port) */
  internal: string;
  internalAddress: IpAddress;
  nonce?: NonceHex;
  /** Internal endpoints whose mappings this request replaces: the ports they free are its to take. */
  replacing?: ReadonlySet<string>;
}

/** What a request says about the port it wants. */
export interface PortWish {
  protocol: number;
  internalPort: number;
  /** 0 = no preference. */
  suggestedExternalPort: number;
  /** Only the suggested port will do. */
  preferFailure?: boolean;
}

/**
 * §15: the client whose mapping freed a port may have it back during the
 * reuse time: the same internal address, protocol and port, and the same
 * nonce where both have one (the test renewals and removals apply, so a host
 * that could have renewed the mapping may reclaim its port). UPnP names a
 * mapping by external port and internal client, and may move a client's own
 * mapping to another internal port by asking for the same external port: for
 * a port a UPnP mapping freed, the same internal client is the same client.
 */
export function mayReclaim(held: FreedPort, who: Claimant): boolean {
  if (who.replacing?.has(held.internal)) return true;
  if (held.origin === 'upnp' && who.via === 'upnp' && held.internal.startsWith(`${who.internalAddress}|`)) return true;
  return held.internal === who.internal && !(held.nonce && who.nonce && held.nonce !== who.nonce);
}

/** Whether `who` may take external `port` at monotonic `now`. */
export function portAvailable(view: PortView, protocol: number, port: number, who: Claimant, limits: Limits, now: number): boolean {
  if (!inRanges(limits.externalPorts, port)) return false;
  if (protocol === IPPROTO_UDP && RESERVED_UDP_PORTS.has(port)) return false;
  if (view.holderOfExternalPort(protocol, port)) return false;
  const held = view.heldBack(protocol, port, now);
  if (held && !mayReclaim(held, who)) return false;
  // RFC 6886 §3.3: the companion port (same number, other protocol) stays
  // reserved for the client that holds this one.
  const companion = view.holderOfExternalPort(protocol === IPPROTO_TCP ? IPPROTO_UDP : IPPROTO_TCP, port);
  return !companion || companion.internal.startsWith(`${who.internalAddress}|`) || companion.internal === who.internal;
}

/** A refusal for a port that is not to be had, naming the mapping that holds it if one does. */
function taken(view: PortView, protocol: number, port: number, detail: string): Refused {
  const holder = view.mapOnExternalPort(protocol, port);
  return holder ? heldBy(holder, detail) : refuse('CANNOT_PROVIDE_EXTERNAL', detail);
}

/** The external port for a new mapping of `who`, or why there is none. */
export function chooseExternalPort(view: PortView, wish: PortWish, family: 4 | 6, who: Claimant, limits: Limits, now: number): { ok: true; port: number } | Refused {
  if (family === 6) {
    // A firewall cannot move a port: the external port is the internal one.
    if (wish.preferFailure && wish.suggestedExternalPort !== 0 && wish.suggestedExternalPort !== wish.internalPort) {
      return refuse('CANNOT_PROVIDE_EXTERNAL', 'an IPv6 pinhole cannot translate ports');
    }
    return { ok: true, port: wish.internalPort };
  }
  // Another mapping (a PEER) of the same internal endpoint already holds an
  // external port: endpoint-independent mapping reuses it.
  const bound = view.bindingFor(who.internal);
  if (bound) {
    if (wish.preferFailure && wish.suggestedExternalPort !== bound.externalPort) {
      return refuse('CANNOT_PROVIDE_EXTERNAL', `this endpoint is bound to external port ${bound.externalPort}`);
    }
    return { ok: true, port: bound.externalPort };
  }
  const avail = (p: number) => portAvailable(view, wish.protocol, p, who, limits, now);
  if (!limits.externalPortMayDiffer) {
    // Policy pins the external port to the internal one.
    if (wish.preferFailure && wish.suggestedExternalPort !== wish.internalPort) {
      return refuse('CANNOT_PROVIDE_EXTERNAL', 'policy requires the external port to equal the internal port');
    }
    return avail(wish.internalPort) ? { ok: true, port: wish.internalPort } : taken(view, wish.protocol, wish.internalPort, `external port ${wish.internalPort} is taken`);
  }
  if (wish.suggestedExternalPort !== 0 && avail(wish.suggestedExternalPort)) return { ok: true, port: wish.suggestedExternalPort };
  // §15: a client that comes back within the reuse time gets the port it
  // had, as if its mapping had never ended.
  const reclaim = view.heldFor(who.internal, now);
  if (reclaim && !wish.preferFailure && avail(reclaim.externalPort)) return { ok: true, port: reclaim.externalPort };
  if (wish.preferFailure) {
    return taken(view, wish.protocol, wish.suggestedExternalPort, `external port ${wish.suggestedExternalPort} is taken or not allowed`);
  }
  if (avail(wish.internalPort)) return { ok: true, port: wish.internalPort };
  // The ranges are numbered end to end, so a gap between two is never drawn.
  const ranges = limits.externalPorts;
  const span = rangesSize(ranges);
  // Random probes find a free port at once unless the ranges are nearly
  // full; then one bounded sweep decides.
  for (let i = 0; i < 32 && span > 0; i++) {
    const p = nthPort(ranges, Math.floor(Math.random() * span));
    if (avail(p)) return { ok: true, port: p };
  }
  const start = Math.floor(Math.random() * span);
  for (let i = 0; i < span; i++) {
    const p = nthPort(ranges, (start + i) % span);
    if (avail(p)) return { ok: true, port: p };
  }
  return refuse('NO_RESOURCES', 'no free external port');
}
