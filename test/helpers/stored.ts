// Stored mappings for the durable store's tests: one host, one port, an hour
// to live from a fixed epoch on boot 'boot-1'.

import { mustParseIp } from '../../src/net/address.js';
import type { StoredMapping } from '../../src/state/store.js';

export const EPOCH = { wall: 1_800_000_000_000, mono: 1_000_000, bootId: 'boot-1' };

export function storedMapping(port: number, over: Partial<StoredMapping> = {}): StoredMapping {
  return {
    key: `map|192.168.77.10|17|${port}`,
    kind: 'map',
    family: 4,
    internalAddress: mustParseIp('192.168.77.10'),
    protocol: 17,
    internalPort: port,
    externalAddress: mustParseIp('198.51.100.1'),
    externalPort: port,
    filters: [],
    origin: 'pcp',
    owner: mustParseIp('192.168.77.10'),
    description: '',
    lifetime: 3600,
    expiresWall: EPOCH.wall + 3_600_000,
    expiresMono: EPOCH.mono + 3_600_000,
    bootId: EPOCH.bootId,
    ...over,
  };
}
