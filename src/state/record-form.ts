// How a record is laid out in a line's JSON (the line itself, `CRC32 JSON`,
// is store.ts). Since store version 2 a mapping is a positional array, not
// an object with a name per field: a put line is ~190 bytes instead of ~430,
// so a renewal writes less than half to the router's flash, and a restart
// parses a 100 000-mapping snapshot of 19 MB instead of 48 MB, into arrays
// (no property names to match). A `del` line is an array too; the rare
// lines (header, end, epoch) stay objects.
//
//   put   ["put", at, M]
//   del   ["del", at, key]
//   M     [key, kind, family, internalAddress, protocol, internalPort,
//          externalAddress, externalPort, filters, nonce, origin, owner,
//          description, lifetime, clientPort, expiresWall, expiresMono,
//          bootId, extra?]
//
// In M, `key` is 0 when it is the one the mapping's fields give (mappingKey;
// written out in full otherwise, so a record keeps the key it was stored
// under), `externalAddress` and `owner` are 0 when they are the internal
// address (a pinhole), `nonce` and `clientPort` are null when absent, and
// `extra` ({remotePeer, doorTag, upstream}, each only when present) is left
// off when none is. Version 1's object lines are still read: a store an
// older daemon wrote opens, and its next snapshot is written in this form.

import { mappingKey } from '../domain/mapping.js';
import type { IpAddress } from '../net/address.js';
import type { JournalRecord, StoredMapping } from './records.js';

type Extra = Pick<StoredMapping, 'remotePeer' | 'doorTag' | 'upstream'>;
/** A decoded line: a record's fields by name, whichever form it was written in. */
type Line = { op: string } & Record<string, unknown>;

/** What JSON.stringify writes for a journal record. */
export function recordForm(r: JournalRecord): unknown {
  if (r.op === 'put') return ['put', r.at, mappingForm(r.m)];
  if (r.op === 'del') return ['del', r.at, r.key];
  return r;
}

function mappingForm(m: StoredMapping): unknown[] {
  const derived = mappingKey(m.kind, m.internalAddress, m.protocol, m.internalPort, m.remotePeer && { address: m.remotePeer[0], port: m.remotePeer[1] });
  const form: unknown[] = [
    m.key === derived ? 0 : m.key,
    m.kind,
    m.family,
    m.internalAddress,
    m.protocol,
    m.internalPort,
    m.externalAddress === m.internalAddress ? 0 : m.externalAddress,
    m.externalPort,
    m.filters,
    m.nonce ?? null,
    m.origin,
    m.owner === m.internalAddress ? 0 : m.owner,
    m.description,
    m.lifetime,
    m.clientPort ?? null,
    m.expiresWall,
    m.expiresMono,
    m.bootId,
  ];
  if (m.remotePeer !== undefined || m.doorTag !== undefined || m.upstream !== undefined) {
    const extra: Extra = {};
    if (m.remotePeer !== undefined) extra.remotePeer = m.remotePeer;
    if (m.doorTag !== undefined) extra.doorTag = m.doorTag;
    if (m.upstream !== undefined) extra.upstream = m.upstream;
    form.push(extra);
  }
  return form;
}

/**
 * The record a parsed line holds, in either version's form; undefined for
 * anything else (a line whose CRC matched but whose shape does not is
 * damage all the same). Objects (version 1, and the rare lines) are taken
 * as they are, as version 1 always read them.
 */
export function fromForm(v: unknown): Line | undefined {
  if (!Array.isArray(v)) return typeof v === 'object' && v !== null && typeof (v as { op?: unknown }).op === 'string' ? (v as Line) : undefined;
  const [op, at, body] = v as [unknown, unknown, unknown];
  if (typeof at !== 'number' || v.length !== 3) return undefined;
  if (op === 'del') return typeof body === 'string' ? { op, at, key: body } : undefined;
  if (op !== 'put' || !Array.isArray(body)) return undefined;
  const m = mappingFrom(body);
  return m && { op, at, m };
}

const isText = (x: unknown): x is string => typeof x === 'string';
const isNumber = (x: unknown): x is number => typeof x === 'number';

function mappingFrom(f: unknown[]): StoredMapping | undefined {
  if (f.length !== 18 && f.length !== 19) return undefined;
  // By index, not destructured: a destructuring pattern walks the array's iterator, per record.
  const key = f[0];
  const kind = f[1];
  const family = f[2];
  const internalAddress = f[3];
  const protocol = f[4];
  const internalPort = f[5];
  const externalAddress = f[6];
  const externalPort = f[7];
  const filters = f[8];
  const nonce = f[9];
  const origin = f[10];
  const owner = f[11];
  const description = f[12];
  const lifetime = f[13];
  const clientPort = f[14];
  const expiresWall = f[15];
  const expiresMono = f[16];
  const bootId = f[17];
  const extra = f[18];
  if (
    !(key === 0 || isText(key)) ||
    (kind !== 'map' && kind !== 'peer') ||
    (family !== 4 && family !== 6) ||
    !isText(internalAddress) ||
    !isNumber(protocol) ||
    !isNumber(internalPort) ||
    !(externalAddress === 0 || isText(externalAddress)) ||
    !isNumber(externalPort) ||
    !Array.isArray(filters) ||
    !(nonce === null || isText(nonce)) ||
    !isText(origin) ||
    !(owner === 0 || isText(owner)) ||
    !isText(description) ||
    !isNumber(lifetime) ||
    !(clientPort === null || isNumber(clientPort)) ||
    !isNumber(expiresWall) ||
    !isNumber(expiresMono) ||
    !isText(bootId) ||
    !(extra === undefined || (typeof extra === 'object' && extra !== null && !Array.isArray(extra)))
  ) {
    return undefined;
  }
  const x = (extra ?? {}) as Extra;
  const address = internalAddress as IpAddress;
  const remote = x.remotePeer && { address: x.remotePeer[0], port: x.remotePeer[1] };
  const m: StoredMapping = {
    key: key === 0 ? mappingKey(kind, address, protocol, internalPort, remote) : key,
    kind,
    family,
    internalAddress: address,
    protocol,
    internalPort,
    externalAddress: externalAddress === 0 ? address : (externalAddress as IpAddress),
    externalPort,
    filters: filters as StoredMapping['filters'],
    nonce: nonce ?? undefined,
    origin: origin as StoredMapping['origin'],
    owner: owner === 0 ? address : (owner as IpAddress),
    description,
    lifetime,
    clientPort: clientPort ?? undefined,
    expiresWall,
    expiresMono,
    bootId,
  };
  // The rare parts only where present: three empty fields on every record are 24 bytes a mapping in the store's copy.
  if (x.remotePeer !== undefined) m.remotePeer = x.remotePeer;
  if (x.doorTag !== undefined) m.doorTag = x.doorTag;
  if (x.upstream !== undefined) m.upstream = x.upstream;
  return m;
}
