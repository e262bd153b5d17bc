// One entry of the kernel's neighbour table: an address on a LAN link and the
// link-layer address behind it (what src/net/neighbours.ts reads and
// src/net/neighbour-monitor.ts follows).

import type { IpAddress } from './address.js';

export interface Neighbour {
  readonly address: IpAddress;
  readonly interface: string;
  /** Link-layer address, lowercase. */
  readonly lladdr: string;
  /** Seconds since the kernel last changed the entry (`ip -s`), when it said. */
  readonly updated?: number;
}
