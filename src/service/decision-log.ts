// The service's log lines about mappings: one per decision on a request (who
// asked what, and the verdict), and one per mapping that ends or moves
// without its client asking (expired, revoked, evicted, replaced).

import type { Logger } from '../log.js';
import type { Mapping } from '../domain/mapping.js';
import type { EndpointRequest, MapOutcome, RemoveOutcome } from '../domain/requests.js';

/** The decision on a request: who asked what, and the verdict. */
export function logDecision(log: Logger, op: 'map' | 'peer' | 'remove', req: EndpointRequest, out: MapOutcome | RemoveOutcome): void {
  // Each line's object written out whole, not spread from a shared base: one
  // object per request instead of two, on the path every request takes.
  if (!out.ok) {
    log.info({ event: op, via: req.via, client: req.client, internal: req.internalAddress, protocol: req.protocol, internalPort: req.internalPort, verdict: 'refused', refusal: out.refusal, detail: out.detail });
  } else if ('mapping' in out) {
    const m = out.mapping;
    log.info({ event: op, via: req.via, client: req.client, internal: req.internalAddress, protocol: req.protocol, internalPort: req.internalPort, verdict: 'granted', externalAddress: m.externalAddress, externalPort: m.externalPort, lifetime: out.lifetime, filters: m.filters.length });
  } else {
    log.info({ event: op, via: req.via, client: req.client, internal: req.internalAddress, protocol: req.protocol, internalPort: req.internalPort, verdict: 'removed', existed: out.removed !== undefined });
  }
}

/** A mapping the client did not end: `event` says how it went, `why` adds the rule or reason. */
export function logEnded(log: Logger, event: 'expired' | 'mapping-revoked' | 'mapping-evicted' | 'mapping-replaced', m: Mapping, why: Record<string, unknown> = {}): void {
  const fields = { event, via: m.origin, internal: m.internalAddress, protocol: m.protocol, internalPort: m.internalPort, externalPort: m.externalPort, ...why };
  if (event === 'expired' || event === 'mapping-replaced') log.info(fields);
  else log.warn(fields);
}
