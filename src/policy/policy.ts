// Policy: a pure function of (request, current usage) → verdict. The admin's
// policy file (a later issue) replaces `defaultPolicy`; the engine only ever
// sees the `Policy` interface.

import type { IpAddress } from '../net/address.js';
import { isMappableProtocol } from '../net/ipproto.js';
import type { Via } from '../service/types.js';

export type Operation = 'map' | 'peer';

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
}

export interface Limits {
  /** Seconds; the engine also clamps to its configured [min, max]. */
  maxLifetime: number;
  maxMappingsPerClient: number;
  /** Inclusive range external ports may be allocated from. */
  externalPorts: { min: number; max: number };
}

export type Verdict =
  | { allow: true; rule: string; limits: Limits }
  | { allow: false; rule: string; reason: string };

export interface Policy {
  decide(req: PolicyRequest): Verdict;
}

/**
 * The conservative default a router vendor would ship: each client for
 * itself only, UDP and TCP, ports 1024-65535, at most 128 mappings each.
 */
export const DEFAULT_LIMITS: Limits = {
  maxLifetime: 86400,
  maxMappingsPerClient: 128,
  externalPorts: { min: 1024, max: 65535 },
};

export function defaultPolicy(limits: Limits = DEFAULT_LIMITS): Policy {
  return {
    decide(req) {
      const rule = 'default';
      if (req.internalAddress !== req.client) {
        return { allow: false, rule, reason: 'mappings for another host are not allowed' };
      }
      if (!isMappableProtocol(req.protocol)) {
        return { allow: false, rule, reason: `protocol ${req.protocol} is not allowed (only UDP and TCP)` };
      }
      if (req.internalPort === 0) return { allow: false, rule, reason: 'all-ports mappings are not allowed' };
      if (req.internalPort < limits.externalPorts.min) {
        return { allow: false, rule, reason: `internal port ${req.internalPort} is below ${limits.externalPorts.min}` };
      }
      return { allow: true, rule, limits };
    },
  };
}
