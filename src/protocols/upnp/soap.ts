// UPnP control: SOAP 1.1 requests and responses as UDA 1.1 §3.2 profiles them.
//
//   POST <controlURL> HTTP/1.1
//   CONTENT-TYPE: text/xml; charset="utf-8"
//   SOAPACTION: "urn:schemas-upnp-org:service:<serviceType>:<v>#<actionName>"
//
//   <s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
//               s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
//     <s:Body>
//       <u:actionName xmlns:u="urn:schemas-upnp-org:service:<serviceType>:<v>">
//         <argumentName>in arg value</argumentName> …
//
// A success is `<u:actionNameResponse>` with the out arguments in SCPD order;
// a failure is HTTP 500 with a SOAP Fault whose detail carries a UPnPError
// (UDA 1.1 §3.2.2). Error codes are below, keyed per service, because the
// 7xx range is per-service: 704 is ConnectionSetupFailed in WANIPConnection
// and NoSuchEntry in WANIPv6FirewallControl.

import { parseUpnpUrn } from './device-tree.js';
import { childElements, parseXml, textOf, type XmlElement } from './xml.js';
import { escapeXml, isNcName } from './xml-chars.js';

const SOAP_ENVELOPE_NS = 'http://schemas.xmlsoap.org/soap/envelope/';
const SOAP_ENCODING_STYLE = 'http://schemas.xmlsoap.org/soap/encoding/';
/** UDA 1.1 §3.2.2: the namespace of the UPnPError fault detail. */
const UPNP_CONTROL_NS = 'urn:schemas-upnp-org:control-1-0';
/** CVE-2013-0230 was a long SOAPAction; nothing legitimate is longer than this. */
const SOAP_ACTION_MAX_LENGTH = 256;

export interface UpnpErrorDef {
  code: number;
  /** The errorDescription value the specs give (what control points log). */
  name: string;
  /** What the code means, in our words, for logs and documentation. */
  meaning: string;
}

const def = (code: number, name: string, meaning: string): UpnpErrorDef => ({ code, name, meaning });

/** UDA 1.1 §3.2.2 Table 3-3 (common to every service). */
export const UpnpError = {
  INVALID_ACTION: def(401, 'Invalid Action', 'no action by that name at this service'),
  INVALID_ARGS: def(402, 'Invalid Args', 'missing, extra, misnamed or mistyped in arguments'),
  ACTION_FAILED: def(501, 'Action Failed', 'the action could not be carried out in the current state'),
  ARGUMENT_VALUE_INVALID: def(600, 'Argument Value Invalid', 'an argument value is not valid'),
  ARGUMENT_VALUE_OUT_OF_RANGE: def(601, 'Argument Value Out of Range', 'an argument value is outside its allowed range'),
  OPTIONAL_ACTION_NOT_IMPLEMENTED: def(602, 'Optional Action Not Implemented', 'the optional action is not implemented'),
  OUT_OF_MEMORY: def(603, 'Out of Memory', 'not enough memory to complete the action'),
  HUMAN_INTERVENTION_REQUIRED: def(604, 'Human Intervention Required', 'the device needs local attention'),
  STRING_ARGUMENT_TOO_LONG: def(605, 'String Argument Too Long', 'a string argument is too long'),
  ACTION_NOT_AUTHORIZED: def(606, 'Action not authorized', 'the control point may not invoke this action or use these values'),
} as const satisfies Record<string, UpnpErrorDef>;

/**
 * WANIPConnection:1 and :2 error codes (the services' error tables). 703-711 are
 * the connection-lifecycle codes (SetConnectionType, RequestConnection,
 * ForceTermination); 724-727 are v1 codes that a v2 service "MUST NOT" return
 * (control points must still understand them); 728-733 are new in v2.
 */
export const WanIpConnectionError = {
  INACTIVE_CONNECTION_STATE_REQUIRED: def(703, 'InactiveConnectionStateRequired', 'ConnectionStatus must be Unconfigured or Disconnected'),
  CONNECTION_SETUP_FAILED: def(704, 'ConnectionSetupFailed', 'the connection could not be set up'),
  CONNECTION_SETUP_IN_PROGRESS: def(705, 'ConnectionSetupInProgress', 'a connection is being set up'),
  CONNECTION_NOT_CONFIGURED: def(706, 'ConnectionNotConfigured', 'the connection is not configured'),
  DISCONNECT_IN_PROGRESS: def(707, 'DisconnectInProgress', 'the connection is being torn down'),
  INVALID_LAYER2_ADDRESS: def(708, 'InvalidLayer2Address', 'the layer-2 address is not valid'),
  INTERNET_ACCESS_DISABLED: def(709, 'InternetAccessDisabled', 'Internet access is disabled'),
  INVALID_CONNECTION_TYPE: def(710, 'InvalidConnectionType', 'the action does not apply to this connection type'),
  CONNECTION_ALREADY_TERMINATED: def(711, 'ConnectionAlreadyTerminated', 'the connection is already down'),
  SPECIFIED_ARRAY_INDEX_INVALID: def(713, 'SpecifiedArrayIndexInvalid', 'no port mapping at that index'),
  NO_SUCH_ENTRY_IN_ARRAY: def(714, 'NoSuchEntryInArray', 'no port mapping with those values'),
  WILDCARD_NOT_PERMITTED_IN_SRC_IP: def(715, 'WildCardNotPermittedInSrcIP', 'RemoteHost must be a specific address'),
  WILDCARD_NOT_PERMITTED_IN_EXT_PORT: def(716, 'WildCardNotPermittedInExtPort', 'ExternalPort must be a specific port'),
  CONFLICT_IN_MAPPING_ENTRY: def(718, 'ConflictInMappingEntry', 'the mapping is held by another internal client'),
  SAME_PORT_VALUES_REQUIRED: def(724, 'SamePortValuesRequired', 'internal and external ports must match (v1 only)'),
  ONLY_PERMANENT_LEASES_SUPPORTED: def(725, 'OnlyPermanentLeasesSupported', 'only lease duration 0 is supported (v1 only)'),
  REMOTE_HOST_ONLY_SUPPORTS_WILDCARD: def(726, 'RemoteHostOnlySupportsWildcard', 'RemoteHost must be empty (v1 only)'),
  EXTERNAL_PORT_ONLY_SUPPORTS_WILDCARD: def(727, 'ExternalPortOnlySupportsWildcard', 'ExternalPort must be a wildcard (v1 only)'),
  NO_PORT_MAPS_AVAILABLE: def(728, 'NoPortMapsAvailable', 'no free port, or the mapping quota is used up'),
  CONFLICT_WITH_OTHER_MECHANISMS: def(729, 'ConflictWithOtherMechanisms', 'the port is held by another mechanism (PCP, NAT-PMP, static)'),
  PORT_MAPPING_NOT_FOUND: def(730, 'PortMappingNotFound', 'no port mapping in the given range'),
  READ_ONLY: def(731, 'ReadOnly', 'the value cannot be changed'),
  WILDCARD_NOT_PERMITTED_IN_INT_PORT: def(732, 'WildCardNotPermittedInIntPort', 'InternalPort must be a specific port'),
  INCONSISTENT_PARAMETERS: def(733, 'InconsistentParameters', 'the arguments contradict each other (e.g. start port > end port)'),
} as const satisfies Record<string, UpnpErrorDef>;

/** WANIPv6FirewallControl:1 error codes (its own 7xx table, overlapping WANIPConnection's numbers). */
export const WanIpv6FirewallControlError = {
  PINHOLE_SPACE_EXHAUSTED: def(701, 'PinholeSpaceExhausted', 'no room for another pinhole'),
  FIREWALL_DISABLED: def(702, 'FirewallDisabled', 'the IPv6 firewall is disabled (FirewallEnabled = 0)'),
  INBOUND_PINHOLE_NOT_ALLOWED: def(703, 'InboundPinholeNotAllowed', 'inbound pinholes are not allowed (InboundPinholeAllowed = 0)'),
  NO_SUCH_ENTRY: def(704, 'NoSuchEntry', 'no pinhole with that UniqueID'),
  PROTOCOL_NOT_SUPPORTED: def(705, 'ProtocolNotSupported', 'the protocol is not supported'),
  INTERNAL_PORT_WILDCARDING_NOT_ALLOWED: def(706, 'InternalPortWildcardingNotAllowed', 'InternalPort must be a specific port'),
  PROTOCOL_WILDCARDING_NOT_ALLOWED: def(707, 'ProtocolWildcardingNotAllowed', 'Protocol must be a specific protocol'),
  WILDCARD_NOT_PERMITTED_IN_SRC_IP: def(708, 'WildCardNotPermittedInSrcIP', 'the address wildcard is not permitted here'),
  NO_TRAFFIC_RECEIVED: def(709, 'NoTrafficReceived', 'no packet has matched the pinhole yet'),
} as const satisfies Record<string, UpnpErrorDef>;

/**
 * The errors each service may return, by service type name. Look codes up
 * here rather than in a flat table: the same number means different things
 * in different services.
 */
export const SERVICE_ERRORS: Readonly<Record<string, Readonly<Record<string, UpnpErrorDef>>>> = {
  WANIPConnection: { ...UpnpError, ...WanIpConnectionError },
  WANIPv6FirewallControl: { ...UpnpError, ...WanIpv6FirewallControlError },
  WANCommonInterfaceConfig: UpnpError,
};

export function errorForCode(serviceName: string, code: number): UpnpErrorDef | undefined {
  const table = SERVICE_ERRORS[serviceName];
  return table ? Object.values(table).find((e) => e.code === code) : undefined;
}

// ------------------------------------------------------------ SOAPAction

export interface SoapActionHeader {
  serviceType: string;
  serviceName: string;
  serviceVersion: number;
  action: string;
}

export type SoapActionResult = ({ ok: true } & SoapActionHeader) | { ok: false; detail: string };

/**
 * Parses the SOAPACTION header: `"<serviceType>#<actionName>"` (UDA 1.1
 * §3.2.1). The quotes are required by the spec but some control points omit
 * them, so they are optional here; a lone or mismatched quote (the single-
 * quote input behind CVE-2026-5720) is an error, as are NUL and other control
 * characters, a missing or repeated '#', and anything over 256 characters.
 */
export function parseSoapAction(header: string | undefined): SoapActionResult {
  if (header === undefined) return { ok: false, detail: 'no SOAPACTION header' };
  if (header.length > SOAP_ACTION_MAX_LENGTH) return { ok: false, detail: `SOAPACTION of ${header.length} characters` };
  if (/[\u0000-\u001f\u007f]/.test(header)) return { ok: false, detail: 'control character in SOAPACTION' };
  let v = header.trim();
  const q = v[0];
  if (q === '"' || q === "'") {
    if (v.length < 2 || v[v.length - 1] !== q) return { ok: false, detail: 'unbalanced quote in SOAPACTION' };
    v = v.slice(1, -1);
  }
  if (v.includes('"') || v.includes("'")) return { ok: false, detail: 'stray quote in SOAPACTION' };
  const hash = v.indexOf('#');
  if (hash < 0) return { ok: false, detail: 'SOAPACTION without "#"' };
  if (v.indexOf('#', hash + 1) >= 0) return { ok: false, detail: 'SOAPACTION with more than one "#"' };
  const urn = parseUpnpUrn(v.slice(0, hash));
  if (!urn || urn.kind !== 'service') return { ok: false, detail: 'SOAPACTION service type is not urn:schemas-upnp-org:service:<name>:<v>' };
  const action = v.slice(hash + 1);
  if (!isActionName(action)) return { ok: false, detail: 'SOAPACTION action name is not a name' };
  return { ok: true, serviceType: v.slice(0, hash), serviceName: urn.name, serviceVersion: urn.version, action };
}

/** UDA 1.1 §2.5: action and argument names are XML names of at most 32 characters; we allow 64. */
function isActionName(name: string): boolean {
  return name.length <= 64 && isNcName(name);
}

// --------------------------------------------------------------- request

export interface SoapRequest extends SoapActionHeader {
  /** In arguments by element local name, in document order. */
  args: Map<string, string>;
}

export type SoapRequestResult = ({ ok: true } & SoapRequest) | { ok: false; code: 401 | 402; detail: string };

/**
 * Parses a control request body. The action is the first element of
 * s:Body, its namespace the service type, its child elements the in
 * arguments (matched by local name, whatever their namespace: control
 * points differ on qualifying them).
 *
 * Error choice (UDA 1.1 §3.2.2 has only 401 "no action by that name" and
 * 402 "Invalid Args" for a bad request):
 * - 401 when no action can be identified: the body is not a SOAP 1.1
 *   envelope with a Body entry and no SOAPACTION names one either, or
 *   SOAPACTION and the body name different actions or service types (which
 *   action was meant is then unknown, and a mismatch is what a forged or
 *   spliced request looks like).
 * - 402 when the action is known but its arguments cannot be read: with
 *   SOAPACTION naming it, a body that is malformed XML or lacks the
 *   Envelope/Body structure; with the action element found (with or without
 *   SOAPACTION), an argument with child elements, text between arguments,
 *   or an argument given twice (never "last one wins", SOAP-12).
 * A second Body entry is refused the same way: SOAP 1.1 allows several, UPnP
 * control uses exactly one, and ignoring the rest would hide what was sent.
 */
export function parseSoapRequest(body: string, soapAction?: SoapActionHeader, maxLength?: number): SoapRequestResult {
  const bad = (detail: string): SoapRequestResult => ({ ok: false, code: soapAction ? 402 : 401, detail });
  const doc = parseXml(body, maxLength === undefined ? {} : { maxLength });
  if (!doc.ok) return bad(`body: ${doc.detail}`);
  const env = doc.root;
  if (env.local !== 'Envelope' || env.namespace !== SOAP_ENVELOPE_NS) return bad(`root element {${env.namespace}}${env.local} is not a SOAP 1.1 Envelope`);
  const parts = childElements(env);
  // SOAP 1.1 §4.1: an optional Header, then the mandatory Body, nothing else.
  const bodyIndex = parts[0]?.local === 'Header' && parts[0].namespace === SOAP_ENVELOPE_NS ? 1 : 0;
  const bodyEl = parts[bodyIndex];
  if (!bodyEl || bodyEl.local !== 'Body' || bodyEl.namespace !== SOAP_ENVELOPE_NS || parts.length !== bodyIndex + 1) {
    return bad('Envelope does not hold exactly one Body (after an optional Header)');
  }
  const entries = childElements(bodyEl);
  const actionEl = entries[0];
  if (!actionEl) return bad('empty Body');
  if (entries.length > 1) return bad(`${entries.length} Body entries`);
  if (hasText(bodyEl)) return bad('character data in Body');

  const urn = parseUpnpUrn(actionEl.namespace);
  if (!urn || urn.kind !== 'service') {
    return { ok: false, code: 401, detail: `action namespace "${actionEl.namespace.slice(0, 80)}" is not a UPnP service type` };
  }
  if (!isActionName(actionEl.local)) return { ok: false, code: 401, detail: 'action name too long' };
  if (soapAction && (soapAction.action !== actionEl.local || soapAction.serviceType !== actionEl.namespace)) {
    return {
      ok: false,
      code: 401,
      detail: `SOAPACTION ${soapAction.serviceType}#${soapAction.action} does not match the body's ${actionEl.namespace}#${actionEl.local}`,
    };
  }
  const args = readArguments(actionEl);
  if (!args.ok) return { ok: false, code: 402, detail: args.detail };
  return {
    ok: true,
    serviceType: actionEl.namespace,
    serviceName: urn.name,
    serviceVersion: urn.version,
    action: actionEl.local,
    args: args.args,
  };
}

function hasText(el: XmlElement): boolean {
  return el.children.some((c) => c.kind === 'text' && c.text.trim() !== '');
}

function readArguments(actionEl: XmlElement): { ok: true; args: Map<string, string> } | { ok: false; detail: string } {
  if (hasText(actionEl)) return { ok: false, detail: `character data between the arguments of ${actionEl.local}` };
  const args = new Map<string, string>();
  for (const a of childElements(actionEl)) {
    if (childElements(a).length > 0) return { ok: false, detail: `argument ${a.local} is not a simple value` };
    if (args.has(a.local)) return { ok: false, detail: `argument ${a.local} given twice` };
    args.set(a.local, textOf(a));
  }
  return { ok: true, args };
}

// -------------------------------------------------------------- responses

const ENVELOPE_OPEN =
  `<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="${SOAP_ENVELOPE_NS}" s:encodingStyle="${SOAP_ENCODING_STYLE}"><s:Body>`;
const ENVELOPE_CLOSE = '</s:Body></s:Envelope>\r\n';

function assertName(kind: string, name: string): void {
  if (!isActionName(name)) throw new RangeError(`${kind} ${JSON.stringify(name)} is not an XML name`);
}

/**
 * Out arguments whose value is an XML document of its own (WANIPConnection:2
 * A_ARG_TYPE_PortListing). They go out as CDATA, as miniupnpd sends them:
 * miniupnpc (`upnpc -L`) takes the argument's text raw, without decoding
 * entities, and an entity-escaped listing reads to it as no entries at all.
 * A strict parser reads the same text either way.
 */
const DOCUMENT_ARGUMENTS: ReadonlySet<string> = new Set(['NewPortListing']);

/** XML 1.0 §2.2 Char without CR: what a CDATA section carries unchanged. */
const CDATA_SAFE = /^[\t\n\u0020-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]*$/u;

/**
 * A value as CDATA sections. "]]>" cannot occur inside one (XML 1.0 §2.7),
 * so it is split across two sections (`]]` ends one, `>` starts the next)
 * and reads back whole. portListing never produces it (its text is escaped,
 * `>` included): this keeps any value inside, whoever built it. A value CDATA
 * cannot carry unchanged (a CR, which §2.11 line-end handling turns into LF;
 * a character outside §2.2 Char) is escaped instead.
 */
function cdataOrEscaped(value: string): string {
  if (!CDATA_SAFE.test(value)) return escapeXml(value);
  return `<![CDATA[${value.split(']]>').join(']]]]><![CDATA[>')}]]>`;
}

/**
 * UDA 1.1 §3.2.1 response: `<u:actionNameResponse xmlns:u="serviceType">`
 * with the out arguments in the order given (the SCPD order). Values are
 * escaped, so a mapping description such as `]]><x>` stays text (SOAP-11);
 * DOCUMENT_ARGUMENTS go as CDATA, which keeps them inside just as well.
 * Names are ours: an invalid one is a bug and throws.
 */
export function soapResponse(serviceType: string, action: string, outArgs: ReadonlyArray<readonly [string, string]>): string {
  assertName('action', action);
  let inner = '';
  for (const [name, value] of outArgs) {
    assertName('argument', name);
    inner += `<${name}>${DOCUMENT_ARGUMENTS.has(name) ? cdataOrEscaped(value) : escapeXml(value)}</${name}>`;
  }
  return `${ENVELOPE_OPEN}<u:${action}Response xmlns:u="${escapeXml(serviceType)}">${inner}</u:${action}Response>${ENVELOPE_CLOSE}`;
}

/** UDA 1.1 §3.2.2 fault body; send it with HTTP status 500. */
export function soapFault(code: number, description: string): string {
  if (!Number.isInteger(code) || code < 0 || code > 999) throw new RangeError(`UPnP error code ${code}`);
  return (
    `${ENVELOPE_OPEN}<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>` +
    `<detail><UPnPError xmlns="${UPNP_CONTROL_NS}"><errorCode>${code}</errorCode>` +
    `<errorDescription>${escapeXml(description)}</errorDescription></UPnPError></detail></s:Fault>${ENVELOPE_CLOSE}`
  );
}

/** The fault for one of the tables above, with its standard errorDescription. */
export function soapFaultFor(error: UpnpErrorDef): string {
  return soapFault(error.code, error.name);
}

// ------------------------------------------------- GetListOfPortMappings

/** WANIPConnection:2 A_ARG_TYPE_PortListing: the PortMappingList schema namespace. */
const PORT_LISTING_NS = 'urn:schemas-upnp-org:gw:WANIPConnection';

export interface PortListingEntry {
  remoteHost: string;
  externalPort: number;
  protocol: 'TCP' | 'UDP';
  internalPort: number;
  internalClient: string;
  enabled: boolean;
  description: string;
  /** Remaining lease, seconds. */
  leaseTime: number;
}

/**
 * The NewPortListing document: a PortMappingList carried as a string
 * argument. Every field is escaped here (`>` too, so the document never
 * holds "]]>"); soapResponse sends the whole as CDATA, so nothing in a
 * description can leave the field, the document or the section.
 */
export function portListing(entries: readonly PortListingEntry[]): string {
  let out = `<?xml version="1.0"?>\n<p:PortMappingList xmlns:p="${PORT_LISTING_NS}">`;
  for (const e of entries) {
    const field = (n: string, v: string | number): string => `<p:${n}>${escapeXml(String(v))}</p:${n}>`;
    out +=
      '<p:PortMappingEntry>' +
      field('NewRemoteHost', e.remoteHost) +
      field('NewExternalPort', e.externalPort) +
      field('NewProtocol', e.protocol) +
      field('NewInternalPort', e.internalPort) +
      field('NewInternalClient', e.internalClient) +
      field('NewEnabled', e.enabled ? 1 : 0) +
      field('NewDescription', e.description) +
      field('NewLeaseTime', e.leaseTime) +
      '</p:PortMappingEntry>';
  }
  return `${out}</p:PortMappingList>`;
}
