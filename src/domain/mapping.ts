// The domain: what a mapping is, whichever protocol asked for it.

import type { Family, IpAddress, Prefix } from '../net/address.js';
import type { AddressPattern } from './patterns.js';

/** Which front door a request came through. */
export type Via = 'pcp' | 'natpmp' | 'upnp';
/** Who made a mapping: a protocol, or the admin (static openings, never deletable by clients). */
export type Origin = Via | 'static';

/** Lifetime in whole seconds. */
export type Lifetime = number;

/**
 * A mapping's nonce (RFC 6887 §11.1: 96 bits) as 24 lowercase hex digits,
 * the form the store writes: a restored mapping shares the store's string
 * instead of holding a Buffer of its own (~120 bytes each, 100 000 of them
 * after a restart). Requests and the wire keep Buffers.
 */
export type NonceHex = string;

/** The nonce a request carried, as a mapping keeps it. */
export const nonceHex = (nonce: Buffer): NonceHex => nonce.toString('hex');

/** A mapping's nonce as the wire carries it. */
export const nonceBytes = (nonce: NonceHex): Buffer => Buffer.from(nonce, 'hex');

/** Inbound traffic a mapping admits: a remote prefix and port (0 = any port). */
export interface RemoteFilter {
  readonly prefix: Prefix;
  readonly port: number;
}

export interface Mapping {
  readonly id: number;
  /** 'map' = inbound mapping/pinhole (PCP MAP, NAT-PMP, UPnP); 'peer' = PCP PEER flow. */
  readonly kind: 'map' | 'peer';
  readonly family: Family;
  readonly internalAddress: IpAddress;
  readonly protocol: number;
  readonly internalPort: number;
  /** IPv4: the router's external address; IPv6 pinholes: the internal address itself. */
  readonly externalAddress: IpAddress;
  readonly externalPort: number;
  /** Empty: any remote may reach it. */
  readonly filters: readonly RemoteFilter[];
  readonly remotePeer?: { readonly address: IpAddress; readonly port: number };
  /** PCP mapping nonce (RFC 6887 §11.1); absent for mappings made without one. */
  readonly nonce?: NonceHex;
  readonly origin: Origin;
  /** The address that asked (differs from internalAddress for third-party mappings). */
  readonly client: IpAddress;
  readonly description: string;
  /**
   * A front door's own name for the mapping, opaque to the service: kept,
   * stored and restored with it (UPnP: a pinhole's UniqueID, which clients
   * renew and remove by after a restart). Absent when the door set none.
   */
  readonly doorTag?: string;
  /** Granted lifetime in seconds, counted from `grantedAt`. */
  readonly lifetime: Lifetime;
  /** UDP port the last request came from (PCP mapping updates go there, RFC 6887 §14.2). */
  readonly clientPort?: number;
  /**
   * Behind the ISP's NAT (RFC 7648 proxy): the upstream PCP server's mapping
   * of this one's external address and port, where the internet reaches it.
   * Absent on a line with an address of its own, or before upstream granted.
   */
  readonly upstream?: UpstreamPart;
  /** Monotonic milliseconds. */
  readonly grantedAt: number;
  readonly expiresAt: number;
}

/** The upstream PCP server's MAP of a mapping's external address and port (RFC 7648). */
export interface UpstreamPart {
  readonly externalAddress: IpAddress;
  readonly externalPort: number;
  /** The nonce the upstream mapping was made with: renewals and removals must show it (RFC 6887 §11.1). */
  readonly nonce: NonceHex;
  /** Seconds upstream granted, counted from `expiresAt - lifetime`. */
  readonly lifetime: Lifetime;
  /** Monotonic milliseconds. */
  readonly expiresAt: number;
}

/** Where the internet reaches a mapping: upstream's address and port behind the ISP's NAT, else its own. */
export function reachedAt(m: Mapping): { address: IpAddress; port: number } {
  return m.upstream ? { address: m.upstream.externalAddress, port: m.upstream.externalPort } : { address: m.externalAddress, port: m.externalPort };
}

/** What a mapping is, less what the service stamps on it as it enters the table: its id and its times. */
export type MappingTerms = Omit<Mapping, 'id' | 'grantedAt' | 'expiresAt'>;

/**
 * The one way a Mapping is made (a door's grant, a static forward, a restored
 * record): its terms, its id, and when its lifetime was granted and ends, in
 * monotonic milliseconds (by default `lifetime` seconds after `grantedAt`).
 * Every mapping has the same fields in the same order.
 */
export function makeMapping(t: MappingTerms, id: number, grantedAt: number, expiresAt = grantedAt + t.lifetime * 1000): Mapping {
  return {
    id,
    kind: t.kind,
    family: t.family,
    internalAddress: t.internalAddress,
    protocol: t.protocol,
    internalPort: t.internalPort,
    externalAddress: t.externalAddress,
    externalPort: t.externalPort,
    filters: t.filters,
    remotePeer: t.remotePeer,
    nonce: t.nonce,
    origin: t.origin,
    client: t.client,
    description: t.description,
    doorTag: t.doorTag,
    lifetime: t.lifetime,
    clientPort: t.clientPort,
    upstream: t.upstream,
    grantedAt,
    expiresAt,
  };
}

/**
 * Identity of a mapping: RFC 6887 §11.3 keys MAP by internal address, protocol and port.
 * Joined, not a template: V8 keeps a template's result as a tree of its pieces
 * (~135 bytes more a key, measured over 100 000 restored), and the table and
 * the store keep a key for every mapping; a join is one flat string.
 */
export function mappingKey(kind: 'map' | 'peer', internalAddress: IpAddress, protocol: number, internalPort: number, remote?: { address: IpAddress; port: number }): string {
  return (remote ? [kind, internalAddress, protocol, internalPort, remote.address, remote.port] : [kind, internalAddress, protocol, internalPort]).join('|');
}

export function keyOf(m: Mapping): string {
  return mappingKey(m.kind, m.internalAddress, m.protocol, m.internalPort, m.remotePeer);
}

/** `keyOf(m) === key`, without building the string (a restore checks 100 000 stored keys). */
export function hasKey(m: Mapping, key: string): boolean {
  let at = 0;
  const next = (part: string | number, last = false): boolean => {
    const text = String(part);
    if (!key.startsWith(text, at)) return false;
    at += text.length;
    if (last) return at === key.length;
    return key.charCodeAt(at++) === 0x7c; // '|'
  };
  const peer = m.remotePeer;
  if (!next(m.kind) || !next(m.internalAddress) || !next(m.protocol)) return false;
  if (!peer) return next(m.internalPort, true);
  return next(m.internalPort) && next(peer.address) && next(peer.port, true);
}

/** An "infinite" lifetime on the wire (RFC 6887 §11.3 for static mappings). */
export const STATIC_LIFETIME = 0xffffffff;

/** Whole seconds a mapping has left at monotonic `now` (0 once it ended). */
export function remaining(m: Mapping, now: number): number {
  return Math.max(0, Math.ceil((m.expiresAt - now) / 1000));
}

/** Two filter lists admit the same remotes, in the same order. */
export function sameFilters(a: readonly RemoteFilter[], b: readonly RemoteFilter[]): boolean {
  return a.length === b.length && a.every((f, i) => sameFilter(f, b[i] as RemoteFilter));
}

export function sameFilter(a: RemoteFilter, b: RemoteFilter): boolean {
  return a.port === b.port && a.prefix.address === b.prefix.address && a.prefix.length === b.prefix.length;
}

/** A filter as a string, for where equality needs a map key: equal keys, `sameFilter`. */
export function filterKey(f: RemoteFilter): string {
  return `${f.prefix.address}/${f.prefix.length}:${f.port}`;
}

/**
 * An opening the admin made in the policy file: opened at start, never
 * expires, never removable by a client.
 */
export type StaticOpening =
  /** IPv6: inbound to every address the pattern matches (an interface identifier survives renumbering). */
  | {
      readonly kind: 'pinhole';
      readonly name: string;
      readonly to: AddressPattern;
      readonly protocols: readonly number[];
      readonly ports: readonly { readonly min: number; readonly max: number }[];
      readonly from?: readonly AddressPattern[];
      /** Set when the pinhole is one address of a device opening (its link-layer address). */
      readonly device?: string;
    }
  /** IPv4 port forward: external port on the WAN → internal address and port. */
  | {
      readonly kind: 'forward';
      readonly name: string;
      readonly protocol: number;
      readonly port: number;
      readonly to: IpAddress;
      readonly toPort: number;
      readonly from?: readonly AddressPattern[];
      /** Set when the forward is one port of a device opening (its link-layer address). */
      readonly device?: string;
    }
  | DeviceOpening;

/**
 * An opening for a device, known by its link-layer address: whatever
 * addresses it has now. The firewall never sees this kind; it sees the
 * pinholes and forwards it resolves to (src/policy/device-openings.ts),
 * which follow the neighbour table.
 */
export interface DeviceOpening {
  readonly kind: 'device';
  readonly name: string;
  /** Lowercase, colon-separated. */
  readonly mac: string;
  readonly protocols: readonly number[];
  readonly ports: readonly { readonly min: number; readonly max: number }[];
  /** Remote sources allowed, both families mixed (absent: any). */
  readonly from?: readonly AddressPattern[];
  /** The admin's words for it (the file's `description`). */
  readonly description?: string;
  /** A hand-set IPv6 interface identifier (`::10`), as its pattern under any prefix: opened before the device is seen. */
  readonly identifier?: AddressPattern;
}

/** A static opening the firewall and the service can install as it is (a device opening resolved). */
export type ConcreteStatic = Exclude<StaticOpening, DeviceOpening>;
