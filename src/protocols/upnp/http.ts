// HTTP/1.1 framing for the UPnP description, control and eventing server
// (UDA 1.1 §2-4 all ride on HTTP/1.1): an incremental request parser with
// fixed bounds, and a response builder. RFC 9112 (message syntax) and RFC
// 9110 (semantics) are the references; the choices below favour refusing an
// ambiguous message over guessing, since every ambiguity in framing is a
// request-smuggling or resource-exhaustion lever.
//
// Decisions where the RFCs leave room:
// - Line ends are CRLF only. RFC 9112 §2.2 lets a recipient accept a bare LF;
//   we do not (400), so two parsers can never disagree on where a line ends.
// - Transfer-Encoding of any kind → 501 Not Implemented (RFC 9112 §6.1: "A
//   server that receives a request message with a transfer coding it does
//   not understand SHOULD respond with 501"). We implement none, chunked
//   included: UPnP control points send Content-Length, and a body without
//   one is exactly what chunked would be used for. 411 would invite a retry
//   the client cannot make any better.
// - A POST without Content-Length → 411 Length Required (RFC 9110 §15.5.12).
//   Other methods without it have no body.
// - Content-Length: decimal digits only (RFC 9110 §8.6); repeated values
//   ("5, 5" or two fields) are accepted only when identical, otherwise 400;
//   a value over the body bound → 413 before any body byte is read.
// - Fields that must be single (Host, Content-Length aside, and the UPnP ones
//   the server acts on: SOAPAction, Content-Type, SID, NT, CALLBACK, TIMEOUT)
//   appearing twice → 400; any other repeated field is joined with ", "
//   (RFC 9110 §5.3).
// - Methods: GET, HEAD, POST, SUBSCRIBE, UNSUBSCRIBE are recognised. Any
//   other well-formed method → 501 (RFC 9110 §9.1: unrecognised method);
//   405 is the router's answer for a known method on the wrong resource.
// - One request per parser. Bytes after the body are handed back as
//   `leftover`, so a caller may start a new parser on them (keep-alive) or
//   simply close the connection.

const HTTP_MAX_HEAD = 8 * 1024;
export const HTTP_MAX_HEADERS = 64;
export const HTTP_MAX_BODY = 64 * 1024;

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'SUBSCRIBE', 'UNSUBSCRIBE'] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

export interface HttpLimits {
  /** Request line plus header fields, including their CRLFs. */
  maxHead: number;
  maxHeaders: number;
  maxBody: number;
}

const DEFAULT_HTTP_LIMITS: Readonly<HttpLimits> = {
  maxHead: HTTP_MAX_HEAD,
  maxHeaders: HTTP_MAX_HEADERS,
  maxBody: HTTP_MAX_BODY,
};

export interface HttpRequest {
  method: HttpMethod;
  /** The request-target as received. */
  target: string;
  /** Path component (always starts with '/'), query stripped. */
  path: string;
  query: string | undefined;
  version: '1.0' | '1.1';
  /** Field names lowercased; values with surrounding white space removed. */
  headers: ReadonlyMap<string, string>;
  body: Buffer;
}

export type HttpParseStep =
  | { state: 'need-more' }
  | { state: 'request'; request: HttpRequest; leftover: Buffer }
  | { state: 'error'; status: HttpErrorStatus; detail: string };

export type HttpErrorStatus = 400 | 411 | 413 | 414 | 431 | 501 | 505;

const HTTP_STATUS_TEXT: Readonly<Record<number, string>> = {
  200: 'OK',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  411: 'Length Required',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
  505: 'HTTP Version Not Supported',
};

/** RFC 9110 §5.6.2 tchar. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const SINGLETON_FIELDS: ReadonlySet<string> = new Set([
  'host',
  'content-type',
  'soapaction',
  'sid',
  'nt',
  'callback',
  'timeout',
]);
const CRLFCRLF = Buffer.from('\r\n\r\n');
/** Longest decimal Content-Length considered before calling it huge (no float precision games). */
const MAX_LENGTH_DIGITS = 15;

type Fail = { state: 'error'; status: HttpErrorStatus; detail: string };
const fail = (status: HttpErrorStatus, detail: string): Fail => ({ state: 'error', status, detail });

/**
 * Feed it the bytes of one connection as they arrive. It answers need-more
 * until a whole request (head and Content-Length body) is in, or an error
 * as soon as the bytes so far cannot become an acceptable request. Once
 * final, further feeds return the same outcome (a request's leftover grows).
 */
export class HttpRequestParser {
  private readonly lim: HttpLimits;
  private head = Buffer.alloc(512);
  private headLen = 0;
  private parsed: Omit<HttpRequest, 'body'> | undefined;
  private body: Buffer | undefined;
  private bodyLen = 0;
  private final: Exclude<HttpParseStep, { state: 'need-more' }> | undefined;

  constructor(limits: Partial<HttpLimits> = {}) {
    this.lim = { ...DEFAULT_HTTP_LIMITS, ...limits };
  }

  feed(chunk: Buffer): HttpParseStep {
    if (this.final) {
      if (this.final.state === 'request' && chunk.length > 0) {
        this.final = { ...this.final, leftover: Buffer.concat([this.final.leftover, chunk]) };
      }
      return this.final;
    }
    return this.parsed ? this.feedBody(chunk) : this.feedHead(chunk);
  }

  private finish(step: Exclude<HttpParseStep, { state: 'need-more' }>): HttpParseStep {
    this.final = step;
    this.head = Buffer.alloc(0);
    return step;
  }

  private feedHead(chunk: Buffer): HttpParseStep {
    // The head may end with its CRLFCRLF at maxHead + 4; never hold more.
    const cap = this.lim.maxHead + CRLFCRLF.length;
    const take = Math.min(chunk.length, cap - this.headLen);
    if (this.headLen + take > this.head.length) {
      const grown = Buffer.alloc(Math.min(cap, Math.max(this.head.length * 2, this.headLen + take)));
      this.head.copy(grown, 0, 0, this.headLen);
      this.head = grown;
    }
    chunk.copy(this.head, this.headLen, 0, take);
    const searchFrom = Math.max(0, this.headLen - (CRLFCRLF.length - 1));
    this.headLen += take;
    const view = this.head.subarray(0, this.headLen);
    const end = view.indexOf(CRLFCRLF, searchFrom);
    if (end < 0) {
      if (this.headLen < cap) return { state: 'need-more' };
      return this.finish(view.indexOf('\r\n') < 0
        ? fail(414, `request line longer than ${this.lim.maxHead} octets`)
        : fail(431, `header section longer than ${this.lim.maxHead} octets`));
    }
    const rest = Buffer.concat([view.subarray(end + CRLFCRLF.length), chunk.subarray(take)]);
    const head = parseHead(view.subarray(0, end).toString('latin1'), this.lim);
    if (head.state === 'error') return this.finish(head);
    this.parsed = head.request;
    if (head.bodyLength === 0) return this.finish({ state: 'request', request: { ...head.request, body: Buffer.alloc(0) }, leftover: rest });
    this.body = Buffer.alloc(head.bodyLength);
    return this.feedBody(rest);
  }

  private feedBody(chunk: Buffer): HttpParseStep {
    const body = this.body;
    const parsed = this.parsed;
    if (!body || !parsed) throw new Error('HttpRequestParser: body phase without a head');
    const take = Math.min(chunk.length, body.length - this.bodyLen);
    chunk.copy(body, this.bodyLen, 0, take);
    this.bodyLen += take;
    if (this.bodyLen < body.length) return { state: 'need-more' };
    return this.finish({ state: 'request', request: { ...parsed, body }, leftover: Buffer.from(chunk.subarray(take)) });
  }
}

type HeadResult = { state: 'head'; request: Omit<HttpRequest, 'body'>; bodyLength: number } | Fail;

function parseHead(text: string, lim: HttpLimits): HeadResult {
  // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
  let start = 0;
  while (text.startsWith('\r\n', start)) start += 2;
  const lines = text.slice(start).split('\r\n');
  for (const l of lines) if (l.includes('\r') || l.includes('\n')) return fail(400, 'bare CR or LF in the head');

  const m = /^([^ ]+) ([^ ]+) ([^ ]+)$/.exec(lines[0] ?? '');
  if (!m) return fail(400, 'request line is not "method SP target SP version"');
  const [, method = '', target = '', versionText = ''] = m;
  if (!TOKEN.test(method)) return fail(400, 'method is not a token');
  let version: '1.0' | '1.1';
  if (versionText === 'HTTP/1.1') version = '1.1';
  else if (versionText === 'HTTP/1.0') version = '1.0';
  else if (/^HTTP\/[0-9]\.[0-9]$/.test(versionText)) return fail(505, `version ${versionText}`);
  else return fail(400, 'malformed HTTP version');
  if (!(HTTP_METHODS as readonly string[]).includes(method)) return fail(501, `method ${method}`);
  const t = parseTarget(target);
  if (!t) return fail(400, 'request-target is neither origin-form nor http absolute-form');

  const headerLines = lines.slice(1);
  if (headerLines.length > lim.maxHeaders) return fail(431, `${headerLines.length} header fields > ${lim.maxHeaders}`);
  const headers = new Map<string, string>();
  const lengths: string[] = [];
  for (const line of headerLines) {
    // RFC 9112 §5.2: obsolete line folding → 400.
    if (line.startsWith(' ') || line.startsWith('\t')) return fail(400, 'obsolete line folding');
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    // RFC 9112 §5.1: no white space between field name and colon.
    if (!TOKEN.test(name)) return fail(400, `malformed header line ${JSON.stringify(line.slice(0, 40))}`);
    const value = trimOws(line.slice(colon + 1));
    if (!isFieldValue(value)) return fail(400, `control character in ${name}`);
    const key = name.toLowerCase();
    if (key === 'content-length') {
      lengths.push(value);
      continue;
    }
    const prior = headers.get(key);
    if (prior !== undefined) {
      if (SINGLETON_FIELDS.has(key)) return fail(400, `${name} appears twice`);
      headers.set(key, `${prior}, ${value}`);
    } else headers.set(key, value);
  }
  if (version === '1.1' && !headers.has('host')) return fail(400, 'HTTP/1.1 request without Host (RFC 9112 §3.2)');
  if (headers.has('transfer-encoding')) return fail(501, 'Transfer-Encoding is not supported; send Content-Length');

  let bodyLength = 0;
  if (lengths.length > 0) {
    const values = lengths.flatMap((v) => v.split(',').map(trimOws));
    const first = values[0] ?? '';
    if (!values.every((v) => /^[0-9]+$/.test(v))) return fail(400, 'Content-Length is not a decimal number');
    if (!values.every((v) => v === first)) return fail(400, 'conflicting Content-Length values');
    const n = first.replace(/^0+(?=.)/, '');
    if (n.length > MAX_LENGTH_DIGITS || Number(n) > lim.maxBody) return fail(413, `body of ${n} octets > ${lim.maxBody}`);
    bodyLength = Number(n);
    headers.set('content-length', n);
  } else if (method === 'POST') {
    return fail(411, 'POST without Content-Length');
  }
  return {
    state: 'head',
    request: { method: method as HttpMethod, target, path: t.path, query: t.query, version, headers },
    bodyLength,
  };
}

/** RFC 9112 §3.2.1 origin-form, or §3.2.2 absolute-form with the http scheme (whose authority is ignored). */
function parseTarget(target: string): { path: string; query: string | undefined } | undefined {
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x23 /* '#' */) return undefined;
  }
  let pathAndQuery: string;
  if (target.startsWith('/')) pathAndQuery = target;
  else {
    const abs = /^http:\/\/[^/?]+(.*)$/i.exec(target);
    if (!abs) return undefined;
    const rest = abs[1] ?? '';
    if (rest !== '' && !rest.startsWith('/') && !rest.startsWith('?')) return undefined;
    pathAndQuery = rest.startsWith('/') ? rest : `/${rest}`;
  }
  const q = pathAndQuery.indexOf('?');
  return q < 0 ? { path: pathAndQuery, query: undefined } : { path: pathAndQuery.slice(0, q), query: pathAndQuery.slice(q + 1) };
}

/** Strips RFC 9110 §5.6.3 optional white space (SP, HTAB) from both ends. */
export function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s[a] === ' ' || s[a] === '\t')) a++;
  while (b > a && (s[b - 1] === ' ' || s[b - 1] === '\t')) b--;
  return s.slice(a, b);
}

/** RFC 9110 §5.5 field-value: VCHAR, obs-text, SP and HTAB only. */
function isFieldValue(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 ? c !== 0x09 : c === 0x7f) return false;
  }
  return true;
}

/**
 * Serialises header fields, one `Name: value` CRLF each. The names and values
 * come from our own code; a CR, LF or other control character in one would
 * be a header-injection bug, so it throws rather than emit it.
 */
export function formatHeaders(headers: ReadonlyArray<readonly [string, string]>): string {
  let out = '';
  for (const [name, value] of headers) {
    if (!TOKEN.test(name)) throw new RangeError(`header name ${JSON.stringify(name)} is not a token`);
    if (!isFieldValue(value)) throw new RangeError(`header ${name} has a control character in its value`);
    out += value === '' ? `${name}:\r\n` : `${name}: ${value}\r\n`;
  }
  return out;
}

/**
 * A complete HTTP/1.1 response. Content-Length is added unless given; with
 * `omitBody` (a HEAD response) the length still describes the body that a GET
 * would have carried (RFC 9110 §9.3.2) but no body octets follow.
 */
export function buildResponse(
  status: number,
  headers: ReadonlyArray<readonly [string, string]>,
  body: Buffer | string = '',
  options: { omitBody?: boolean } = {},
): Buffer {
  const payload = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  if (!Number.isInteger(status) || status < 100 || status > 599) throw new RangeError(`HTTP status ${status}`);
  const all: (readonly [string, string])[] = [...headers];
  if (!headers.some(([n]) => n.toLowerCase() === 'content-length')) all.push(['Content-Length', String(payload.length)]);
  const head = `HTTP/1.1 ${status} ${HTTP_STATUS_TEXT[status] ?? 'Unknown'}\r\n${formatHeaders(all)}\r\n`;
  return options.omitBody ? Buffer.from(head, 'latin1') : Buffer.concat([Buffer.from(head, 'latin1'), payload]);
}

/** UDA 1.1 §2.1, §3.2.1: the content type of descriptions and SOAP messages. */
export const CONTENT_TYPE_XML = 'text/xml; charset="utf-8"';
