// The mapping table and its indexes. Every lookup a request needs is O(1):
// by identity, by a client's count (per address, per /64, per LAN
// interface), by external port; expiry is a heap with one entry per live
// mapping, so a client renewing at its allowed rate costs no memory.
// External ports freed recently are held back for their last holder for the
// NAT's reuse time (RFC 6887 §15), at most one record per port.

import type { IpAddress } from '../net/address.js';
import { hostUnit } from '../net/hosts.js';
import { keyOf, type Mapping, type NonceHex, type Origin } from '../domain/mapping.js';

/**
 * An external IPv4 endpoint held for one internal endpoint. A MAP and the
 * PEERs of the same internal address/protocol/port share it (endpoint-
 * independent mapping, RFC 4787 REQ-1), so it lives while any of them does.
 */
export interface Binding {
  readonly internal: string;
  readonly externalPort: number;
  refs: number;
}

export function internalEndpoint(internalAddress: IpAddress, protocol: number, internalPort: number): string {
  return `${internalAddress}|${protocol}|${internalPort}`;
}

function externalSlot(protocol: number, port: number): string {
  return `${protocol}|${port}`;
}

/** An external port its last holder may still reclaim: nobody else gets it before `until`. */
export interface FreedPort {
  readonly internal: string;
  readonly externalPort: number;
  /** The nonce of the mapping whose end freed it, if it had one. */
  readonly nonce?: NonceHex;
  /** The protocol that made that mapping. */
  readonly origin: Origin;
  /** Monotonic milliseconds. */
  readonly until: number;
}

/**
 * External ports in their reuse time. Every record lasts the same reuse time
 * from the moment it is made, so insertion order is expiry order: pruning
 * takes expired records off the front, and a port freed again moves to the
 * back. One record per (protocol, port), so never more than 2 × 65 536.
 */
class FreedPorts {
  private readonly bySlot = new Map<string, FreedPort>();
  /** The latest port each internal endpoint freed, for giving it back unasked. */
  private readonly byInternal = new Map<string, string>();

  get size(): number {
    return this.bySlot.size;
  }

  hold(protocol: number, f: FreedPort, now: number): void {
    this.prune(now);
    const slot = externalSlot(protocol, f.externalPort);
    this.drop(slot);
    this.bySlot.set(slot, f);
    this.byInternal.set(f.internal, slot);
  }

  /** The record holding a port back, while its reuse time runs. */
  of(protocol: number, port: number, now: number): FreedPort | undefined {
    this.prune(now);
    return this.bySlot.get(externalSlot(protocol, port));
  }

  /** The port an internal endpoint freed last, while it is still held back for it. */
  forInternal(internal: string, now: number): FreedPort | undefined {
    this.prune(now);
    const slot = this.byInternal.get(internal);
    return slot === undefined ? undefined : this.bySlot.get(slot);
  }

  drop(slot: string): void {
    const f = this.bySlot.get(slot);
    if (!f) return;
    this.bySlot.delete(slot);
    if (this.byInternal.get(f.internal) === slot) this.byInternal.delete(f.internal);
  }

  private prune(now: number): void {
    for (const [slot, f] of this.bySlot) {
      if (f.until > now) return;
      this.drop(slot);
    }
  }
}

export class MappingTable {
  /** Keys of each internal address's mappings: its quota count and its remove-all. */
  private readonly perClient = new Map<IpAddress, Set<string>>();
  private readonly bindingsByInternal = new Map<string, Binding>();
  private readonly bindingsByExternal = new Map<string, Binding>();
  /** Mappings per host unit (an IPv4 address, an IPv6 /64): what one host can hold however many addresses it takes. */
  private readonly perHost = new Map<string, number>();
  private readonly perInterface = new Map<string, number>();
  /** Mappings per requesting client (Mapping.client): a subscriber's own and its third-party ones together. */
  private readonly perRequester = new Map<string, number>();
  /**
   * Per mapping, one record under its key: the mapping, where it was counted
   * (host and interface may change later; its count must leave where it was
   * added) and its place in the expiry heap. One map entry and one object a
   * mapping, not three of each.
   */
  private readonly slots = new Map<string, Slot>();
  /** The one copy of each host unit's name the slots point at (hostOf may build a new string per call). */
  private readonly hostNames = new Map<string, string>();
  private readonly heap = new ExpiryHeap();
  private readonly freed = new FreedPorts();
  /** While `filling`: each address's host and interface, asked once. */
  private placed: Map<IpAddress, { host: string; iface: string | undefined }> | undefined;
  /** Bumped by every put and remove: listings cache on it. */
  version = 0;

  /** `interfaceOf` names the LAN interface an internal address is on, when known. */
  constructor(
    private readonly interfaceOf: (addr: IpAddress) => string | undefined = () => undefined,
    /** The host an address belongs to (src/net/hosts.ts: its device where the kernel knows it). */
    private readonly hostOf: (addr: IpAddress) => string = hostUnit,
  ) {}

  get size(): number {
    return this.slots.size;
  }

  get(key: string): Mapping | undefined {
    return this.slots.get(key)?.m;
  }

  *values(): Generator<Mapping> {
    for (const s of this.slots.values()) yield s.m;
  }

  /** Every mapping with its key (the table's own string: nothing recomputed). */
  *entries(): Generator<[string, Mapping]> {
    for (const s of this.slots.values()) yield [s.key, s.m];
  }

  countFor(internalAddress: IpAddress): number {
    return this.perClient.get(internalAddress)?.size ?? 0;
  }

  /** Mappings of the address's host unit: its /64 (IPv6) or the address itself (IPv4). */
  countForHost(internalAddress: IpAddress, host = this.hostOf(internalAddress)): number {
    return this.perHost.get(host) ?? 0;
  }

  /** Mappings `client` asked for, for itself and for other hosts (THIRD_PARTY): a subscriber's quota. */
  countByRequester(client: IpAddress): number {
    return this.perRequester.get(client) ?? 0;
  }

  countForInterface(name: string): number {
    return this.perInterface.get(name) ?? 0;
  }

  /** LAN interfaces that hold at least one mapping. */
  get interfacesInUse(): number {
    return this.perInterface.size;
  }

  /** Entries in the expiry heap: one per live mapping, whatever the renewals. */
  get scheduled(): number {
    return this.heap.size;
  }

  /** Internal addresses that hold at least one mapping. */
  addresses(): IterableIterator<IpAddress> {
    return this.perClient.keys();
  }

  /** One internal address's mappings, without scanning the table. */
  *of(internalAddress: IpAddress): Generator<Mapping> {
    for (const k of this.perClient.get(internalAddress) ?? []) {
      const m = this.get(k);
      if (m) yield m;
    }
  }

  /** Inserts or replaces (same key; `k` is keyOf(m), given when a copy is at hand to share). Bindings are managed by the caller. */
  put(m: Mapping, k = keyOf(m)): Mapping | undefined {
    this.version++;
    const had = this.slots.get(k);
    if (had) {
      const prev = had.m;
      had.m = m;
      this.heap.move(had, m.expiresAt);
      return prev;
    }
    let keys = this.perClient.get(m.internalAddress);
    if (!keys) this.perClient.set(m.internalAddress, (keys = new Set()));
    keys.add(k);
    const { host, iface } = this.placeOf(m.internalAddress);
    const slot: Slot = { key: k, m, at: m.expiresAt, index: 0, host, iface, client: m.client };
    this.slots.set(k, slot);
    bump(this.perHost, slot.host, 1);
    bump(this.perRequester, slot.client, 1);
    if (slot.iface !== undefined) bump(this.perInterface, slot.iface, 1);
    this.heap.insert(slot);
    return undefined;
  }

  /**
   * Runs `fill` (many puts in one synchronous run, as a restore's) asking
   * each internal address's host and interface once: nothing can change
   * their answers before it returns, and 100 000 mappings come from a few
   * thousand addresses.
   */
  filling(fill: () => void): void {
    this.placed = new Map();
    try {
      fill();
    } finally {
      this.placed = undefined;
    }
  }

  private placeOf(addr: IpAddress): { host: string; iface: string | undefined } {
    const known = this.placed?.get(addr);
    if (known) return known;
    const named = this.hostOf(addr);
    const host = this.hostNames.get(named) ?? named;
    if (host === named) this.hostNames.set(host, host);
    const place = { host, iface: this.interfaceOf(addr) };
    this.placed?.set(addr, place);
    return place;
  }

  remove(key: string): Mapping | undefined {
    const slot = this.slots.get(key);
    if (!slot) return undefined;
    const m = slot.m;
    this.version++;
    this.slots.delete(key);
    const keys = this.perClient.get(m.internalAddress);
    keys?.delete(key);
    if (keys?.size === 0) this.perClient.delete(m.internalAddress);
    bump(this.perHost, slot.host, -1);
    if (!this.perHost.has(slot.host)) this.hostNames.delete(slot.host);
    bump(this.perRequester, slot.client, -1);
    if (slot.iface !== undefined) bump(this.perInterface, slot.iface, -1);
    this.heap.delete(slot);
    return m;
  }

  bindingFor(internal: string): Binding | undefined {
    return this.bindingsByInternal.get(internal);
  }

  isExternalPortFree(protocol: number, port: number): boolean {
    return !this.bindingsByExternal.has(externalSlot(protocol, port));
  }

  holderOfExternalPort(protocol: number, port: number): Binding | undefined {
    return this.bindingsByExternal.get(externalSlot(protocol, port));
  }

  /** The MAP-kind mapping of the internal endpoint that holds an external port, if it has one (a PEER alone holds none that a door names). */
  mapOnExternalPort(protocol: number, port: number): Mapping | undefined {
    const b = this.holderOfExternalPort(protocol, port);
    return b ? this.get(`map|${b.internal}`) : undefined;
  }

  /** The mappings (a MAP and its PEERs) of the internal endpoint that holds an external port. */
  *onExternalPort(protocol: number, port: number): Generator<Mapping> {
    const b = this.holderOfExternalPort(protocol, port);
    if (!b) return;
    const address = b.internal.slice(0, b.internal.indexOf('|')) as IpAddress;
    for (const m of this.of(address)) if (internalEndpoint(m.internalAddress, m.protocol, m.internalPort) === b.internal) yield m;
  }

  /** Takes a reference on the internal endpoint's binding, creating it at `port` (a port in use is held back no longer). */
  acquireBinding(internal: string, protocol: number, port: number): Binding {
    let b = this.bindingsByInternal.get(internal);
    if (!b) {
      b = { internal, externalPort: port, refs: 0 };
      this.bindingsByInternal.set(internal, b);
      this.bindingsByExternal.set(externalSlot(protocol, port), b);
      this.freed.drop(externalSlot(protocol, port));
    }
    b.refs++;
    return b;
  }

  /**
   * Drops a reference on the internal endpoint's binding. With `hold`, a
   * port this frees is held back for the endpoint until `hold.until`
   * (a mapping that ended); without, it is free at once (a reservation
   * rolled back: nobody was ever told of it).
   */
  releaseBinding(internal: string, protocol: number, hold?: { nonce?: NonceHex; origin: Origin; until: number; now: number }): void {
    const b = this.bindingsByInternal.get(internal);
    if (!b) return;
    if (--b.refs > 0) return;
    this.bindingsByInternal.delete(internal);
    this.bindingsByExternal.delete(externalSlot(protocol, b.externalPort));
    if (hold && hold.until > hold.now) this.freed.hold(protocol, { internal, externalPort: b.externalPort, nonce: hold.nonce, origin: hold.origin, until: hold.until }, hold.now);
  }

  /** Who an external port is held back for, during its reuse time. */
  heldBack(protocol: number, port: number, now: number): FreedPort | undefined {
    return this.freed.of(protocol, port, now);
  }

  /** The port an internal endpoint freed last, while it is held back for it. */
  heldFor(internal: string, now: number): FreedPort | undefined {
    return this.freed.forInternal(internal, now);
  }

  /** Ports in their reuse time (each at most once). */
  get heldBackCount(): number {
    return this.freed.size;
  }

  /** Mappings whose lifetime ended at or before `now`; they stay in the table (and the heap) until removed. */
  dueBy(now: number): Mapping[] {
    const due: Mapping[] = [];
    for (const key of this.heap.dueBy(now)) {
      const m = this.get(key);
      if (m) due.push(m);
    }
    return due;
  }

  nextExpiry(): number | undefined {
    return this.heap.first();
  }
}

function bump(counts: Map<string, number>, key: string, by: number): void {
  const n = (counts.get(key) ?? 0) + by;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}

/** A mapping's record in the table: the mapping, where it was counted, and its place in the expiry heap. */
interface Slot {
  readonly key: string;
  m: Mapping;
  /** Monotonic milliseconds: the mapping's expiresAt. */
  at: number;
  /** Its position in the heap's array. */
  index: number;
  readonly host: string;
  readonly iface: string | undefined;
  readonly client: IpAddress;
}

/**
 * Binary min-heap on expiry time over the table's slots: a renewal moves
 * the mapping's one slot (increase-key), a removal takes it out. Chosen over
 * lazy deletion (push on every renewal, rebuild when stale entries outnumber
 * live ones) because it is exact: the heap is never larger than the table,
 * the next timer is always a live mapping's, and no rebuild stalls a request.
 */
class ExpiryHeap {
  private readonly nodes: Slot[] = [];

  get size(): number {
    return this.nodes.length;
  }

  first(): number | undefined {
    return this.nodes[0]?.at;
  }

  insert(n: Slot): void {
    n.index = this.nodes.length;
    this.nodes.push(n);
    this.up(n.index);
  }

  move(n: Slot, at: number): void {
    const before = n.at;
    n.at = at;
    if (at < before) this.up(n.index);
    else this.down(n.index);
  }

  delete(n: Slot): void {
    const last = this.nodes.pop() as Slot;
    if (last === n) return;
    this.place(last, n.index);
    this.up(last.index);
    this.down(last.index);
  }

  /** Keys whose time is at or before `now`, without removing them: only subtrees that start in time are visited. */
  dueBy(now: number): string[] {
    const out: string[] = [];
    const stack = [0];
    for (let i = stack.pop(); i !== undefined; i = stack.pop()) {
      const n = this.nodes[i];
      if (!n || n.at > now) continue;
      out.push(n.key);
      stack.push(2 * i + 1, 2 * i + 2);
    }
    return out;
  }

  private up(i: number): void {
    const n = this.nodes[i] as Slot;
    while (i > 0) {
      const parent = this.nodes[(i - 1) >> 1] as Slot;
      if (parent.at <= n.at) break;
      this.place(parent, i);
      i = (i - 1) >> 1;
    }
    this.place(n, i);
  }

  private down(i: number): void {
    const n = this.nodes[i] as Slot;
    const count = this.nodes.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= count) break;
      const left = this.nodes[l] as Slot;
      const right = this.nodes[l + 1];
      const child = right && right.at < left.at ? right : left;
      if (child.at >= n.at) break;
      const at = child.index;
      this.place(child, i);
      i = at;
    }
    this.place(n, i);
  }

  private place(n: Slot, i: number): void {
    this.nodes[i] = n;
    n.index = i;
  }
}
