// The mapping table and its indexes. Every lookup a request needs is O(1):
// by identity, by a client's count, by external port; expiry is a heap.

import type { IpAddress } from '../net/address.js';
import { keyOf, type Mapping } from '../service/types.js';

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

export class MappingTable {
  private readonly byKey = new Map<string, Mapping>();
  /** Keys of each internal address's mappings: its quota count and its delete-all. */
  private readonly perClient = new Map<IpAddress, Set<string>>();
  private readonly bindingsByInternal = new Map<string, Binding>();
  private readonly bindingsByExternal = new Map<string, Binding>();
  private readonly heap = new ExpiryHeap();
  /** Bumped by every put and remove: listings cache on it. */
  version = 0;

  get size(): number {
    return this.byKey.size;
  }

  get(key: string): Mapping | undefined {
    return this.byKey.get(key);
  }

  values(): IterableIterator<Mapping> {
    return this.byKey.values();
  }

  countFor(internalAddress: IpAddress): number {
    return this.perClient.get(internalAddress)?.size ?? 0;
  }

  /** One internal address's mappings, without scanning the table. */
  *of(internalAddress: IpAddress): Generator<Mapping> {
    for (const k of this.perClient.get(internalAddress) ?? []) {
      const m = this.byKey.get(k);
      if (m) yield m;
    }
  }

  /** Inserts or replaces (same key). Bindings are managed by the caller. */
  put(m: Mapping): Mapping | undefined {
    const k = keyOf(m);
    const prev = this.byKey.get(k);
    this.version++;
    this.byKey.set(k, m);
    if (!prev) {
      let keys = this.perClient.get(m.internalAddress);
      if (!keys) this.perClient.set(m.internalAddress, (keys = new Set()));
      keys.add(k);
    }
    this.heap.push(m.expiresAt, k);
    return prev;
  }

  remove(key: string): Mapping | undefined {
    const m = this.byKey.get(key);
    if (!m) return undefined;
    this.version++;
    this.byKey.delete(key);
    const keys = this.perClient.get(m.internalAddress);
    keys?.delete(key);
    if (keys?.size === 0) this.perClient.delete(m.internalAddress);
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

  /** The mappings (a MAP and its PEERs) of the internal endpoint that holds an external port. */
  *onExternalPort(protocol: number, port: number): Generator<Mapping> {
    const b = this.holderOfExternalPort(protocol, port);
    if (!b) return;
    const address = b.internal.slice(0, b.internal.indexOf('|')) as IpAddress;
    for (const m of this.of(address)) if (internalEndpoint(m.internalAddress, m.protocol, m.internalPort) === b.internal) yield m;
  }

  /** Takes a reference on the internal endpoint's binding, creating it at `port`. */
  acquireBinding(internal: string, protocol: number, port: number): Binding {
    let b = this.bindingsByInternal.get(internal);
    if (!b) {
      b = { internal, externalPort: port, refs: 0 };
      this.bindingsByInternal.set(internal, b);
      this.bindingsByExternal.set(externalSlot(protocol, port), b);
    }
    b.refs++;
    return b;
  }

  releaseBinding(internal: string, protocol: number): void {
    const b = this.bindingsByInternal.get(internal);
    if (!b) return;
    if (--b.refs > 0) return;
    this.bindingsByInternal.delete(internal);
    this.bindingsByExternal.delete(externalSlot(protocol, b.externalPort));
  }

  /** Mappings whose lifetime ended at or before `now`, removed from the heap as they come. */
  *dueBy(now: number): Generator<Mapping> {
    for (;;) {
      const top = this.heap.peek();
      if (!top || top.at > now) return;
      this.heap.pop();
      const m = this.byKey.get(top.key);
      // Stale heap entries (renewed or removed since) are skipped.
      if (m && m.expiresAt === top.at) yield m;
    }
  }

  nextExpiry(): number | undefined {
    return this.heap.peek()?.at;
  }
}

/** Binary min-heap on expiry time with lazy deletion. */
class ExpiryHeap {
  private readonly at: number[] = [];
  private readonly keys: string[] = [];

  push(at: number, key: string): void {
    this.at.push(at);
    this.keys.push(key);
    let i = this.at.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if ((this.at[p] ?? 0) <= at) break;
      this.swap(i, p);
      i = p;
    }
  }

  peek(): { at: number; key: string } | undefined {
    if (this.at.length === 0) return undefined;
    return { at: this.at[0] ?? 0, key: this.keys[0] ?? '' };
  }

  pop(): void {
    const last = this.at.length - 1;
    if (last < 0) return;
    this.swap(0, last);
    this.at.pop();
    this.keys.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.at.length && (this.at[l] ?? 0) < (this.at[m] ?? 0)) m = l;
      if (r < this.at.length && (this.at[r] ?? 0) < (this.at[m] ?? 0)) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }

  private swap(i: number, j: number): void {
    [this.at[i], this.at[j]] = [this.at[j] ?? 0, this.at[i] ?? 0];
    [this.keys[i], this.keys[j]] = [this.keys[j] ?? '', this.keys[i] ?? ''];
  }
}
