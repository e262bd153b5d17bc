// MapRequest.replace 'own' (UPnP AddPortMapping): the suggested external
// port is required, and the client's own mappings in its way are replaced
// in the same change. This decides what is in the way and whether it may
// go; the service takes it out, and puts it back if the grant fails.

import { familyOf } from '../net/address.js';
import type { MappingTable } from '../state/table.js';
import type { Mapping } from '../domain/mapping.js';
import { heldBy, type MapRequest, type Refused } from '../domain/requests.js';
import { mayRemove } from './admission.js';

/**
 * What stands between `req` and its suggested external port. The client's
 * own (the same internal address, made through the same door) is replaced:
 * the mapping that holds the port for another internal port (`displaced`),
 * and `existing`, this endpoint's mapping, if it is on another port
 * (`moving`). Anything else is a refusal that names it, checked in that
 * order; so is one of the client's own that it may not remove.
 */
export function ownInTheWay(
  table: Pick<MappingTable, 'mapOnExternalPort'>,
  req: MapRequest,
  existing: Mapping | undefined,
  now: number,
): { ok: true; displaced: Mapping[]; moving: boolean } | Refused {
  // An IPv6 pinhole's external port is its internal one: nothing can stand in the way.
  if (familyOf(req.internalAddress) === 6) return { ok: true, displaced: [], moving: false };
  const port = req.suggestedExternalPort;
  const holder = table.mapOnExternalPort(req.protocol, port);
  const displaced = holder && holder !== existing ? [holder] : [];
  for (const m of displaced) {
    if (m.internalAddress !== req.internalAddress || m.origin !== req.via) {
      return heldBy(m, `external port ${port} is held by ${m.internalAddress}:${m.internalPort} (${m.origin})`);
    }
  }
  const moving = existing !== undefined && existing.externalPort !== port;
  if (existing && moving && existing.origin !== req.via) {
    return heldBy(existing, `${req.internalAddress}:${req.internalPort} is mapped by ${existing.origin} on external port ${existing.externalPort}`);
  }
  for (const m of moving && existing ? [...displaced, existing] : displaced) {
    const denied = mayRemove(m, req.client, req.nonce, now);
    if (denied) return denied;
  }
  return { ok: true, displaced, moving };
}
