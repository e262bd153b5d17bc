// Policy: who may open what. Rules are tried in order and the first whose
// match fits decides; what no rule matches is denied. The service only ever
// sees the `Policy` interface; `load.ts` turns the admin's file into one.

import { familyOf, formatPrefix, type IpAddress, type Prefix } from '../net/address.js';
import { protocolName } from '../net/ipproto.js';
import { RateLimiter } from '../net/rate-limit.js';
import type { RemoteFilter, Via } from '../domain/mapping.js';
import { formatRange, inRanges, intersectRanges, parseAddressPattern, patternCovers, patternMatches, type AddressPattern, type PortRange } from '../domain/patterns.js';

/** The request's kind as the service sees it ('peer' = PCP PEER). */
export type Operation = 'map' | 'peer';
/** What a rule can match on: an IPv4 mapping, an IPv6 pinhole, a PEER flow, or any request for another host. */
export type RuleOperation = 'map' | 'pinhole' | 'peer' | 'third-party';

export interface PolicyRequest {
  via: Via;
  operation: Operation;
  /** The address that sent the request. */
  client: IpAddress;
  /** The host the mapping is for (≠ client for a third-party request). */
  internalAddress: IpAddress;
  protocol: number;
  /** 0 = "all ports" (RFC 6887 §11.1). */
  internalPort: number;
  /** An external port the client insists on (PCP PREFER_FAILURE, UPnP AddPortMapping); absent for hints. */
  requiredExternalPort?: number;
  /** Remote peers the mapping would admit; empty = any remote. */
  filters?: readonly RemoteFilter[];
  /** The LAN interface the client is on, when known. */
  interface?: string;
}

export interface Limits {
  /** Seconds; the service also clamps to its configured [min, max]. */
  maxLifetime: number;
  maxMappingsPerClient: number;
  /** Disjoint inclusive ranges, in order, external ports may be allocated from: a gap is never allocated. */
  externalPorts: readonly PortRange[];
  /** Requests per second per client (0 = unlimited), and the bucket size. */
  requestsPerSecond: number;
  burst: number;
  /** May the client map for other LAN hosts. */
  thirdParty: boolean;
  /** Remote peers a mapping must be restricted to; undefined = any. */
  remotePeers?: readonly AddressPattern[];
  /** May an IPv4 mapping's external port differ from its internal port. */
  externalPortMayDiffer: boolean;
}

export type Verdict =
  | { allow: true; rule: string; index: number; limits: Limits }
  | { allow: false; rule: string; index?: number; reason: string };

export interface Policy {
  /** Pure: the same request gets the same verdict (rate limits are separate). */
  decide(req: PolicyRequest): Verdict;
  /** Takes one request token for `client` (and its host, src/net/hosts.ts) under the rule that allowed it; false when over its rate. */
  takeToken(verdict: Verdict & { allow: true }, client: IpAddress, host?: string): boolean;
}

/** A compiled rule (see load.ts for the file form). */
export interface Rule {
  readonly name: string;
  readonly index: number;
  readonly action: 'allow' | 'deny';
  readonly match: {
    readonly client?: readonly AddressPattern[];
    readonly interface?: readonly string[];
    /** undefined = any */
    readonly protocol?: number;
    readonly internalPorts?: readonly PortRange[];
    readonly externalPorts?: readonly PortRange[];
    readonly via?: readonly Via[];
    readonly operation?: readonly RuleOperation[];
  };
  readonly limits: Limits;
}

/** The limits an allow rule gets when neither it nor `defaults` says otherwise. */
export const BASE_LIMITS: Limits = {
  maxLifetime: 86400,
  maxMappingsPerClient: 128,
  externalPorts: [{ min: 1024, max: 65535 }],
  requestsPerSecond: 10,
  burst: 20,
  thirdParty: false,
  externalPortMayDiffer: true,
};

function operationsOf(req: Pick<PolicyRequest, 'operation' | 'client' | 'internalAddress'>): RuleOperation[] {
  const primary: RuleOperation = req.operation === 'peer' ? 'peer' : familyOf(req.internalAddress) === 6 ? 'pinhole' : 'map';
  return req.internalAddress !== req.client ? [primary, 'third-party'] : [primary];
}

/** Why a rule does not match (undefined = it matches); `explain` prints these. */
export function mismatch(rule: Rule, req: PolicyRequest): string | undefined {
  const m = rule.match;
  if (m.client && !m.client.some((p) => patternMatches(p, req.client))) return `client ${req.client} is not in ${m.client.map((p) => p.text).join(', ')}`;
  if (m.interface && (req.interface === undefined || !m.interface.includes(req.interface))) return `interface ${req.interface ?? '(unknown)'} is not ${m.interface.join(', ')}`;
  if (m.protocol !== undefined && req.protocol !== m.protocol) return `protocol is not ${protocolName(m.protocol)}`;
  if (m.internalPorts && !inRanges(m.internalPorts, req.internalPort)) return `internal port ${req.internalPort} is not in ${m.internalPorts.map(formatRange).join(', ')}`;
  if (m.externalPorts) {
    // An insisted-on port must be inside. A hint matches an allow rule (which
    // then allocates inside its range) but never a deny rule: the request
    // does not ask for the ports that rule keeps closed.
    if (req.requiredExternalPort !== undefined && !inRanges(m.externalPorts, req.requiredExternalPort)) {
      return `external port ${req.requiredExternalPort} is not in ${m.externalPorts.map(formatRange).join(', ')}`;
    }
    if (req.requiredExternalPort === undefined && rule.action === 'deny') return 'no particular external port is asked for';
  }
  if (m.via && !m.via.includes(req.via)) return `asked via ${req.via}, not ${m.via.join(', ')}`;
  if (m.operation) {
    const ops = operationsOf(req);
    if (!ops.some((o) => m.operation?.includes(o))) return `operation ${ops.join('+')} is not ${m.operation.join(', ')}`;
  }
  return undefined;
}

export class RulePolicy implements Policy {
  private readonly limiters = new Map<number, RateLimiter>();
  /** Each allow rule's limits with its allocation ranges worked out once. */
  private readonly limits = new Map<number, Limits>();

  constructor(
    readonly rules: readonly Rule[],
    private readonly now: () => number = () => performance.now(),
  ) {
    for (const r of rules) {
      if (r.action === 'allow') this.limits.set(r.index, effectiveLimits(r));
      if (r.action === 'allow' && r.limits.requestsPerSecond > 0) {
        this.limiters.set(r.index, new RateLimiter(r.limits.requestsPerSecond, r.limits.burst, 8192, this.now));
      }
    }
  }

  decide(req: PolicyRequest): Verdict {
    for (const rule of this.rules) {
      if (mismatch(rule, req) !== undefined) continue;
      if (rule.action === 'deny') return { allow: false, rule: rule.name, index: rule.index, reason: 'denied by rule' };
      const why = limitViolation(rule, req);
      if (why) return { allow: false, rule: rule.name, index: rule.index, reason: why };
      return { allow: true, rule: rule.name, index: rule.index, limits: this.limits.get(rule.index) ?? effectiveLimits(rule) };
    }
    return { allow: false, rule: '(default deny)', reason: 'no rule matches' };
  }

  takeToken(verdict: Verdict & { allow: true }, client: IpAddress, host?: string): boolean {
    const limiter = this.limiters.get(verdict.index);
    return limiter ? limiter.take(client, 1, host) : true;
  }
}

export const THIRD_PARTY_REASON = 'mappings for another host are not allowed';

/** What an allow rule refuses even though its match fits. */
function limitViolation(rule: Rule, req: PolicyRequest): string | undefined {
  const l = rule.limits;
  if (req.internalAddress !== req.client && !l.thirdParty) return THIRD_PARTY_REASON;
  if (l.remotePeers) {
    const filters = req.filters ?? [];
    if (filters.length === 0) return `the mapping must be restricted to remote peers in ${l.remotePeers.map((p) => p.text).join(', ')}`;
    for (const r of filters) {
      const inner = prefixPattern(r.prefix);
      if (!l.remotePeers.some((p) => patternCovers(p, inner))) return `remote peer ${r.prefix.address}/${r.prefix.length} is outside ${l.remotePeers.map((p) => p.text).join(', ')}`;
    }
  }
  if (!l.externalPortMayDiffer && req.requiredExternalPort !== undefined && req.requiredExternalPort !== req.internalPort && familyOf(req.internalAddress) === 4) {
    return `the external port must equal the internal port (${req.internalPort})`;
  }
  return undefined;
}

/**
 * Allocation ranges: the limits' ranges cut to the rule's external port
 * match, range by range. Never one span from the lowest to the highest: the
 * ports between two ranges are ones the admin left out.
 */
function effectiveLimits(rule: Rule): Limits {
  const ranges = rule.match.externalPorts;
  if (!ranges?.length) return rule.limits;
  return { ...rule.limits, externalPorts: intersectRanges(rule.limits.externalPorts, ranges) };
}

function prefixPattern(p: Prefix): AddressPattern {
  const parsed = parseAddressPattern(formatPrefix(p));
  if (!parsed.ok) throw new Error(`bad prefix ${formatPrefix(p)}`);
  return parsed.value;
}
