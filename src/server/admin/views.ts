// What the admin API shows, built from the service's face, the policy in
// force, the kernel's neighbour table and the DHCP leases: every opening with
// an id, and every device (one link-layer address with all its addresses,
// named by its lease) with the ids of its openings — devices with nothing
// open too. docs/admin-api.yaml describes the shapes.
//
// Bounds: a listing holds at most MAX_OPENINGS openings and MAX_DEVICES
// devices (`truncated` says when more exist); packet counts come from one
// listing of each pinhole set per request (service.packetCounts), for IPv6
// MAP mappings: the IPv4 DNAT map keeps no counters.

import type { DeviceOpening, Mapping, StaticOpening } from '../../domain/mapping.js';
import { patternMatches } from '../../domain/patterns.js';
import { familyOf, type IpAddress } from '../../net/address.js';
import type { DhcpLeases } from '../../net/dhcp-leases.js';
import { hostUnit } from '../../net/hosts.js';
import { protocolName } from '../../net/ipproto.js';
import type { Neighbour } from '../../net/neighbours.js';
import { describeStatic } from '../../policy/load.js';
import type { MappingService } from '../../service/mapping-service.js';

export const MAX_OPENINGS = 5000;
export const MAX_DEVICES = 4096;

export interface Endpoint {
  address: string;
  port: number;
}

export interface MappingOpening {
  id: string;
  kind: 'map' | 'peer' | 'static-forward';
  origin: Mapping['origin'];
  family: 4 | 6;
  protocol: string;
  /** The device's id (see DeviceView), or null when nobody can tell. */
  device: string | null;
  internal: Endpoint;
  external: Endpoint;
  remotePeer: Endpoint | null;
  filters: string[];
  client: string;
  description: string;
  /** null: a static forward, which never expires. */
  secondsLeft: number | null;
  /** Inbound packets admitted, where the firewall counts them (IPv6 pinholes on nftables); else null. */
  packets: number | null;
  /** A static forward's name in the policy file. */
  name?: string;
  /** The same: the name DELETE /api/statics/{name} removes it by. */
  static?: string;
}

export interface PinholeOpening {
  id: string;
  kind: 'static-pinhole';
  origin: 'static';
  family: 6;
  name: string;
  protocols: string[];
  ports: { min: number; max: number }[];
  to: string;
  from: string[] | null;
  rule: string;
  /** The devices an address of which the pinhole admits. */
  devices: string[];
  static: string;
}

/** A device opening: the device's link-layer address, and the addresses it opens now. */
export interface DeviceStaticOpening {
  id: string;
  kind: 'static-device';
  origin: 'static';
  name: string;
  static: string;
  /** The device's link-layer address (its id in GET /api/devices). */
  device: string;
  description: string;
  protocols: string[];
  ports: { min: number; max: number }[];
  from: string[] | null;
  /** What is open for it now: its IPv6 addresses (and its EUI-64 identifier's mask, where it uses one). */
  ipv6: string[];
  /** Its IPv4 address the same ports are forwarded to from the WAN, or null while none is known. */
  ipv4: string | null;
  rule: string;
}

export type Opening = MappingOpening | PinholeOpening | DeviceStaticOpening;

export interface DeviceView {
  /** The link-layer address, or (not known) the address itself (IPv4) or its /64 (IPv6). */
  id: string;
  lladdr: string | null;
  name: string | null;
  interfaces: string[];
  addresses: string[];
  openings: string[];
  /** The names of the policy file's static openings that reach it (DELETE /api/statics/{name}). */
  statics: string[];
}

/** What a listing needs, read once per request. */
export interface Sources {
  service: MappingService;
  /** The policy file's static openings. */
  statics: readonly StaticOpening[];
  /** The same as installed: device openings resolved to their addresses now. */
  inForce: readonly StaticOpening[];
  /** The neighbour table's entries on LAN interfaces. */
  neighbours: readonly Neighbour[];
  leases: DhcpLeases | undefined;
  /** Wall-clock milliseconds (for lease ends). */
  now: number;
}

/** The id of a static pinhole or device opening, which the policy file names. */
export const pinholeId = (name: string) => `static-${name}`;

/** Which device each address belongs to, and what is known of each device. */
class DeviceIndex {
  readonly devices = new Map<string, DeviceView>();
  private readonly byAddress = new Map<string, string>();

  constructor(s: Sources) {
    for (const n of s.neighbours) this.add(n.lladdr, n.lladdr, n.address, n.interface);
    for (const l of s.leases?.leases() ?? []) {
      // An ended lease names nobody: its address may be another device's now.
      if (l.expires !== 0 && l.expires * 1000 <= s.now) continue;
      const mac = l.mac?.toLowerCase();
      const known = this.byAddress.get(l.address);
      // The neighbour table says who holds the address now: a lease of another hardware address is not theirs.
      if (known !== undefined && mac !== undefined && known !== mac) continue;
      // An IPv4 lease names its hardware address; an IPv6 one only its address, which the neighbour table ties to a device.
      const id = known ?? (mac !== undefined && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac) ? mac : undefined);
      if (id === undefined) continue;
      const d = this.add(id, id, l.address);
      if (d && d.name === null && l.hostname !== undefined) d.name = l.hostname;
    }
  }

  /** A device by its link-layer address, known or not (a device opening names it before it is seen). */
  byMac(mac: string): DeviceView | undefined {
    return this.devices.get(mac) ?? this.add(mac, mac);
  }

  /** The device of an address, made up from its unit when nothing knows it. */
  of(address: IpAddress): string {
    const known = this.byAddress.get(address);
    if (known !== undefined) return known;
    const unit = hostUnit(address);
    this.add(unit, null, address);
    return unit;
  }

  private add(id: string, lladdr: string | null, address?: string, iface?: string): DeviceView | undefined {
    let d = this.devices.get(id);
    if (!d) {
      if (this.devices.size >= MAX_DEVICES) return undefined;
      d = { id, lladdr, name: null, interfaces: [], addresses: [], openings: [], statics: [] };
      this.devices.set(id, d);
    }
    if (iface !== undefined && !d.interfaces.includes(iface)) d.interfaces.push(iface);
    if (address === undefined) return d;
    if (!d.addresses.includes(address)) d.addresses.push(address);
    if (!this.byAddress.has(address)) this.byAddress.set(address, id);
    return d;
  }
}

function mappingOpening(service: MappingService, m: Mapping, device: string, packets: number | undefined): MappingOpening {
  const isStatic = m.origin === 'static';
  return {
    id: String(m.id),
    kind: isStatic ? 'static-forward' : m.kind,
    origin: m.origin,
    family: m.family,
    protocol: protocolName(m.protocol),
    device,
    internal: { address: m.internalAddress, port: m.internalPort },
    external: { address: m.externalAddress, port: m.externalPort },
    remotePeer: m.remotePeer ? { address: m.remotePeer.address, port: m.remotePeer.port } : null,
    filters: m.filters.map((f) => `${f.prefix.address}/${f.prefix.length}${f.port ? `:${f.port}` : ''}`),
    client: m.client,
    description: isStatic ? m.description.replace(/^static:/, '') : m.description,
    secondsLeft: isStatic ? null : service.remaining(m),
    packets: packets ?? null,
    ...(isStatic ? { name: m.description.replace(/^static:/, ''), static: m.description.replace(/^static:/, '') } : {}),
  };
}

function deviceOpening(s: DeviceOpening, inForce: readonly StaticOpening[]): DeviceStaticOpening {
  const parts = inForce.filter((x) => x.kind !== 'device' && x.device === s.mac && x.name === s.name);
  return {
    id: pinholeId(s.name),
    kind: 'static-device',
    origin: 'static',
    name: s.name,
    static: s.name,
    device: s.mac,
    description: s.description ?? '',
    protocols: s.protocols.map(protocolName),
    ports: s.ports.map((r) => ({ min: r.min, max: r.max })),
    from: s.from ? s.from.map((p) => p.text) : null,
    ipv6: parts.flatMap((x) => (x.kind === 'pinhole' ? [x.to.text] : [])),
    ipv4: parts.flatMap((x) => (x.kind === 'forward' ? [x.to] : []))[0] ?? null,
    rule: describeStatic(s),
  };
}

function pinholeOpening(s: Extract<StaticOpening, { kind: 'pinhole' }>, devices: readonly DeviceView[]): PinholeOpening {
  return {
    id: pinholeId(s.name),
    kind: 'static-pinhole',
    origin: 'static',
    family: 6,
    name: s.name,
    protocols: s.protocols.map(protocolName),
    ports: s.ports.map((r) => ({ min: r.min, max: r.max })),
    to: s.to.text,
    from: s.from ? s.from.map((p) => p.text) : null,
    rule: describeStatic(s),
    devices: devices.filter((d) => d.addresses.some((a) => familyOf(a as IpAddress) === 6 && patternMatches(s.to, a as IpAddress))).map((d) => d.id),
    static: s.name,
  };
}

/** Packet counts of the mappings a firewall counts (IPv6 MAP pinholes), asked of it at once: one listing per request, not a query per mapping. */
async function packetCounts(service: MappingService, mappings: readonly Mapping[]): Promise<Map<number, number>> {
  return service.packetCounts(mappings.filter((m) => m.family === 6 && m.kind === 'map')).catch(() => new Map<number, number>());
}

/** The mappings a listing shows: a device opening's IPv4 forwards are shown as the device opening they belong to, not apart. */
function listed(s: Sources): (m: Mapping) => boolean {
  const ofDevices = new Set(s.statics.flatMap((st) => (st.kind === 'device' ? [`static:${st.name}`] : [])));
  return (m) => m.origin !== 'static' || !ofDevices.has(m.description);
}

export interface Picture {
  openings: Opening[];
  devices: DeviceView[];
  /** More openings or devices existed than a listing holds. */
  truncated: boolean;
}

/** Every opening and every device, each pointing at the other. */
export async function picture(s: Sources, withPackets: boolean): Promise<Picture> {
  const all = s.service.mappings(listed(s)).sort((a, b) => a.id - b.id);
  const mappings = all.slice(0, MAX_OPENINGS);
  const index = new DeviceIndex(s);
  const packets = withPackets ? await packetCounts(s.service, mappings) : new Map<number, number>();
  const openings: Opening[] = mappings.map((m) => {
    const device = index.of(m.internalAddress);
    const d = index.devices.get(device);
    d?.openings.push(String(m.id));
    if (m.origin === 'static') d?.statics.push(m.description.replace(/^static:/, ''));
    return mappingOpening(s.service, m, device, packets.get(m.id));
  });
  for (const st of s.statics) {
    if (st.kind !== 'device' || openings.length >= MAX_OPENINGS) continue;
    const o = deviceOpening(st, s.inForce);
    const d = index.byMac(st.mac);
    d?.openings.push(o.id);
    d?.statics.push(st.name);
    openings.push(o);
  }
  const devices = [...index.devices.values()];
  for (const st of s.statics) {
    if (st.kind !== 'pinhole' || openings.length >= MAX_OPENINGS) continue;
    const p = pinholeOpening(st, devices);
    for (const id of p.devices) {
      index.devices.get(id)?.openings.push(p.id);
      index.devices.get(id)?.statics.push(st.name);
    }
    openings.push(p);
  }
  const truncated = all.length > mappings.length || openings.length >= MAX_OPENINGS || devices.length >= MAX_DEVICES;
  return { openings, devices, truncated };
}

/** One opening by its id, as the listing shows it (with its packet count), or undefined. */
export async function openingById(s: Sources, id: string): Promise<Opening | undefined> {
  if (/^\d{1,15}$/.test(id)) {
    const shown = listed(s);
    const m = s.service.mappings((x) => x.id === Number(id) && shown(x))[0];
    if (!m) return undefined;
    const packets = await packetCounts(s.service, [m]);
    return mappingOpening(s.service, m, new DeviceIndex(s).of(m.internalAddress), packets.get(m.id));
  }
  const st = s.statics.find((x) => (x.kind === 'pinhole' || x.kind === 'device') && pinholeId(x.name) === id);
  if (st?.kind === 'device') return deviceOpening(st, s.inForce);
  if (st?.kind !== 'pinhole') return undefined;
  return pinholeOpening(st, [...new DeviceIndex(s).devices.values()]);
}
