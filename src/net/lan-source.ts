// Is this request from the LAN? One rule for every door (PCP/NAT-PMP, SSDP,
// UPnP HTTP), because a door with its own weaker rule is the one an attacker
// uses.
//
// The arrival interface decides, not the source address: a WAN host can put
// any LAN address in its packets and route them to the router's LAN address
// (RFC 6887 §8.2: requests "arriving on any other interface" are silently
// ignored). Node's sockets do not say which interface a datagram or a
// connection came in on, so the kernel enforces that part: portcullis' own
// input rules accept its ports only from the LAN interfaces, with a
// reverse-path check for LAN sources (src/firewall/nft/ruleset.ts). What is
// left to the daemon is checked here:
//
//  - while the kernel protection is not confirmed in place, nothing is a LAN
//    source (fail closed: better no answers than answers to the WAN);
//  - a link-local IPv6 source is only meaningful with its zone, which the
//    kernel sets to the interface it arrived on: the zone must be a LAN
//    interface (and, for a socket bound to one link, that link);
//  - any other source must lie in a prefix of a LAN interface's own
//    routable addresses (link-local prefixes prove nothing: every link has
//    fe80::/64).

import { familyOf, isLinkLocal, parseIp, prefixContains, type IpAddress, type Prefix } from './address.js';
import type { LocalAddress } from './interfaces.js';
import { hostUnit, type HostOf } from './hosts.js';

export class LanSources {
  private interfaces: ReadonlySet<string>;
  private prefixes: readonly Prefix[] = [];
  /**
   * True only while the kernel's arrival-interface protection is confirmed
   * (set by the daemon after its check at start and at every reconcile).
   */
  private guarded = false;
  /**
   * The host (device) a source belongs to, for every door's fairness
   * accounting (src/net/hosts.ts); the daemon sets the neighbour-table one.
   */
  hostOf: HostOf = hostUnit;

  constructor(interfaceNames: readonly string[], lan: readonly LocalAddress[] = []) {
    this.interfaces = new Set(interfaceNames);
    this.update(lan);
  }

  /** The LAN's addresses changed. */
  update(lan: readonly LocalAddress[]): void {
    this.prefixes = lan.filter((l) => !isLinkLocal(l.address)).map((l) => l.prefix);
  }

  /** Whether requests are answered at all. */
  get open(): boolean {
    return this.guarded;
  }

  setGuarded(on: boolean): void {
    this.guarded = on;
  }

  /** The routable LAN prefixes (for choosing which local address serves a client). */
  lanPrefixes(): readonly Prefix[] {
    return this.prefixes;
  }

  /** The address is inside a routable LAN prefix (a mapping may point at it). */
  isLanHost(addr: IpAddress): boolean {
    return this.prefixes.some((p) => prefixContains(p, addr));
  }

  /**
   * The source as a LAN client, or undefined if it is not one. `raw` is the
   * peer address as the socket reports it (zone included, IPv4 possibly
   * IPv4-mapped); `arrivedOn` is the interface of a link-scoped socket, when
   * the socket serves exactly one link.
   */
  check(raw: string, arrivedOn?: string): IpAddress | undefined {
    if (!this.guarded) return undefined;
    const source = parseIp(raw);
    if (!source) return undefined;
    if (familyOf(source) === 6 && isLinkLocal(source)) {
      const zone = raw.includes('%') ? raw.slice(raw.indexOf('%') + 1) : undefined;
      if (zone === undefined || !this.interfaces.has(zone)) return undefined;
      if (arrivedOn !== undefined && zone !== arrivedOn) return undefined;
      return source;
    }
    return this.isLanHost(source) ? source : undefined;
  }
}
