// The firewall back door: what the mapping service asks of nftables (or of
// the in-memory stand-in used by fast tests). Protocol code never imports a backend.

import type { Family, IpAddress } from '../net/address.js';
import { filterKey, type RemoteFilter, type StaticOpening } from '../domain/mapping.js';

/** One opening, as the kernel must see it. */
export interface FirewallEntry {
  readonly family: Family;
  readonly protocol: number;
  /** IPv4: the address DNAT matches on; IPv6: equals internalAddress. */
  readonly externalAddress: IpAddress;
  readonly externalPort: number;
  readonly internalAddress: IpAddress;
  readonly internalPort: number;
  /** Empty: any remote. */
  readonly filters: readonly RemoteFilter[];
}

export type FirewallChange =
  /** Add, or refresh the timeout of, an entry. */
  | { op: 'put'; entry: FirewallEntry; timeoutSeconds: number }
  /**
   * Remove an entry; one that is already gone (expired in the kernel) is not
   * an error. `endFlows`: the flows that entered through it end too (the
   * admin closed it); without it they run on (see service/firewall-entries.ts).
   */
  | { op: 'remove'; entry: FirewallEntry; endFlows?: boolean };

/** An entry the kernel should hold now, with the seconds it has left. */
export interface DesiredEntry {
  entry: FirewallEntry;
  timeoutSeconds: number;
}

export interface FirewallBackend {
  readonly name: string;
  /** Prepare (tables, sets); throws a clear error if the firewall is unusable. */
  start(): Promise<void>;
  /**
   * Applies a batch atomically where the firewall allows it. The result has
   * one flag per change: false means that change (and only it) did not take.
   */
  apply(batch: readonly FirewallChange[]): Promise<boolean[]>;
  /** Leaves granted entries in place to expire on their own. */
  stop(): Promise<void>;
  /**
   * The admin's static openings (policy file). Called before start() to have
   * start install them, and on every policy reload: the firewall diffs, so an
   * unchanged opening is never closed. Throws if the firewall refuses them.
   */
  setStatics(statics: readonly StaticOpening[]): Promise<{ added: number; removed: number; kept: number }>;
  /**
   * Whether the kernel accepts portcullis' own ports only from the LAN
   * interfaces (see src/net/lan-source.ts). A firewall without the method
   * enforces nothing (memory): the daemon warns and serves.
   */
  guard?(): Promise<{ ok: boolean; detail: string }>;
  /**
   * The upstream PCP server (RFC 7648 proxy): datagrams from its address and
   * port count only when they arrive on the WAN interface (undefined: none).
   * A firewall without the method enforces nothing (memory).
   */
  guardUpstream?(server: { address: IpAddress; port: number } | undefined): Promise<void>;
  /** Packets an entry has admitted, where the firewall counts them (IPv6 pinholes); undefined otherwise. */
  packets?(entry: FirewallEntry): Promise<number | undefined>;
  /** The same for many entries at once, by entryKey (entries not counted are left out): one listing, not a query each. */
  packetCounts?(entries: readonly FirewallEntry[]): Promise<Map<string, number>>;
  /**
   * A firewall others can change behind our back (an OpenWrt firewall
   * reload, an admin's `nft flush`) says cheaply whether its objects are all
   * still there, and makes itself match `desired` (missing objects and
   * entries back, entries no mapping owns gone). A firewall without them
   * starts from an empty state and is given the entries with apply().
   */
  intact?(): Promise<boolean>;
  reconcile?(desired: readonly DesiredEntry[], opts?: ReconcileOptions): Promise<Reconciled>;
}

export interface ReconcileOptions {
  /**
   * Add nothing: list the entries whose elements are missing in `deferred`,
   * for the caller to put back in bounded batches (apply) while it serves —
   * a restart with 100 000 mappings need not wait for one huge transaction.
   * Removals and recreated objects are done at once all the same.
   */
  defer?: boolean;
}

export interface Reconciled {
  added: number;
  removed: number;
  recreated: boolean;
  /** With `defer`: the entries a put must bring back (an element of each is missing). */
  deferred?: FirewallEntry[];
}

export function entryKey(e: FirewallEntry): string {
  const f = e.filters.map(filterKey).sort().join(',');
  return `${e.family}|${e.protocol}|${e.externalAddress}|${e.externalPort}|${e.internalAddress}|${e.internalPort}|${f}`;
}
