// What fairness counts as one host (quotas, request rates): a device, as the
// kernel's neighbour table knows it — one link-layer address, however many
// IPv4 and IPv6 addresses it uses. Over IPv6 a host takes as many addresses
// as it likes, and every host on a home LAN shares one /64, so neither the
// address nor the /64 is the host: counting by the /64 would make every
// device on the LAN share one quota, counting by address would give a
// flooding device 2 000 of them.
//
// An address the table does not (yet) attribute to a device falls back to
// its /64 (per link for link-local) or, for IPv4, to itself: a device is in
// the table once the router has exchanged a packet with it (its own
// neighbour solicitation, or the router resolving it to reply), so what
// stays unattributed is mostly a forger that never answers — and those share
// one unit per /64.

import { familyOf, formatPrefix, isLinkLocal, parseIp, subnet64, type IpAddress } from './address.js';
import type { Neighbours } from './neighbours.js';
import { remembered } from './remembered.js';

/** The host a source (an address, with its %zone when link-local) is counted under. */
export type HostOf = (source: string) => string;

/**
 * Without the kernel's word: an IPv4 address is a host, an IPv6 /64 is one
 * (per link for link-local). Remembered: it runs for every request and every
 * mapping put in the table (131 000 at a restart), and parsing the address
 * to cut its /64 was a tenth of a restore. A pure function of its text, so
 * nothing goes stale.
 */
export const hostUnit: (source: string) => string = remembered(4_096, unitOf);

function unitOf(source: string): string {
  const zone = source.indexOf('%');
  const addr = parseIp(zone < 0 ? source : source.slice(0, zone));
  if (!addr) return source;
  if (familyOf(addr) === 4) return addr;
  const net = formatPrefix(subnet64(addr));
  return isLinkLocal(addr) && zone >= 0 ? `${net}%${source.slice(zone + 1)}` : net;
}

/** The device first, then the fallback unit. */
export function hostsBy(neighbours: Pick<Neighbours, 'deviceOf'>): HostOf {
  return (source) => {
    const addr: IpAddress | undefined = parseIp(source);
    const device = addr && neighbours.deviceOf(addr);
    return device ? `device ${device}` : hostUnit(source);
  };
}
