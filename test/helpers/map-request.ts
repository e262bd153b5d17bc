// A MapRequest builder: a test names its usual client once, each call what differs.

import type { MapRequest } from '../../src/domain/requests.js';

export function mapRequests(base: Pick<MapRequest, 'client'> & Partial<MapRequest>): (o?: Partial<MapRequest>) => MapRequest {
  return (o = {}) => ({ via: 'pcp', internalAddress: base.client, protocol: 17, internalPort: 40000, suggestedExternalPort: 0, lifetime: 3600, ...base, ...o });
}
