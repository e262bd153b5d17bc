// Property-based fuzzing (fast-check) of every UPnP parser a LAN host can
// reach, ≥ 100,000 inputs in all:
//
//   ssdp  parseSsdp → validateSearch → searchAnswers → buildSearchResponse:
//         random datagrams and token soup, mutations of real searches
//         (miniupnpc, Windows, UDA 2.0 style) and of NOTIFYs.
//   soap  parseSoapAction and parseSoapRequest: random and mutated
//         SOAPACTION values, random bodies, mutations of real envelopes
//         (upnpc's AddPortMapping, pinholes, SOAP-ENV-prefixed pretty-printed
//         ones); an accepted request's arguments must survive soapResponse
//         and our XML parser unchanged.
//   http  HttpRequestParser: random bytes and mutations of real requests,
//         fed in random chunks; the outcome must not depend on the chunking.
//   gena  parseGenaRequest: random and mutated header maps, and whole
//         SUBSCRIBE/UNSUBSCRIBE requests through the HTTP parser first.
//
// No exception may escape, every result must be well typed, and outputs are
// bounded (answers per search, header and argument counts, body sizes).
//
// Each target runs in its own worker thread. Before using an input the
// worker copies it into shared memory and bumps a counter; the main thread
// polls the counter, and if it stops moving (a synchronous hang no timeout
// inside the worker could catch) terminates the worker and reports the
// input that was running. The seed is fixed; FUZZ_SEED=<int> overrides it.

import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { igdTree } from '../src/protocols/upnp/device-tree.js';
import { buildNotify, buildSearchResponse, parseSsdp, searchAnswers, validateSearch, SSDP_MAX_HEADERS } from '../src/protocols/upnp/ssdp.js';
import { parseSoapAction, parseSoapRequest, soapResponse, type SoapActionHeader } from '../src/protocols/upnp/soap.js';
import { HTTP_MAX_BODY, HTTP_MAX_HEADERS, HTTP_METHODS, HttpRequestParser, type HttpParseStep } from '../src/protocols/upnp/http.js';
import { GENA_MAX_CALLBACKS, GENA_MAX_CALLBACK_URL, parseGenaRequest } from '../src/protocols/upnp/gena.js';
import { childElements, parseXml, textOf } from '../src/protocols/upnp/xml.js';
import { escapeXml } from '../src/protocols/upnp/xml-chars.js';
import { ACTIONS } from '../src/protocols/upnp/description.js';
import { resolveSeed, scaledRuns, watchProgress } from './helpers/fuzz.js';

// ---------------------------------------------------------------- parameters

const DEFAULT_SEED = 0x19001900;
/** Runs per phase; the sum is what the test asserts against MIN_TOTAL_RUNS. */
const RUNS = {
  ssdp: scaledRuns({ random: 10_000, mutated: 16_000, structured: 8_000 }),
  soap: scaledRuns({ action: 10_000, random: 8_000, mutated: 16_000, structured: 8_000 }),
  http: scaledRuns({ random: 8_000, mutated: 17_000 }),
  gena: scaledRuns({ headers: 12_000, requests: 8_000 }),
};
const PLANNED_RUNS = Object.values(RUNS).reduce((n, phases) => n + Object.values<number>(phases).reduce((a, b) => a + b, 0), 0);
/** 100 000 of the default 121 000 planned; the same share of N per decoder under `npm run fuzz -- --runs N`. */
const MIN_TOTAL_RUNS = Math.floor((PLANNED_RUNS * 100) / 121);
/** A worker that starts no new input for this long is hung. */
const STALL_MS = 15_000;
const PROGRESS_BYTES = 8192;

type Target = keyof typeof RUNS;
const TARGETS = Object.keys(RUNS) as Target[];

// ------------------------------------------------------------- seed inputs

const ROOT_UUID = '2f402f80-da50-11e1-9b23-001778123456';
const TREE = igdTree(ROOT_UUID, 2);
const lines = (...l: string[]): string => l.map((x) => `${x}\r\n`).join('');

const SSDP_SEEDS: readonly Buffer[] = [
  // miniupnpc upnpDiscover
  lines('M-SEARCH * HTTP/1.1', 'HOST: 239.255.255.250:1900', 'ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1', 'MAN: "ssdp:discover"', 'MX: 2', ''),
  // Windows style: no space after the colon
  lines('M-SEARCH * HTTP/1.1', 'Host:239.255.255.250:1900', 'ST:urn:schemas-upnp-org:service:WANIPConnection:1', 'Man:"ssdp:discover"', 'MX:3', ''),
  // UDA 2.0 control point over IPv6
  lines('M-SEARCH * HTTP/1.1', 'HOST: [FF02::C]:1900', 'MAN: "ssdp:discover"', 'MX: 1', 'ST: ssdp:all', 'USER-AGENT: Linux/6.1 UPnP/2.0 gupnp/1.6', 'CPFN.UPNP.ORG: test', ''),
  // unicast search for our root UDN
  lines('M-SEARCH * HTTP/1.1', 'HOST: 192.168.1.1:1900', 'MAN: "ssdp:discover"', `ST: uuid:${ROOT_UUID}`, ''),
  lines('M-SEARCH * HTTP/1.1', 'HOST: 239.255.255.250:1900', 'MAN: "ssdp:discover"', 'MX: 5', 'ST: urn:schemas-upnp-org:service:WANIPv6FirewallControl:1', ''),
  lines('M-SEARCH * HTTP/1.1', 'HOST: 239.255.255.250:1900', 'MAN: "ssdp:discover"', 'MX: 1', 'ST: upnp:rootdevice', ''),
  buildNotify({ nts: 'ssdp:alive', family: 4, nt: 'upnp:rootdevice', usn: `uuid:${ROOT_UUID}::upnp:rootdevice`, location: 'http://192.168.1.1:5000/t/igd2.xml', maxAge: 1800, server: 'Linux/6 UPnP/1.1 portcullis/0.1.0', bootId: 1, configId: 1 }).toString('latin1'),
].map((s) => Buffer.from(s, 'latin1'));

const SOAP_NS = 'http://schemas.xmlsoap.org/soap/envelope/';
const WIPC1 = 'urn:schemas-upnp-org:service:WANIPConnection:1';
const WIPC2 = 'urn:schemas-upnp-org:service:WANIPConnection:2';
const FC6 = 'urn:schemas-upnp-org:service:WANIPv6FirewallControl:1';
/** The envelope miniupnpc builds: one line, `s:` prefix, unqualified arguments. */
const upnpc = (service: string, action: string, args: [string, string][]): [string, string] => [
  `"${service}#${action}"`,
  `<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="${SOAP_NS}" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>` +
    `<u:${action} xmlns:u="${service}">${args.map(([n, v]) => `<${n}>${v}</${n}>`).join('')}</u:${action}></s:Body></s:Envelope>\r\n`,
];
const SOAP_SEEDS: readonly [string, string][] = [
  upnpc(WIPC1, 'AddPortMapping', [
    ['NewRemoteHost', ''], ['NewExternalPort', '5555'], ['NewProtocol', 'TCP'], ['NewInternalPort', '5555'],
    ['NewInternalClient', '192.168.1.10'], ['NewEnabled', '1'], ['NewPortMappingDescription', 'libminiupnpc'], ['NewLeaseDuration', '0'],
  ]),
  upnpc(WIPC1, 'GetExternalIPAddress', []),
  upnpc(WIPC1, 'GetGenericPortMappingEntry', [['NewPortMappingIndex', '0']]),
  upnpc(WIPC2, 'AddAnyPortMapping', [
    ['NewRemoteHost', ''], ['NewExternalPort', '0'], ['NewProtocol', 'UDP'], ['NewInternalPort', '3478'],
    ['NewInternalClient', '192.168.1.10'], ['NewEnabled', '1'], ['NewPortMappingDescription', 'a &amp; b &lt;c&gt; &#233;'], ['NewLeaseDuration', '3600'],
  ]),
  upnpc(WIPC2, 'DeletePortMappingRange', [['NewStartPort', '1000'], ['NewEndPort', '2000'], ['NewProtocol', 'TCP'], ['NewManage', '0']]),
  upnpc(FC6, 'AddPinhole', [
    ['RemoteHost', ''], ['RemotePort', '0'], ['InternalClient', '2001:db8::10'], ['InternalPort', '8080'], ['Protocol', '6'], ['LeaseTime', '3600'],
  ]),
  // Pretty-printed, SOAP-ENV prefix, declared encoding, CDATA (GUPnP / Windows style)
  [
    `${WIPC2}#AddPortMapping`,
    `<?xml version="1.0" encoding="utf-8"?>\n<SOAP-ENV:Envelope xmlns:SOAP-ENV="${SOAP_NS}" SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">\n` +
      `  <SOAP-ENV:Body>\n    <m:AddPortMapping xmlns:m="${WIPC2}">\n      <NewRemoteHost/>\n      <NewExternalPort>6881</NewExternalPort>\n` +
      '      <NewProtocol>TCP</NewProtocol>\n      <NewInternalPort>6881</NewInternalPort>\n      <NewInternalClient>192.168.1.20</NewInternalClient>\n' +
      '      <NewEnabled>1</NewEnabled>\n      <NewPortMappingDescription><![CDATA[torrent <x>]]></NewPortMappingDescription>\n' +
      '      <NewLeaseDuration>0</NewLeaseDuration>\n    </m:AddPortMapping>\n  </SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n',
  ],
];

const httpRequest = (head: string[], body = ''): Buffer =>
  Buffer.from(`${lines(...head, `Content-Length: ${Buffer.byteLength(body)}`)}\r\n${body}`, 'utf8');
const HTTP_SEEDS: readonly Buffer[] = [
  ...SOAP_SEEDS.slice(0, 3).map(([action, body]) =>
    httpRequest(['POST /tok/ctl/WANIPConnection HTTP/1.1', 'HOST: 192.168.1.1:5000', 'CONTENT-TYPE: text/xml; charset="utf-8"', `SOAPACTION: ${action}`, 'Connection: close'], body),
  ),
  Buffer.from(lines('GET /tok/igd2.xml HTTP/1.1', 'Host: 192.168.1.1:5000', 'Connection: close', 'User-Agent: Debian/12 UPnP/1.1 MiniUPnPc/2.2.4', '')),
  Buffer.from(lines('HEAD /tok/scpd/WANIPConnection-2.xml HTTP/1.0', '')),
  Buffer.from(lines('SUBSCRIBE /tok/evt/WANIPConnection HTTP/1.1', 'HOST: 192.168.1.1:5000', 'CALLBACK: <http://192.168.1.10:49152/>', 'NT: upnp:event', 'TIMEOUT: Second-1800', '')),
  Buffer.from(lines('UNSUBSCRIBE /tok/evt/WANIPConnection HTTP/1.1', 'HOST: 192.168.1.1:5000', 'SID: uuid:5c1f3f6e-0000-4000-8000-000000000001', '')),
];

type Headers = [string, string][];
const GENA_SEEDS: readonly { method: 'SUBSCRIBE' | 'UNSUBSCRIBE'; headers: Headers }[] = [
  { method: 'SUBSCRIBE', headers: [['callback', '<http://192.168.1.10:49152/evt>'], ['nt', 'upnp:event'], ['timeout', 'Second-1800']] },
  { method: 'SUBSCRIBE', headers: [['callback', '<http://192.168.1.10/a> <http://[2001:db8::10]:8080/b?c=d>'], ['nt', 'upnp:event']] },
  { method: 'SUBSCRIBE', headers: [['sid', 'uuid:5c1f3f6e-0000-4000-8000-000000000001'], ['timeout', 'Second-infinite']] },
  { method: 'UNSUBSCRIBE', headers: [['sid', 'uuid:5c1f3f6e-0000-4000-8000-000000000001']] },
];
const genaRequestBytes = (g: { method: string; headers: Headers }): Buffer =>
  Buffer.from(lines(`${g.method} /tok/evt/WANIPConnection HTTP/1.1`, 'HOST: 192.168.1.1:5000', ...g.headers.map(([n, v]) => `${n.toUpperCase()}: ${v}`), ''), 'latin1');

// --------------------------------------------------------------- mutations

/** Fragments that sit on the parsers' decision points. */
const FRAGMENTS = [
  '"', "'", '<', '>', '&', '\0', '\r', '\n', '\r\n', '\r\n\r\n', ':', '#', ' ', '\t', '/', '*', '[', ']', '%', ',',
  '<!DOCTYPE x [<!ENTITY a "b">]>', '<!ENTITY e SYSTEM "file:///etc/passwd">', ']]>', '<![CDATA[', '<!--', '-->', '<?pi x?>',
  '&#0;', '&#x110000;', '&bogus;', '&amp;', '&#xD800;', 'xmlns:s="urn:x"', 'xmlns=""', '<a>'.repeat(40), '</a>',
  '\uffff', '\ud800', 'é', 'ssdp:all', 'upnp:rootdevice', `uuid:${ROOT_UUID}`, 'urn:schemas-upnp-org:device:InternetGatewayDevice:3',
  'urn:schemas-upnp-org:service:WANIPConnection:01', '"ssdp:discover"', 'MX: 0', 'MX: 99999999999', 'ST:', 'MAN:',
  'Content-Length: 99999999999999999999', 'Content-Length: -1', 'Content-Length: 5, 6', 'Transfer-Encoding: chunked', 'Host: a',
  'HTTP/1.1', 'HTTP/2.0', 'SOAPACTION: "#"', '<http://1.2.3.4/>', '<http://[::1]:0/>', 'Second-infinite', 'Second-0',
  'A'.repeat(300), '9'.repeat(40),
];

type Mutation =
  | { k: 'flip'; at: number; bit: number }
  | { k: 'cut'; to: number }
  | { k: 'erase'; at: number; len: number }
  | { k: 'insert'; at: number; bytes: Uint8Array }
  | { k: 'fragment'; at: number; which: number; replace: number }
  | { k: 'repeat'; at: number; len: number; times: number }
  | { k: 'line'; which: number; op: 'drop' | 'dup' | 'swap' | 'upper' | 'lower' | 'lf' };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('cut' as const), to: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('erase' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 32 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('fragment' as const), at: fc.nat(), which: fc.nat(FRAGMENTS.length - 1), replace: fc.nat(24) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('repeat' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 64 }), times: fc.integer({ min: 2, max: 200 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('line' as const), which: fc.nat(), op: fc.constantFrom('drop' as const, 'dup' as const, 'swap' as const, 'upper' as const, 'lower' as const, 'lf' as const) }) },
);

function mutateLines(b: Buffer, which: number, op: Extract<Mutation, { k: 'line' }>['op']): Buffer {
  const ls = b.toString('latin1').split('\r\n');
  const i = which % ls.length;
  const line = ls[i] ?? '';
  if (op === 'drop') ls.splice(i, 1);
  else if (op === 'dup') ls.splice(i, 0, line);
  else if (op === 'swap') [ls[i], ls[(i + 1) % ls.length]] = [ls[(i + 1) % ls.length] ?? '', line];
  else if (op === 'upper') ls[i] = line.toUpperCase();
  else if (op === 'lower') ls[i] = line.toLowerCase();
  else return Buffer.from(ls.join('\n'), 'latin1');
  return Buffer.from(ls.join('\r\n'), 'latin1');
}

function applyMutation(b: Buffer, m: Mutation): Buffer {
  const at = b.length === 0 ? 0 : ('at' in m ? m.at : 0) % (b.length + 1);
  switch (m.k) {
    case 'flip': {
      if (b.length === 0) return b;
      const c = Buffer.from(b);
      const i = m.at % b.length;
      c[i] = (c[i] ?? 0) ^ (1 << m.bit);
      return c;
    }
    case 'cut':
      return b.subarray(0, m.to % (b.length + 1));
    case 'erase':
      return Buffer.concat([b.subarray(0, at), b.subarray(at + m.len)]);
    case 'insert':
      return Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
    case 'fragment':
      return Buffer.concat([b.subarray(0, at), Buffer.from(FRAGMENTS[m.which] ?? '', 'utf8'), b.subarray(at + m.replace)]);
    case 'repeat': {
      const slice = b.subarray(at, at + m.len);
      return Buffer.concat([b.subarray(0, at), ...Array.from({ length: m.times }, () => slice), b.subarray(at)]);
    }
    case 'line':
      return mutateLines(b, m.which, m.op);
  }
}

/** Mostly one or two mutations, so a good share of inputs stays close enough to valid to reach the deep paths. */
const mutations = fc.oneof(
  { weight: 3, arbitrary: fc.array(mutation, { minLength: 1, maxLength: 2 }) },
  { weight: 1, arbitrary: fc.array(mutation, { minLength: 3, maxLength: 6 }) },
);

function mutated(seeds: readonly Buffer[], maxLength: number): fc.Arbitrary<Buffer> {
  return fc
    .record({ seed: fc.nat(seeds.length - 1), mutations })
    .map(({ seed, mutations }) => {
      let b = seeds[seed] as Buffer;
      for (const m of mutations) {
        b = applyMutation(b, m);
        if (b.length > maxLength) b = b.subarray(0, maxLength);
      }
      return Buffer.from(b);
    });
}

const toBuf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.length);

/** Random octets, and "token soup": fragments and seed slices glued at random. */
function randomInput(maxLength: number, seeds: readonly Buffer[]): fc.Arbitrary<Buffer> {
  const piece = fc.oneof(
    fc.constantFrom(...FRAGMENTS).map((f) => Buffer.from(f, 'utf8')),
    fc.record({ seed: fc.nat(seeds.length - 1), from: fc.nat(), len: fc.integer({ min: 1, max: 80 }) }).map(({ seed, from, len }) => {
      const s = seeds[seed] as Buffer;
      const start = from % Math.max(1, s.length);
      return s.subarray(start, start + len);
    }),
    fc.string({ maxLength: 12 }).map((x) => Buffer.from(x, 'utf8')),
  );
  return fc.oneof(
    fc.uint8Array({ maxLength: 64 }).map(toBuf),
    fc.uint8Array({ maxLength: maxLength, size: 'max' }).map(toBuf),
    fc.array(piece, { maxLength: 40 }).map((ps) => Buffer.concat(ps).subarray(0, maxLength)),
  );
}

// ---------------------------------------------------------- the properties

function fail(what: string): never {
  throw new Error(what);
}
const isStr = (x: unknown): x is string => typeof x === 'string';

function ssdpProperty(buf: Buffer): string {
  const r = parseSsdp(buf);
  if (r.ok === false) {
    if (!isStr(r.detail)) fail('error without detail');
    return 'refused';
  }
  if (r.ok !== true) fail('ok is not a boolean');
  const m = r.msg;
  if (m.headers.size > SSDP_MAX_HEADERS) fail(`${m.headers.size} headers`);
  if (m.method === 'NOTIFY') return 'NOTIFY';
  if (m.method !== 'M-SEARCH') fail(`method ${String((m as { method: unknown }).method)}`);
  if (m.man !== '"ssdp:discover"' || !isStr(m.st) || m.st === '') fail('search without MAN or ST');
  if (m.mx !== undefined && !(Number.isInteger(m.mx) && m.mx >= 0)) fail(`MX ${m.mx}`);
  for (const multicast of [true, false]) {
    const v = validateSearch(m, { multicast });
    if (v.ok && !(v.maxDelaySeconds >= 0 && v.maxDelaySeconds <= 5)) fail(`delay ${v.maxDelaySeconds}`);
    if (v.ok && multicast && v.maxDelaySeconds < 1) fail('multicast search accepted without MX ≥ 1');
  }
  const answers = searchAnswers(m.st, TREE);
  if (answers.length > 10) fail(`${answers.length} answers to one search`);
  for (const a of answers) {
    // Every answer must be sendable; a datagram this size is the reflection bound (SEC-03).
    const reply = buildSearchResponse({ ...a, location: 'http://192.168.1.1:5000/t/igd2.xml', maxAge: 1800, date: new Date(0), server: 'Linux/6 UPnP/1.1 portcullis/0.1.0', bootId: 1, configId: 1 });
    if (reply.length > 600) fail(`${reply.length}-octet reply`);
  }
  return answers.length > 0 ? 'search answered' : 'search unanswered';
}

function soapActionProperty(header: string): SoapActionHeader | undefined {
  const r = parseSoapAction(header);
  if (r.ok === false) {
    if (!isStr(r.detail)) fail('error without detail');
    return undefined;
  }
  if (!/^urn:schemas-upnp-org:service:[A-Za-z0-9]+:[1-9][0-9]*$/.test(r.serviceType)) fail(`service type ${r.serviceType}`);
  if (!isStr(r.action) || r.action.length === 0 || r.action.length > 64) fail('action name');
  if (r.serviceType !== `urn:schemas-upnp-org:service:${r.serviceName}:${r.serviceVersion}`) fail('service parts disagree');
  return r;
}

function soapRequestProperty(input: { header: string; body: Buffer }): string {
  const action = soapActionProperty(input.header);
  const body = input.body.toString('utf8');
  const r = parseSoapRequest(body, action);
  if (r.ok === false) {
    if (r.code !== 401 && r.code !== 402) fail(`code ${String(r.code)}`);
    // Without SOAPACTION only a body that names its action can earn 402.
    if (!action && r.code === 402 && !parseXml(body).ok) fail('402 for an unreadable body and no SOAPACTION');
    return String(r.code);
  }
  if (r.ok !== true) fail('ok is not a boolean');
  if (action && (action.action !== r.action || action.serviceType !== r.serviceType)) fail('accepted a SOAPACTION/body mismatch');
  if (!(r.args instanceof Map) || r.args.size > 1024) fail('args');
  let total = 0;
  for (const [k, v] of r.args) {
    if (!isStr(k) || !isStr(v)) fail('argument is not a string');
    total += v.length;
  }
  if (total > body.length) fail('arguments longer than the body');
  // Round trip: what we would answer with these values must parse back to them.
  const out = [...r.args].filter(([k]) => k.length <= 64);
  const doc = parseXml(soapResponse(r.serviceType, r.action, out), { maxLength: 8 * body.length + 4096 });
  if (!doc.ok) fail(`our own response does not parse: ${doc.detail}`);
  const resp = childElements(childElements(doc.root)[0] ?? fail('no Body'))[0] ?? fail('no response element');
  const back = childElements(resp).map((e) => [e.local, textOf(e)]);
  if (JSON.stringify(back) !== JSON.stringify(out)) fail('argument values changed through soapResponse');
  return 'accepted';
}

const HTTP_STATUSES: ReadonlySet<number> = new Set([400, 411, 413, 414, 431, 501, 505]);

function checkHttpStep(s: HttpParseStep, inputLength: number): void {
  if (s.state === 'need-more') return;
  if (s.state === 'error') {
    if (!HTTP_STATUSES.has(s.status) || !isStr(s.detail)) fail(`error status ${s.status}`);
    return;
  }
  if (s.state !== 'request') fail(`state ${String((s as { state: unknown }).state)}`);
  const q = s.request;
  if (!(HTTP_METHODS as readonly string[]).includes(q.method)) fail(`method ${q.method}`);
  if (!q.path.startsWith('/')) fail(`path ${q.path}`);
  if (q.headers.size > HTTP_MAX_HEADERS) fail(`${q.headers.size} headers`);
  if (q.body.length > HTTP_MAX_BODY) fail(`${q.body.length}-octet body`);
  if (q.body.length !== Number(q.headers.get('content-length') ?? 0)) fail('body length differs from Content-Length');
  if (q.version === '1.1' && !q.headers.has('host')) fail('HTTP/1.1 without Host accepted');
  if (q.headers.has('transfer-encoding')) fail('Transfer-Encoding accepted');
  if (s.leftover.length > inputLength) fail('leftover longer than the input');
}

function outcome(s: HttpParseStep): string {
  if (s.state === 'need-more') return 'need-more';
  if (s.state === 'error') return `error ${s.status}`;
  const q = s.request;
  return JSON.stringify([q.method, q.target, q.version, [...q.headers], q.body.toString('hex'), s.leftover.toString('hex')]);
}

function httpProperty(input: { bytes: Buffer; cuts: number[] }): string {
  const whole = new HttpRequestParser().feed(input.bytes);
  checkHttpStep(whole, input.bytes.length);
  const p = new HttpRequestParser();
  let step: HttpParseStep = { state: 'need-more' };
  let from = 0;
  for (const cut of [...input.cuts.map((c) => c % (input.bytes.length + 1)).sort((a, b) => a - b), input.bytes.length]) {
    step = p.feed(input.bytes.subarray(from, Math.max(from, cut)));
    checkHttpStep(step, input.bytes.length);
    from = Math.max(from, cut);
  }
  if (outcome(step) !== outcome(whole)) fail(`chunked feed gave ${outcome(step).slice(0, 80)}, one feed gave ${outcome(whole).slice(0, 80)}`);
  return whole.state === 'error' ? String(whole.status) : whole.state;
}

function genaProperty(input: { method: 'SUBSCRIBE' | 'UNSUBSCRIBE'; headers: ReadonlyMap<string, string> }): string {
  const r = parseGenaRequest(input.method, input.headers);
  if (r.ok === false) {
    if (r.status !== 400 && r.status !== 412) fail(`status ${String(r.status)}`);
    return String(r.status);
  }
  if (r.ok !== true) fail('ok is not a boolean');
  if (r.kind === 'subscribe') {
    if (input.method !== 'SUBSCRIBE' || input.headers.has('sid')) fail('subscribe from the wrong request');
    if (r.callbacks.length < 1 || r.callbacks.length > GENA_MAX_CALLBACKS) fail(`${r.callbacks.length} callbacks`);
    for (const c of r.callbacks) {
      if (c.url.length > GENA_MAX_CALLBACK_URL || !/^http:\/\//i.test(c.url)) fail(`callback ${c.url}`);
      if (!Number.isInteger(c.port) || c.port < 1 || c.port > 65535 || !c.path.startsWith('/') || !isStr(c.address)) fail('callback fields');
    }
  } else if (r.kind === 'renew' || r.kind === 'unsubscribe') {
    if (!r.sid.startsWith('uuid:') || r.sid.length > 128) fail(`SID ${r.sid}`);
    if ((r.kind === 'renew') !== (input.method === 'SUBSCRIBE')) fail('renew/unsubscribe from the wrong method');
  } else fail(`kind ${String((r as { kind: unknown }).kind)}`);
  if ('timeoutSeconds' in r && r.timeoutSeconds !== undefined && !(Number.isInteger(r.timeoutSeconds) && r.timeoutSeconds >= 1)) fail('timeout');
  return r.kind;
}

function genaThroughHttp(bytes: Buffer): string {
  const s = new HttpRequestParser().feed(bytes);
  checkHttpStep(s, bytes.length);
  if (s.state !== 'request') return `HTTP ${s.state === 'error' ? s.status : s.state}`;
  if (s.request.method !== 'SUBSCRIBE' && s.request.method !== 'UNSUBSCRIBE') return `HTTP ${s.request.method}`;
  return genaProperty({ method: s.request.method, headers: s.request.headers });
}

// ------------------------------------------------------------ input shapes

const soapHeader: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(...SOAP_SEEDS.map(([h]) => h)),
  mutated(SOAP_SEEDS.map(([h]) => Buffer.from(h, 'latin1')), 400).map((b) => b.toString('latin1')),
  fc.string({ maxLength: 300 }),
  fc.constantFrom('', '"', "'", '""', "''", '#', '"#"', `"${WIPC1}#"`, `"#AddPortMapping"`, `"${WIPC1}#${'A'.repeat(300)}"`),
);
/** Search targets near ours: known and near-miss type names, odd versions, UUID variants. */
const searchTarget: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('ssdp:all', 'upnp:rootdevice', `uuid:${ROOT_UUID}`, `uuid:${ROOT_UUID.toUpperCase()}`, `uuid:${ROOT_UUID}x`, 'uuid:'),
  fc
    .record({
      domain: fc.constantFrom('schemas-upnp-org', 'schemas-upnp-org', 'schemas-microsoft-com', ''),
      kind: fc.constantFrom('device', 'service', 'Device', 'x'),
      name: fc.oneof(
        fc.constantFrom('InternetGatewayDevice', 'WANDevice', 'WANConnectionDevice', 'WANIPConnection', 'WANIPv6FirewallControl', 'WANCommonInterfaceConfig', 'WANPPPConnection', 'Layer3Forwarding'),
        fc.string({ maxLength: 30 }),
      ),
      version: fc.oneof(fc.constantFrom('1', '2', '3', '0', '01', '-1', '1.0', '', '4294967296'), fc.string({ maxLength: 4 })),
      tail: fc.oneof(fc.constant(''), fc.constant(''), fc.string({ maxLength: 4 })),
    })
    .map(({ domain, kind, name, version, tail }) => `urn:${domain}:${kind}:${name}:${version}${tail}`),
);
const structuredSearch: fc.Arbitrary<Buffer> = fc
  .record({
    st: searchTarget,
    mx: fc.option(fc.oneof(fc.constantFrom('0', '1', '3', '5', '6', '120', 'x', '', '-1'), fc.string({ maxLength: 6 }))),
    host: fc.constantFrom('239.255.255.250:1900', '[FF02::C]:1900', '192.168.1.1:1900'),
  })
  .map(({ st, mx, host }) => Buffer.from(lines('M-SEARCH * HTTP/1.1', `HOST: ${host}`, 'MAN: "ssdp:discover"', ...(mx === null ? [] : [`MX: ${mx}`]), `ST: ${st}`, ''), 'utf8'));

/** Action names from our tables plus near misses; argument values are any text, escaped or (sometimes) raw. */
const KNOWN_ACTIONS = [...new Set(Object.values(ACTIONS).flatMap((m) => [...m.keys()]))];
const KNOWN_ARGS = [...new Set(Object.values(ACTIONS).flatMap((m) => [...m.values()].flatMap((a) => [...a.in, ...a.out])))];
const structuredSoap: fc.Arbitrary<{ header: string; body: Buffer }> = fc
  .record({
    service: fc.constantFrom(WIPC1, WIPC2, FC6, 'urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1', 'urn:schemas-upnp-org:service:X:1', 'urn:example:x'),
    action: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...KNOWN_ACTIONS) }, { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 20 }) }),
    args: fc.array(
      fc.record({
        name: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...KNOWN_ARGS) }, { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 10 }) }),
        value: fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom(...FRAGMENTS)),
        raw: fc.oneof(fc.constant(false), fc.constant(false), fc.constant(false), fc.constant(true)),
        cdata: fc.boolean(),
      }),
      { maxLength: 10 },
    ),
    prefix: fc.constantFrom('s', 'SOAP-ENV', 'soap'),
    headerMatches: fc.oneof(fc.constant(true), fc.constant(true), fc.constant(false)),
    quoted: fc.boolean(),
  })
  .map(({ service, action, args, prefix, headerMatches, quoted }) => {
    const inner = args
      .map(({ name, value, raw, cdata }) => `<${name}>${raw ? value : cdata ? `<![CDATA[${value}]]>` : escapeXml(value)}</${name}>`)
      .join('');
    const body =
      `<?xml version="1.0"?>\r\n<${prefix}:Envelope xmlns:${prefix}="${SOAP_NS}"><${prefix}:Body>` +
      `<u:${action} xmlns:u="${service}">${inner}</u:${action}></${prefix}:Body></${prefix}:Envelope>`;
    const h = `${service}#${headerMatches ? action : 'GetStatusInfo'}`;
    return { header: quoted ? `"${h}"` : h, body: Buffer.from(body, 'utf8') };
  });

const genaValue = (seeds: readonly string[]): fc.Arbitrary<string> =>
  fc.oneof(
    fc.constantFrom(...seeds),
    mutated(seeds.map((s) => Buffer.from(s, 'latin1')), 1500).map((b) => b.toString('latin1')),
    fc.string({ maxLength: 80 }),
  );
const genaHeaders: fc.Arbitrary<{ method: 'SUBSCRIBE' | 'UNSUBSCRIBE'; headers: ReadonlyMap<string, string> }> = fc.record({
  method: fc.constantFrom('SUBSCRIBE' as const, 'UNSUBSCRIBE' as const),
  callback: fc.option(genaValue(GENA_SEEDS.flatMap((g) => g.headers.filter(([n]) => n === 'callback').map(([, v]) => v))), { freq: 2 }),
  nt: fc.option(fc.oneof(fc.constant('upnp:event'), genaValue(['upnp:event'])), { freq: 2 }),
  sid: fc.option(genaValue(['uuid:5c1f3f6e-0000-4000-8000-000000000001', 'uuid:x']), { freq: 2 }),
  timeout: fc.option(genaValue(['Second-1800', 'Second-infinite', 'Second-0']), { freq: 2 }),
}).map(({ method, ...h }) => ({
  method,
  headers: new Map(Object.entries(h).filter((e): e is [string, string] => e[1] !== null)),
}));

// ------------------------------------------------------------- worker side

interface PhaseReport {
  name: string;
  runs: number;
  failed: boolean;
  ms: number;
  /** Outcome labels with counts, most frequent first. */
  outcomes: string;
  counterexample?: string;
  error?: string;
  replay?: string;
}

/**
 * Shared memory between a worker and the main thread:
 * meta[0] inputs started, meta[1] phase, meta[2] input length; then the
 * first PROGRESS_BYTES octets of the input.
 */
function progressViews(sab: SharedArrayBuffer): { meta: Int32Array; bytes: Uint8Array } {
  return { meta: new Int32Array(sab, 0, 3), bytes: new Uint8Array(sab, 12, PROGRESS_BYTES) };
}

type PhaseRun = Omit<PhaseReport, 'name' | 'ms'>;

function phasesFor(target: Target): { name: string; run: (seed: number, note: (b: Buffer) => void) => PhaseRun }[] {
  /** `check` returns a label of the outcome; the tally shows how deep the inputs got. */
  const phase = <T>(name: string, runs: number, arb: fc.Arbitrary<T>, bytes: (x: T) => Buffer, check: (x: T) => string) => ({
    name,
    run: (seed: number, note: (b: Buffer) => void): PhaseRun => {
      const tally = new Map<string, number>();
      const d = fc.check(
        fc.property(arb, (x) => {
          note(bytes(x));
          const label = check(x);
          tally.set(label, (tally.get(label) ?? 0) + 1);
        }),
        { seed, numRuns: runs },
      );
      const outcomes = [...tally].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ');
      if (!d.failed) return { runs: d.numRuns, failed: false, outcomes };
      return {
        runs: d.numRuns,
        failed: true,
        outcomes,
        counterexample: show(d.counterexample).slice(0, 4000),
        error: d.errorInstance instanceof Error ? (d.errorInstance.stack ?? d.errorInstance.message) : String(d.errorInstance),
        replay: `FUZZ_SEED=${d.seed}, path ${d.counterexamplePath}`,
      };
    },
  });
  const id = (b: Buffer): Buffer => b;
  const soapBytes = (x: { header: string; body: Buffer }): Buffer => Buffer.concat([Buffer.from(`${x.header}\n`, 'latin1'), x.body]);
  const soapBodies = SOAP_SEEDS.map(([, body]) => Buffer.from(body, 'utf8'));
  const pairedSoap = fc.record({ i: fc.nat(SOAP_SEEDS.length - 1), mutateHeader: fc.oneof(fc.constant(false), fc.constant(false), fc.constant(false), fc.constant(true)), header: soapHeader, mutations }).map(({ i, mutateHeader, header, mutations }) => {
    let body = soapBodies[i] as Buffer;
    for (const m of mutations) body = applyMutation(body, m).subarray(0, 70_000);
    return { header: mutateHeader ? header : (SOAP_SEEDS[i] as [string, string])[0], body: Buffer.from(body) };
  });
  const cuts = fc.array(fc.nat(), { maxLength: 8 });
  switch (target) {
    case 'ssdp':
      return [
        phase('random datagrams and token soup', RUNS.ssdp.random, randomInput(2100, SSDP_SEEDS), id, ssdpProperty),
        phase(`mutations of ${SSDP_SEEDS.length} real searches and NOTIFYs`, RUNS.ssdp.mutated, mutated(SSDP_SEEDS, 2100), id, ssdpProperty),
        phase('well-formed searches for generated targets', RUNS.ssdp.structured, structuredSearch, id, ssdpProperty),
      ];
    case 'soap':
      return [
        phase('SOAPACTION values', RUNS.soap.action, soapHeader, (h) => Buffer.from(h, 'utf8'), (h) => (soapActionProperty(h) ? 'accepted' : 'refused')),
        phase('random bodies and token soup', RUNS.soap.random, fc.record({ header: soapHeader, body: randomInput(4096, soapBodies) }), soapBytes, soapRequestProperty),
        phase(`mutations of ${SOAP_SEEDS.length} real envelopes`, RUNS.soap.mutated, pairedSoap, soapBytes, soapRequestProperty),
        phase('generated envelopes: real and odd actions, arbitrary argument text', RUNS.soap.structured, structuredSoap, soapBytes, soapRequestProperty),
      ];
    case 'http':
      return [
        phase('random bytes in random chunks', RUNS.http.random, fc.record({ bytes: randomInput(9000, HTTP_SEEDS), cuts }), (x) => x.bytes, httpProperty),
        phase(`mutations of ${HTTP_SEEDS.length} real requests in random chunks`, RUNS.http.mutated, fc.record({ bytes: mutated(HTTP_SEEDS, 80_000), cuts }), (x) => x.bytes, httpProperty),
      ];
    case 'gena':
      return [
        phase('random and mutated header maps', RUNS.gena.headers, genaHeaders, (x) => Buffer.from(JSON.stringify([x.method, [...x.headers]])), genaProperty),
        phase('mutated SUBSCRIBE/UNSUBSCRIBE requests through the HTTP parser', RUNS.gena.requests, mutated(GENA_SEEDS.map(genaRequestBytes), 9000), id, genaThroughHttp),
      ];
  }
}

/** A counterexample as text: octets as latin1 strings, Maps as entry lists. */
function show(x: unknown): string {
  return JSON.stringify(x, function (this: Record<string, unknown>, key: string, v: unknown) {
    const raw = key === '' ? v : this[key];
    if (raw instanceof Uint8Array) return Buffer.from(raw).toString('latin1');
    if (raw instanceof Map) return [...raw];
    return v;
  });
}

function runWorker(target: Target, seed: number, sab: SharedArrayBuffer): PhaseReport[] {
  const { meta, bytes } = progressViews(sab);
  const note = (b: Buffer): void => {
    bytes.set(b.subarray(0, PROGRESS_BYTES));
    Atomics.store(meta, 2, b.length);
    Atomics.add(meta, 0, 1);
  };
  return phasesFor(target).map((p, i) => {
    Atomics.store(meta, 1, i);
    const started = performance.now();
    const r = p.run(seed, note);
    return { name: p.name, ms: performance.now() - started, ...r };
  });
}

// --------------------------------------------------------------- main side

interface TargetOutcome {
  phases: PhaseReport[];
  /** Hang, an exception outside a property, or an early exit. */
  abnormal?: string;
}

/** Runs one target in a worker and watches its progress counter. */
function supervise(target: Target, seed: number): Promise<TargetOutcome> {
  const sab = new SharedArrayBuffer(12 + PROGRESS_BYTES);
  const { meta, bytes } = progressViews(sab);
  const lastInput = (): string => {
    const len = Atomics.load(meta, 2);
    const shown = Buffer.from(bytes.subarray(0, Math.min(len, PROGRESS_BYTES)));
    return `phase ${Atomics.load(meta, 1) + 1}, ${len}-octet input ${JSON.stringify(shown.toString('latin1'))}`;
  };
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { target, seed, sab } });
  return new Promise((resolve) => {
    let done = false;
    const settle = (o: TargetOutcome): void => {
      if (done) return;
      done = true;
      stopWatching();
      void worker.terminate();
      resolve(o);
    };
    const stopWatching = watchProgress(() => Atomics.load(meta, 0), STALL_MS, () =>
      settle({ phases: [], abnormal: `hang: no new input for ${STALL_MS} ms; running ${lastInput()}` }),
    );
    worker.once('message', (phases: PhaseReport[]) => settle({ phases }));
    worker.once('error', (e) => settle({ phases: [], abnormal: `exception outside the property; last input ${lastInput()}:\n${e.stack ?? e.message}` }));
    worker.once('exit', (code) => settle({ phases: [], abnormal: `worker exited (${code}) without a report; last input ${lastInput()}` }));
  });
}

async function main(): Promise<void> {
  const { default: t } = await import('tap');
  const seed = resolveSeed(DEFAULT_SEED);
  t.comment(`fuzz seed ${seed} (FUZZ_SEED=<int> to override)`);
  const started = performance.now();
  const outcomes = new Map(TARGETS.map((target) => [target, supervise(target, seed)] as const));
  let total = 0;
  for (const target of TARGETS) {
    await t.test(`${target}: no throw, well-typed and bounded results (seed ${seed})`, async (t) => {
      const o = await outcomes.get(target);
      if (!o) throw new Error(`no outcome for ${target}`);
      t.notOk(o.abnormal, 'worker finished: no hang, nothing thrown outside a property', o.abnormal ? { failure: o.abnormal } : {});
      for (const p of o.phases) {
        t.comment(`${p.name}: ${p.runs} runs in ${(p.ms / 1000).toFixed(1)} s (${p.outcomes})`);
        t.notOk(p.failed, `${p.name}: property holds`, p.failed ? { counterexample: p.counterexample, error: p.error, replay: p.replay } : {});
        total += p.runs;
      }
      const planned = Object.values(RUNS[target]).reduce((a, b) => a + b, 0);
      if (!o.abnormal && o.phases.every((p) => !p.failed)) t.equal(o.phases.reduce((n, p) => n + p.runs, 0), planned, `${planned} inputs`);
    });
  }
  t.test(`≥ ${MIN_TOTAL_RUNS} inputs in all`, async (t) => {
    t.ok(total >= MIN_TOTAL_RUNS, `${total} inputs in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  });
}

if (isMainThread) {
  await main();
} else {
  const { target, seed, sab } = workerData as { target: Target; seed: number; sab: SharedArrayBuffer };
  parentPort?.postMessage(runWorker(target, seed, sab));
}
