// RFC 7291: the DHCP options that name PCP servers. An ISP hands its PCP
// server (its CGN's, its AFTR's) to the router this way; the router's PCP
// proxy (RFC 7648) then knows where to relay.
//
// DHCPv6 OPTION_V6_PCP_SERVER (86), RFC 7291 §3: one option instance is one
// PCP server; its data is that server's IPv6 addresses, 16 octets each
// (option-length a multiple of 16). An IPv4-mapped address (::ffff:a.b.c.d)
// names an IPv4 address of the server. Several instances: several servers,
// in the order the DHCP server sent them.
//
//   offset 0   PCP Server IPv6 Address (16 octets)
//   offset 16  PCP Server IPv6 Address … (as many as option-length says)
//
// DHCPv4 OPTION_V4_PCP_SERVER (158), RFC 7291 §4: a list of lists. Each list
// is one PCP server, its addresses preceded by their length in octets
// (List-Length, a multiple of 4). The option is at least 5 octets, and it
// is concatenation-requiring: when it is longer than one option can hold
// (255 octets), or split for any reason, the instances are joined in order
// before decoding (RFC 3396).
//
//   offset 0        List-Length (1 octet, = 4·n)
//   offset 1        n IPv4 addresses of server 1
//   offset 1+4n     List-Length of server 2, …
//
// Both sections: the client discards multicast and host loopback addresses
// silently. Here they are dropped and also listed in `discarded`, as are the
// unspecified and limited broadcast addresses (no PCP server answers there
// either): a log line may say what the ISP sent. A server none of whose
// addresses is left is dropped.
//
// Every input is the ISP's: lengths are checked before any read, counts are
// capped, and a malformed option is refused whole, with a sentence that
// says which instance or list and why; a list cannot be trusted past a
// broken length, and a part of an answer would pass for the whole.

import { fromWire16, ipv4FromBytes, isMulticast, isUnspecified, parsePrefix, prefixContains, type IpAddress, type Prefix } from './address.js';

export const OPTION_V6_PCP_SERVER = 86;
export const OPTION_V4_PCP_SERVER = 158;

/** RFC 7291 §4.1: the DHCPv4 option carries at least one List-Length and one address. */
const V4_MIN_LENGTH = 5;
const V6_ADDRESS_OCTETS = 16;
const V4_ADDRESS_OCTETS = 4;
const LOOPBACK4 = parsePrefix('127.0.0.0/8') as Prefix;

/** More servers than any ISP names; the proxy tries them one after another. */
export const MAX_SERVERS = 8;
/** Addresses of one server (RFC 7291 puts no bound; one of each family and a few spares is plenty). */
export const MAX_ADDRESSES_PER_SERVER = 8;
/** Option data, all instances together. A DHCPv4 message's options fit in well under this. */
export const MAX_OPTION_OCTETS = 2048;

/** One PCP server: its addresses, in the order the option lists them. */
export interface PcpServer {
  readonly addresses: readonly IpAddress[];
}

export interface DiscardedAddress {
  readonly address: IpAddress;
  readonly why: 'multicast' | 'loopback' | 'unspecified' | 'broadcast';
}

export type PcpServersDecoded =
  | { readonly ok: true; readonly servers: readonly PcpServer[]; readonly discarded: readonly DiscardedAddress[] }
  | { readonly ok: false; readonly detail: string };

/** RFC 7291 §3.3 / §4.3 (multicast, host loopback), plus the two addresses nothing answers at. */
export function unusableAs(address: IpAddress): DiscardedAddress['why'] | undefined {
  if (isUnspecified(address)) return 'unspecified';
  if (isMulticast(address)) return 'multicast';
  if (address === '::1' || prefixContains(LOOPBACK4, address)) return 'loopback';
  return address === '255.255.255.255' ? 'broadcast' : undefined;
}

/**
 * Keeps the usable addresses of each server (duplicates once); a server left
 * with none is dropped. Also for addresses a DHCP client decoded itself.
 */
export function usableServers(lists: readonly (readonly IpAddress[])[]): PcpServersDecoded {
  if (lists.length > MAX_SERVERS) return { ok: false, detail: `${lists.length} servers, more than the ${MAX_SERVERS} taken` };
  const servers: PcpServer[] = [];
  const discarded: DiscardedAddress[] = [];
  for (const list of lists) {
    const kept: IpAddress[] = [];
    for (const address of list) {
      const why = unusableAs(address);
      if (why) discarded.push({ address, why });
      else if (!kept.includes(address)) kept.push(address);
    }
    if (kept.length > 0) servers.push({ addresses: kept });
  }
  return { ok: true, servers, discarded };
}

function totalLength(instances: readonly Uint8Array[]): number {
  return instances.reduce((n, b) => n + b.length, 0);
}

/**
 * OPTION_V6_PCP_SERVER: the data of each instance (without the code and
 * length fields), in the order they arrived. No instance: no server.
 */
export function decodeV6PcpServers(instances: readonly Uint8Array[]): PcpServersDecoded {
  if (instances.length > MAX_SERVERS) {
    return { ok: false, detail: `OPTION_V6_PCP_SERVER: ${instances.length} instances, more than the ${MAX_SERVERS} servers taken` };
  }
  if (totalLength(instances) > MAX_OPTION_OCTETS) {
    return { ok: false, detail: `OPTION_V6_PCP_SERVER: ${totalLength(instances)} octets, more than ${MAX_OPTION_OCTETS}` };
  }
  const lists: IpAddress[][] = [];
  for (const [i, data] of instances.entries()) {
    const which = `OPTION_V6_PCP_SERVER instance ${i + 1}`;
    if (data.length === 0) return { ok: false, detail: `${which}: empty (a server needs at least one address)` };
    if (data.length % V6_ADDRESS_OCTETS !== 0) {
      return { ok: false, detail: `${which}: option-length ${data.length} is not a multiple of ${V6_ADDRESS_OCTETS}` };
    }
    const count = data.length / V6_ADDRESS_OCTETS;
    if (count > MAX_ADDRESSES_PER_SERVER) {
      return { ok: false, detail: `${which}: ${count} addresses, more than the ${MAX_ADDRESSES_PER_SERVER} taken for one server` };
    }
    const list: IpAddress[] = [];
    for (let at = 0; at < data.length; at += V6_ADDRESS_OCTETS) {
      // fromWire16 turns ::ffff:a.b.c.d into the IPv4 address a.b.c.d (RFC 7291 §3.3).
      list.push(fromWire16(Buffer.from(data.subarray(at, at + V6_ADDRESS_OCTETS))));
    }
    lists.push(list);
  }
  return usableServers(lists);
}

/**
 * OPTION_V4_PCP_SERVER: the data of each instance (without the code and
 * length octets), in the order they arrived; they are joined first
 * (RFC 3396). A DHCP client that already joined them hands one.
 */
export function decodeV4PcpServers(instances: readonly Uint8Array[]): PcpServersDecoded {
  const length = totalLength(instances);
  if (length > MAX_OPTION_OCTETS) return { ok: false, detail: `OPTION_V4_PCP_SERVER: ${length} octets, more than ${MAX_OPTION_OCTETS}` };
  if (length === 0) return usableServers([]);
  if (length < V4_MIN_LENGTH) return { ok: false, detail: `OPTION_V4_PCP_SERVER: ${length} octets, shorter than the least ${V4_MIN_LENGTH}` };
  const data = Buffer.concat(instances.map((b) => Buffer.from(b)));
  const lists: IpAddress[][] = [];
  let at = 0;
  while (at < data.length) {
    const which = `OPTION_V4_PCP_SERVER list ${lists.length + 1} (at octet ${at})`;
    if (lists.length === MAX_SERVERS) return { ok: false, detail: `${which}: more than the ${MAX_SERVERS} servers taken` };
    const listLength = data[at] ?? 0;
    if (listLength === 0) return { ok: false, detail: `${which}: List-Length 0 (a server needs at least one address)` };
    if (listLength % V4_ADDRESS_OCTETS !== 0) {
      return { ok: false, detail: `${which}: List-Length ${listLength} is not a multiple of ${V4_ADDRESS_OCTETS}` };
    }
    if (at + 1 + listLength > data.length) {
      return { ok: false, detail: `${which}: List-Length ${listLength} runs past the option's end (${data.length - at - 1} octets left)` };
    }
    if (listLength / V4_ADDRESS_OCTETS > MAX_ADDRESSES_PER_SERVER) {
      return { ok: false, detail: `${which}: ${listLength / V4_ADDRESS_OCTETS} addresses, more than the ${MAX_ADDRESSES_PER_SERVER} taken for one server` };
    }
    const list: IpAddress[] = [];
    for (let a = at + 1; a < at + 1 + listLength; a += V4_ADDRESS_OCTETS) list.push(ipv4FromBytes(data.subarray(a, a + V4_ADDRESS_OCTETS)));
    lists.push(list);
    at += 1 + listLength;
  }
  return usableServers(lists);
}
