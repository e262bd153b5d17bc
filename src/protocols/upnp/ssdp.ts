// SSDP, UDA 1.1 §1: discovery over HTTPU/HTTPMU on UDP 1900.
//
//   Search (§1.3.2)                      Search response (§1.3.3)
//   M-SEARCH * HTTP/1.1                  HTTP/1.1 200 OK
//   HOST: 239.255.255.250:1900           CACHE-CONTROL: max-age=<seconds>
//   MAN: "ssdp:discover"                 DATE: <RFC 1123 date>
//   MX: <seconds, multicast only>        EXT:
//   ST: <search target>                  LOCATION: <description URL>
//   USER-AGENT: <optional>               SERVER: <OS/ver> UPnP/1.1 <product/ver>
//                                        ST: <search target>
//                                        USN: <unique service name>
//   Advertisement (§1.2.2, §1.2.3)       BOOTID.UPNP.ORG: <boot instance>
//   NOTIFY * HTTP/1.1                    CONFIGID.UPNP.ORG: <description config>
//   HOST: 239.255.255.250:1900
//   CACHE-CONTROL, LOCATION, SERVER      (ssdp:alive only)
//   NT, NTS: ssdp:alive | ssdp:byebye, USN, BOOTID.UPNP.ORG, CONFIGID.UPNP.ORG
//
// Parsing here is strict and bounded (SEC-08: the SSDP parsers of other
// stacks are a history of overflows): anything off-format is dropped, and the
// server answers a datagram with at most one reply per advertisement.

import { formatHeaders, trimOws } from './http.js';
import { allDevices, formatUrn, parseUpnpUrn, type DeviceNode } from './device-tree.js';

export const SSDP_PORT = 1900;
export const SSDP_MULTICAST_V4 = '239.255.255.250';
/** UDA 1.1 §1 (and UDA 2.0 Annex A): the link-local IPv6 group; ff05::c is site-local. */
export const SSDP_MULTICAST_V6_LINK = 'FF02::C';
/** Larger datagrams are not considered at all; a real M-SEARCH is a few hundred octets. */
export const SSDP_MAX_DATAGRAM = 2048;
export const SSDP_MAX_HEADERS = 32;
/** §1.3.2: "If the MX header field specifies a field value greater than 5, the device SHOULD assume that it contained the value 5". */
const SSDP_MAX_MX = 5;
const SSDP_ALL = 'ssdp:all';
const UPNP_ROOTDEVICE = 'upnp:rootdevice';
/** §1.3.2: MAN "MUST be ... "ssdp:discover"" — the quotes are part of the value. */
const SSDP_DISCOVER = '"ssdp:discover"';
/** UDA 1.1 §1.2.2: BOOTID is a non-negative 31-bit integer. */
export const MAX_BOOT_ID = 0x7fffffff;
/** UDA 1.1 §1.2.2: CONFIGID values 0 to 16777215 (2^24 - 1). */
export const MAX_CONFIG_ID = 0xffffff;
/** Search targets longer than this match nothing (ours are at most ~70). */
const MAX_ST_LENGTH = 256;

export interface SsdpSearch {
  method: 'M-SEARCH';
  man: string;
  /** Present when the MX field is a decimal integer; see validateSearch. */
  mx?: number;
  st: string;
  userAgent?: string;
  /** Every field, names lowercased. */
  headers: ReadonlyMap<string, string>;
}

/** Another device's advertisement: parsed only so the server can recognise and ignore it (SSDP-18). */
export interface SsdpNotify {
  method: 'NOTIFY';
  nt?: string;
  nts?: string;
  usn?: string;
  headers: ReadonlyMap<string, string>;
}

export type SsdpMessage = SsdpSearch | SsdpNotify;
export type SsdpParseResult = { ok: true; msg: SsdpMessage } | { ok: false; detail: string };

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Parses one datagram. Field names are case-insensitive (UDA 1.1 §1.1.2 via
 * HTTP); lines end in CRLF, and a bare LF is tolerated because SSDP has no
 * framing to confuse (the datagram is the message); the head ends at the
 * first empty line or with the datagram. A repeated field is an error: two
 * STs or two MANs have no single meaning.
 */
export function parseSsdp(buf: Buffer): SsdpParseResult {
  if (buf.length === 0) return { ok: false, detail: 'empty datagram' };
  if (buf.length > SSDP_MAX_DATAGRAM) return { ok: false, detail: `${buf.length}-octet datagram > ${SSDP_MAX_DATAGRAM}` };
  if (buf.includes(0)) return { ok: false, detail: 'NUL octet' };
  const text = buf.toString('latin1');
  const blank = /\r?\n\r?\n/.exec(text);
  const lines = (blank ? text.slice(0, blank.index) : text).split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const requestLine = lines[0] ?? '';
  let method: SsdpMessage['method'];
  if (requestLine === 'M-SEARCH * HTTP/1.1') method = 'M-SEARCH';
  else if (requestLine === 'NOTIFY * HTTP/1.1') method = 'NOTIFY';
  else return { ok: false, detail: `not an SSDP request line: ${JSON.stringify(requestLine.slice(0, 40))}` };

  const fields = lines.slice(1);
  if (fields.length > SSDP_MAX_HEADERS) return { ok: false, detail: `${fields.length} header fields > ${SSDP_MAX_HEADERS}` };
  const headers = new Map<string, string>();
  for (const line of fields) {
    if (line.includes('\r')) return { ok: false, detail: 'bare CR' };
    const colon = line.indexOf(':');
    if (colon < 0) return { ok: false, detail: `header line without a colon: ${JSON.stringify(line.slice(0, 40))}` };
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return { ok: false, detail: `malformed header name ${JSON.stringify(name.slice(0, 40))}` };
    const key = name.toLowerCase();
    if (headers.has(key)) return { ok: false, detail: `${name} appears twice` };
    headers.set(key, trimOws(line.slice(colon + 1)));
  }

  if (method === 'NOTIFY') {
    const msg: SsdpNotify = { method, headers };
    const nt = headers.get('nt');
    const nts = headers.get('nts');
    const usn = headers.get('usn');
    if (nt !== undefined) msg.nt = nt;
    if (nts !== undefined) msg.nts = nts;
    if (usn !== undefined) msg.usn = usn;
    return { ok: true, msg };
  }
  const man = headers.get('man');
  // SSDP-04: MAN must be exactly the quoted value; unquoted is a different (invalid) value.
  if (man !== SSDP_DISCOVER) return { ok: false, detail: man === undefined ? 'no MAN' : `MAN ${JSON.stringify(man.slice(0, 40))}` };
  const st = headers.get('st');
  if (!st) return { ok: false, detail: 'no ST' };
  const msg: SsdpSearch = { method, man, st, headers };
  const mx = headers.get('mx');
  if (mx !== undefined && /^[0-9]{1,10}$/.test(mx)) msg.mx = Number(mx);
  const ua = headers.get('user-agent');
  if (ua !== undefined) msg.userAgent = ua;
  return { ok: true, msg };
}

export type SearchVerdict = { ok: true; st: string; maxDelaySeconds: number } | { ok: false; detail: string };

/**
 * UDA 1.1 §1.3.2: a multicast search MUST carry MX, an integer of at least 1;
 * without it the search is silently discarded, and above 5 it counts as 5.
 * MX below 1 or not an integer is not defined by the text (⚑ SSDP-03): we
 * discard it too, as "invalid search". A unicast search has no MX (any value
 * is ignored) and is answered without delay.
 */
export function validateSearch(msg: SsdpSearch, opts: { multicast: boolean }): SearchVerdict {
  if (!opts.multicast) return { ok: true, st: msg.st, maxDelaySeconds: 0 };
  if (!msg.headers.has('mx')) return { ok: false, detail: 'multicast search without MX' };
  if (msg.mx === undefined) return { ok: false, detail: 'MX is not a decimal integer' };
  if (msg.mx < 1) return { ok: false, detail: 'MX below 1' };
  return { ok: true, st: msg.st, maxDelaySeconds: Math.min(msg.mx, SSDP_MAX_MX) };
}

/** One search response or advertisement: the target (ST in a response, NT in a NOTIFY) and the USN. */
export interface SsdpTarget {
  st: string;
  usn: string;
}

/**
 * UDA 1.1 §1.2.2: the full set a device advertises, in the order the spec
 * lists it: for the root device upnp:rootdevice, uuid and device type; for
 * each embedded device its uuid and type; and each service type once per
 * device that holds it. For our tree this is 3 + 2 + 2 + 3 = 10.
 */
export function advertisementSet(root: DeviceNode): SsdpTarget[] {
  const out: SsdpTarget[] = [{ st: UPNP_ROOTDEVICE, usn: `uuid:${root.uuid}::${UPNP_ROOTDEVICE}` }];
  for (const d of allDevices(root)) {
    const udn = `uuid:${d.uuid}`;
    out.push({ st: udn, usn: udn });
    const type = formatUrn(d.urn);
    out.push({ st: type, usn: `${udn}::${type}` });
    const seen = new Set<string>();
    for (const s of d.services) {
      const st = formatUrn(s.urn);
      if (seen.has(st)) continue;
      seen.add(st);
      out.push({ st, usn: `${udn}::${st}` });
    }
  }
  return out;
}

/** The (nt, usn) pairs of ssdp:alive and ssdp:byebye (UDA 1.1 §1.2.2-1.2.3). */
export function notificationSet(root: DeviceNode): { nt: string; usn: string }[] {
  return advertisementSet(root).map((a) => ({ nt: a.st, usn: a.usn }));
}

/**
 * The responses owed to a search target (UDA 1.1 §1.3.2), never more than
 * the advertisement set:
 * - ssdp:all → every advertisement;
 * - upnp:rootdevice → one;
 * - uuid:<device-UUID> → one, for the device with that UUID (hex compared
 *   without regard to case, RFC 9562 §4);
 * - urn:schemas-upnp-org:device|service:<type>:<v> → one per device (or per
 *   device holding the service) whose type has the same name, exactly, and a
 *   version ≥ v. §1.3.2 requires the response to carry the version that was
 *   searched for, so ST and USN echo the searched URN (a search for
 *   InternetGatewayDevice:1 is answered with :1; :3 finds nothing).
 * Other domains, malformed URNs and unknown targets get nothing.
 */
export function searchAnswers(st: string, root: DeviceNode): SsdpTarget[] {
  if (st.length > MAX_ST_LENGTH) return [];
  const all = advertisementSet(root);
  if (st === SSDP_ALL) return all;
  if (st === UPNP_ROOTDEVICE) return all.slice(0, 1);
  const devices = allDevices(root);
  if (st.startsWith('uuid:')) {
    const want = st.slice(5).toLowerCase();
    const d = devices.find((x) => x.uuid === want);
    return d ? [{ st, usn: `uuid:${d.uuid}` }] : [];
  }
  const urn = parseUpnpUrn(st);
  if (!urn) return [];
  const out: SsdpTarget[] = [];
  for (const d of devices) {
    const candidates = urn.kind === 'device' ? [d.urn] : d.services.map((s) => s.urn);
    if (candidates.some((c) => c.name === urn.name && c.version >= urn.version)) out.push({ st, usn: `uuid:${d.uuid}::${st}` });
  }
  return out.slice(0, all.length);
}

/** UDA 1.1 §1.3.3 SERVER / USER-AGENT: "OS/version UPnP/1.1 product/version". */
export function serverHeader(os: string, osVersion: string, productVersion: string): string {
  return `${os}/${osVersion} UPnP/1.1 portcullis/${productVersion}`;
}

/** Fields every SSDP message of ours carries (UDA 1.1 §1.2.2). */
export interface SsdpIdentity {
  bootId: number;
  configId: number;
  /** SEARCHPORT.UPNP.ORG, only when the device listens for unicast searches on a port other than 1900. */
  searchPort?: number;
}

export interface SearchResponseFields extends SsdpIdentity, SsdpTarget {
  location: string;
  maxAge: number;
  date: Date;
  server: string;
}

function identityFields(id: SsdpIdentity): [string, string][] {
  if (!Number.isInteger(id.bootId) || id.bootId < 0 || id.bootId > MAX_BOOT_ID) throw new RangeError(`BOOTID ${id.bootId}`);
  if (!Number.isInteger(id.configId) || id.configId < 0 || id.configId > MAX_CONFIG_ID) throw new RangeError(`CONFIGID ${id.configId}`);
  const f: [string, string][] = [
    ['BOOTID.UPNP.ORG', String(id.bootId)],
    ['CONFIGID.UPNP.ORG', String(id.configId)],
  ];
  if (id.searchPort !== undefined) {
    // §1.2.2: SEARCHPORT is 49152-65535.
    if (!Number.isInteger(id.searchPort) || id.searchPort < 49152 || id.searchPort > 65535) throw new RangeError(`SEARCHPORT ${id.searchPort}`);
    f.push(['SEARCHPORT.UPNP.ORG', String(id.searchPort)]);
  }
  return f;
}

function cacheControl(maxAge: number): string {
  if (!Number.isInteger(maxAge) || maxAge < 1) throw new RangeError(`max-age ${maxAge}`);
  return `max-age=${maxAge}`;
}

/** UDA 1.1 §1.3.3: the unicast reply to one search target. */
export function buildSearchResponse(f: SearchResponseFields): Buffer {
  const head =
    'HTTP/1.1 200 OK\r\n' +
    formatHeaders([
      ['CACHE-CONTROL', cacheControl(f.maxAge)],
      ['DATE', f.date.toUTCString()],
      ['EXT', ''],
      ['LOCATION', f.location],
      ['SERVER', f.server],
      ['ST', f.st],
      ['USN', f.usn],
      ...identityFields(f),
    ]);
  return Buffer.from(`${head}\r\n`, 'latin1');
}

export type NotifyFields = SsdpIdentity & {
  family: 4 | 6;
  nt: string;
  usn: string;
} & ({ nts: 'ssdp:alive'; location: string; maxAge: number; server: string } | { nts: 'ssdp:byebye' });

/** UDA 1.1 §1.2.2 (ssdp:alive) and §1.2.3 (ssdp:byebye, which has no LOCATION, CACHE-CONTROL or SERVER). */
export function buildNotify(f: NotifyFields): Buffer {
  const host = f.family === 4 ? `${SSDP_MULTICAST_V4}:${SSDP_PORT}` : `[${SSDP_MULTICAST_V6_LINK}]:${SSDP_PORT}`;
  const fields: [string, string][] = [['HOST', host]];
  if (f.nts === 'ssdp:alive') fields.push(['CACHE-CONTROL', cacheControl(f.maxAge)], ['LOCATION', f.location]);
  fields.push(['NT', f.nt], ['NTS', f.nts]);
  if (f.nts === 'ssdp:alive') fields.push(['SERVER', f.server]);
  fields.push(['USN', f.usn], ...identityFields(f.nts === 'ssdp:alive' ? f : { bootId: f.bootId, configId: f.configId }));
  return Buffer.from(`NOTIFY * HTTP/1.1\r\n${formatHeaders(fields)}\r\n`, 'latin1');
}
