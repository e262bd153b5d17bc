// What `portcullis list` shows: every opening, one row each. The control
// socket serves it from the running daemon; the CLI builds the same rows from
// a store no daemon answers for.

import type { Mapping } from '../domain/mapping.js';
import { protocolName } from '../net/ipproto.js';
import { describeStatic, type LoadedPolicy } from '../policy/load.js';
import type { MappingService } from '../service/mapping-service.js';

export interface ListedMapping {
  origin: string;
  kind: string;
  protocol: string;
  internal: string;
  external: string;
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
export function listing(service: MappingService, policy: LoadedPolicy): Listing {
  const mappings = service.mappings().map((m) => listedMapping(fieldsOf(m), m.origin === 'static' ? 'static' : service.remaining(m)));
  const staticPinholes = policy.statics.filter((s) => s.kind === 'pinhole').map((s) => ({ name: s.name, rule: describeStatic(s) }));
  return { mappings, staticPinholes };
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
