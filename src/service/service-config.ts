// What the mapping service is given: its limits (ServiceConfig) and what it
// asks of its surroundings: where the LAN is (Network) and when DHCP leases
// end (LeaseView).

import type { IpAddress } from '../net/address.js';

export interface ServiceConfig {
  /** Seconds. RFC 6887 §15 recommends a 120 s minimum and a 24 h maximum. */
  minLifetime: number;
  maxLifetime: number;
  /** Global cap on mappings (all clients). */
  maxMappings: number;
  /** RFC 6887 §13.3: filters one mapping may carry (at least 1). */
  maxFiltersPerMapping: number;
  /** RFC 7220 §3: octets of description stored (at least 128). */
  maxDescriptionBytes: number;
  /**
   * Headroom for everyone else: the fraction of `maxMappings` one host may
   * hold (a host is an IPv4 address or an IPv6 /64, however many addresses
   * it uses), and one LAN interface.
   */
  hostShare: number;
  interfaceShare: number;
  /**
   * Seconds an external port freed by an IPv4 mapping's end stays held back
   * for its last holder (RFC 6887 §15: the NAT's reuse time).
   */
  portReuseSeconds: number;
}

export const DEFAULT_SERVICE_CONFIG: ServiceConfig = {
  minLifetime: 120,
  maxLifetime: 86400,
  maxMappings: 200_000,
  maxFiltersPerMapping: 16,
  maxDescriptionBytes: 128,
  // A quarter per host leaves room for three more that hog as much; three
  // quarters per interface keep a quarter of the table for the other LANs
  // (the same fractions as the HTTP and GENA slot pools).
  hostShare: 1 / 4,
  interfaceShare: 3 / 4,
  // RFC 6887 §15's reuse time is the NAT's idle-mapping time: RFC 4787 REQ-5
  // puts UDP's at 2 minutes or more. RFC 5382 REQ-5's TCP times are longer
  // (4 minutes for a closing connection), but a stray TCP segment of the old
  // connection is refused by the new host's stack rather than taken as data,
  // so one value serves both.
  portReuseSeconds: 120,
};

/**
 * A DHCP server's leases (src/net/dhcp-leases.ts). An address with no lease
 * is not capped: it may be configured by hand, and the lease file lists only
 * what the DHCP server handed out.
 */
export interface LeaseView {
  /** When the address's lease ends, in wall-clock milliseconds (Infinity: never); undefined: it has none. */
  leaseEnd(address: IpAddress): number | undefined;
}

/** Where the LAN is: who may ask, and which hosts a mapping may point at. */
export interface Network {
  /** IPv4 address inbound IPv4 mappings are reached at; undefined while the WAN has none. */
  externalIPv4(): IpAddress | undefined;
  /** The address is inside a LAN prefix. */
  isLanHost(addr: IpAddress): boolean;
  /** The address is one of the router's own. */
  isRouterAddress(addr: IpAddress): boolean;
  /** The LAN interface a host is on (for policy rules that match on it). */
  interfaceOf?(addr: IpAddress): string | undefined;
  /** The host (device) an address belongs to, for quotas and rates (src/net/hosts.ts); its /64 or itself without one. */
  hostOf?(addr: IpAddress): string;
}
