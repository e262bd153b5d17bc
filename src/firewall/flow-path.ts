// What the ways of forgetting live flows share (src/firewall/conntrack.ts
// picks one): the selectors a run is given, and the face each way shows.

import type { IpAddress } from '../net/address.js';

/**
 * Flows to forget: by their original source, by the external address and
 * port they were translated to, or by the LAN endpoint they reach from
 * outside (`destination`: the reply's source — after DNAT the internal
 * address and port, for an IPv6 pinhole its own address and port; either
 * family).
 */
export type FlowSelector =
  | { by: 'source'; protocol: number; address: IpAddress; port: number }
  | { by: 'translated-to'; protocol: number; address: IpAddress; port: number }
  | { by: 'destination'; protocol: number; address: IpAddress; port: number };

/** One key per selector (the same text for the same flows): queues, sets and matching. */
export const selectorKey = (by: FlowSelector['by'], protocol: number, address: string, port: number): string => `${by} ${protocol} ${address} ${port}`;

/** One way of forgetting flows. false: this path failed on these selectors. */
export interface FlowPath {
  readonly name: 'netlink' | 'tool';
  forget(selectors: readonly FlowSelector[]): Promise<boolean>;
}
