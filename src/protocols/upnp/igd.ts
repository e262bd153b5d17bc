// The IGD:2 control actions over the mapping service: WANIPConnection:1/2,
// WANIPv6FirewallControl:1 and WANCommonInterfaceConfig:1. One request in
// (already a parsed SOAP action from a LAN host), out arguments or a UPnP
// error out. Everything UPnP-specific about mappings lives here: leases,
// external-port conflicts as 718/729, pinholes, listings; beside it,
// igd-args.ts reads the in arguments and pinhole-ids.ts keeps the pinholes'
// UniqueIDs.
//
// Actions are found by name in whichever service defines them, whatever
// control URL or service version the client used: clients send
// `WANIPConnection:1#AddAnyPortMapping`, or AddPinhole to the
// WANIPConnection URL, and expect an answer.

import { familyOf, type IpAddress } from '../../net/address.js';
import { IPPROTO_TCP, IPPROTO_UDP } from '../../net/ipproto.js';
import type { MappingService } from '../../service/mapping-service.js';
import { keyOf, mappingKey, reachedAt, type Mapping } from '../../domain/mapping.js';
import type { MapOutcome, Refusal, Refused } from '../../domain/requests.js';
import { ACTIONS, checkInArguments, serviceKeyFor, type ActionEntry, type ServiceKey } from './description.js';
import { Args, fail, invalid, type ActionResult, type Parsed } from './igd-args.js';
import { PinholeIds, pinholeTag } from './pinhole-ids.js';
import { UpnpError, WanIpConnectionError as W, WanIpv6FirewallControlError as F, portListing, type PortListingEntry, type UpnpErrorDef } from './soap.js';

export type { ActionResult } from './igd-args.js';

/** IGD:2 WANIPConnection: PortMappingLeaseDuration is 0..604800; 0 asks for the maximum (no infinite leases). */
export const MAX_UPNP_LEASE = 604800;
/** WANIPv6FirewallControl: LeaseTime 1..86400. */
export const MAX_PINHOLE_LEASE = 86400;
/** GetListOfPortMappings answers at most this many entries. */
const MAX_LISTING = 1000;

export interface IgdEnvironment {
  /** Seconds since the connection (the daemon) came up. */
  uptime(): number;
  /** WAN link up. */
  linkUp(): boolean;
  /** WAN interface counters and speed, for WANCommonInterfaceConfig. */
  wanCounters(): { txBytes: number; rxBytes: number; txPackets: number; rxPackets: number; speedMbps: number };
  /** Conntrack's idle timeout for an outbound flow of the protocol, seconds. */
  outboundTimeout(protocol: number): number;
  /**
   * Whether two addresses are one device (its ULA and its global address):
   * proven by the kernel's neighbour table (the same link-layer address on
   * the same link), never by a shared interface identifier.
   */
  sameHost(a: IpAddress, b: IpAddress): boolean | Promise<boolean>;
}

export interface IgdRequest {
  serviceName: string;
  serviceVersion: number;
  action: string;
  args: ReadonlyMap<string, string>;
  client: IpAddress;
}

/** Where each action is found when the named service does not have it. */
const SEARCH_ORDER: readonly ServiceKey[] = ['WANIPConnection:2', 'WANIPv6FirewallControl:1', 'WANCommonInterfaceConfig:1'];

export function findAction(serviceName: string, version: number, action: string): ActionEntry | undefined {
  const own = serviceKeyFor(serviceName, version);
  const named = own ? ACTIONS[own].get(action) : undefined;
  if (named) return named;
  for (const key of SEARCH_ORDER) {
    const a = ACTIONS[key].get(action);
    if (a) return a;
  }
  return undefined;
}

export class IgdControl {
  private readonly pinholeIds: PinholeIds;
  private listing: { version: number; entries: Mapping[] } | undefined;

  constructor(
    private readonly service: MappingService,
    private readonly env: IgdEnvironment,
    /** UniqueIDs are 16-bit (WANIPv6FirewallControl): 1..this. Smaller only in tests. */
    pinholeIdSpace = 0xffff,
  ) {
    this.pinholeIds = new PinholeIds(service, pinholeIdSpace);
  }

  async handle(req: IgdRequest): Promise<ActionResult> {
    this.pinholeIds.indexRestored();
    const entry = findAction(req.serviceName, req.serviceVersion, req.action);
    if (!entry) return fail(UpnpError.INVALID_ACTION, `no action ${req.action}`);
    const { missing } = checkInArguments(entry, req.args);
    if (missing.length) return invalid(`missing ${missing.join(', ')}`);
    const a = new Args(req.args);
    switch (entry.name) {
      // --- WANIPConnection: the connection itself is the router's, not the LAN's to change.
      case 'SetConnectionType':
      case 'RequestConnection':
      case 'ForceTermination':
        return fail(UpnpError.ACTION_NOT_AUTHORIZED, 'the WAN connection is not managed over UPnP');
      case 'GetConnectionTypeInfo':
        return ok(['NewConnectionType', 'IP_Routed'], ['NewPossibleConnectionTypes', 'IP_Routed']);
      case 'GetStatusInfo': {
        const up = this.env.linkUp() && this.service.externalIPv4() !== undefined;
        return ok(['NewConnectionStatus', up ? 'Connected' : 'Disconnected'], ['NewLastConnectionError', 'ERROR_NONE'], ['NewUptime', String(this.env.uptime())]);
      }
      case 'GetNATRSIPStatus':
        return ok(['NewRSIPAvailable', '0'], ['NewNATEnabled', '1']);
      case 'GetExternalIPAddress':
        return ok(['NewExternalIPAddress', this.service.externalIPv4() ?? '']);
      case 'AddPortMapping':
        return this.addPortMapping(a, req.client, false);
      case 'AddAnyPortMapping':
        return this.addPortMapping(a, req.client, true);
      case 'DeletePortMapping':
        return this.deletePortMapping(a, req.client);
      case 'DeletePortMappingRange':
        return this.deleteRange(a, req.client);
      case 'GetGenericPortMappingEntry':
        return this.genericEntry(a);
      case 'GetSpecificPortMappingEntry':
        return this.specificEntry(a);
      case 'GetListOfPortMappings':
        return this.listOfMappings(a, req.client);
      // --- WANIPv6FirewallControl
      case 'GetFirewallStatus':
        return ok(['FirewallEnabled', '1'], ['InboundPinholeAllowed', '1']);
      case 'GetOutboundPinholeTimeout': {
        const proto = a.pinholeProtocol('Protocol');
        if (!proto.ok) return proto.result;
        return ok(['OutboundPinholeTimeout', String(this.env.outboundTimeout(proto.value === 0 ? IPPROTO_UDP : proto.value))]);
      }
      case 'AddPinhole':
        return this.addPinhole(a, req.client);
      case 'UpdatePinhole':
        return this.updatePinhole(a, req.client);
      case 'DeletePinhole':
        return this.deletePinhole(a, req.client);
      case 'GetPinholePackets':
      case 'CheckPinholeWorking': {
        const found = await this.ownedPinhole(a, req.client);
        if (!found.ok) return found.result;
        const packets = await this.service.packets(found.mapping);
        // No counter to read: say so rather than invent a number.
        if (packets === undefined) return fail(UpnpError.ACTION_FAILED, 'no packet counter for this pinhole');
        if (entry.name === 'GetPinholePackets') return ok(['PinholePackets', String(Math.min(packets, 0xffffffff))]);
        return packets > 0 ? ok(['IsWorking', '1']) : fail(F.NO_TRAFFIC_RECEIVED, 'no packet has used the pinhole yet');
      }
      // --- WANCommonInterfaceConfig
      case 'GetCommonLinkProperties': {
        const c = this.env.wanCounters();
        const bps = String(Math.min(0xffffffff, c.speedMbps * 1_000_000));
        return ok(['NewWANAccessType', 'Ethernet'], ['NewLayer1UpstreamMaxBitRate', bps], ['NewLayer1DownstreamMaxBitRate', bps], ['NewPhysicalLinkStatus', this.env.linkUp() ? 'Up' : 'Down']);
      }
      case 'GetTotalBytesSent':
        return ok(['NewTotalBytesSent', ui4(this.env.wanCounters().txBytes)]);
      case 'GetTotalBytesReceived':
        return ok(['NewTotalBytesReceived', ui4(this.env.wanCounters().rxBytes)]);
      case 'GetTotalPacketsSent':
        return ok(['NewTotalPacketsSent', ui4(this.env.wanCounters().txPackets)]);
      case 'GetTotalPacketsReceived':
        return ok(['NewTotalPacketsReceived', ui4(this.env.wanCounters().rxPackets)]);
      default:
        return fail(UpnpError.OPTIONAL_ACTION_NOT_IMPLEMENTED, `${entry.name} is not implemented`);
    }
  }

  // --- port mappings ------------------------------------------------------

  private async addPortMapping(a: Args, client: IpAddress, any: boolean): Promise<ActionResult> {
    const ext = a.port('NewExternalPort', true);
    if (!ext.ok) return ext.result;
    if (ext.value === 0 && !any) return fail(W.WILDCARD_NOT_PERMITTED_IN_EXT_PORT, 'NewExternalPort 0');
    const proto = a.protocol('NewProtocol');
    if (!proto.ok) return proto.result;
    const int = a.port('NewInternalPort', true);
    if (!int.ok) return int.result;
    if (int.value === 0) return fail(W.WILDCARD_NOT_PERMITTED_IN_INT_PORT, 'NewInternalPort 0');
    const host = a.address('NewInternalClient', 4);
    if (!host.ok) return host.result;
    const remote = a.remoteHost('NewRemoteHost', 4);
    if (!remote.ok) return remote.result;
    const enabled = a.boolean('NewEnabled');
    if (!enabled.ok) return enabled.result;
    if (!enabled.value) return invalid('NewEnabled 0: disabled mappings are not kept (delete it instead)');
    const lease = a.uint('NewLeaseDuration');
    if (!lease.ok) return lease.result;
    // IGD:2: 0 is no longer "forever" but the longest lease; longer asks are cut to it.
    const lifetime = lease.value === 0 ? MAX_UPNP_LEASE : Math.min(lease.value, MAX_UPNP_LEASE);

    const out = await this.service.map({
      via: 'upnp',
      client,
      internalAddress: host.value,
      protocol: proto.value,
      internalPort: int.value,
      suggestedExternalPort: ext.value,
      preferFailure: !any,
      // The exact external port: the client's own mappings in its way are
      // replaced in the same change (this host's mapping of it for another
      // internal port, this endpoint's on another external port); anyone
      // else's is a conflict: 718 for another UPnP mapping, 729 for PCP,
      // NAT-PMP or a static forward.
      replace: any ? undefined : 'own',
      lifetime,
      filters: remote.value ? ['clear', { prefix: { address: remote.value, length: 32 }, port: 0 }] : ['clear'],
      description: a.get('NewPortMappingDescription'),
    });
    if (!out.ok) return fail(mapRefusal(out, any), out.detail);
    return any ? ok(['NewReservedPort', String(reachedAt(out.mapping).port)]) : ok();
  }

  private async deletePortMapping(a: Args, client: IpAddress): Promise<ActionResult> {
    const ext = a.port('NewExternalPort', true);
    if (!ext.ok) return ext.result;
    // Leniency for a popular client (@achingbrain/nat-port-mapper) that
    // deletes with an empty NewProtocol: the caller's own mappings on that
    // external port, whichever protocol.
    const lenient = a.get('NewProtocol').trim() === '';
    const proto = lenient ? ({ ok: true, value: 0 } as const) : a.protocol('NewProtocol');
    if (!proto.ok) return proto.result;
    const remote = a.remoteHost('NewRemoteHost', 4);
    if (!remote.ok) return remote.result;
    const found = (lenient ? [IPPROTO_TCP, IPPROTO_UDP] : [proto.value])
      .map((p) => this.service.holderOf(p, ext.value))
      .filter((m): m is Mapping => m !== undefined && sameRemote(m, remote.value) && (!lenient || m.internalAddress === client || m.client === client));
    if (!found.length) return fail(W.NO_SUCH_ENTRY_IN_ARRAY, `no mapping on external port ${ext.value}`);
    for (const m of found) {
      const out = await this.service.remove({ via: 'upnp', client, internalAddress: m.internalAddress, protocol: m.protocol, internalPort: m.internalPort });
      if (!out.ok) return fail(refusalError(out.refusal, false), out.detail);
    }
    return ok();
  }

  /** NewStartPort, NewEndPort, NewProtocol, NewManage: the IPv4 mappings they select. */
  private selectRange(a: Args): Parsed<{ mappings: Mapping[]; manage: boolean }> {
    const range = a.range();
    if (!range.ok) return range;
    const proto = a.protocol('NewProtocol');
    if (!proto.ok) return proto;
    const manage = a.boolean('NewManage');
    if (!manage.ok) return manage;
    const { start, end } = range.value;
    const mappings = this.portMappings().filter((m) => m.protocol === proto.value && reachedAt(m).port >= start && reachedAt(m).port <= end);
    return { ok: true, value: { mappings, manage: manage.value } };
  }

  private async deleteRange(a: Args, client: IpAddress): Promise<ActionResult> {
    const selected = this.selectRange(a);
    if (!selected.ok) return selected.result;
    // Without DeviceProtection every control point manages only its own
    // mappings, whatever NewManage says (IGD:2 security, Public role).
    const victims = selected.value.mappings.filter((m) => m.origin !== 'static' && (m.internalAddress === client || m.client === client));
    if (!victims.length) return fail(W.PORT_MAPPING_NOT_FOUND, 'nothing of yours in that range');
    for (const m of victims) {
      const out = await this.service.remove({ via: 'upnp', client, internalAddress: m.internalAddress, protocol: m.protocol, internalPort: m.internalPort });
      if (!out.ok) return fail(refusalError(out.refusal, false), out.detail);
    }
    return ok();
  }

  private genericEntry(a: Args): ActionResult {
    const index = a.uint('NewPortMappingIndex');
    if (!index.ok) return index.result;
    const m = this.portMappings()[index.value];
    if (!m) return fail(W.SPECIFIED_ARRAY_INDEX_INVALID, `index ${index.value} ≥ ${this.portMappings().length}`);
    const e = this.entryOf(m);
    return ok(
      ['NewRemoteHost', e.remoteHost],
      ['NewExternalPort', String(e.externalPort)],
      ['NewProtocol', e.protocol],
      ['NewInternalPort', String(e.internalPort)],
      ['NewInternalClient', e.internalClient],
      ['NewEnabled', '1'],
      ['NewPortMappingDescription', e.description],
      ['NewLeaseDuration', String(e.leaseTime)],
    );
  }

  private specificEntry(a: Args): ActionResult {
    const ext = a.port('NewExternalPort', true);
    if (!ext.ok) return ext.result;
    const proto = a.protocol('NewProtocol');
    if (!proto.ok) return proto.result;
    const remote = a.remoteHost('NewRemoteHost', 4);
    if (!remote.ok) return remote.result;
    const m = this.service.holderOf(proto.value, ext.value);
    if (!m || !sameRemote(m, remote.value)) return fail(W.NO_SUCH_ENTRY_IN_ARRAY, `no mapping on external port ${ext.value}`);
    const e = this.entryOf(m);
    return ok(
      ['NewInternalPort', String(e.internalPort)],
      ['NewInternalClient', e.internalClient],
      ['NewEnabled', '1'],
      ['NewPortMappingDescription', e.description],
      ['NewLeaseDuration', String(e.leaseTime)],
    );
  }

  private listOfMappings(a: Args, client: IpAddress): ActionResult {
    const selected = this.selectRange(a);
    if (!selected.ok) return selected.result;
    const count = a.uint('NewNumberOfPorts');
    if (!count.ok) return count.result;
    const limit = count.value === 0 ? MAX_LISTING : Math.min(count.value, MAX_LISTING);
    // NewManage 0: the caller's own mappings; 1: every mapping it may see
    // (all: listings are not secret on the LAN, GetGeneric shows them too).
    const entries = selected.value.mappings
      .filter((m) => selected.value.manage || m.internalAddress === client || m.client === client)
      .slice(0, limit)
      .map((m) => this.entryOf(m));
    if (!entries.length) return fail(W.PORT_MAPPING_NOT_FOUND, 'no mapping in that range');
    return ok(['NewPortListing', portListing(entries)]);
  }

  /** IPv4 port mappings in a stable order (protocol, external port): GetGeneric's index space. */
  private portMappings(): Mapping[] {
    const version = this.service.changes();
    if (this.listing?.version !== version) {
      const entries = this.service.mappings((m) => m.kind === 'map' && m.family === 4);
      // Behind the ISP's NAT the port a client knows is upstream's (reachedAt).
      entries.sort((x, y) => x.protocol - y.protocol || reachedAt(x).port - reachedAt(y).port);
      this.listing = { version, entries };
    }
    return this.listing.entries;
  }

  private entryOf(m: Mapping): PortListingEntry {
    return {
      remoteHost: remoteHostOf(m),
      externalPort: reachedAt(m).port,
      // PortMappingProtocol allows TCP and UDP alone.
      protocol: m.protocol === IPPROTO_TCP ? 'TCP' : 'UDP',
      internalPort: m.internalPort,
      internalClient: m.internalAddress,
      enabled: true,
      description: m.origin === 'upnp' || m.origin === 'static' ? m.description : m.description || `${m.origin}`,
      // A static forward has no lease: 0 is what IGD:1 called permanent.
      leaseTime: m.origin === 'static' ? 0 : this.service.remaining(m),
    };
  }

  // --- pinholes -------------------------------------------------------------

  private async addPinhole(a: Args, client: IpAddress): Promise<ActionResult> {
    const remote = a.remoteHost('RemoteHost', 6);
    if (!remote.ok) return remote.result;
    const remotePort = a.port('RemotePort', true);
    if (!remotePort.ok) return remotePort.result;
    const host = a.address('InternalClient', 6);
    if (!host.ok) return host.result;
    const port = a.port('InternalPort', true);
    if (!port.ok) return port.result;
    if (port.value === 0) return fail(F.INTERNAL_PORT_WILDCARDING_NOT_ALLOWED, 'InternalPort 0');
    const proto = a.pinholeProtocol('Protocol');
    if (!proto.ok) return proto.result;
    if (proto.value === 0) return fail(F.PROTOCOL_WILDCARDING_NOT_ALLOWED, 'Protocol 65535');
    const lease = a.uint('LeaseTime');
    if (!lease.ok) return lease.result;
    if (lease.value < 1 || lease.value > MAX_PINHOLE_LEASE) return invalid(`LeaseTime ${lease.value} outside 1..${MAX_PINHOLE_LEASE}`);
    // A host's other addresses (its ULA and its global address) count as the
    // host itself, not as a third party; the service still refuses one outside
    // every LAN prefix.
    const asker = host.value !== client && familyOf(client) === 6 && (await this.env.sameHost(client, host.value)) ? host.value : client;
    // A new pinhole needs an id, chosen before the service records it (the id
    // is stored with it): refuse before anything opens that the client could
    // never name (and so never renew or remove).
    const key = mappingKey('map', host.value, proto.value, port.value);
    const have = this.pinholeIds.idOf(key);
    const id = have ?? this.pinholeIds.reserve();
    if (id === undefined) return fail(F.PINHOLE_SPACE_EXHAUSTED, `all ${this.pinholeIds.space} pinhole ids are in use`);
    try {
      const out = await this.service.map({ ...this.pinholeRequest(asker, host.value, proto.value, port.value, lease.value, remote.value, remotePort.value), doorTag: pinholeTag(id) });
      if (!out.ok) return fail(refusalError(out.refusal, true), out.detail);
      this.pinholeIds.name(key, id);
      return ok(['UniqueID', String(id)]);
    } finally {
      if (have === undefined) this.pinholeIds.settle(id);
    }
  }

  private pinholeRequest(asker: IpAddress, host: IpAddress, protocol: number, port: number, lifetime: number, remote: IpAddress | undefined, remotePort: number) {
    return {
      via: 'upnp' as const,
      client: asker,
      internalAddress: host,
      protocol,
      internalPort: port,
      suggestedExternalPort: 0,
      lifetime,
      filters: remote || remotePort ? (['clear', { prefix: { address: remote ?? ('::' as IpAddress), length: remote ? 128 : 0 }, port: remotePort }] as const) : (['clear'] as const),
    };
  }

  private async ownedPinhole(a: Args, client: IpAddress): Promise<{ ok: true; mapping: Mapping } | { ok: false; result: ActionResult }> {
    const id = a.uint('UniqueID');
    if (!id.ok) return { ok: false, result: id.result };
    const key = this.pinholeIds.keyOf(id.value);
    const m = key !== undefined ? this.service.byKey(key) : undefined;
    if (!m || this.service.remaining(m) <= 0) {
      if (key !== undefined) this.pinholeIds.forget(key);
      return { ok: false, result: fail(F.NO_SUCH_ENTRY, `no pinhole ${id.value}`) };
    }
    const mine = m.internalAddress === client || m.client === client || (familyOf(client) === 6 && (await this.env.sameHost(client, m.internalAddress)));
    if (!mine) return { ok: false, result: fail(UpnpError.ACTION_NOT_AUTHORIZED, `pinhole ${id.value} is not yours`) };
    return { ok: true, mapping: m };
  }

  private async updatePinhole(a: Args, client: IpAddress): Promise<ActionResult> {
    const found = await this.ownedPinhole(a, client);
    if (!found.ok) return found.result;
    const lease = a.uint('NewLeaseTime');
    if (!lease.ok) return lease.result;
    if (lease.value < 1 || lease.value > MAX_PINHOLE_LEASE) return invalid(`NewLeaseTime ${lease.value} outside 1..${MAX_PINHOLE_LEASE}`);
    const m = found.mapping;
    const out: MapOutcome = await this.service.map({
      via: 'upnp',
      client: m.client,
      internalAddress: m.internalAddress,
      protocol: m.protocol,
      internalPort: m.internalPort,
      suggestedExternalPort: 0,
      lifetime: lease.value,
    });
    return out.ok ? ok() : fail(refusalError(out.refusal, true), out.detail);
  }

  private async deletePinhole(a: Args, client: IpAddress): Promise<ActionResult> {
    const found = await this.ownedPinhole(a, client);
    if (!found.ok) return found.result;
    const m = found.mapping;
    const out = await this.service.remove({ via: 'upnp', client: m.client, internalAddress: m.internalAddress, protocol: m.protocol, internalPort: m.internalPort });
    if (!out.ok) return fail(refusalError(out.refusal, true), out.detail);
    this.pinholeIds.forget(keyOf(m));
    return ok();
  }
}

/** A refused AddPortMapping or AddAnyPortMapping as its UPnP error: a conflict is told by the mapping in the way. */
function mapRefusal(out: Refused, any: boolean): UpnpErrorDef {
  if (out.refusal !== 'CANNOT_PROVIDE_EXTERNAL' || any) return refusalError(out.refusal, false);
  return out.holder && out.holder.origin !== 'upnp' ? W.CONFLICT_WITH_OTHER_MECHANISMS : W.CONFLICT_IN_MAPPING_ENTRY;
}

/** The service's refusal as the UPnP error a client understands. */
function refusalError(r: Refusal, pinhole: boolean): UpnpErrorDef {
  switch (r) {
    case 'NOT_AUTHORIZED':
    case 'THIRD_PARTY_NOT_ALLOWED':
      return UpnpError.ACTION_NOT_AUTHORIZED;
    case 'USER_EX_QUOTA':
    case 'NO_RESOURCES':
      return pinhole ? F.PINHOLE_SPACE_EXHAUSTED : W.NO_PORT_MAPS_AVAILABLE;
    case 'CANNOT_PROVIDE_EXTERNAL':
      return pinhole ? UpnpError.ACTION_FAILED : W.CONFLICT_IN_MAPPING_ENTRY;
    case 'UNSUPP_PROTOCOL':
      return pinhole ? F.PROTOCOL_NOT_SUPPORTED : UpnpError.INVALID_ARGS;
    case 'MALFORMED_REQUEST':
    case 'EXCESSIVE_REMOTE_PEERS':
      return UpnpError.INVALID_ARGS;
    case 'UNSUPP_OPTION':
      // Behind the ISP's NAT, upstream would not filter by NewRemoteHost.
      return pinhole ? UpnpError.ACTION_FAILED : W.REMOTE_HOST_ONLY_SUPPORTS_WILDCARD;
    case 'RATE_LIMITED':
    case 'FIREWALL_FAILED':
    case 'NETWORK_FAILURE':
      return UpnpError.ACTION_FAILED;
  }
}

function ok(...out: [string, string][]): ActionResult {
  return { ok: true, out };
}

function ui4(n: number): string {
  return String(Math.floor(n) % 0x100000000);
}

/** NewRemoteHost: the one IPv4 host a mapping admits, or '' (any, or a filter UPnP cannot name). */
function remoteHostOf(m: Mapping): string {
  const f = m.filters[0];
  return m.filters.length === 1 && f?.prefix.length === 32 ? f.prefix.address : '';
}

/** Whether a mapping is the one NewRemoteHost names (none: a mapping open to any remote, or one UPnP did not make). */
function sameRemote(m: Mapping, remote: IpAddress | undefined): boolean {
  if (!remote) return m.filters.length === 0 || m.origin !== 'upnp';
  return remoteHostOf(m) === remote;
}
