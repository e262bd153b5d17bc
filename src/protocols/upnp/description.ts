// UPnP description documents (UDA 1.1 §2): the root device description and
// the service control protocol descriptions (SCPDs) of the four services we
// serve, generated from one table of actions and state variables. The same
// table (ACTIONS) tells the control server which in arguments an action
// takes, so what we advertise and what we accept cannot drift apart.
//
// Services and versions:
//   WANIPConnection:2          IGD:2 WANIPConnection:2 service template
//   WANIPConnection:1          IGD:1 WANIPConnection:1 (the v1 action subset)
//   WANIPv6FirewallControl:1   IGD:2 WANIPv6FirewallControl:1
//   WANCommonInterfaceConfig:1 IGD:1/2 WANCommonInterfaceConfig:1
// Optional actions and variables we have no use for (AutoDisconnectTime,
// EnabledForInternet, QueryStateVariable, …) are left out, as UDA 1.1 §2.5
// allows; every required one is present, plus the optional ones control
// points call (WANCommonInterfaceConfig counters, GetOutboundPinholeTimeout,
// CheckPinholeWorking).

import { createHash } from 'node:crypto';
import { MAX_CONFIG_ID } from './ssdp.js';
import { allDevices, formatUrn, igdTree, type DeviceNode, type IgdVersion, type ServiceName, type UpnpUrn } from './device-tree.js';
import { escapeXml } from './xml-chars.js';

export type DataType = 'string' | 'boolean' | 'ui2' | 'ui4';

export interface StateVariableSpec {
  name: string;
  dataType: DataType;
  sendEvents: boolean;
  allowedValues?: readonly string[];
  range?: { min: number; max: number };
}

export interface ArgumentSpec {
  name: string;
  direction: 'in' | 'out';
  relatedStateVariable: string;
}

export interface ActionSpec {
  name: string;
  arguments: readonly ArgumentSpec[];
}

export interface ServiceSpec {
  urn: UpnpUrn;
  actions: readonly ActionSpec[];
  stateVariables: readonly StateVariableSpec[];
}

export type ServiceKey = 'WANIPConnection:1' | 'WANIPConnection:2' | 'WANIPv6FirewallControl:1' | 'WANCommonInterfaceConfig:1';

// ------------------------------------------------------ the service table

const v = (name: string, dataType: DataType, sendEvents: boolean, extra: Partial<StateVariableSpec> = {}): StateVariableSpec => ({
  name,
  dataType,
  sendEvents,
  ...extra,
});
/** An action; each argument is [name, relatedStateVariable], ins then outs. */
const act = (name: string, ins: readonly (readonly [string, string])[] = [], outs: readonly (readonly [string, string])[] = []): ActionSpec => ({
  name,
  arguments: [
    ...ins.map(([n, r]) => ({ name: n, direction: 'in' as const, relatedStateVariable: r })),
    ...outs.map(([n, r]) => ({ name: n, direction: 'out' as const, relatedStateVariable: r })),
  ],
});

/** The (RemoteHost, ExternalPort, Protocol) triple that names a port mapping. */
const MAPPING_KEY = [
  ['NewRemoteHost', 'RemoteHost'],
  ['NewExternalPort', 'ExternalPort'],
  ['NewProtocol', 'PortMappingProtocol'],
] as const;
const MAPPING_VALUE = [
  ['NewInternalPort', 'InternalPort'],
  ['NewInternalClient', 'InternalClient'],
  ['NewEnabled', 'PortMappingEnabled'],
  ['NewPortMappingDescription', 'PortMappingDescription'],
  ['NewLeaseDuration', 'PortMappingLeaseDuration'],
] as const;
const PORT_RANGE = [
  ['NewStartPort', 'ExternalPort'],
  ['NewEndPort', 'ExternalPort'],
  ['NewProtocol', 'PortMappingProtocol'],
  ['NewManage', 'A_ARG_TYPE_Manage'],
] as const;

function wanIpConnectionActions(version: 1 | 2): ActionSpec[] {
  const actions = [
    act('SetConnectionType', [['NewConnectionType', 'ConnectionType']]),
    act('GetConnectionTypeInfo', [], [
      ['NewConnectionType', 'ConnectionType'],
      ['NewPossibleConnectionTypes', 'PossibleConnectionTypes'],
    ]),
    act('RequestConnection'),
    act('ForceTermination'),
    act('GetStatusInfo', [], [
      ['NewConnectionStatus', 'ConnectionStatus'],
      ['NewLastConnectionError', 'LastConnectionError'],
      ['NewUptime', 'Uptime'],
    ]),
    act('GetNATRSIPStatus', [], [
      ['NewRSIPAvailable', 'RSIPAvailable'],
      ['NewNATEnabled', 'NATEnabled'],
    ]),
    act('GetGenericPortMappingEntry', [['NewPortMappingIndex', 'PortMappingNumberOfEntries']], [...MAPPING_KEY, ...MAPPING_VALUE]),
    act('GetSpecificPortMappingEntry', MAPPING_KEY, MAPPING_VALUE),
    act('AddPortMapping', [...MAPPING_KEY, ...MAPPING_VALUE]),
    act('DeletePortMapping', MAPPING_KEY),
    act('GetExternalIPAddress', [], [['NewExternalIPAddress', 'ExternalIPAddress']]),
  ];
  if (version === 1) return actions;
  return [
    ...actions,
    act('DeletePortMappingRange', PORT_RANGE),
    act('GetListOfPortMappings', [...PORT_RANGE, ['NewNumberOfPorts', 'PortMappingNumberOfEntries']], [['NewPortListing', 'A_ARG_TYPE_PortListing']]),
    act('AddAnyPortMapping', [...MAPPING_KEY, ...MAPPING_VALUE], [['NewReservedPort', 'ExternalPort']]),
  ];
}

function wanIpConnectionVariables(version: 1 | 2): StateVariableSpec[] {
  const vars = [
    v('ConnectionType', 'string', false),
    v('PossibleConnectionTypes', 'string', true, { allowedValues: ['Unconfigured', 'IP_Routed', 'IP_Bridged'] }),
    v('ConnectionStatus', 'string', true, {
      allowedValues: ['Unconfigured', 'Connecting', 'Connected', 'PendingDisconnect', 'Disconnecting', 'Disconnected'],
    }),
    v('Uptime', 'ui4', false),
    v('LastConnectionError', 'string', false, { allowedValues: ['ERROR_NONE', 'ERROR_UNKNOWN'] }),
    v('RSIPAvailable', 'boolean', false),
    v('NATEnabled', 'boolean', false),
    v('ExternalIPAddress', 'string', true),
    v('PortMappingNumberOfEntries', 'ui2', true),
    v('PortMappingEnabled', 'boolean', false),
    // v2: 0..604800 s (0 from a control point means "the maximum", IGD2-01);
    // v1 left the range open, with 0 meaning a permanent lease.
    v('PortMappingLeaseDuration', 'ui4', false, version === 2 ? { range: { min: 0, max: 604800 } } : {}),
    v('RemoteHost', 'string', false),
    v('ExternalPort', 'ui2', false),
    // v2 makes 0 (wildcard) an error (732), so the advertised range starts at 1.
    v('InternalPort', 'ui2', false, version === 2 ? { range: { min: 1, max: 65535 } } : {}),
    v('PortMappingProtocol', 'string', false, { allowedValues: ['TCP', 'UDP'] }),
    v('InternalClient', 'string', false),
    v('PortMappingDescription', 'string', false),
  ];
  if (version === 1) return vars;
  return [
    ...vars,
    v('SystemUpdateID', 'ui4', true),
    v('A_ARG_TYPE_Manage', 'boolean', false),
    v('A_ARG_TYPE_PortListing', 'string', false),
  ];
}

/** The 5-tuple that names a pinhole, as AddPinhole and GetOutboundPinholeTimeout take it. */
const PINHOLE_TUPLE = [
  ['RemoteHost', 'A_ARG_TYPE_IPv6Address'],
  ['RemotePort', 'A_ARG_TYPE_Port'],
  ['InternalClient', 'A_ARG_TYPE_IPv6Address'],
  ['InternalPort', 'A_ARG_TYPE_Port'],
  ['Protocol', 'A_ARG_TYPE_Protocol'],
] as const;
const UNIQUE_ID = ['UniqueID', 'A_ARG_TYPE_UniqueID'] as const;

const WAN_IPV6_FIREWALL_CONTROL_1: ServiceSpec = {
  urn: { kind: 'service', name: 'WANIPv6FirewallControl', version: 1 },
  actions: [
    act('GetFirewallStatus', [], [
      ['FirewallEnabled', 'FirewallEnabled'],
      ['InboundPinholeAllowed', 'InboundPinholeAllowed'],
    ]),
    act('GetOutboundPinholeTimeout', PINHOLE_TUPLE, [['OutboundPinholeTimeout', 'A_ARG_TYPE_OutboundPinholeTimeout']]),
    act('AddPinhole', [...PINHOLE_TUPLE, ['LeaseTime', 'A_ARG_TYPE_LeaseTime']], [UNIQUE_ID]),
    act('UpdatePinhole', [UNIQUE_ID, ['NewLeaseTime', 'A_ARG_TYPE_LeaseTime']]),
    act('DeletePinhole', [UNIQUE_ID]),
    act('GetPinholePackets', [UNIQUE_ID], [['PinholePackets', 'A_ARG_TYPE_PinholePackets']]),
    act('CheckPinholeWorking', [UNIQUE_ID], [['IsWorking', 'A_ARG_TYPE_Boolean']]),
  ],
  stateVariables: [
    v('FirewallEnabled', 'boolean', true),
    v('InboundPinholeAllowed', 'boolean', true),
    v('A_ARG_TYPE_IPv6Address', 'string', false),
    v('A_ARG_TYPE_Port', 'ui2', false),
    v('A_ARG_TYPE_Protocol', 'ui2', false),
    // FC6-09: a pinhole lease is 1 s to 24 h.
    v('A_ARG_TYPE_LeaseTime', 'ui4', false, { range: { min: 1, max: 86400 } }),
    v('A_ARG_TYPE_UniqueID', 'ui2', false),
    v('A_ARG_TYPE_OutboundPinholeTimeout', 'ui4', false),
    v('A_ARG_TYPE_PinholePackets', 'ui4', false),
    v('A_ARG_TYPE_Boolean', 'boolean', false),
  ],
};

/** The optional interface counters (ui4, wrapping at 2^32). */
const TOTAL_COUNTERS = ['BytesSent', 'BytesReceived', 'PacketsSent', 'PacketsReceived'] as const;

const WAN_COMMON_INTERFACE_CONFIG_1: ServiceSpec = {
  urn: { kind: 'service', name: 'WANCommonInterfaceConfig', version: 1 },
  actions: [
    act('GetCommonLinkProperties', [], [
      ['NewWANAccessType', 'WANAccessType'],
      ['NewLayer1UpstreamMaxBitRate', 'Layer1UpstreamMaxBitRate'],
      ['NewLayer1DownstreamMaxBitRate', 'Layer1DownstreamMaxBitRate'],
      ['NewPhysicalLinkStatus', 'PhysicalLinkStatus'],
    ]),
    ...TOTAL_COUNTERS.map((c) => act(`GetTotal${c}`, [], [[`NewTotal${c}`, `Total${c}`]])),
  ],
  stateVariables: [
    v('WANAccessType', 'string', false, { allowedValues: ['DSL', 'POTS', 'Cable', 'Ethernet'] }),
    v('Layer1UpstreamMaxBitRate', 'ui4', false),
    v('Layer1DownstreamMaxBitRate', 'ui4', false),
    v('PhysicalLinkStatus', 'string', true, { allowedValues: ['Up', 'Down'] }),
    ...TOTAL_COUNTERS.map((c) => v(`Total${c}`, 'ui4', false)),
  ],
};

export const SERVICE_SPECS: Readonly<Record<ServiceKey, ServiceSpec>> = {
  'WANIPConnection:1': {
    urn: { kind: 'service', name: 'WANIPConnection', version: 1 },
    actions: wanIpConnectionActions(1),
    stateVariables: wanIpConnectionVariables(1),
  },
  'WANIPConnection:2': {
    urn: { kind: 'service', name: 'WANIPConnection', version: 2 },
    actions: wanIpConnectionActions(2),
    stateVariables: wanIpConnectionVariables(2),
  },
  'WANIPv6FirewallControl:1': WAN_IPV6_FIREWALL_CONTROL_1,
  'WANCommonInterfaceConfig:1': WAN_COMMON_INTERFACE_CONFIG_1,
};

export interface ActionEntry {
  name: string;
  /** In argument names in SCPD order. */
  in: readonly string[];
  /** Out argument names in SCPD order (the order a response must use). */
  out: readonly string[];
  /** The state variable behind each argument, for type and range checks. */
  variables: ReadonlyMap<string, StateVariableSpec>;
}

function actionTable(spec: ServiceSpec): ReadonlyMap<string, ActionEntry> {
  const vars = new Map(spec.stateVariables.map((sv) => [sv.name, sv]));
  return new Map(
    spec.actions.map((a) => {
      const variables = new Map<string, StateVariableSpec>();
      for (const arg of a.arguments) {
        const sv = vars.get(arg.relatedStateVariable);
        if (!sv) throw new Error(`${formatUrn(spec.urn)} ${a.name}.${arg.name}: no state variable ${arg.relatedStateVariable}`);
        variables.set(arg.name, sv);
      }
      const names = (d: 'in' | 'out'): string[] => a.arguments.filter((x) => x.direction === d).map((x) => x.name);
      return [a.name, { name: a.name, in: names('in'), out: names('out'), variables }];
    }),
  );
}

/** Per service: action name → in and out arguments. The SCPDs are rendered from the same specs. */
export const ACTIONS: Readonly<Record<ServiceKey, ReadonlyMap<string, ActionEntry>>> = {
  'WANIPConnection:1': actionTable(SERVICE_SPECS['WANIPConnection:1']),
  'WANIPConnection:2': actionTable(SERVICE_SPECS['WANIPConnection:2']),
  'WANIPv6FirewallControl:1': actionTable(SERVICE_SPECS['WANIPv6FirewallControl:1']),
  'WANCommonInterfaceConfig:1': actionTable(SERVICE_SPECS['WANCommonInterfaceConfig:1']),
};

/**
 * The spec a request is checked against: the version asked for, when we
 * implement it, else the highest we have. SOAP-02: a `:1` request to the
 * WANIPConnection:2 control URL is v1 (its actions only); a version above
 * ours is answered with our highest, whose actions are a superset.
 */
export function serviceKeyFor(serviceName: string, version: number): ServiceKey | undefined {
  if (serviceName === 'WANIPConnection') return version <= 1 ? 'WANIPConnection:1' : 'WANIPConnection:2';
  if (serviceName === 'WANIPv6FirewallControl') return 'WANIPv6FirewallControl:1';
  if (serviceName === 'WANCommonInterfaceConfig') return 'WANCommonInterfaceConfig:1';
  return undefined;
}

/**
 * SEC-11: every in argument of the action must be present (missing → 402).
 * Extra ones are ignored: UDA 1.1 §3.2.2 lets the server choose, and real
 * control points send arguments of other IGD versions.
 */
export function checkInArguments(entry: ActionEntry, args: ReadonlyMap<string, string>): { missing: string[] } {
  return { missing: entry.in.filter((n) => !args.has(n)) };
}

// -------------------------------------------------------------------- URLs

export interface UpnpPaths {
  /** Root description per IGD version (the LOCATION of SSDP answers). */
  description: Readonly<Record<IgdVersion, string>>;
  scpd: Readonly<Record<ServiceKey, string>>;
  control: Readonly<Record<ServiceName, string>>;
  event: Readonly<Record<ServiceName, string>>;
}

/** 16+ URL-safe characters, e.g. 16 random bytes in base64url (22 characters). */
const TOKEN = /^[A-Za-z0-9_-]{16,64}$/;

/**
 * Every path starts with a per-boot random token (SEC-14, DESC-08: the
 * "Filet-o-Firewall" CSRF needed predictable control URLs; a web page cannot
 * guess these). Control and event URLs are shared by both IGD versions: the
 * request's own service type says which version it speaks.
 */
export function upnpPaths(token: string): UpnpPaths {
  if (!TOKEN.test(token)) throw new RangeError('URL token must be 16-64 characters of [A-Za-z0-9_-]');
  const base = `/${token}`;
  const perService = (kind: string): Record<ServiceName, string> => ({
    WANIPConnection: `${base}/${kind}/WANIPConnection`,
    WANIPv6FirewallControl: `${base}/${kind}/WANIPv6FirewallControl`,
    WANCommonInterfaceConfig: `${base}/${kind}/WANCommonInterfaceConfig`,
  });
  return {
    description: { 1: `${base}/igd1.xml`, 2: `${base}/igd2.xml` },
    scpd: {
      'WANIPConnection:1': `${base}/scpd/WANIPConnection-1.xml`,
      'WANIPConnection:2': `${base}/scpd/WANIPConnection-2.xml`,
      'WANIPv6FirewallControl:1': `${base}/scpd/WANIPv6FirewallControl-1.xml`,
      'WANCommonInterfaceConfig:1': `${base}/scpd/WANCommonInterfaceConfig-1.xml`,
    },
    control: perService('ctl'),
    event: perService('evt'),
  };
}

// ------------------------------------------------------------- documents

const XML_DECLARATION = '<?xml version="1.0"?>\r\n';
/** UDA 1.1 §2.3: specVersion 1.1, matching the UPnP/1.1 token in SERVER (DESC-02). */
const SPEC_VERSION = '<specVersion><major>1</major><minor>1</minor></specVersion>';

const tag = (name: string, text: string): string => `<${name}>${escapeXml(text)}</${name}>`;
const optionalTag = (name: string, text: string | undefined): string => (text === undefined ? '' : tag(name, text));

/** UDA 1.1 §2.5 SCPD. */
export function scpd(spec: ServiceSpec): string {
  let out = `${XML_DECLARATION}<scpd xmlns="urn:schemas-upnp-org:service-1-0">${SPEC_VERSION}<actionList>`;
  for (const a of spec.actions) {
    out += `<action>${tag('name', a.name)}`;
    if (a.arguments.length > 0) {
      out += '<argumentList>';
      for (const arg of a.arguments) {
        out += `<argument>${tag('name', arg.name)}${tag('direction', arg.direction)}${tag('relatedStateVariable', arg.relatedStateVariable)}</argument>`;
      }
      out += '</argumentList>';
    }
    out += '</action>';
  }
  out += '</actionList><serviceStateTable>';
  for (const sv of spec.stateVariables) {
    out += `<stateVariable sendEvents="${sv.sendEvents ? 'yes' : 'no'}">${tag('name', sv.name)}${tag('dataType', sv.dataType)}`;
    if (sv.allowedValues) out += `<allowedValueList>${sv.allowedValues.map((x) => tag('allowedValue', x)).join('')}</allowedValueList>`;
    if (sv.range) out += `<allowedValueRange>${tag('minimum', String(sv.range.min))}${tag('maximum', String(sv.range.max))}</allowedValueRange>`;
    out += '</stateVariable>';
  }
  return `${out}</serviceStateTable></scpd>\r\n`;
}

export interface RootDescriptionOptions {
  rootUuid: string;
  igdVersion: IgdVersion;
  friendlyName: string;
  manufacturer: string;
  manufacturerURL?: string;
  modelDescription?: string;
  modelName: string;
  modelNumber: string;
  modelURL?: string;
  serialNumber: string;
  presentationURL?: string;
  /** UDA 1.1 §2.3: the configId attribute, equal to CONFIGID.UPNP.ORG. */
  configId: number;
  paths: UpnpPaths;
}

/** Embedded devices are named after their role under the root's names. */
const ROLE_LABEL: Readonly<Record<string, string>> = {
  WANDevice: 'WAN Device',
  WANConnectionDevice: 'WAN Connection Device',
};

/**
 * UDA 1.1 §2.3 root device description for IGD:2 (or the IGD:1 variant, see
 * igdTree). URLs are absolute paths, resolved against the description's own
 * URL (UDA 1.1 §2.3: URLBase is deprecated).
 */
export function rootDescription(o: RootDescriptionOptions): string {
  if (!Number.isInteger(o.configId) || o.configId < 0 || o.configId > MAX_CONFIG_ID) throw new RangeError(`configId ${o.configId}`);
  const tree = igdTree(o.rootUuid, o.igdVersion);
  const device = (d: DeviceNode, isRoot: boolean): string => {
    const label = ROLE_LABEL[d.urn.name];
    let out =
      '<device>' +
      tag('deviceType', formatUrn(d.urn)) +
      tag('friendlyName', label ? `${o.friendlyName} ${label}` : o.friendlyName) +
      tag('manufacturer', o.manufacturer) +
      optionalTag('manufacturerURL', o.manufacturerURL) +
      optionalTag('modelDescription', o.modelDescription) +
      tag('modelName', o.modelName) +
      tag('modelNumber', o.modelNumber) +
      optionalTag('modelURL', o.modelURL) +
      tag('serialNumber', o.serialNumber) +
      tag('UDN', `uuid:${d.uuid}`);
    if (d.services.length > 0) {
      out += '<serviceList>';
      for (const s of d.services) {
        const name = s.urn.name as ServiceName;
        const key = `${name}:${s.urn.version}` as ServiceKey;
        out +=
          '<service>' +
          tag('serviceType', formatUrn(s.urn)) +
          tag('serviceId', s.serviceId) +
          tag('SCPDURL', o.paths.scpd[key]) +
          tag('controlURL', o.paths.control[name]) +
          tag('eventSubURL', o.paths.event[name]) +
          '</service>';
      }
      out += '</serviceList>';
    }
    if (d.devices.length > 0) out += `<deviceList>${d.devices.map((c) => device(c, false)).join('')}</deviceList>`;
    if (isRoot) out += optionalTag('presentationURL', o.presentationURL);
    return `${out}</device>`;
  };
  return `${XML_DECLARATION}<root xmlns="urn:schemas-upnp-org:device-1-0" configId="${o.configId}">${SPEC_VERSION}${device(tree, true)}</root>\r\n`;
}

/** The spec of every service in a tree, keyed as the SCPD paths are. */
export function servicesOf(tree: DeviceNode): ServiceKey[] {
  return allDevices(tree).flatMap((d) => d.services.map((s) => `${s.urn.name}:${s.urn.version}` as ServiceKey));
}

/**
 * A CONFIGID (UDA 1.1 §1.2.2: 0..16777215, changes exactly when a description
 * changes) derived from the documents' text: hash the SCPDs and the root
 * description rendered with configId 0, and the value is stable across
 * restarts and moves whenever any document does (SSDP-16).
 */
export function configIdOf(documents: readonly string[]): number {
  const h = createHash('sha256');
  for (const d of documents) h.update(d).update('\0');
  return h.digest().readUIntBE(0, 3);
}
