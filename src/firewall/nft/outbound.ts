// The outbound half of IPv4 mappings (see ruleset.ts): an @snat4 element per
// internal endpoint and a @held4 element per external port. Unlike the DNAT
// elements these are shared: a MAP and the PEERs of one internal endpoint
// use one external port (endpoint-independent mapping), so one SNAT element
// serves them all. Each element lives as long as its longest-lived holder
// and goes only when the last holder does.

import { entryKey, type FirewallEntry } from '../backend.js';
import type { IpAddress } from '../../net/address.js';
import { protocolName } from '../../net/ipproto.js';
import type { PortRun } from './ruleset.js';
import type { FlowSelector } from '../flow-path.js';

export type OutboundSet = 'snat4' | 'held4';

/** What the kernel must do to one shared element. */
export type ElementOp =
  | { op: 'put'; set: OutboundSet; elem: unknown }
  /** `elem` carries the data the kernel holds, so a map removal cannot fail on it. */
  | { op: 'vanish'; set: OutboundSet; elem: unknown };

/** An internal endpoint whose live flows must be re-translated (its SNAT element came, went or moved). */
export interface MovedEndpoint {
  protocol: number;
  internalAddress: IpAddress;
  internalPort: number;
  /** External address and port before and after (either absent). */
  before?: { address: IpAddress; port: number };
  after?: { address: IpAddress; port: number };
}

interface Holder {
  value: readonly (string | number)[];
  until: number;
}

/**
 * A slot's holders, by entry key, in the order they came (a Map's order:
 * the latest holder's data is the slot's). Nearly every slot has one, so one
 * is kept inline and a Map made only for a second: at a restart with 10 000
 * IPv4 mappings the 20 000 one-entry Maps were most of the rebuild's
 * garbage.
 */
export class Holders {
  private oneKey: string | undefined;
  private one: Holder | undefined;
  private more: Map<string, Holder> | undefined;

  get size(): number {
    return this.more ? this.more.size : this.oneKey === undefined ? 0 : 1;
  }

  /** A new holder goes last; a known one keeps its place, as in a Map. */
  set(key: string, h: Holder): void {
    if (this.more) this.more.set(key, h);
    else if (this.oneKey === undefined || this.oneKey === key) {
      this.oneKey = key;
      this.one = h;
    } else {
      this.more = new Map([[this.oneKey, this.one!], [key, h]]);
      this.oneKey = this.one = undefined;
    }
  }

  delete(key: string): void {
    if (this.more) this.more.delete(key);
    else if (this.oneKey === key) this.oneKey = this.one = undefined;
  }

  *values(): IterableIterator<Holder> {
    if (this.more) yield* this.more.values();
    else if (this.one) yield this.one;
  }

  /** Forgets the holders whose time is up; returns the earliest end of those left (Infinity: none). */
  dropEnded(now: number): number {
    let earliest = Number.POSITIVE_INFINITY;
    if (this.more) {
      for (const [k, h] of this.more) {
        if (h.until <= now) this.more.delete(k);
        else earliest = Math.min(earliest, h.until);
      }
    } else if (this.one) {
      if (this.one.until <= now) this.oneKey = this.one = undefined;
      else earliest = this.one.until;
    }
    return earliest;
  }

  copy(): Holders {
    const c = new Holders();
    c.oneKey = this.oneKey;
    c.one = this.one;
    c.more = this.more && new Map(this.more);
    return c;
  }
}

interface Slot {
  set: OutboundSet;
  key: readonly (string | number)[];
  holders: Holders;
  /** The data last written to the kernel (held4: the key itself). */
  written?: readonly (string | number)[];
  endpoint?: FirewallEntry;
}

function slotsOf(e: FirewallEntry): { set: OutboundSet; key: (string | number)[]; value: (string | number)[] }[] {
  if (e.family !== 4) return [];
  const proto = protocolName(e.protocol);
  return [
    { set: 'snat4', key: [e.internalAddress, proto, e.internalPort], value: [e.externalAddress, e.externalPort] },
    { set: 'held4', key: [proto, e.externalPort], value: [] },
  ];
}

/**
 * The shared elements an entry holds, as [set, key and data]: the form
 * reconciliation compares the kernel's listing in.
 */
export function outboundElementsOf(e: FirewallEntry): { set: OutboundSet; concat: (string | number)[] }[] {
  return slotsOf(e).map((s) => ({ set: s.set, concat: [...s.key, ...s.value] }));
}

const slotId = (s: { set: OutboundSet; key: readonly (string | number)[] }) => `${s.set}|${s.key.join('|')}`;

const same = (a: readonly unknown[] | undefined, b: readonly unknown[] | undefined) =>
  a !== undefined && b !== undefined && a.length === b.length && a.every((v, i) => v === b[i]);

/** A change to the holdings, undoable until the kernel said yes. */
export interface Staged {
  ops: ElementOp[];
  moved: MovedEndpoint[];
  /** Held external ports that were free before this change. */
  newlyHeld: number[];
  commit(): void;
  rollback(): void;
}

export class OutboundElements {
  private readonly slots = new Map<string, Slot>();
  /** No holder ends before this (monotonic ms); Infinity when none is held. */
  earliestEnd = Number.POSITIVE_INFINITY;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Every external port a mapping holds (either protocol). */
  heldPorts(): number[] {
    const out: number[] = [];
    for (const s of this.slots.values()) if (s.set === 'held4' && s.holders.size) out.push(Number(s.key[1]));
    return out;
  }

  /**
   * Applies put/remove of entries to the holdings and returns the element
   * operations that bring the kernel there. Nothing is final until commit().
   */
  stage(changes: readonly ({ op: 'put'; entry: FirewallEntry; timeoutSeconds: number } | { op: 'remove'; entry: FirewallEntry })[]): Staged {
    const now = this.now();
    const saved = new Map<string, { holders: Holders; written?: readonly (string | number)[]; endpoint?: FirewallEntry } | undefined>();
    const touched = new Set<string>();
    for (const c of changes) {
      const slots = slotsOf(c.entry);
      // A pinhole holds no shared element: nothing to key it by.
      if (slots.length === 0) continue;
      const holder = entryKey(c.entry);
      for (const s of slots) {
        const id = slotId(s);
        const had = this.slots.get(id);
        if (!saved.has(id)) saved.set(id, had && { holders: had.holders.copy(), written: had.written, endpoint: had.endpoint });
        const slot = had ?? this.newSlot(id, s);
        if (c.op === 'put') {
          const until = now + c.timeoutSeconds * 1000;
          slot.holders.set(holder, { value: s.value, until });
          this.earliestEnd = Math.min(this.earliestEnd, until);
          slot.endpoint = c.entry;
        } else slot.holders.delete(holder);
        touched.add(id);
      }
    }
    const ops: ElementOp[] = [];
    const moved: MovedEndpoint[] = [];
    const newlyHeld: number[] = [];
    const after = new Map<string, readonly (string | number)[] | undefined>();
    for (const id of touched) {
      const slot = this.slots.get(id)!;
      const want = this.desired(slot, now);
      const before = slot.written;
      if (before && (!want || !same(before, want.value))) ops.push({ op: 'vanish', set: slot.set, elem: element(slot, before, undefined) });
      if (want) ops.push({ op: 'put', set: slot.set, elem: element(slot, want.value, want.timeout) });
      after.set(id, want?.value);
      if (slot.set === 'held4' && !before && want) newlyHeld.push(Number(slot.key[1]));
      if (slot.set === 'snat4' && !same(before, want?.value) && slot.endpoint) {
        moved.push({
          protocol: slot.endpoint.protocol,
          internalAddress: slot.endpoint.internalAddress,
          internalPort: slot.endpoint.internalPort,
          before: before && { address: before[0] as IpAddress, port: Number(before[1]) },
          after: want && { address: want.value[0] as IpAddress, port: Number(want.value[1]) },
        });
      }
    }
    return {
      ops,
      moved,
      newlyHeld,
      commit: () => {
        for (const [id, value] of after) {
          const slot = this.slots.get(id)!;
          slot.written = value;
          // Nothing in the kernel: holders left here had expired there too.
          if (value === undefined) this.slots.delete(id);
        }
      },
      rollback: () => {
        for (const [id, was] of saved) {
          if (!was) this.slots.delete(id);
          else this.slots.set(id, { ...this.slots.get(id)!, ...was });
        }
      },
    };
  }

  /**
   * The service drops an expired mapping without telling the firewall (the
   * kernel expires its elements alone), so holders are forgotten here when
   * their time is up; the endpoints whose SNAT element went with them are
   * returned, for their live flows to be re-translated.
   */
  sweep(): MovedEndpoint[] {
    const now = this.now();
    const moved: MovedEndpoint[] = [];
    let earliest = Number.POSITIVE_INFINITY;
    for (const [id, slot] of this.slots) {
      earliest = Math.min(earliest, slot.holders.dropEnded(now));
      if (slot.holders.size) continue;
      this.slots.delete(id);
      if (slot.set === 'snat4' && slot.written && slot.endpoint) {
        const e = slot.endpoint;
        moved.push({ protocol: e.protocol, internalAddress: e.internalAddress, internalPort: e.internalPort, before: { address: slot.written[0] as IpAddress, port: Number(slot.written[1]) } });
      }
    }
    this.earliestEnd = earliest;
    return moved;
  }

  /** Forgets everything and holds exactly these entries (reconciliation rebuilds the kernel from them). */
  reset(desired: readonly { entry: FirewallEntry; timeoutSeconds: number }[]): { set: OutboundSet; elem: unknown }[] {
    // What stage() then commit() of every entry as a put would leave, built
    // directly: at a restart `desired` is every mapping (100 000), and
    // stage's undo copies, moved endpoints and vanish checks are for
    // changes to holdings the kernel already has — here there are none.
    this.slots.clear();
    const now = this.now();
    let earliest = Number.POSITIVE_INFINITY;
    for (const d of desired) {
      if (d.entry.family !== 4) continue;
      const holder = entryKey(d.entry);
      const until = now + d.timeoutSeconds * 1000;
      if (until < earliest) earliest = until;
      for (const s of slotsOf(d.entry)) {
        const id = slotId(s);
        const slot = this.slots.get(id) ?? this.newSlot(id, s);
        slot.holders.set(holder, { value: s.value, until });
        slot.endpoint = d.entry;
      }
    }
    this.earliestEnd = earliest;
    const puts: { set: OutboundSet; elem: unknown }[] = [];
    for (const [id, slot] of this.slots) {
      const want = this.desired(slot, now);
      if (!want) {
        this.slots.delete(id);
        continue;
      }
      slot.written = want.value;
      puts.push({ set: slot.set, elem: element(slot, want.value, want.timeout) });
    }
    return puts;
  }

  private newSlot(id: string, s: { set: OutboundSet; key: readonly (string | number)[] }): Slot {
    const slot: Slot = { set: s.set, key: s.key, holders: new Holders() };
    this.slots.set(id, slot);
    return slot;
  }

  private desired(slot: Slot, now: number): { value: readonly (string | number)[]; timeout: number } | undefined {
    let best: Holder | undefined;
    let latest: Holder | undefined;
    for (const h of slot.holders.values()) {
      if (h.until <= now) continue;
      if (!best || h.until > best.until) best = h;
      latest = h;
    }
    if (!best || !latest) return undefined;
    // The latest holder's data (a moved mapping), the longest holder's timeout.
    return { value: latest.value, timeout: Math.max(1, Math.ceil((best.until - now) / 1000)) };
  }
}

function element(slot: Slot, value: readonly (string | number)[], timeout: number | undefined): unknown {
  const elem = { elem: { val: { concat: [...slot.key] }, ...(timeout !== undefined ? { timeout } : {}) } };
  return slot.set === 'snat4' ? [elem, { concat: [...value] }] : elem;
}

/** Ports kept free between held_nat's run and a held port next to it (at most a quarter of the run). */
export const REMAP_MARGIN = 1024;

/**
 * The largest run of ports in 1024-65535 that none of `held` is in: where a
 * flow from a held source port is masqueraded to. Ports below 1024 are left
 * out (RFC 4787 REQ-3 a keeps a high source port high).
 *
 * An end of the run that borders a held port is pulled in by REMAP_MARGIN:
 * mappings made on one port after another (a device's consecutive ports)
 * would otherwise land in the run with every batch, and each landing costs
 * the backend a sort of every held port and a rewrite of held_nat's rule;
 * with the margin they land once per REMAP_MARGIN ports.
 */
export function largestFreeRun(held: Iterable<number>): PortRun {
  const ports = [...new Set(held)].filter((p) => p >= 1024 && p <= 65535).sort((a, b) => a - b);
  let best = { min: 1024, max: 1023 };
  let from = 1024;
  for (const p of [...ports, 65536]) {
    if (p - 1 - from > best.max - best.min) best = { min: from, max: p - 1 };
    from = p + 1;
  }
  if (best.max < best.min) return { min: 1024, max: 65535 };
  const margin = Math.min(REMAP_MARGIN, Math.floor((best.max - best.min + 1) / 4));
  return { min: best.min > 1024 ? best.min + margin : best.min, max: best.max < 65535 ? best.max - margin : best.max };
}

/** Flows to re-translate after a committed batch: each moved endpoint's own, and other hosts' on its new external port. */
export function flowsOf(moved: readonly MovedEndpoint[]): FlowSelector[] {
  return moved.flatMap((m) => [
    { by: 'source' as const, protocol: m.protocol, address: m.internalAddress, port: m.internalPort },
    ...(m.after ? [{ by: 'translated-to' as const, protocol: m.protocol, address: m.after.address, port: m.after.port }] : []),
  ]);
}
