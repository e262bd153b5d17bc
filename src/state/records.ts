// What the durable store (store.ts) writes: a mapping and the epoch start as
// records, with their times on both clocks; a mapping both ways (`toStored`
// for the journal and the snapshot, `fromStored` when a restart brings it
// back); the journal record each change of the table writes; and how much
// time a record has left on this boot.

import { normalizePrefix, type IpAddress } from '../net/address.js';
import { keyOf, makeMapping, type Mapping, type Origin, type RemoteFilter } from '../domain/mapping.js';
import type { Clock } from './clock.js';

/** A mapping as stored: absolute expiry on both clocks, and the boot the monotonic one belongs to. */
export interface StoredMapping {
  key: string;
  kind: 'map' | 'peer';
  family: 4 | 6;
  internalAddress: IpAddress;
  protocol: number;
  internalPort: number;
  externalAddress: IpAddress;
  externalPort: number;
  filters: [IpAddress, number, number][];
  remotePeer?: [IpAddress, number];
  nonce?: string;
  origin: Origin;
  /** The mapping's client (Mapping.client); the key keeps the name stores were first written with. */
  owner: IpAddress;
  description: string;
  /** Mapping.doorTag: stored with the mapping, in the same record, so it is durable exactly when the mapping is. */
  doorTag?: string;
  lifetime: number;
  /** Where the last request came from (PCP mapping updates go there, RFC 6887 §14.2). */
  clientPort?: number;
  /** Mapping.upstream (RFC 7648 proxy); absent in stores written before it existed, and on lines with no upstream. */
  upstream?: StoredUpstream;
  expiresWall: number;
  expiresMono: number;
  bootId: string;
}

/** The upstream part, its expiry on the wall clock; on load it keeps its distance to the mapping's own expiry. */
export interface StoredUpstream {
  address: IpAddress;
  port: number;
  nonce: string;
  lifetime: number;
  expiresWall: number;
}

export interface EpochStart {
  wall: number;
  mono: number;
  bootId: string;
}

export type JournalRecord =
  /** `mapping`: the table's own (immutable) mapping the record was made from, which the store keeps once the record is written, instead of the stored form. */
  | { op: 'put'; at: number; m: StoredMapping; mapping?: Mapping }
  | { op: 'del'; at: number; key: string }
  | { op: 'epoch'; at: number; epoch: EpochStart };

export function toStored(m: Mapping, wallNow: number, monoNow: number, bootId: string): StoredMapping {
  return {
    key: keyOf(m),
    kind: m.kind,
    family: m.family,
    internalAddress: m.internalAddress,
    protocol: m.protocol,
    internalPort: m.internalPort,
    externalAddress: m.externalAddress,
    externalPort: m.externalPort,
    filters: m.filters.map((f) => [f.prefix.address, f.prefix.length, f.port]),
    remotePeer: m.remotePeer ? [m.remotePeer.address, m.remotePeer.port] : undefined,
    nonce: m.nonce,
    origin: m.origin,
    owner: m.client,
    description: m.description,
    doorTag: m.doorTag,
    lifetime: m.lifetime,
    clientPort: m.clientPort,
    upstream: m.upstream
      ? { address: m.upstream.externalAddress, port: m.upstream.externalPort, nonce: m.upstream.nonce, lifetime: m.upstream.lifetime, expiresWall: wallNow + (m.upstream.expiresAt - monoNow) }
      : undefined,
    expiresWall: wallNow + (m.expiresAt - monoNow),
    expiresMono: m.expiresAt,
    bootId,
  };
}

/** Frozen: a list every restored mapping without filters shares can never be changed through one of them. */
const NO_FILTERS: readonly RemoteFilter[] = Object.freeze([]);

/** The mapping a stored record describes, as `id`, ending at monotonic `expiresAt` (what it has left, counted on this boot's clock). */
export function fromStored(s: StoredMapping, id: number, expiresAt: number): Mapping {
  const terms = {
    kind: s.kind,
    family: s.family,
    internalAddress: s.internalAddress,
    protocol: s.protocol,
    internalPort: s.internalPort,
    externalAddress: s.externalAddress,
    externalPort: s.externalPort,
    // Most mappings have none: one shared empty list, not one each.
    filters: s.filters.length ? s.filters.map(([address, length, port]) => ({ prefix: normalizePrefix(address, length), port })) : NO_FILTERS,
    remotePeer: s.remotePeer ? { address: s.remotePeer[0], port: s.remotePeer[1] } : undefined,
    nonce: s.nonce,
    origin: s.origin,
    client: s.owner,
    description: s.description,
    doorTag: s.doorTag,
    lifetime: s.lifetime,
    clientPort: s.clientPort,
    upstream: s.upstream
      ? {
          externalAddress: s.upstream.address,
          externalPort: s.upstream.port,
          nonce: s.upstream.nonce,
          lifetime: s.upstream.lifetime,
          // Both expiries were written at once: their distance is the same on either clock.
          expiresAt: expiresAt + (s.upstream.expiresWall - s.expiresWall),
        }
      : undefined,
  };
  return makeMapping(terms, id, expiresAt - s.lifetime * 1000, expiresAt);
}

/** The record of a mapping granted, renewed or moved. */
export function putRecord(m: Mapping, clock: Clock): JournalRecord {
  const wall = clock.wall();
  return { op: 'put', at: wall, m: toStored(m, wall, clock.now(), clock.bootId()), mapping: m };
}

/** The record of a mapping that left the table (the on-disk op keeps its first name, 'del'). */
export function removalRecord(m: Mapping, clock: Clock): JournalRecord {
  return { op: 'del', at: clock.wall(), key: keyOf(m) };
}

/**
 * Milliseconds a stored mapping has left now. Same boot: the monotonic clock
 * is exact whatever the wall clock did. After a reboot only the wall clock
 * carries over; if it is behind the newest record (no RTC yet, or stepped
 * back) it cannot be trusted, and the mapping keeps what it had left when
 * last written, counted from now — never more than its granted lifetime.
 */
export function remainingMs(s: StoredMapping, now: { mono: number; wall: number; bootId: string }, lastWriteWall: number): number {
  if (s.bootId === now.bootId) return s.expiresMono - now.mono;
  if (now.wall >= lastWriteWall) return s.expiresWall - now.wall;
  return Math.min(s.lifetime * 1000, s.expiresWall - lastWriteWall);
}

/**
 * What the store keeps of each mapping its files hold: the table's own
 * Mapping the record was made from (immutable: a renewal is a new one) or,
 * for one read back at start and not adopted by a restore, its stored form.
 * Not a second copy of every mapping beside the table's.
 */
export type Kept = StoredMapping | Mapping;

export const isStored = (k: Kept): k is StoredMapping => 'bootId' in k;

/** A kept mapping's time left on this boot: a Mapping's expiry is already on this boot's clock. */
export function keptRemainingMs(k: Kept, now: { mono: number; wall: number; bootId: string }, lastWriteWall: number): number {
  return isStored(k) ? remainingMs(k, now, lastWriteWall) : k.expiresAt - now.mono;
}

/** A kept mapping as a snapshot writes it: a Mapping on the clocks of `now`, as a put record made then would. */
export function keptForm(k: Kept, now: { mono: number; wall: number; bootId: string }): StoredMapping {
  return isStored(k) ? k : toStored(k, now.wall, now.mono, now.bootId);
}

/** The epoch start on this boot's monotonic clock, by the same rules. */
export function epochStartMono(e: EpochStart, now: { mono: number; wall: number; bootId: string }, lastWriteWall: number): number {
  if (e.bootId === now.bootId) return e.mono;
  const elapsed = now.wall >= lastWriteWall ? now.wall - e.wall : lastWriteWall - e.wall;
  return now.mono - Math.max(0, elapsed);
}
