// A bounded pool of slots (HTTP connections, GENA subscriptions, pending
// SSDP replies) shared fairly among LAN hosts. A host is not an address: over
// IPv6 one host has as many addresses as it likes, so a slot is counted
// against the exact address, its host (src/net/hosts.ts: its device, or its
// /64 where the kernel does not know the device) and the LAN interface it
// came from, and each of those may hold only part of the pool. When one
// device floods, another (or another interface) still finds free slots.

import { familyOf, isLinkLocal, prefixContains, type IpAddress } from '../net/address.js';
import type { LocalAddress } from '../net/interfaces.js';
import { hostUnit, type HostOf } from '../net/hosts.js';

export interface ShareLimits {
  total: number;
  perSource: number;
  /** What one host may hold: a quarter of the pool leaves room for three more. */
  perHost: number;
  /** What one LAN interface may hold. */
  perInterface: number;
}

/** Limits for a pool of `total`: the fractions every pool uses. */
export function shareOf(total: number, perSource: number): ShareLimits {
  return { total, perSource, perHost: Math.max(perSource, Math.floor(total / 4)), perInterface: Math.max(perSource, Math.floor((total * 3) / 4)) };
}

/** Who asks, as far as fairness is concerned. */
export interface Requester {
  readonly address: IpAddress;
  /** The host the address belongs to (src/net/hosts.ts); undefined when that is the address itself. */
  readonly host: string | undefined;
  /** The LAN interface the request came from, when known. */
  readonly interface: string | undefined;
}

/**
 * `zone` is the link of a link-local source; any other source's interface is
 * the one whose LAN prefix holds it. `hostOf` names its host.
 */
export function requesterOf(address: IpAddress, zone: string | undefined, lan: readonly LocalAddress[], hostOf: HostOf = hostUnit): Requester {
  const linkLocal = familyOf(address) === 6 && isLinkLocal(address);
  const iface = linkLocal ? zone : lan.find((l) => !isLinkLocal(l.address) && prefixContains(l.prefix, address))?.interface;
  const host = hostOf(linkLocal && zone !== undefined ? `${address}%${zone}` : address);
  return { address, host: host === address ? undefined : host, interface: iface };
}

export class FairShare {
  private readonly held = new Map<string, number>();
  private used = 0;

  constructor(private readonly limits: ShareLimits) {}

  /** Slots in use. */
  get size(): number {
    return this.used;
  }

  /** Slots held by one exact address. */
  heldBy(address: IpAddress): number {
    return this.held.get(`a|${address}`) ?? 0;
  }

  /**
   * Takes `n` slots for `who`, or none if any of its groups would go over its
   * share; the returned function gives them back (once, however often called).
   */
  take(who: Requester, n = 1): (() => void) | undefined {
    if (this.used + n > this.limits.total) return undefined;
    const keys: [string, number][] = [[`a|${who.address}`, this.limits.perSource]];
    if (who.host !== undefined) keys.push([`h|${who.host}`, this.limits.perHost]);
    if (who.interface !== undefined) keys.push([`i|${who.interface}`, this.limits.perInterface]);
    if (keys.some(([k, max]) => (this.held.get(k) ?? 0) + n > max)) return undefined;
    for (const [k] of keys) this.held.set(k, (this.held.get(k) ?? 0) + n);
    this.used += n;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.used -= n;
      for (const [k] of keys) {
        const left = (this.held.get(k) ?? n) - n;
        if (left <= 0) this.held.delete(k);
        else this.held.set(k, left);
      }
    };
  }
}
