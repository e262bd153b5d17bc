// A device opening resolved: the pinholes and forwards that open a device,
// known by its link-layer address, at the addresses it has now.
//
// Why not an interface-identifier mask alone: an identifier survives a new
// prefix only when it is derived from the link-layer address (modified
// EUI-64, RFC 4291 appendix A) or set by hand. Stable-privacy identifiers
// (RFC 7217) are a hash that takes the prefix in, and temporary addresses
// (RFC 8981) change on their own, so both move with the prefix. What does
// not move is the device: the kernel's neighbour table says which addresses
// answer for its link-layer address, and those are opened. The mask is added
// only for an identifier seen to be the device's EUI-64 one, where it bridges
// the time between a new prefix and the device's first packet from it. An
// identifier set by hand (a server's ::10) is the admin's word, so its mask
// (`identifier` in the file) is opened at once, seen or not: the server is
// reachable on a new prefix before the router has heard from it.
//
// Pure: what the neighbour table and the leases say comes in as data
// (src/daemon/device-statics.ts reads them and keeps the firewall in step).

import { addressBytes, familyOf, isLinkLocal, isMulticast, isUnspecified, parseIp, type IpAddress } from '../net/address.js';
import type { DhcpLease } from '../net/dhcp-leases.js';
import type { Neighbour } from '../net/neighbours.js';
import type { ConcreteStatic, DeviceOpening, StaticOpening } from '../domain/mapping.js';
import { parseAddressPattern, type AddressPattern } from '../domain/patterns.js';

/**
 * IPv6 addresses one device opening follows at most. A host with privacy
 * addresses holds a few at a time (one stable, one or two temporary per
 * prefix); beyond this the newest are kept, the oldest being the likeliest
 * to be deprecated already.
 */
export const MAX_DEVICE_ADDRESSES = 16;

/** What is known of a device's addresses now. */
export interface DeviceSighting {
  /** Its global (non-link-local) IPv6 addresses, newest first, at most MAX_DEVICE_ADDRESSES. */
  readonly ipv6: readonly IpAddress[];
  /** Its IPv4 address: the neighbour table's, else its DHCP lease's. */
  readonly ipv4?: IpAddress;
  /** One of its IPv6 addresses carries the identifier derived from its link-layer address. */
  readonly eui64: boolean;
}

export const NOT_SEEN: DeviceSighting = { ipv6: [], eui64: false };

/** The modified EUI-64 interface identifier of a 48-bit MAC: ff:fe in the middle, the universal/local bit flipped. */
export function eui64Identifier(mac: string): Buffer {
  const b = mac.split(':').map((h) => parseInt(h, 16));
  return Buffer.from([(b[0] ?? 0) ^ 0x02, b[1] ?? 0, b[2] ?? 0, 0xff, 0xfe, b[3] ?? 0, b[4] ?? 0, b[5] ?? 0]);
}

/** The address's low 64 bits are the MAC's modified EUI-64 identifier. */
export function usesEui64(address: IpAddress, mac: string): boolean {
  return familyOf(address) === 6 && addressBytes(address).subarray(8).equals(eui64Identifier(mac));
}

/** `::iid/::ffff:ffff:ffff:ffff`: an 8-byte interface identifier under any prefix. */
function underAnyPrefix(id: Buffer): AddressPattern {
  const groups = [0, 2, 4, 6].map((i) => id.readUInt16BE(i).toString(16));
  const r = parseAddressPattern(`::${groups.join(':')}/::ffff:ffff:ffff:ffff`);
  if (!r.ok) throw new Error(`identifier ${id.toString('hex')} did not parse as a pattern`);
  return r.value;
}

/** The MAC's EUI-64 identifier under any prefix. */
export function eui64Pattern(mac: string): AddressPattern {
  return underAnyPrefix(eui64Identifier(mac));
}

/**
 * A hand-set identifier as written in the file (`::10`, `::1:2:3:4`) under
 * any prefix; undefined unless it is an IPv6 address whose upper 64 bits are
 * zero and whose lower 64 are not (`::` is the subnet-router anycast
 * address, every router's).
 */
export function identifierPattern(text: string): AddressPattern | undefined {
  if (text.length > 39 || text.includes('/') || text.includes('%')) return undefined;
  const a = parseIp(text);
  if (a === undefined || familyOf(a) !== 6) return undefined;
  const bytes = addressBytes(a);
  if (bytes.subarray(0, 8).some((b) => b !== 0) || bytes.subarray(8).every((b) => b === 0)) return undefined;
  return underAnyPrefix(Buffer.from(bytes.subarray(8)));
}

/** A global unicast address a device may be reached at from outside. */
function reachable(a: IpAddress): boolean {
  return !isLinkLocal(a) && !isMulticast(a) && !isUnspecified(a) && a !== '::1' && !a.startsWith('127.');
}

/**
 * A device's addresses from the neighbour table's entries (already only the
 * LAN interfaces', already without FAILED and INCOMPLETE ones) and the DHCP
 * leases. `nowSeconds` is wall-clock (lease ends are).
 */
export function sightingOf(mac: string, neighbours: readonly Neighbour[], leases: readonly DhcpLease[], nowSeconds: number): DeviceSighting {
  const mine = neighbours.filter((n) => n.lladdr === mac && reachable(n.address));
  // Newest first: the entry the kernel changed least long ago; an entry without an age goes last.
  const byAge = [...mine].sort((a, b) => (a.updated ?? Infinity) - (b.updated ?? Infinity));
  const v6 = [...new Set(byAge.filter((n) => familyOf(n.address) === 6).map((n) => n.address))];
  const live = leases.filter((l) => l.family === 4 && l.mac === mac && (l.expires === 0 || l.expires > nowSeconds));
  const v4s = byAge.filter((n) => familyOf(n.address) === 4).map((n) => n.address);
  // Two IPv4 addresses in the table (a new lease, the old entry not yet gone): the leased one.
  const ipv4 = v4s.find((a) => live.some((l) => l.address === a)) ?? v4s[0] ?? live[0]?.address;
  return {
    ipv6: v6.slice(0, MAX_DEVICE_ADDRESSES),
    ...(ipv4 !== undefined ? { ipv4 } : {}),
    eui64: v6.some((a) => usesEui64(a, mac)),
  };
}

/** An exact-address pattern. */
function exactly(a: IpAddress): AddressPattern {
  const r = parseAddressPattern(a);
  if (!r.ok) throw new Error(`${a} did not parse as a pattern`);
  return r.value;
}

/** One device opening as the pinholes and forwards its device's addresses make now. */
export function resolveDevice(d: DeviceOpening, seen: DeviceSighting): ConcreteStatic[] {
  const out: ConcreteStatic[] = [];
  const only = (family: 4 | 6) => (d.from ? d.from.filter((p) => p.family === family) : undefined);
  // A `from` that names only the other family's sources admits nobody in this one.
  const from6 = only(6);
  if (!from6 || from6.length) {
    const targets = seen.ipv6.map(exactly);
    if (seen.eui64) targets.push(eui64Pattern(d.mac));
    if (d.identifier && !targets.some((p) => p.text === d.identifier?.text)) targets.push(d.identifier);
    for (const to of targets) out.push({ kind: 'pinhole', name: d.name, to, protocols: d.protocols, ports: d.ports, ...(from6 ? { from: from6 } : {}), device: d.mac });
  }
  const from4 = only(4);
  if (seen.ipv4 !== undefined && (!from4 || from4.length)) {
    for (const protocol of d.protocols) {
      for (const r of d.ports) {
        for (let port = r.min; port <= r.max; port++) {
          out.push({ kind: 'forward', name: d.name, protocol, port, to: seen.ipv4, toPort: port, ...(from4 ? { from: from4 } : {}), device: d.mac });
        }
      }
    }
  }
  return out;
}

/** Every static opening as the firewall and the service install it: device openings resolved, the rest as they are. */
export function resolveStatics(statics: readonly StaticOpening[], sighting: (mac: string) => DeviceSighting): ConcreteStatic[] {
  return statics.flatMap((s) => (s.kind === 'device' ? resolveDevice(s, sighting(s.mac)) : [s]));
}
