// Admission: the rules MAP and PEER share, written once. Who may ask for
// what (admit: protocol, the LAN, the policy's verdict and rate, the DHCP
// lease), how many mappings a host may hold, the lifetime granted, the
// filters a request's steps leave, the description kept, the nonce a renewal
// must show, and the terms a request is granted.

import { familyOf, isLinkLocal, isMulticast, isUnspecified, type IpAddress } from '../net/address.js';
import { isMappableProtocol } from '../net/ipproto.js';
import { hostUnit } from '../net/hosts.js';
import { THIRD_PARTY_REASON, type Limits, type Policy, type PolicyRequest, type Verdict } from '../policy/policy.js';
import type { Clock } from '../state/clock.js';
import type { MappingTable } from '../state/table.js';
import { nonceHex, remaining, sameFilter, type Mapping, type MappingTerms, type RemoteFilter, type Via } from '../domain/mapping.js';
import { refuse, type FilterStep, type MapRequest, type Refused } from '../domain/requests.js';
import type { LeaseView, Network, ServiceConfig } from './service-config.js';

/** RFC 6887 §7.4's short error lifetime: the client may ask again soon. */
const SHORT_ERROR_SECONDS = 30;

/** What a MAP or PEER request says, as far as the shared rules read it (a PeerRequest is one too). */
export type Asked = Pick<
  MapRequest,
  'via' | 'client' | 'internalAddress' | 'protocol' | 'internalPort' | 'suggestedExternalPort' | 'preferFailure' | 'nonce' | 'description' | 'clientPort' | 'doorTag'
>;

/** What admit() learned on the way: the rule's limits, the family, and the external address a mapping gets. */
export type Admitted = { ok: true; limits: Limits; family: 4 | 6; externalAddress: IpAddress };

/** What the service chose for a grant; the rest of its terms come from the request and the mapping it renews. */
export interface Chosen {
  kind: 'map' | 'peer';
  family: 4 | 6;
  externalAddress: IpAddress;
  externalPort: number;
  filters: readonly RemoteFilter[];
  remotePeer?: { address: IpAddress; port: number };
  lifetime: number;
}

export class Admission {
  /** The DHCP server's leases, when the daemon reads them. */
  leases: LeaseView | undefined;

  constructor(
    private readonly cfg: ServiceConfig,
    /** Swapped whole by MappingService.swapPolicy. */
    public policy: Policy,
    private readonly network: Network,
    private readonly table: Pick<MappingTable, 'countFor' | 'countForHost' | 'countByRequester' | 'countForInterface' | 'size'>,
    private readonly clock: Clock,
  ) {}

  /** The host (device) an address belongs to: its quota and its rate are counted there. */
  hostOf(addr: IpAddress): string {
    return this.network.hostOf?.(addr) ?? hostUnit(addr);
  }

  /** Whether this request may be served at all, before any port is chosen. */
  admit(req: Asked, operation: 'map' | 'peer', filters: readonly RemoteFilter[]): Admitted | Refused {
    if (!isMappableProtocol(req.protocol) && req.protocol !== 0) {
      return refuse('UNSUPP_PROTOCOL', `protocol ${req.protocol}: this router maps only UDP and TCP`);
    }
    const family = familyOf(req.internalAddress);
    // A mapping points into the LAN, never at the router itself (which would
    // expose the router's own services to the WAN).
    if (this.network.isRouterAddress(req.internalAddress)) {
      return refuse('NOT_AUTHORIZED', `${req.internalAddress} is the router's own address`);
    }
    if (isUnspecified(req.internalAddress) || isMulticast(req.internalAddress) || (family === 6 && isLinkLocal(req.internalAddress))) {
      return refuse('NOT_AUTHORIZED', `no inbound mapping can reach ${req.internalAddress}`);
    }
    // Checked whoever asks, the host itself too: a door may count a host's
    // other addresses as the host (UPnP: its ULA and its global address, by
    // the neighbour table), and those need not lie in a LAN prefix.
    if ((req.internalAddress !== req.client && familyOf(req.client) !== family) || !this.network.isLanHost(req.internalAddress)) {
      return refuse('NOT_AUTHORIZED', `${req.internalAddress} is not a LAN host`);
    }
    const insists = req.preferFailure === true && req.suggestedExternalPort !== 0;
    const asked: PolicyRequest = {
      via: req.via,
      operation,
      client: req.client,
      internalAddress: req.internalAddress,
      protocol: req.protocol,
      internalPort: req.internalPort,
      requiredExternalPort: insists ? req.suggestedExternalPort : undefined,
      filters,
      interface: this.network.interfaceOf?.(req.client),
    };
    const verdict = this.policy.decide(asked);
    if (!verdict.allow) {
      // §13.1: a request the client could make for itself is refused only
      // for being on another's behalf: that is UNSUPP_OPTION on the PCP wire.
      const thirdPartyOnly =
        req.internalAddress !== req.client &&
        (verdict.reason === THIRD_PARTY_REASON || this.policy.decide({ ...asked, internalAddress: req.client }).allow);
      return refuse(thirdPartyOnly ? 'THIRD_PARTY_NOT_ALLOWED' : 'NOT_AUTHORIZED', `policy rule ${verdict.rule}: ${verdict.reason}`);
    }
    if (!this.policy.takeToken(verdict, req.client, this.hostOf(req.client))) {
      return refuse('RATE_LIMITED', `policy rule ${verdict.rule}: over ${verdict.limits.requestsPerSecond} requests/s`);
    }
    const leaseLeft = this.leaseLeft(req.internalAddress);
    if (leaseLeft !== undefined && leaseLeft < 1) {
      // §15: a host whose lease ended has no mappings. A short error: it may
      // renew its lease at any moment.
      return { ...refuse('NOT_AUTHORIZED', `the DHCP lease of ${req.internalAddress} has ended`), lifetime: SHORT_ERROR_SECONDS };
    }
    let externalAddress: IpAddress;
    if (family === 4) {
      const ext = this.network.externalIPv4();
      if (!ext) return refuse('NETWORK_FAILURE', 'the WAN has no IPv4 address');
      externalAddress = ext;
    } else {
      // A pinhole: the firewall translates nothing (RFC 6887 §11.1).
      externalAddress = req.internalAddress;
    }
    return { ok: true, limits: verdict.limits, family, externalAddress };
  }

  /** The policy's verdict on a live mapping, as if it were asked for again now (a new policy judges the table). */
  verdictOn(m: Mapping): Verdict {
    return this.policy.decide({
      via: m.origin === 'static' ? 'pcp' : m.origin,
      operation: m.kind,
      client: m.client,
      internalAddress: m.internalAddress,
      protocol: m.protocol,
      internalPort: m.internalPort,
      // The port it holds must be one the new policy would hand out.
      requiredExternalPort: m.family === 4 ? m.externalPort : undefined,
      filters: m.filters,
      interface: this.network.interfaceOf?.(m.client),
    });
  }

  /**
   * Why `internalAddress` may not have one more mapping: its own quota, the
   * same quota summed over its host (one device, many addresses), a full
   * table, or its host's or its interface's share of the table.
   */
  quotaReached(internalAddress: IpAddress, limits: Limits, client: IpAddress = internalAddress): Refused | undefined {
    const quota = limits.maxMappingsPerClient;
    if (this.table.countFor(internalAddress) >= quota) return refuse('USER_EX_QUOTA', `${internalAddress} holds ${quota} mappings`);
    // THIRD_PARTY (e.g. the ISP's server for a subscriber's CPE): the mappings a client asked for, for all its hosts, count together.
    if (client !== internalAddress && this.table.countByRequester(client) >= quota) return refuse('USER_EX_QUOTA', `${client} holds ${quota} mappings for its hosts`);
    const host = this.hostOf(internalAddress);
    const held = this.table.countForHost(internalAddress, host);
    if (host !== internalAddress && held >= quota) return refuse('USER_EX_QUOTA', `${host} holds ${quota} mappings`);
    if (this.table.size >= this.cfg.maxMappings) return refuse('NO_RESOURCES', 'mapping table full');
    const hostCap = Math.ceil(this.cfg.maxMappings * this.cfg.hostShare);
    if (held >= hostCap) return refuse('NO_RESOURCES', `${host} holds its share of the table (${hostCap} mappings)`);
    const iface = this.network.interfaceOf?.(internalAddress);
    const ifaceCap = Math.ceil(this.cfg.maxMappings * this.cfg.interfaceShare);
    if (iface !== undefined && this.table.countForInterface(iface) >= ifaceCap) return refuse('NO_RESOURCES', `interface ${iface} holds its share of the table (${ifaceCap} mappings)`);
    return undefined;
  }

  /** The lifetime granted for `requested` seconds. */
  grantLifetime(via: Via, requested: number, limits: Limits, internalAddress: IpAddress): number {
    const max = Math.min(this.cfg.maxLifetime, limits.maxLifetime);
    // RFC 6886 §3.3: NAT-PMP "SHOULD NOT offer a lease lifetime greater than
    // that requested"; PCP (§15) clamps into [min, max] both ways.
    const min = via === 'natpmp' ? 1 : this.cfg.minLifetime;
    const clamped = Math.max(Math.min(requested, max), Math.min(min, max));
    // §15: no mapping outlives its host's DHCP lease, even below the minimum
    // (admit() refused a host whose lease has ended).
    return Math.min(clamped, this.leaseLeft(internalAddress) ?? Number.POSITIVE_INFINITY);
  }

  /** RFC 6887 §13.3: more filters than one mapping may carry. */
  tooManyFilters(filters: readonly RemoteFilter[]): Refused | undefined {
    const max = this.cfg.maxFiltersPerMapping;
    return filters.length > max ? refuse('EXCESSIVE_REMOTE_PEERS', `${filters.length} filters > ${max}`) : undefined;
  }

  /**
   * The terms a request is granted: what it asked, what it keeps of
   * `existing` (the mapping it renews, if any), and what the service chose.
   */
  terms(req: Asked, existing: Mapping | undefined, chosen: Chosen): MappingTerms {
    return {
      kind: chosen.kind,
      family: chosen.family,
      internalAddress: req.internalAddress,
      protocol: req.protocol,
      internalPort: req.internalPort,
      externalAddress: chosen.externalAddress,
      externalPort: chosen.externalPort,
      filters: chosen.filters,
      remotePeer: chosen.remotePeer,
      nonce: existing?.nonce ?? (req.nonce && nonceHex(req.nonce)),
      // A mapping keeps the door that made it; a client may renew it through another.
      origin: existing?.origin ?? req.via,
      client: existing?.client ?? req.client,
      description: req.description !== undefined ? this.clipDescription(req.description) : existing?.description ?? '',
      doorTag: req.doorTag ?? existing?.doorTag,
      lifetime: chosen.lifetime,
      clientPort: req.clientPort ?? existing?.clientPort,
      // Kept until upstream answers the renewal (service/upstream.ts).
      upstream: existing?.upstream,
    };
  }

  /** Whole seconds left on an address's DHCP lease; undefined: no lease known (no cap). */
  private leaseLeft(address: IpAddress): number | undefined {
    const end = this.leases?.leaseEnd(address);
    if (end === undefined) return undefined;
    return end === Number.POSITIVE_INFINITY ? Number.POSITIVE_INFINITY : Math.floor((end - this.clock.wall()) / 1000);
  }

  private clipDescription(text: string): string {
    // Control characters end up in logs and state; strip them, then cut on a
    // character boundary to the stored maximum (RFC 7220 §3 allows truncation).
    // eslint-disable-next-line no-control-regex
    let s = text.replace(/[\u0000-\u001f\u007f]/g, '');
    while (Buffer.byteLength(s, 'utf8') > this.cfg.maxDescriptionBytes) s = s.slice(0, -1);
    return s;
  }
}

/** The filters left after a request's steps. */
export function applyFilterSteps(current: readonly RemoteFilter[], steps: readonly FilterStep[] | undefined): RemoteFilter[] {
  // RFC 6887 §13.3: new FILTERs add to the existing ones; prefix length 0 clears them.
  let out = [...current];
  for (const s of steps ?? []) {
    if (s === 'clear') out = [];
    else if (!out.some((f) => sameFilter(f, s))) out.push(s);
  }
  return out;
}

/**
 * A request that names an existing mapping with another nonce than its own
 * (RFC 6887 §11.3, §12.3, §15: renewals and removals alike): NOT_AUTHORIZED,
 * "with the lifetime of the error indicating duration of that existing
 * mapping". Either side without a nonce proves nothing and is let through.
 */
export function nonceRefusal(m: Mapping | undefined, nonce: Buffer | undefined, now: number): Refused | undefined {
  if (!m?.nonce || !nonce || m.nonce === nonceHex(nonce)) return undefined;
  return { ...refuse('NOT_AUTHORIZED', 'nonce does not match the existing mapping'), lifetime: remaining(m, now) };
}

/** Whether `client` (showing `nonce`) may remove `m`: its own, not the admin's, with the nonce it was made with. */
export function mayRemove(m: Mapping, client: IpAddress, nonce: Buffer | undefined, now: number): Refused | undefined {
  if (m.origin === 'static') return refuse('NOT_AUTHORIZED', 'a static mapping cannot be removed by a client');
  if (m.internalAddress !== client && m.client !== client) return refuse('NOT_AUTHORIZED', `${client} does not own this mapping`);
  return nonceRefusal(m, nonce, now);
}
