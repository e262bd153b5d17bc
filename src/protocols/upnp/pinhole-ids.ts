// WANIPv6FirewallControl's pinhole UniqueIDs: the 16-bit names a client
// renews and removes its pinholes by, each bound to its mapping's key while
// the mapping lives.

import type { MappingService } from '../../service/mapping-service.js';
import { keyOf } from '../../domain/mapping.js';

/**
 * A pinhole's UniqueID rides on its mapping as the service's opaque doorTag,
 * so it is journaled in the same record as the pinhole and comes back with
 * it after a restart (a client renews or removes it by the ID it was given).
 * Why there and not in a file of the UPnP door's own: one record cannot be
 * half-written, where a second file could hold a pinhole without its ID or
 * an ID without its pinhole after a crash; and this code stays free of I/O
 * and of the store, which only the service talks to.
 */
const PINHOLE_TAG = 'pinhole:';
export const pinholeTag = (id: number): string => `${PINHOLE_TAG}${id}`;
function pinholeIdOfTag(tag: string | undefined): number | undefined {
  if (!tag?.startsWith(PINHOLE_TAG)) return undefined;
  const id = Number(tag.slice(PINHOLE_TAG.length));
  return Number.isInteger(id) && id > 0 ? id : undefined;
}

export class PinholeIds {
  /** UniqueIDs ↔ mapping keys, one to one. */
  private readonly keys = new Map<number, string>();
  private readonly ids = new Map<string, number>();
  /** Ids handed to an AddPinhole whose mapping is not committed yet. */
  private readonly pending = new Set<number>();
  private next = 1;
  /** Whether the ids of pinholes already in the table (restored from the store) are indexed. */
  private indexed = false;

  constructor(
    private readonly service: Pick<MappingService, 'byKey' | 'mappings'>,
    /** Ids are 1..space. */
    readonly space: number,
  ) {}

  /** The id that names the pinhole of mapping key `key`. */
  idOf(key: string): number | undefined {
    return this.ids.get(key);
  }

  /** The mapping key an id names, if it names one. */
  keyOf(id: number): string | undefined {
    return this.keys.get(id);
  }

  /**
   * A free id, held as pending until its AddPinhole settles; undefined when
   * every id names a live pinhole or a pending one. 16-bit, unique among
   * live pinholes, and not reused at once: a counter.
   */
  reserve(): number | undefined {
    for (let i = 0; i < this.space; i++) {
      const id = this.next;
      this.next = (this.next % this.space) + 1;
      if (this.pending.has(id)) continue;
      const held = this.keys.get(id);
      if (held !== undefined && this.service.byKey(held)) continue;
      if (held !== undefined) this.forget(held);
      this.pending.add(id);
      return id;
    }
    return undefined;
  }

  /** The AddPinhole that reserved `id` is over, granted or not. */
  settle(id: number): void {
    this.pending.delete(id);
  }

  /** `key`'s pinhole is named `id` now. Two AddPinholes of one new pinhole at once: the later tag is the one stored, so it is the one kept. */
  name(key: string, id: number): void {
    const earlier = this.ids.get(key);
    if (earlier !== undefined && earlier !== id) this.keys.delete(earlier);
    this.keys.set(id, key);
    this.ids.set(key, id);
  }

  /** The pinhole of `key` is gone: its id is free. */
  forget(key: string): void {
    const id = this.ids.get(key);
    this.ids.delete(key);
    if (id !== undefined) this.keys.delete(id);
  }

  /**
   * Once, before the first action: the ids of pinholes already in the table
   * (restored from the store at start) are indexed, and the counter moves
   * past them, so a new pinhole never gets a restored one's id.
   */
  indexRestored(): void {
    if (this.indexed) return;
    this.indexed = true;
    let highest = 0;
    for (const m of this.service.mappings()) {
      const id = pinholeIdOfTag(m.doorTag);
      if (id === undefined || id > this.space || this.keys.has(id)) continue;
      this.name(keyOf(m), id);
      highest = Math.max(highest, id);
    }
    this.next = (highest % this.space) + 1;
  }
}
