// What a door asks the mapping service, and what it hears back: the one
// vocabulary PCP, NAT-PMP and UPnP translate their wire formats into.

import type { IpAddress } from '../net/address.js';
import type { Mapping, RemoteFilter, Via } from './mapping.js';

/**
 * Why the service refused. PCP's result vocabulary is the richest of the three
 * protocols, so it is the service's; NAT-PMP and UPnP translate from it.
 */
export type Refusal =
  | 'NOT_AUTHORIZED'
  | 'MALFORMED_REQUEST'
  | 'NETWORK_FAILURE'
  | 'NO_RESOURCES'
  /** The kernel rejected the change (PCP: NO_RESOURCES; NAT-PMP: 3, the box cannot do its job). */
  | 'FIREWALL_FAILED'
  | 'UNSUPP_PROTOCOL'
  | 'USER_EX_QUOTA'
  | 'CANNOT_PROVIDE_EXTERNAL'
  | 'EXCESSIVE_REMOTE_PEERS'
  /** A mapping for another host that policy does not allow (PCP: UNSUPP_OPTION, §13.1). */
  | 'THIRD_PARTY_NOT_ALLOWED'
  /** Over the per-client request rate of the policy rule that allowed it. */
  | 'RATE_LIMITED'
  /** An option the request needs is not supported where it must be honoured (behind the ISP's NAT: upstream refused FILTER). */
  | 'UNSUPP_OPTION';

/** A filter step as PCP FILTER options list them: add a remote, or clear all (prefix length 0). */
export type FilterStep = RemoteFilter | 'clear';

/** What every request names: its door, its client, and the internal endpoint it is about. */
export interface EndpointRequest {
  via: Via;
  /** Source address of the request (already checked to be on the LAN). */
  client: IpAddress;
  /** The host the mapping is for: the client, or a THIRD_PARTY/UPnP NewInternalClient address. */
  internalAddress: IpAddress;
  protocol: number;
  internalPort: number;
}

export interface MapRequest extends EndpointRequest {
  /** 0 = no preference. */
  suggestedExternalPort: number;
  /** Requested lifetime in seconds (> 0). */
  lifetime: number;
  nonce?: Buffer;
  /** Only the suggested external port will do (PCP PREFER_FAILURE, UPnP AddPortMapping). */
  preferFailure?: boolean;
  /** PCP FILTER options in wire order; undefined = leave existing filters alone. */
  filters?: readonly FilterStep[];
  /** undefined = leave the existing description alone. */
  description?: string;
  /** UDP source port of the request (for PCP mapping updates). */
  clientPort?: number;
  /** Mapping.doorTag; undefined = leave the existing one alone. */
  doorTag?: string;
  /**
   * 'own' (UPnP AddPortMapping): the suggested external port is required
   * (as with preferFailure), and what stands in the way is replaced if it is
   * the client's own: a mapping of the same internal address made through the
   * same door that holds that external port for another internal port, and
   * this internal endpoint's mapping by the same door on another external
   * port. Replaced and new go in one table change and one firewall commit,
   * undone together if it fails. Anything else in the way is a refusal that
   * names its holder.
   */
  replace?: 'own';
}

export interface PeerRequest extends EndpointRequest {
  suggestedExternalPort: number;
  remotePeerAddress: IpAddress;
  remotePeerPort: number;
  lifetime: number;
  nonce: Buffer;
  description?: string;
  clientPort?: number;
}

export interface RemoveRequest extends EndpointRequest {
  nonce?: Buffer;
}

export type Refused = {
  ok: false;
  refusal: Refusal;
  detail: string;
  /** Set where the protocol wants a specific error lifetime (e.g. the existing mapping's remaining time). */
  lifetime?: number;
  /**
   * CANNOT_PROVIDE_EXTERNAL because another mapping is in the way: the one
   * that holds the external port (or, for `replace`, the endpoint's own
   * mapping by another door), so a door can tell whose it is.
   */
  holder?: Mapping;
};
export type Granted = { ok: true; mapping: Mapping; lifetime: number };
export type MapOutcome = Granted | Refused;
export type RemoveOutcome = { ok: true; removed?: Mapping } | Refused;

export function refuse(refusal: Refusal, detail: string): Refused {
  return { ok: false, refusal, detail };
}

/** CANNOT_PROVIDE_EXTERNAL, naming the mapping in the way. */
export function heldBy(holder: Mapping, detail: string): Refused {
  return { ...refuse('CANNOT_PROVIDE_EXTERNAL', detail), holder };
}
