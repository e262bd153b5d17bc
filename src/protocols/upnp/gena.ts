// GENA eventing, UDA 1.1 §4: SUBSCRIBE / UNSUBSCRIBE requests and the NOTIFY
// property set.
//
//   Subscribe (§4.1.2)           Renew (§4.1.2)           Cancel (§4.1.4)
//   SUBSCRIBE <eventSubURL>      SUBSCRIBE <eventSubURL>  UNSUBSCRIBE <eventSubURL>
//   CALLBACK: <url1><url2>…      SID: uuid:<id>           SID: uuid:<id>
//   NT: upnp:event               TIMEOUT: Second-<n>
//   TIMEOUT: Second-<n>
//
// §4.1.2: a subscription without NT "upnp:event" or a usable CALLBACK gets
// 412 Precondition Failed; SID together with NT or CALLBACK gets 400 Bad
// Request; a renewal or cancellation whose SID is missing gets 412. Whether a
// SID is known, and whether a callback address is acceptable for the
// subscriber (CallStranger, CVE-2020-12695: SEC-13), is the server's call;
// this module only classifies and bounds the request.

import { parseIp, type IpAddress } from '../../net/address.js';
import { escapeXml, isNcName } from './xml-chars.js';

/** UDA 1.1 §4.2.1: the event namespace of the property set. */
const GENA_EVENT_NS = 'urn:schemas-upnp-org:event-1-0';
export const GENA_NT = 'upnp:event';
export const GENA_NTS_PROPCHANGE = 'upnp:propchange';
/** Delivery URLs beyond this are refused, not truncated: the request is odd. */
export const GENA_MAX_CALLBACKS = 4;
export const GENA_MAX_CALLBACK_URL = 256;
const GENA_MAX_CALLBACK_FIELD = 1024;
const MAX_SID_LENGTH = 128;
/** TIMEOUT seconds beyond this are clamped by the server anyway; bounds parsing. */
const MAX_TIMEOUT_DIGITS = 9;

export interface CallbackUrl {
  /** The URL as given between the angle brackets. */
  url: string;
  address: IpAddress;
  port: number;
  /** Path and query, starting with '/'. */
  path: string;
}

export type GenaRequest =
  | { kind: 'subscribe'; callbacks: CallbackUrl[]; timeoutSeconds?: number }
  | { kind: 'renew'; sid: string; timeoutSeconds?: number }
  | { kind: 'unsubscribe'; sid: string };

export type GenaResult = ({ ok: true } & GenaRequest) | { ok: false; status: 400 | 412; detail: string };

/**
 * Classifies a SUBSCRIBE or UNSUBSCRIBE from its header fields (names
 * lowercased, as HttpRequest.headers has them).
 *
 * TIMEOUT (§4.1.2): `Second-<n>` with n ≥ 1, or `Second-infinite`, which
 * UDA 1.1 tells the device to treat as if absent (GENA-06). Any other TIMEOUT
 * value is likewise treated as absent — the spec names no error for it, and
 * the device picks the duration either way.
 *
 * CALLBACK: every URL must be `http://<IPv4 literal or [IPv6 literal]>[:port]
 * [/path]`. A host name would need a resolver in the request path (SEC-22)
 * and https is not part of UDA 1.1 eventing, so either makes the whole field
 * invalid (412) rather than silently dropping one URL the subscriber listed.
 */
export function parseGenaRequest(method: 'SUBSCRIBE' | 'UNSUBSCRIBE', headers: ReadonlyMap<string, string>): GenaResult {
  const sid = headers.get('sid');
  const nt = headers.get('nt');
  const callback = headers.get('callback');
  if (sid !== undefined && (nt !== undefined || callback !== undefined)) {
    return { ok: false, status: 400, detail: 'SID together with NT or CALLBACK' };
  }
  if (method === 'UNSUBSCRIBE') {
    if (sid === undefined) return { ok: false, status: 412, detail: 'UNSUBSCRIBE without SID' };
    return isSid(sid) ? { ok: true, kind: 'unsubscribe', sid } : { ok: false, status: 412, detail: 'malformed SID' };
  }
  const timeoutSeconds = parseTimeout(headers.get('timeout'));
  const withTimeout = <T extends object>(r: T): T & { timeoutSeconds?: number } =>
    timeoutSeconds === undefined ? r : { ...r, timeoutSeconds };
  if (sid !== undefined) {
    return isSid(sid) ? { ok: true, ...withTimeout({ kind: 'renew' as const, sid }) } : { ok: false, status: 412, detail: 'malformed SID' };
  }
  if (nt !== GENA_NT) return { ok: false, status: 412, detail: nt === undefined ? 'no NT' : `NT is not ${GENA_NT}` };
  if (callback === undefined) return { ok: false, status: 412, detail: 'no CALLBACK' };
  const callbacks = parseCallbacks(callback);
  if (!callbacks.ok) return { ok: false, status: 412, detail: callbacks.detail };
  return { ok: true, ...withTimeout({ kind: 'subscribe' as const, callbacks: callbacks.urls }) };
}

/** UDA 1.1 §4.1.2: SID is "uuid:" followed by a subscription identifier the device generated. */
function isSid(sid: string): boolean {
  return sid.length <= MAX_SID_LENGTH && /^uuid:[\x21-\x7e]+$/.test(sid);
}

function parseTimeout(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^Second-([0-9]+)$/i.exec(v);
  if (!m) return undefined;
  const digits = (m[1] ?? '').replace(/^0+(?=.)/, '');
  if (digits.length > MAX_TIMEOUT_DIGITS) return 10 ** MAX_TIMEOUT_DIGITS - 1;
  const n = Number(digits);
  return n >= 1 ? n : undefined;
}

/** `<url>` repeated, optional white space between; §4.1.2 requires at least one. */
export function parseCallbacks(field: string): { ok: true; urls: CallbackUrl[] } | { ok: false; detail: string } {
  if (field.length > GENA_MAX_CALLBACK_FIELD) return { ok: false, detail: `CALLBACK of ${field.length} characters` };
  const urls: CallbackUrl[] = [];
  let i = 0;
  for (;;) {
    while (field[i] === ' ' || field[i] === '\t') i++;
    if (i >= field.length) break;
    if (field[i] !== '<') return { ok: false, detail: 'CALLBACK is not a list of <URL>' };
    const close = field.indexOf('>', i + 1);
    if (close < 0) return { ok: false, detail: 'unclosed < in CALLBACK' };
    if (urls.length >= GENA_MAX_CALLBACKS) return { ok: false, detail: `more than ${GENA_MAX_CALLBACKS} CALLBACK URLs` };
    const u = parseCallbackUrl(field.slice(i + 1, close));
    if (!u) return { ok: false, detail: `unusable CALLBACK URL ${JSON.stringify(field.slice(i + 1, Math.min(close, i + 61)))}` };
    urls.push(u);
    i = close + 1;
  }
  if (urls.length === 0) return { ok: false, detail: 'empty CALLBACK' };
  return { ok: true, urls };
}

function parseCallbackUrl(url: string): CallbackUrl | undefined {
  if (url.length > GENA_MAX_CALLBACK_URL || !/^[\x21-\x7e]+$/.test(url)) return undefined;
  const m = /^http:\/\/(\[[0-9A-Fa-f:.]+\]|[0-9.]+)(?::([0-9]{1,5}))?(\/[^#]*)?$/i.exec(url);
  if (!m) return undefined;
  const [, hostText = '', portText, path] = m;
  const bracketed = hostText.startsWith('[');
  const literal = bracketed ? hostText.slice(1, -1) : hostText;
  const address = parseIp(literal);
  // The family must match the syntax: no IPv4 in brackets, no bare IPv6.
  if (!address || bracketed !== literal.includes(':')) return undefined;
  const port = portText === undefined ? 80 : Number(portText);
  if (port < 1 || port > 65535) return undefined;
  return { url, address, port, path: path ?? '/' };
}

/**
 * UDA 1.1 §4.2.1 event message body:
 * `<e:propertyset xmlns:e="urn:schemas-upnp-org:event-1-0"><e:property>
 * <Name>value</Name></e:property>…</e:propertyset>`, one property element
 * per variable. Values are escaped; names are ours and must be XML names
 * (anything else is a bug and throws).
 */
export function propertySet(vars: ReadonlyArray<readonly [string, string]>): string {
  let body = '';
  for (const [name, value] of vars) {
    if (!isNcName(name)) throw new RangeError(`state variable name ${JSON.stringify(name)} is not an XML name`);
    body += `<e:property><${name}>${escapeXml(value)}</${name}></e:property>`;
  }
  return `<?xml version="1.0"?>\r\n<e:propertyset xmlns:e="${GENA_EVENT_NS}">${body}</e:propertyset>\r\n`;
}
