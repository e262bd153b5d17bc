// What the ways of forgetting live flows share (src/firewall/conntrack.ts
// picks one): the selectors a run is given, and the face each way shows.

import type { IpAddress } from '../net/address.js';

/** Flows to forget: by their original source, or by the external address and port they were translated to. */
export type FlowSelector =
  | { by: 'source'; protocol: number; address: IpAddress; port: number }
  | { by: 'translated-to'; protocol: number; address: IpAddress; port: number };

/** One way of forgetting flows. false: this path failed on these selectors. */
export interface FlowPath {
  readonly name: 'netlink' | 'tool';
  forget(selectors: readonly FlowSelector[]): Promise<boolean>;
}
