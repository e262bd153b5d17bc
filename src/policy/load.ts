// The admin's policy file → a `RulePolicy` plus static openings. YAML or JSON
// (JSON is read by the same YAML 1.2 parser, so both get line numbers);
// validated by schema/policy.schema.json, then checked for what a schema
// cannot say (address syntax, ranges, duplicate names). Every problem is
// reported at once, each naming the file, the line, the JSON path and what
// was expected. Nothing here touches a running daemon: a file that fails to
// load changes nothing.

import { readFileSync } from 'node:fs';
import type { ErrorObject, ValidateFunction } from 'ajv';
import type { Document, LineCounter } from 'yaml';
import { yaml } from './yaml-lazy.js';
import { familyOf, isMulticast, isUnspecified, parseIp } from '../net/address.js';
import { IPPROTO_TCP, IPPROTO_UDP, protocolByName, protocolName } from '../net/ipproto.js';
import type { DeviceOpening, StaticOpening } from '../domain/mapping.js';
import type { Via } from '../domain/mapping.js';
import { identifierPattern } from './device-openings.js';
import { BASE_LIMITS, RulePolicy, type Limits, type Rule, type RuleOperation } from './policy.js';
import { formatRange, parseAddressPattern, parsePortRange, rangesSize, type AddressPattern, type PortRange } from '../domain/patterns.js';
import { validate as generated } from '../generated/policy-validate.js';

/** Largest policy file read (a policy is a few KiB; this bounds a mistake like pointing at a log). */
export const MAX_FILE_BYTES = 1 << 20;
/**
 * Ports one device opening may name: each is an IPv4 forward of its own (a
 * rule, a held port and a mapping), so a range like 1-65535 is refused.
 */
export const MAX_DEVICE_PORTS = 64;

export class PolicyError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
  }
}

export interface LoadedPolicy {
  readonly source: string;
  readonly policy: RulePolicy;
  readonly rules: readonly Rule[];
  readonly statics: readonly StaticOpening[];
}

// --- the file's shape (what the schema admits) ---------------------------

type OneOrMany<T> = T | T[];
interface FileLimits {
  maxLifetime?: number;
  maxMappingsPerClient?: number;
  requestsPerSecond?: number;
  burst?: number;
  thirdParty?: boolean;
  remotePeers?: OneOrMany<string>;
  externalPortMayDiffer?: boolean;
}
type FilePorts = OneOrMany<number | string>;
interface FileRule {
  name?: string;
  description?: string;
  action: 'allow' | 'deny';
  match?: {
    client?: OneOrMany<string>;
    interface?: OneOrMany<string>;
    protocol?: 'udp' | 'tcp' | 'any';
    internalPorts?: FilePorts;
    externalPorts?: FilePorts;
    via?: OneOrMany<Via>;
    operation?: OneOrMany<RuleOperation>;
  };
  limits?: FileLimits;
}
export interface FileStatic {
  name: string;
  description?: string;
  pinhole?: { to: string; protocol: 'udp' | 'tcp' | 'any'; ports: FilePorts; from?: OneOrMany<string> };
  forward?: { protocol: 'udp' | 'tcp'; port: number; to: string; toPort?: number; from?: OneOrMany<string> };
  device?: { mac: string; protocol: 'udp' | 'tcp' | 'any'; ports: FilePorts; from?: OneOrMany<string>; identifier?: string };
}
export interface PolicyDocument {
  version: 1;
  defaults?: FileLimits;
  rules: FileRule[];
  static?: FileStatic[];
}

/**
 * The shipped default, in the file's own language: what a router vendor
 * would ship. examples/default-policy.yaml is the same policy with comments
 * (a test keeps the two equal).
 */
export const DEFAULT_POLICY: PolicyDocument = {
  version: 1,
  rules: [
    {
      name: 'own-high-ports',
      description: 'Each LAN host may open UDP and TCP ports 1024-65535 to itself.',
      action: 'allow',
      match: { internalPorts: '1024-65535', externalPorts: '1024-65535' },
      limits: { maxLifetime: 86400, maxMappingsPerClient: 128, requestsPerSecond: 10, thirdParty: false },
    },
  ],
};

/** The schema's validator, generated at build time (scripts/make-validators.mjs): no compile at start. */
const validate = generated as unknown as ValidateFunction<PolicyDocument>;

export function loadPolicyFile(file: string, now?: () => number): LoadedPolicy {
  let text: string;
  try {
    const buf = readFileSync(file);
    if (buf.length > MAX_FILE_BYTES) throw new Error(`larger than ${MAX_FILE_BYTES} bytes`);
    text = buf.toString('utf8');
  } catch (err) {
    throw new PolicyError([`${file}: cannot read: ${(err as Error).message}`]);
  }
  return parsePolicyText(text, file, now);
}

export function parsePolicyText(text: string, source: string, now?: () => number): LoadedPolicy {
  const { LineCounter, parseDocument } = yaml();
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    throw new PolicyError(doc.errors.map((e) => `${source}:${lines.linePos(e.pos[0]).line}: not valid YAML/JSON: ${e.message.split('\n')[0]}`));
  }
  const data: unknown = doc.toJS({ maxAliasCount: 0 });
  const at = (path: readonly (string | number)[]) => `${source}:${lineOf(doc, lines, path)}: ${pointer(path)}`;
  return compile(data, source, at, now);
}

/** The built-in default (used without --policy). */
export function builtinPolicy(now?: () => number): LoadedPolicy {
  return policyFromDocument(DEFAULT_POLICY, '(built-in default policy)', now);
}

/** A policy given as data (tests, the built-in default); validated like a file. */
export function policyFromDocument(doc: PolicyDocument, source: string, now?: () => number): LoadedPolicy {
  return compile(structuredClone(doc), source, (p) => `${source}: ${pointer(p)}`, now);
}

function compile(data: unknown, source: string, at: (path: readonly (string | number)[]) => string, now?: () => number): LoadedPolicy {
  if (!validate(data)) throw new PolicyError(schemaProblems(validate.errors ?? [], data, at));
  const problems: string[] = [];
  const c = new Compiler(at, problems);
  const defaults = c.limits(data.defaults ?? {}, BASE_LIMITS, ['defaults']);
  const rules = data.rules.map((r, i) => c.rule(r, i, defaults));
  const statics = (data.static ?? []).map((s, i) => c.static(s, i)).filter((s): s is StaticOpening => s !== undefined);
  c.unique(rules.map((r, i) => [r.name, ['rules', i, 'name']]), 'rule');
  c.unique(statics.map((s, i) => [s.name, ['static', i, 'name']]), 'static opening');
  c.forwardClashes(data.static ?? [], statics);
  if (problems.length) throw new PolicyError(problems);
  return { source, policy: new RulePolicy(rules, now), rules, statics };
}

class Compiler {
  constructor(
    private readonly at: (path: readonly (string | number)[]) => string,
    private readonly problems: string[],
  ) {}

  private fail(path: readonly (string | number)[], expected: string, got: unknown): void {
    this.problems.push(`${this.at(path)}: expected ${expected}; got ${JSON.stringify(got)}`);
  }

  patterns(v: OneOrMany<string>, path: (string | number)[], family?: 4 | 6, noMask = false): AddressPattern[] {
    const list = Array.isArray(v) ? v : [v];
    const out: AddressPattern[] = [];
    list.forEach((text, i) => {
      const p = Array.isArray(v) ? [...path, i] : path;
      const r = parseAddressPattern(text);
      if (!r.ok) return this.fail(p, r.expected, text);
      if (family && r.value.family !== family) return this.fail(p, `an IPv${family} address pattern`, text);
      if (noMask && r.value.form === 'mask') return this.fail(p, 'an address or CIDR prefix (a mask is not possible here)', text);
      out.push(r.value);
    });
    return out;
  }

  ports(v: FilePorts, path: (string | number)[]): PortRange[] {
    const list = Array.isArray(v) ? v : [v];
    const out: PortRange[] = [];
    list.forEach((item, i) => {
      const r = parsePortRange(item);
      if (!r.ok) return this.fail(Array.isArray(v) ? [...path, i] : path, r.expected, item);
      out.push(r.value);
    });
    return out;
  }

  limits(l: FileLimits, base: Limits, path: (string | number)[]): Limits {
    const rps = l.requestsPerSecond ?? base.requestsPerSecond;
    return {
      maxLifetime: l.maxLifetime ?? base.maxLifetime,
      maxMappingsPerClient: l.maxMappingsPerClient ?? base.maxMappingsPerClient,
      externalPorts: base.externalPorts,
      requestsPerSecond: rps,
      // A burst of twice the rate lets an app open its handful of ports at start.
      burst: l.burst ?? (l.requestsPerSecond !== undefined ? Math.max(1, Math.ceil(rps * 2)) : base.burst),
      thirdParty: l.thirdParty ?? base.thirdParty,
      remotePeers: l.remotePeers !== undefined ? this.patterns(l.remotePeers, [...path, 'remotePeers']) : base.remotePeers,
      externalPortMayDiffer: l.externalPortMayDiffer ?? base.externalPortMayDiffer,
    };
  }

  rule(r: FileRule, index: number, defaults: Limits): Rule {
    const path = ['rules', index];
    const m = r.match ?? {};
    if (r.action === 'deny' && r.limits) this.problems.push(`${this.at([...path, 'limits'])}: a deny rule takes no limits`);
    const list = <T>(v: OneOrMany<T> | undefined) => (v === undefined ? undefined : Array.isArray(v) ? v : [v]);
    const externalPorts = m.externalPorts !== undefined ? this.ports(m.externalPorts, [...path, 'match', 'externalPorts']) : undefined;
    return {
      name: r.name ?? `#${index + 1}`,
      index,
      action: r.action,
      match: {
        client: m.client !== undefined ? this.patterns(m.client, [...path, 'match', 'client']) : undefined,
        interface: list(m.interface),
        // 'any' has no number: the rule then matches every protocol.
        protocol: m.protocol === undefined ? undefined : protocolByName(m.protocol),
        internalPorts: m.internalPorts !== undefined ? this.ports(m.internalPorts, [...path, 'match', 'internalPorts']) : undefined,
        externalPorts,
        via: list(m.via),
        operation: list(m.operation),
      },
      limits: this.limits(r.limits ?? {}, defaults, [...path, 'limits']),
    };
  }

  static(s: FileStatic, index: number): StaticOpening | undefined {
    const path = ['static', index];
    if (s.pinhole) {
      const p = s.pinhole;
      const to = this.patterns(p.to, [...path, 'pinhole', 'to'], 6)[0];
      const from = p.from !== undefined ? this.patterns(p.from, [...path, 'pinhole', 'from'], 6, true) : undefined;
      const ports = this.ports(p.ports, [...path, 'pinhole', 'ports']);
      if (ports.some((r) => r.min === 0)) this.fail([...path, 'pinhole', 'ports'], 'ports from 1 to 65535', p.ports);
      if (!to) return undefined;
      const one = protocolByName(p.protocol);
      const protocols = one === undefined ? [IPPROTO_TCP, IPPROTO_UDP] : [one];
      return { kind: 'pinhole', name: s.name, to, protocols, ports, from };
    }
    if (s.device) return this.device(s.name, s.description, s.device, [...path, 'device']);
    const f = s.forward;
    if (!f) return undefined;
    const to = parseIp(f.to);
    if (!to || familyOf(to) !== 4 || isUnspecified(to) || isMulticast(to)) {
      this.fail([...path, 'forward', 'to'], 'an IPv4 unicast address of a LAN host', f.to);
      return undefined;
    }
    const from = f.from !== undefined ? this.patterns(f.from, [...path, 'forward', 'from'], 4, true) : undefined;
    return { kind: 'forward', name: s.name, protocol: protocolByName(f.protocol) ?? IPPROTO_TCP, port: f.port, to, toPort: f.toPort ?? f.port, from };
  }

  device(name: string, description: string | undefined, d: NonNullable<FileStatic['device']>, path: (string | number)[]): DeviceOpening | undefined {
    const mac = d.mac.toLowerCase();
    // The I/G bit: a group address is no one device.
    if ((parseInt(mac.slice(0, 2), 16) & 1) !== 0 || mac === '00:00:00:00:00:00') {
      this.fail([...path, 'mac'], "a device's own (unicast) link-layer address", d.mac);
      return undefined;
    }
    const ports = this.ports(d.ports, [...path, 'ports']);
    if (ports.some((r) => r.min === 0)) this.fail([...path, 'ports'], 'ports from 1 to 65535', d.ports);
    else if (rangesSize(ports) > MAX_DEVICE_PORTS) this.fail([...path, 'ports'], `at most ${MAX_DEVICE_PORTS} ports (each is an IPv4 forward of its own)`, d.ports);
    const from = d.from !== undefined ? this.patterns(d.from, [...path, 'from'], undefined, true) : undefined;
    const one = protocolByName(d.protocol);
    const identifier = d.identifier === undefined ? undefined : identifierPattern(d.identifier);
    if (d.identifier !== undefined && identifier === undefined) this.fail([...path, 'identifier'], 'an IPv6 interface identifier: the low 64 bits alone, such as ::10 or ::1:2:3:4 (no prefix, no /length, not ::)', d.identifier);
    return { kind: 'device', name, mac, protocols: one === undefined ? [IPPROTO_TCP, IPPROTO_UDP] : [one], ports, from, ...(description !== undefined ? { description } : {}), ...(identifier ? { identifier } : {}) };
  }

  unique(items: [string, (string | number)[]][], what: string): void {
    const seen = new Map<string, (string | number)[]>();
    for (const [name, path] of items) {
      const first = seen.get(name);
      if (first) this.problems.push(`${this.at(path)}: ${what} name ${JSON.stringify(name)} is already used at ${pointer(first)}`);
      else seen.set(name, path);
    }
  }

  /** One WAN port, one forward: a port forward or a device opening's IPv4 side. */
  forwardClashes(statics: readonly FileStatic[], compiled: readonly StaticOpening[]): void {
    const seen = new Map<string, number>();
    const claim = (key: string, i: number, path: (string | number)[]) => {
      const first = seen.get(key);
      if (first !== undefined && first !== i) this.problems.push(`${this.at(path)}: ${key} is already forwarded by /static/${first}`);
      else seen.set(key, i);
    };
    statics.forEach((s, i) => {
      if (s.forward) claim(`${s.forward.protocol}/${s.forward.port}`, i, ['static', i, 'forward', 'port']);
      const d = compiled.find((c) => c.name === s.name);
      if (s.device && d?.kind === 'device') {
        for (const p of d.protocols) for (const r of d.ports) for (let port = r.min; port <= r.max && port > 0; port++) claim(`${protocolName(p)}/${port}`, i, ['static', i, 'device', 'ports']);
      }
    });
  }
}

// --- error messages -------------------------------------------------------

/** What a value of each shared definition looks like, for messages. */
const EXPECTED_BY_DEFINITION: Record<string, string> = {
  ports: 'a port (0-65535), a range like "1024-65535", or a list of them',
  via: 'pcp, natpmp or upnp (or a list of them)',
  operation: 'map, pinhole, peer or third-party (or a list of them)',
  interfaces: 'an interface name (letters, digits, _ . -; at most 15) or a list of them',
  name: 'a name of letters, digits, _ . - (at most 63, starting with a letter or digit)',
  addresses: 'an address pattern (at most 100 characters) or a list of them',
};

function schemaProblems(errors: readonly ErrorObject[], data: unknown, at: (path: readonly (string | number)[]) => string): string[] {
  const out = new Map<string, string>();
  for (const e of errors) {
    // The branches of a oneOf report "missing pinhole" and "missing forward";
    // the oneOf error itself says it better.
    if (e.schemaPath.includes('/oneOf/')) continue;
    const path = parsePointer(e.instancePath);
    const got = valueAt(data, path);
    const def = /#\/definitions\/([A-Za-z]+)\//.exec(e.schemaPath)?.[1];
    const expectedByDef = def ? EXPECTED_BY_DEFINITION[def] : undefined;
    let msg: string;
    switch (e.keyword) {
      case 'required':
        msg = `missing required key '${(e.params as { missingProperty: string }).missingProperty}'`;
        break;
      case 'additionalProperties': {
        const key = (e.params as { additionalProperty: string }).additionalProperty;
        const allowed = allowedKeys(e.parentSchema);
        msg = `unknown key '${key}'${allowed.length ? ` (expected one of: ${allowed.join(', ')})` : ''}`;
        break;
      }
      case 'enum':
        msg = `expected one of ${((e.params as { allowedValues: unknown[] }).allowedValues).map(String).join(', ')}; got ${JSON.stringify(got)}`;
        break;
      case 'const':
        msg = `expected ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}; got ${JSON.stringify(got)}`;
        break;
      case 'oneOf':
        msg = `give exactly one of 'pinhole', 'forward' or 'device'`;
        break;
      case 'type':
        msg = `expected ${expectedByDef ?? (e.params as { type: string | string[] }).type.toString().replace(/,/g, ' or ')}; got ${describeType(got)}`;
        break;
      case 'pattern':
      case 'maxLength':
      case 'minimum':
      case 'maximum':
        msg = `expected ${expectedByDef ?? (e.message ?? 'a valid value').replace(/^must (be )?/, '')}; got ${JSON.stringify(got)}`;
        break;
      default:
        msg = `${e.message ?? 'invalid'}`;
    }
    const line = `${at(path)}: ${msg}`;
    out.set(line, line);
  }
  return [...out.values()];
}

function allowedKeys(parentSchema: unknown): string[] {
  const props = (parentSchema as { properties?: Record<string, unknown> } | undefined)?.properties;
  return props ? Object.keys(props).filter((k) => k !== '$schema') : [];
}

function describeType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}

function parsePointer(p: string): (string | number)[] {
  if (p === '') return [];
  return p
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function pointer(path: readonly (string | number)[]): string {
  return path.length ? '/' + path.map((s) => String(s).replace(/~/g, '~0').replace(/\//g, '~1')).join('/') : '(top level)';
}

function valueAt(data: unknown, path: readonly (string | number)[]): unknown {
  let v = data;
  for (const k of path) v = (v as Record<string | number, unknown> | undefined)?.[k];
  return v;
}

/** The line of the deepest node on `path` that exists (a missing key points at its parent). */
function lineOf(doc: Document, lines: LineCounter, path: readonly (string | number)[]): number {
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
    if (yaml().isNode(node) && node.range) return lines.linePos(node.range[0]).line;
  }
  return 1;
}

// --- summaries (policy check / explain) ----------------------------------

export function describeLimits(l: Limits): string {
  const parts = [
    `lifetime ≤ ${l.maxLifetime} s`,
    `${l.maxMappingsPerClient} mappings per client`,
    l.requestsPerSecond > 0 ? `${l.requestsPerSecond} requests/s per client (burst ${l.burst})` : 'no request rate limit',
    `external ports ${l.externalPorts.map(formatRange).join(', ') || 'none'}`,
    l.thirdParty ? 'may map for other hosts' : 'for itself only',
  ];
  if (l.remotePeers) parts.push(`remote peers only in ${l.remotePeers.map((p) => p.text).join(', ')}`);
  if (!l.externalPortMayDiffer) parts.push('external port = internal port');
  return parts.join('; ');
}

export function describeRule(r: Rule): string {
  const m = r.match;
  const parts: string[] = [];
  if (m.client) parts.push(`client ${m.client.map((p) => p.text).join(', ')}`);
  if (m.interface) parts.push(`interface ${m.interface.join(', ')}`);
  parts.push(m.protocol === undefined ? 'any protocol' : protocolName(m.protocol));
  if (m.internalPorts) parts.push(`internal ports ${m.internalPorts.map(formatRange).join(', ')}`);
  if (m.externalPorts) parts.push(`external ports ${m.externalPorts.map(formatRange).join(', ')}`);
  if (m.via) parts.push(`via ${m.via.join(', ')}`);
  if (m.operation) parts.push(`operation ${m.operation.join(', ')}`);
  return `${r.action} ${parts.join(', ')}`;
}

export function describeStatic(s: StaticOpening): string {
  const from = s.from ? ` from ${s.from.map((p) => p.text).join(', ')}` : '';
  const protos = (list: readonly number[]) => (list.length === 2 ? 'tcp+udp' : list.map(protocolName).join('+'));
  if (s.kind === 'pinhole') return `pinhole ${protos(s.protocols)} ${s.ports.map(formatRange).join(', ')} → ${s.to.text}${from}`;
  if (s.kind === 'device') {
    const iid = s.identifier ? ` and ${s.identifier.text.split('/')[0]} under any prefix` : '';
    return `device ${protos(s.protocols)} ${s.ports.map(formatRange).join(', ')} → ${s.mac} (its current IPv6 addresses${iid}; IPv4 forwarded from the same ports)${from}`;
  }
  return `forward ${protocolName(s.protocol)} ${s.port} → ${s.to}:${s.toPort}${from}`;
}

export function summarize(p: LoadedPolicy): string {
  const out = [`${p.source}: valid: ${p.rules.length} rule${p.rules.length === 1 ? '' : 's'}, ${p.statics.length} static opening${p.statics.length === 1 ? '' : 's'}`];
  for (const r of p.rules) {
    out.push(`  rule ${r.index + 1} ${JSON.stringify(r.name)}: ${describeRule(r)}`);
    if (r.action === 'allow') out.push(`      limits: ${describeLimits(r.limits)}`);
  }
  out.push('  otherwise: deny');
  for (const s of p.statics) out.push(`  static ${JSON.stringify(s.name)}: ${describeStatic(s)}`);
  return out.join('\n');
}
