// What `portcullis ls` (alias `list`) shows: every opening, one row each. The
// control socket serves it from the running daemon, with each mapping's ID and
// device; the CLI builds the same rows from a store no daemon answers for
// (no ID or device there: IDs live only while a daemon runs).

import type { Mapping, Origin } from '../domain/mapping.js';
import type { Family } from '../net/address.js';
import { protocolName } from '../net/ipproto.js';
import { describeStatic, type LoadedPolicy } from '../policy/load.js';
import type { MappingService } from '../service/mapping-service.js';

export interface ListedMapping {
  /** The mapping's ID in the running daemon (`portcullis rm ID`); absent when read from the store. */
  id?: number;
  /** Its device: the DHCP lease's host name, else the link-layer address; absent when unknown. */
  device?: string;
  origin: string;
  kind: string;
  protocol: string;
  internal: string;
  external: string;
  /** Behind the ISP's NAT: where upstream's PCP server maps it (RFC 7648), the address and port its client was told. */
  upstream?: string;
  /** Seconds left, or 'static'. */
  lifetime: number | 'static';
  filters: string[];
  client: string;
  description: string;
}

export interface Listing {
  mappings: ListedMapping[];
  staticPinholes: { name: string; rule: string }[];
}

/** The fields of a mapping a row shows, wherever the mapping was read from. */
export interface ListedFields {
  origin: string;
  kind: string;
  protocol: number;
  internalAddress: string;
  internalPort: number;
  externalAddress: string;
  externalPort: number;
  filters: readonly { address: string; length: number; port: number }[];
  client: string;
  description: string;
}

/** Every opening: client mappings, static forwards and static pinholes. */
export function listing(service: MappingService, policy: LoadedPolicy, deviceOf: (m: Mapping) => string | undefined = () => undefined): Listing {
  const mappings = service.mappings().map((m) => rowOf(service, m, deviceOf(m)));
  // Device openings are listed here too: they are rules like the pinholes (their IPv4 forwards are rows above).
  const staticPinholes = policy.statics.filter((s) => s.kind === 'pinhole' || s.kind === 'device').map((s) => ({ name: s.name, rule: describeStatic(s) }));
  return { mappings, staticPinholes };
}

/** One mapping of the running daemon as a row: with its ID, and its device where known. */
export function rowOf(service: MappingService, m: Mapping, device?: string): ListedMapping {
  const row = listedMapping(fieldsOf(m), m.origin === 'static' ? 'static' : service.remaining(m));
  const upstream = m.upstream ? { upstream: `${m.upstream.externalAddress}:${m.upstream.externalPort}` } : {};
  return { id: m.id, ...(device !== undefined ? { device } : {}), ...row, ...upstream };
}

export interface MappingCounts {
  total: number;
  byOrigin: Record<Origin, number>;
  byFamily: { ipv4: number; ipv6: number };
}

/** How many mappings by origin and by family: of the running daemon's table, or of a store. */
export function mappingCounts(mappings: Iterable<{ origin: Origin; family: Family }>): MappingCounts {
  const c: MappingCounts = { total: 0, byOrigin: { pcp: 0, natpmp: 0, upnp: 0, static: 0 }, byFamily: { ipv4: 0, ipv6: 0 } };
  for (const m of mappings) {
    c.total++;
    c.byOrigin[m.origin]++;
    c.byFamily[m.family === 4 ? 'ipv4' : 'ipv6']++;
  }
  return c;
}

export function listedMapping(m: ListedFields, lifetime: number | 'static'): ListedMapping {
  const bracket = (a: string) => (a.includes(':') ? `[${a}]` : a);
  return {
    origin: m.origin,
    kind: m.kind,
    protocol: protocolName(m.protocol),
    internal: `${bracket(m.internalAddress)}:${m.internalPort}`,
    external: `${bracket(m.externalAddress)}:${m.externalPort}`,
    lifetime,
    filters: m.filters.map((f) => `${f.address}/${f.length}${f.port ? `:${f.port}` : ''}`),
    client: m.client,
    description: m.description,
  };
}

function fieldsOf(m: Mapping): ListedFields {
  return { ...m, filters: m.filters.map((f) => ({ address: f.prefix.address, length: f.prefix.length, port: f.port })) };
}
