// The service's log lines about mappings: one per decision on a request (who
// asked what, and the verdict), and one per mapping that ends or moves
// without its client asking (expired, revoked, evicted, replaced).

import type { LogFields, Logger } from '../log.js';
import type { Mapping } from '../domain/mapping.js';
import type { EndpointRequest, MapOutcome, RemoveOutcome } from '../domain/requests.js';

/** The decision on a request: who asked what, and the verdict. */
export function logDecision(log: Logger, op: 'map' | 'peer' | 'remove', req: EndpointRequest, out: MapOutcome | RemoveOutcome): void {
  // One object per request, its verdict's fields added to it (not a base spread into a second one).
  const line: LogFields = { event: op, via: req.via, client: req.client, internal: req.internalAddress, protocol: req.protocol, internalPort: req.internalPort };
  if (!out.ok) {
    line.verdict = 'refused';
    line.refusal = out.refusal;
    line.detail = out.detail;
  } else if ('mapping' in out) {
    line.verdict = 'granted';
    line.externalAddress = out.mapping.externalAddress;
    line.externalPort = out.mapping.externalPort;
    line.lifetime = out.lifetime;
    line.filters = out.mapping.filters.length;
  } else {
    line.verdict = 'removed';
    line.existed = out.removed !== undefined;
  }
  log.info(line);
}

/** A mapping the client did not end: `event` says how it went, `why` adds the rule or reason. */
export function logEnded(log: Logger, event: 'expired' | 'mapping-revoked' | 'mapping-evicted' | 'mapping-replaced', m: Mapping, why: Record<string, unknown> = {}): void {
  const fields = { event, via: m.origin, internal: m.internalAddress, protocol: m.protocol, internalPort: m.internalPort, externalPort: m.externalPort, ...why };
  if (event === 'expired' || event === 'mapping-replaced') log.info(fields);
  else log.warn(fields);
}
