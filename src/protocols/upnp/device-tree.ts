// The device tree portcullis presents (IGD:2 §2, UDA 1.1 §2.3) and the URN
// grammar every UPnP type name follows (UDA 1.1 §1.1.4: urn:schemas-upnp-org:
// device|service:<type>:<ver>). One source for SSDP answers, notifications
// and the description documents, so they cannot disagree.
//
//   InternetGatewayDevice:2            uuid:<root>
//     WANDevice:2                      uuid:<derived "WANDevice">
//       WANCommonInterfaceConfig:1
//       WANConnectionDevice:2          uuid:<derived "WANConnectionDevice">
//         WANIPConnection:2
//         WANIPv6FirewallControl:1

import { createHash } from 'node:crypto';

const UPNP_DOMAIN = 'schemas-upnp-org';
export type UrnKind = 'device' | 'service';

export interface UpnpUrn {
  kind: UrnKind;
  /** The type name, e.g. WANIPConnection. */
  name: string;
  version: number;
}

/**
 * UDA 1.1 §2.3 caps a type name at 64 characters; the standard UPnP Forum
 * types use letters and digits only, and nothing else can match ours.
 */
const TYPE_NAME = /^[A-Za-z][A-Za-z0-9]{0,63}$/;
/** A version is a positive decimal integer without leading zeros (UDA 1.1 §1.1.4 "ver"). */
const VERSION = /^[1-9][0-9]{0,8}$/;

/** Parses `urn:schemas-upnp-org:<kind>:<Name>:<v>`; anything else (other domains included) is undefined. */
export function parseUpnpUrn(text: string): UpnpUrn | undefined {
  if (text.length > 128) return undefined;
  const parts = text.split(':');
  if (parts.length !== 5 || parts[0] !== 'urn' || parts[1] !== UPNP_DOMAIN) return undefined;
  const [, , kind, name, version] = parts as [string, string, string, string, string];
  if ((kind !== 'device' && kind !== 'service') || !TYPE_NAME.test(name) || !VERSION.test(version)) return undefined;
  return { kind, name, version: Number(version) };
}

export function formatUrn(u: UpnpUrn): string {
  return `urn:${UPNP_DOMAIN}:${u.kind}:${u.name}:${u.version}`;
}

const DeviceName = {
  IGD: 'InternetGatewayDevice',
  WAN_DEVICE: 'WANDevice',
  WAN_CONNECTION_DEVICE: 'WANConnectionDevice',
} as const;

export const ServiceName = {
  WAN_IP_CONNECTION: 'WANIPConnection',
  WAN_IPV6_FIREWALL_CONTROL: 'WANIPv6FirewallControl',
  WAN_COMMON_INTERFACE_CONFIG: 'WANCommonInterfaceConfig',
} as const;
export type ServiceName = (typeof ServiceName)[keyof typeof ServiceName];

export type IgdVersion = 1 | 2;

export interface ServiceNode {
  urn: UpnpUrn;
  /** IGD:2 §2.3 serviceId values (urn:upnp-org:serviceId:…). */
  serviceId: string;
}

export interface DeviceNode {
  urn: UpnpUrn;
  /** The bare UUID (no "uuid:" prefix), lowercase. */
  uuid: string;
  services: readonly ServiceNode[];
  devices: readonly DeviceNode[];
}

/** RFC 9562 §4 string form, which is what UDA 1.1 §1.1.4 asks UDNs to use. */
const UUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function isUuid(text: string): boolean {
  return UUID_TEXT.test(text);
}

/**
 * RFC 9562 §5.5 name-based UUID (version 5, SHA-1). Embedded devices get
 * UUIDs derived from the root's with their role as the name: stable across
 * restarts (DESC-04) without storing anything, distinct per device.
 */
export function uuidV5(namespace: string, name: string): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  const h = createHash('sha1').update(ns).update(name, 'utf8').digest().subarray(0, 16);
  h[6] = ((h[6] ?? 0) & 0x0f) | 0x50;
  h[8] = ((h[8] ?? 0) & 0x3f) | 0x80;
  const x = h.toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

const device = (name: string, version: number): UpnpUrn => ({ kind: 'device', name, version });
const service = (name: string, version: number): UpnpUrn => ({ kind: 'service', name, version });

/**
 * The tree for IGD:2, or the IGD:1 variant for control points that only know
 * version 1 (DESC-07). The IGD:1 variant keeps WANIPv6FirewallControl:1 in
 * the WANConnectionDevice: UDA 1.1 §2.3 lets a device embed any services, an
 * IGD:1 control point looks services up by type and skips the one it does
 * not know, and an IPv6-capable client that reached us through a v1 search
 * can still find the firewall service (miniupnpd's v1 build does the same).
 */
export function igdTree(rootUuid: string, igdVersion: IgdVersion): DeviceNode {
  const uuid = rootUuid.toLowerCase();
  if (!isUuid(uuid)) throw new RangeError(`root UUID ${JSON.stringify(rootUuid)} is not in RFC 9562 text form`);
  const v = igdVersion;
  return {
    urn: device(DeviceName.IGD, v),
    uuid,
    services: [],
    devices: [
      {
        urn: device(DeviceName.WAN_DEVICE, v),
        uuid: uuidV5(uuid, DeviceName.WAN_DEVICE),
        services: [{ urn: service(ServiceName.WAN_COMMON_INTERFACE_CONFIG, 1), serviceId: 'urn:upnp-org:serviceId:WANCommonIFC1' }],
        devices: [
          {
            urn: device(DeviceName.WAN_CONNECTION_DEVICE, v),
            uuid: uuidV5(uuid, DeviceName.WAN_CONNECTION_DEVICE),
            services: [
              { urn: service(ServiceName.WAN_IP_CONNECTION, v), serviceId: 'urn:upnp-org:serviceId:WANIPConn1' },
              { urn: service(ServiceName.WAN_IPV6_FIREWALL_CONTROL, 1), serviceId: 'urn:upnp-org:serviceId:WANIPv6Firewall1' },
            ],
            devices: [],
          },
        ],
      },
    ],
  };
}

/** Depth-first, root first: the order devices appear in the description. */
export function allDevices(root: DeviceNode): DeviceNode[] {
  const out: DeviceNode[] = [];
  const walk = (d: DeviceNode): void => {
    out.push(d);
    for (const c of d.devices) walk(c);
  };
  walk(root);
  return out;
}
