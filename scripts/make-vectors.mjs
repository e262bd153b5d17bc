#!/usr/bin/env node
// Writes rfc-vectors/: one JSON file per case. Requests and the responses the
// RFCs require are spelled out here field by field with a tiny byte builder
// of its own (it shares no code with src/, so a codec bug cannot agree with
// itself). In a response pattern, "xx" marks a byte that may vary (epoch,
// an allocated port). Regenerate with `node scripts/make-vectors.mjs`.

import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const OUT = new URL('../rfc-vectors/', import.meta.url).pathname;

// --- byte building -------------------------------------------------------
const hex = (n, bytes) => n.toString(16).padStart(bytes * 2, '0');
const u8 = (n) => hex(n, 1);
const u16 = (n) => hex(n, 2);
const u32 = (n) => hex(n >>> 0, 4);
const VAR4 = 'xxxxxxxx';
const VAR2 = 'xxxx';

function v4(a) {
  return '00000000000000000000ffff' + a.split('.').map((o) => u8(Number(o))).join('');
}
function v6(a) {
  const [l, r = ''] = a.split('::');
  const L = l ? l.split(':') : [];
  const R = r ? r.split(':') : [];
  const groups = a.includes('::') ? [...L, ...Array(8 - L.length - R.length).fill('0'), ...R] : L;
  return groups.map((g) => g.padStart(4, '0')).join('');
}
const addr = (a) => (a.includes(':') ? v6(a) : v4(a));
const ZERO16 = '00'.repeat(16);

const A = '192.168.77.10';
const B = '192.168.77.11';
const A6 = '2001:db8:77::10';
const EXT = '198.51.100.1';
const NONCE1 = '0102030405060708090a0b0c';
const NONCE2 = 'a1a2a3a4a5a6a7a8a9aaabac';

// PCP (RFC 6887 §7.1, §11.1, §12.1)
function pcpReq({ version = 2, op, lifetime = 0, client, body = '', options = '', reserved = '0000' }) {
  return u8(version) + u8(op) + reserved + u32(lifetime) + addr(client) + body + options;
}
function mapBody({ nonce = NONCE1, proto = 17, iport, eport = 0, eaddr = '0.0.0.0', reserved = '000000' }) {
  return nonce + u8(proto) + reserved + u16(iport) + u16(eport) + addr(eaddr);
}
function peerBody({ nonce = NONCE1, proto = 17, iport, eport = 0, eaddr = '0.0.0.0', rport, raddr }) {
  return mapBody({ nonce, proto, iport, eport, eaddr }) + u16(rport) + '0000' + addr(raddr);
}
function opt(code, dataHex) {
  const len = dataHex.length / 2;
  const pad = '00'.repeat((4 - (len % 4)) % 4);
  return u8(code) + '00' + u16(len) + dataHex + pad;
}
const THIRD_PARTY = (a) => opt(1, addr(a));
const PREFER_FAILURE = opt(2, '');
const FILTER = (prefixLen, port, a) => opt(3, '00' + u8(prefixLen) + u16(port) + addr(a));
const DESCRIPTION = (text) => opt(128, Buffer.from(text, 'utf8').toString('hex'));

/** A success response pattern (§7.2): epoch varies. */
function pcpResp({ op, result = 0, lifetime, body = '', options = '' }) {
  return '02' + u8(0x80 | op) + '00' + u8(result) + u32(lifetime) + VAR4 + '00'.repeat(12) + body + options;
}
/**
 * An error response pattern (§7.3, §8.2): a copy of the request, zero-padded
 * to a multiple of 4 and cut at 1100 octets, under a response header. For a
 * request that parsed, octets 12-23 are zero; otherwise they stay as sent.
 */
function pcpErr(request, result, lifetime, { parsed }) {
  let body = request.slice(0, 1100 * 2);
  while (body.length % 8 !== 0) body += '00';
  if (body.length < 48) body = body.padEnd(48, '0');
  const reserved = parsed ? '00'.repeat(12) : body.slice(24, 48);
  return '02' + u8(0x80 | (parseInt(request.slice(2, 4), 16) & 0x7f)) + '00' + u8(result) + u32(lifetime) + VAR4 + reserved + body.slice(48);
}

const R = {
  SUCCESS: 0, UNSUPP_VERSION: 1, NOT_AUTHORIZED: 2, MALFORMED_REQUEST: 3, UNSUPP_OPCODE: 4, UNSUPP_OPTION: 5,
  MALFORMED_OPTION: 6, NETWORK_FAILURE: 7, NO_RESOURCES: 8, UNSUPP_PROTOCOL: 9, USER_EX_QUOTA: 10,
  CANNOT_PROVIDE_EXTERNAL: 11, ADDRESS_MISMATCH: 12, EXCESSIVE_REMOTE_PEERS: 13,
};
const LONG = 1800;
const SHORT = 30;

// NAT-PMP (RFC 6886 §3.2, §3.3)
const pmpMap = (op, iport, eport, lifetime) => '00' + u8(op) + '0000' + u16(iport) + u16(eport) + u32(lifetime);
const pmpMapResp = (op, result, iport, eport, lifetime) => '00' + u8(0x80 | op) + u16(result) + VAR4 + u16(iport) + u16(eport) + u32(lifetime);

// --- the cases -----------------------------------------------------------
const cases = [];
const add = (dir, name, c) => cases.push({ dir, name, ...c });

// ANNOUNCE
{
  const req = pcpReq({ op: 0, client: A });
  add('pcp', 'announce', { rfc: 'RFC 6887 §14.1.2', description: 'ANNOUNCE request: SUCCESS, lifetime 0, 24 octets', source: A, request: req, response: pcpResp({ op: 0, lifetime: 0 }) });
  add('pcp', 'announce-lifetime-ignored', { rfc: 'RFC 6887 §14.1.1', description: 'requested lifetime of an ANNOUNCE is ignored; reply lifetime 0', source: A, request: pcpReq({ op: 0, lifetime: 99, client: A }), response: pcpResp({ op: 0, lifetime: 0 }) });
  const mm = pcpReq({ op: 0, client: B });
  add('pcp', 'announce-address-mismatch', { rfc: 'RFC 6887 §8.2, §14.1.2', description: 'client address field differs from the source: ADDRESS_MISMATCH, long lifetime', source: A, request: mm, response: pcpErr(mm, R.ADDRESS_MISMATCH, LONG, { parsed: true }) });
  const um = pcpReq({ op: 0, client: A, options: opt(100, '') });
  add('pcp', 'announce-unknown-mandatory-option', { rfc: 'RFC 6887 §7.3', description: 'unknown option in the mandatory range: UNSUPP_OPTION', source: A, request: um, response: pcpErr(um, R.UNSUPP_OPTION, LONG, { parsed: false }) });
  add('pcp', 'announce-unknown-optional-option', { rfc: 'RFC 6887 §7.3', description: 'unknown optional option is ignored and not echoed', source: A, request: pcpReq({ op: 0, client: A, options: opt(200, 'aabbcc') }), response: pcpResp({ op: 0, lifetime: 0 }) });
  const af = pcpReq({ op: 0, client: A, options: FILTER(128, 0, '203.0.113.5') });
  add('pcp', 'announce-with-filter', { rfc: 'RFC 6887 §13, §11.3', description: 'FILTER is valid only with MAP: MALFORMED_OPTION', source: A, request: af, response: pcpErr(af, R.MALFORMED_OPTION, LONG, { parsed: false }) });
  add('pcp', 'announce-with-description', { rfc: 'RFC 7220 §2', description: 'DESCRIPTION (optional) is not valid with ANNOUNCE: ignored, not echoed', source: A, request: pcpReq({ op: 0, client: A, options: DESCRIPTION('x') }), response: pcpResp({ op: 0, lifetime: 0 }) });
  const zero4 = pcpReq({ op: 0, client: A, options: '00000000' });
  add('pcp', 'announce-option-code-zero', { rfc: 'RFC 6887 §7.3', description: 'four zero octets are option 0 (reserved, mandatory range): UNSUPP_OPTION', source: A, request: zero4, response: pcpErr(zero4, R.UNSUPP_OPTION, LONG, { parsed: false }) });
}

// Framing (§8.2, §9)
{
  add('pcp', 'drop-one-octet', { rfc: 'RFC 6887 §8.2', description: 'shorter than 2 octets: silently dropped', source: A, request: '02', response: null, malformed: true });
  add('pcp', 'drop-short-v2', { rfc: 'RFC 6887 §8.2', description: 'version 2 but shorter than 24 octets: silently dropped', source: A, request: pcpReq({ op: 0, client: A }).slice(0, 40), response: null, malformed: true });
  const resp = pcpResp({ op: 0, lifetime: 0 }).replace(VAR4, '00000005');
  add('pcp', 'drop-response-bit', { rfc: 'RFC 6887 §8.2', description: 'R bit set: a response, silently dropped (no loops)', source: A, request: resp, response: null, malformed: true });
  const v1 = pcpReq({ version: 1, op: 1, lifetime: 3600, client: A, body: mapBody({ iport: 40000 }) });
  add('pcp', 'version-1', { rfc: 'RFC 6887 §9', description: 'version 1 (pre-RFC): UNSUPP_VERSION carrying version 2', source: A, request: v1, response: pcpErr(v1, R.UNSUPP_VERSION, LONG, { parsed: false }), malformed: true });
  add('pcp', 'version-3-short', { rfc: 'RFC 6887 §9', description: 'unknown version, 2 octets: UNSUPP_VERSION in a 24-octet header', source: A, request: '0300', response: '02800001' + u32(LONG) + VAR4 + '00'.repeat(12), malformed: true });
  const big = pcpReq({ op: 1, lifetime: 3600, client: A, body: mapBody({ iport: 40000 }), options: opt(200, '00'.repeat(1040)) });
  add('pcp', 'oversized', { rfc: 'RFC 6887 §8.2', description: '1104-octet request: MALFORMED_REQUEST, reply cut to 1100 octets', source: A, request: big, response: pcpErr(big, R.MALFORMED_REQUEST, LONG, { parsed: false }), malformed: true });
  const odd = pcpReq({ op: 1, lifetime: 3600, client: A, body: mapBody({ iport: 40000 }) }) + 'ff';
  add('pcp', 'not-multiple-of-4', { rfc: 'RFC 6887 §8.2', description: '61 octets: MALFORMED_REQUEST, echo zero-padded to 64', source: A, request: odd, response: pcpErr(odd, R.MALFORMED_REQUEST, LONG, { parsed: false }), malformed: true });
  const short = pcpReq({ op: 1, lifetime: 3600, client: A, body: mapBody({ iport: 40000 }) }).slice(0, 112);
  add('pcp', 'map-too-short', { rfc: 'RFC 6887 §8.2', description: '56-octet MAP: too short for the opcode, MALFORMED_REQUEST', source: A, request: short, response: pcpErr(short, R.MALFORMED_REQUEST, LONG, { parsed: false }), malformed: true });
  for (const op of [3, 99, 127]) {
    const r = pcpReq({ op, client: A });
    add('pcp', `unsupported-opcode-${op}`, { rfc: 'RFC 6887 §7.4', description: `opcode ${op}: UNSUPP_OPCODE`, source: A, request: r, response: pcpErr(r, R.UNSUPP_OPCODE, LONG, { parsed: false }) });
  }
}

// MAP (§11)
const map = (o) => pcpReq({ op: 1, lifetime: o.lifetime ?? 3600, client: o.client ?? A, body: mapBody(o), options: o.options ?? '', reserved: o.hdrReserved });
const mapOk = (o) => pcpResp({ op: 1, lifetime: o.lifetime ?? 3600, body: mapBody({ nonce: o.nonce, proto: o.proto ?? 17, iport: o.iport, eport: o.eport, eaddr: o.eaddr ?? EXT }), options: o.options ?? '' });
const mapOkVarPort = (o) => {
  const p = mapOk({ ...o, eport: 0 });
  // external port octets 42-43 → variable
  return p.slice(0, 84) + VAR2 + p.slice(88);
};
const err = (req, code, lifetime) => pcpErr(req, code, lifetime, { parsed: true });
const errUnparsed = (req, code, lifetime) => pcpErr(req, code, lifetime, { parsed: false });
{
  add('pcp', 'map-udp', { rfc: 'RFC 6887 §11.3', description: 'MAP UDP 40000, no suggestion: the internal port is free, so it is the external port', source: A, request: map({ iport: 40000 }), response: mapOk({ iport: 40000, eport: 40000 }) });
  add('pcp', 'map-tcp', { rfc: 'RFC 6887 §11.3', description: 'MAP TCP 40000', source: A, request: map({ proto: 6, iport: 40000 }), response: mapOk({ proto: 6, iport: 40000, eport: 40000 }) });
  add('pcp', 'map-suggested-port', { rfc: 'RFC 6887 §11.3', description: 'a free suggested external port is honoured', source: A, request: map({ iport: 40000, eport: 40001 }), response: mapOk({ iport: 40000, eport: 40001 }) });
  add('pcp', 'map-suggestion-any-v4', { rfc: 'RFC 6887 §5, §11.1', description: 'suggested address ::ffff:0.0.0.0 means no preference', source: A, request: map({ iport: 40000, eaddr: '0.0.0.0' }), response: mapOk({ iport: 40000, eport: 40000 }) });
  add('pcp', 'map-suggestion-any-v6', { rfc: 'RFC 6887 §5, §11.1', description: 'suggested address :: from an IPv4 client is a hint, not an error', source: A, request: map({ iport: 40000, eaddr: '::' }), response: mapOk({ iport: 40000, eport: 40000 }) });
  add('pcp', 'map-suggestion-stale-address', { rfc: 'RFC 6887 §11.3', description: 'a stale previous external address is a hint: the current one is assigned', source: A, request: map({ iport: 40000, eport: 40000, eaddr: '203.0.113.77' }), response: mapOk({ iport: 40000, eport: 40000 }) });
  add('pcp', 'map-lifetime-max', { rfc: 'RFC 6887 §15', description: 'lifetime 0xffffffff is clamped to the 86400 s maximum', source: A, request: map({ iport: 40000, lifetime: 0xffffffff }), response: mapOk({ iport: 40000, eport: 40000, lifetime: 86400 }) });
  add('pcp', 'map-lifetime-min', { rfc: 'RFC 6887 §15', description: 'lifetime 30 is raised to the 120 s minimum', source: A, request: map({ iport: 40000, lifetime: 30 }), response: mapOk({ iport: 40000, eport: 40000, lifetime: 120 }) });
  add('pcp', 'map-reserved-ignored', { rfc: 'RFC 6887 §7.1, §11.1', description: 'reserved header and opcode fields are ignored on receipt (and zero in the reply)', source: A, request: map({ iport: 40000, hdrReserved: 'ffff', reserved: 'ffffff' }), response: mapOk({ iport: 40000, eport: 40000 }) });
  let r = map({ iport: 80 });
  add('pcp', 'map-low-port', { rfc: 'RFC 6887 §11.3 (policy)', description: 'internal port 80 is outside the default policy: NOT_AUTHORIZED, long lifetime', source: A, request: r, response: err(r, R.NOT_AUTHORIZED, LONG) });
  r = map({ iport: 0 });
  add('pcp', 'map-all-ports', { rfc: 'RFC 6887 §11.3 (policy)', description: 'all-ports mapping (port 0) refused by policy: NOT_AUTHORIZED', source: A, request: r, response: err(r, R.NOT_AUTHORIZED, LONG) });
  r = map({ proto: 0, iport: 0 });
  add('pcp', 'map-all-protocols', { rfc: 'RFC 6887 §11.3 (policy)', description: 'all-protocols ("DMZ host") mapping refused by policy: NOT_AUTHORIZED', source: A, request: r, response: err(r, R.NOT_AUTHORIZED, LONG) });
  r = map({ proto: 0, iport: 40000 });
  add('pcp', 'map-protocol-0-with-port', { rfc: 'RFC 6887 §11.3', description: 'protocol 0 with a non-zero port: MALFORMED_REQUEST', source: A, request: r, response: err(r, R.MALFORMED_REQUEST, LONG) });
  r = map({ proto: 132, iport: 40000 });
  add('pcp', 'map-sctp', { rfc: 'RFC 6887 §7.4', description: 'SCTP cannot be mapped by this router: UNSUPP_PROTOCOL', source: A, request: r, response: err(r, R.UNSUPP_PROTOCOL, LONG) });
  r = map({ iport: 40000, options: THIRD_PARTY(B) });
  add('pcp', 'map-third-party-refused', { rfc: 'RFC 6887 §13.1', description: 'THIRD_PARTY not allowed by policy: UNSUPP_OPTION', source: A, request: r, response: err(r, R.UNSUPP_OPTION, LONG) });
  r = map({ iport: 40000, options: THIRD_PARTY(A) });
  add('pcp', 'map-third-party-self', { rfc: 'RFC 6887 §13.1', description: 'THIRD_PARTY naming the source itself: MALFORMED_REQUEST', source: A, request: r, response: err(r, R.MALFORMED_REQUEST, LONG) });
  r = map({ iport: 40000, options: opt(1, addr(B).slice(8)) });
  add('pcp', 'map-third-party-length', { rfc: 'RFC 6887 §13.1, §7.3', description: 'THIRD_PARTY of length 12: MALFORMED_OPTION', source: A, request: r, response: errUnparsed(r, R.MALFORMED_OPTION, LONG), malformed: true });
  add('pcp', 'map-prefer-failure', { rfc: 'RFC 6887 §13.2', description: 'PREFER_FAILURE with a free port: that port, option echoed', source: A, request: map({ iport: 40000, eport: 40003, options: PREFER_FAILURE }), response: mapOk({ iport: 40000, eport: 40003, options: PREFER_FAILURE }) });
  const taken = { source: B, request: map({ client: B, nonce: NONCE2, iport: 40002, eport: 40002 }) };
  r = map({ iport: 40000, eport: 40002, options: PREFER_FAILURE });
  add('pcp', 'map-prefer-failure-taken', { rfc: 'RFC 6887 §13.2, §7.4', description: 'PREFER_FAILURE for a port another client holds: CANNOT_PROVIDE_EXTERNAL', source: A, setup: [taken], request: r, response: err(r, R.CANNOT_PROVIDE_EXTERNAL, SHORT) });
  add('pcp', 'map-suggestion-taken', { rfc: 'RFC 6887 §11.3', description: 'suggested port held by another client, no PREFER_FAILURE: SUCCESS with another port', source: A, setup: [taken], request: map({ iport: 40002, eport: 40002 }), response: mapOkVarPort({ iport: 40002 }) });
  r = map({ iport: 40000, options: PREFER_FAILURE });
  add('pcp', 'map-prefer-failure-no-port', { rfc: 'RFC 6887 §13.2', description: 'PREFER_FAILURE with suggested port 0: MALFORMED_OPTION', source: A, request: r, response: err(r, R.MALFORMED_OPTION, LONG) });
  r = map({ iport: 40000, eport: 40003, options: PREFER_FAILURE + PREFER_FAILURE });
  add('pcp', 'map-prefer-failure-twice', { rfc: 'RFC 6887 §7.3', description: 'PREFER_FAILURE twice: MALFORMED_OPTION', source: A, request: r, response: errUnparsed(r, R.MALFORMED_OPTION, LONG) });
  r = map({ iport: 40000, eport: 40003, lifetime: 0, options: PREFER_FAILURE });
  add('pcp', 'map-prefer-failure-delete', { rfc: 'RFC 6887 §11.3', description: 'PREFER_FAILURE in a delete (lifetime 0): MALFORMED_OPTION', source: A, request: r, response: err(r, R.MALFORMED_OPTION, LONG) });
  r = map({ iport: 40000, eport: 5351, options: PREFER_FAILURE });
  add('pcp', 'map-reserved-external-port', { rfc: 'RFC 6887 §11.3', description: 'external UDP 5351 is never mapped: PREFER_FAILURE for it fails', source: A, request: r, response: err(r, R.CANNOT_PROVIDE_EXTERNAL, SHORT) });
  const f1 = FILTER(128, 0, '203.0.113.5');
  add('pcp', 'map-filter', { rfc: 'RFC 6887 §13.3', description: 'FILTER for one remote host: SUCCESS, FILTER echoed', source: A, request: map({ iport: 40000, options: f1 }), response: mapOk({ iport: 40000, eport: 40000, options: f1 }) });
  const f2 = FILTER(120, 443, '203.0.113.0') + FILTER(0, 0, '::');
  add('pcp', 'map-filter-clear', { rfc: 'RFC 6887 §13.3', description: 'FILTER then FILTER prefix 0 (remove all): both processed and echoed', source: A, request: map({ iport: 40000, options: f2 }), response: mapOk({ iport: 40000, eport: 40000, options: f2 }) });
  for (const [n, len] of [['90', 90], ['129', 129]]) {
    r = map({ iport: 40000, options: FILTER(len, 0, '203.0.113.5') });
    add('pcp', `map-filter-prefix-${n}`, { rfc: 'RFC 6887 §13.3', description: `IPv4 FILTER prefix length ${len}: MALFORMED_OPTION`, source: A, request: r, response: errUnparsed(r, R.MALFORMED_OPTION, LONG) });
  }
  r = map({ iport: 40000, options: FILTER(128, 0, '2001:db8:ff::5') });
  add('pcp', 'map-filter-family', { rfc: 'RFC 6887 §13.3, §10', description: 'IPv6 FILTER on an IPv4 mapping: MALFORMED_OPTION', source: A, request: r, response: err(r, R.MALFORMED_OPTION, LONG) });
  r = map({ iport: 40000, lifetime: 0, options: f1 });
  add('pcp', 'map-filter-delete', { rfc: 'RFC 6887 §13.3', description: 'FILTER in a delete: MALFORMED_OPTION', source: A, request: r, response: err(r, R.MALFORMED_OPTION, LONG) });
  let many = '';
  for (let i = 0; i < 17; i++) many += FILTER(128, 0, `203.0.113.${i + 1}`);
  r = map({ iport: 40000, options: many });
  add('pcp', 'map-filter-excessive', { rfc: 'RFC 6887 §13.3, §7.4', description: '17 FILTERs, more than the 16 a mapping may hold: EXCESSIVE_REMOTE_PEERS, nothing installed', source: A, request: r, response: err(r, R.EXCESSIVE_REMOTE_PEERS, LONG) });
  r = map({ iport: 40000 }) + '03000190';
  add('pcp', 'map-option-overrun', { rfc: 'RFC 6887 §7.3', description: 'option length 400 runs past the message: MALFORMED_OPTION', source: A, request: r, response: errUnparsed(r, R.MALFORMED_OPTION, LONG), malformed: true });
  r = map({ iport: 40000, options: opt(200, '01') + opt(100, '') });
  add('pcp', 'map-unknown-options-order', { rfc: 'RFC 6887 §7.3', description: 'unknown optional then unknown mandatory option: UNSUPP_OPTION', source: A, request: r, response: errUnparsed(r, R.UNSUPP_OPTION, LONG) });
  add('pcp', 'map-unknown-optional', { rfc: 'RFC 6887 §7.3', description: 'unknown optional option: ignored, reply exactly 60 octets', source: A, request: map({ iport: 40000, options: opt(201, '0102030405') }), response: mapOk({ iport: 40000, eport: 40000 }) });
  const d = DESCRIPTION('game server');
  add('pcp', 'map-description', { rfc: 'RFC 7220 §3', description: 'DESCRIPTION is stored and echoed', source: A, request: map({ iport: 40000, options: d }), response: mapOk({ iport: 40000, eport: 40000, options: d }) });
  r = map({ iport: 40000, options: d + d });
  add('pcp', 'map-description-twice', { rfc: 'RFC 7220 §2, RFC 6887 §7.3', description: 'DESCRIPTION twice: MALFORMED_OPTION', source: A, request: r, response: errUnparsed(r, R.MALFORMED_OPTION, LONG) });
  add('pcp', 'map-description-not-utf8', { rfc: 'RFC 7220 §3', description: 'DESCRIPTION that is not UTF-8 is ignored: SUCCESS, not echoed', source: A, request: map({ iport: 40000, options: opt(128, 'c328ff') }), response: mapOk({ iport: 40000, eport: 40000 }) });
  const first = { source: A, request: map({ iport: 40010, eport: 40011 }) };
  add('pcp', 'map-renewal', { rfc: 'RFC 6887 §11.3', description: 'same nonce, same internal port, another suggestion: the existing mapping is renewed and returned', source: A, setup: [first], request: map({ iport: 40010, eport: 40099 }), response: mapOk({ iport: 40010, eport: 40011 }) });
  add('pcp', 'map-same-nonce-other-port', { rfc: 'RFC 6887 §11.3', description: 'one nonce for two internal ports: two mappings', source: A, setup: [first], request: map({ iport: 40012 }), response: mapOk({ iport: 40012, eport: 40012 }) });
  r = map({ iport: 40010, nonce: NONCE2 });
  add('pcp', 'map-wrong-nonce', { rfc: 'RFC 6887 §11.3', description: 'renewal with another nonce: NOT_AUTHORIZED with the existing mapping\'s remaining lifetime', source: A, setup: [first], request: r, response: err(r, R.NOT_AUTHORIZED, 3600) });
  add('pcp', 'map-delete', { rfc: 'RFC 6887 §15.1, erratum 3621', description: 'delete: SUCCESS, lifetime 0, suggested address and port copied', source: A, setup: [first], request: map({ iport: 40010, lifetime: 0 }), response: pcpResp({ op: 1, lifetime: 0, body: mapBody({ iport: 40010, eaddr: '0.0.0.0' }) }) });
  add('pcp', 'map-delete-missing', { rfc: 'RFC 6887 §15.1', description: 'deleting what does not exist: SUCCESS, lifetime 0', source: A, request: map({ iport: 40010, lifetime: 0 }), response: pcpResp({ op: 1, lifetime: 0, body: mapBody({ iport: 40010, eaddr: '0.0.0.0' }) }) });
  r = map({ iport: 40010, lifetime: 0, nonce: NONCE2 });
  add('pcp', 'map-delete-wrong-nonce', { rfc: 'RFC 6887 §15.1', description: 'delete with another nonce: NOT_AUTHORIZED, the mapping stays', source: A, setup: [first], request: r, response: err(r, R.NOT_AUTHORIZED, 3600) });
  add('pcp', 'map-delete-wildcard', { rfc: 'RFC 6887 §15.1', description: 'delete of the all-ports mapping, which never exists here: SUCCESS', source: A, setup: [first], request: map({ iport: 0, lifetime: 0 }), response: pcpResp({ op: 1, lifetime: 0, body: mapBody({ iport: 0, eaddr: '0.0.0.0' }) }) });
  r = map({ client: B, iport: 40000 });
  add('pcp', 'map-address-mismatch', { rfc: 'RFC 6887 §8.2', description: 'client field names another host: ADDRESS_MISMATCH', source: A, request: r, response: err(r, R.ADDRESS_MISMATCH, LONG) });
  r = pcpReq({ op: 1, lifetime: 3600, client: A, body: mapBody({ iport: 40000 }) });
  r = r.slice(0, 16) + '00000000000000000001ffff' + r.slice(40);
  add('pcp', 'map-not-v4-mapped', { rfc: 'RFC 6887 §5, §8.2', description: '::1:ffff:a.b.c.d is not IPv4-mapped (all 96 bits count): ADDRESS_MISMATCH', source: A, request: r, response: err(r, R.ADDRESS_MISMATCH, LONG) });
  r = map({ iport: 40000 });
  add('pcp', 'map-no-external-address', { rfc: 'RFC 6887 §7.4', description: 'the WAN has no IPv4 address: NETWORK_FAILURE, short lifetime', source: A, external: null, request: r, response: err(r, R.NETWORK_FAILURE, SHORT) });
  // IPv6 pinholes
  add('pcp', 'map-ipv6-pinhole', { rfc: 'RFC 6887 §11.1, §11.3', description: 'IPv6 MAP: a pinhole, external address and port = internal ones, whatever was suggested', source: A6, request: map({ client: A6, iport: 40000, eport: 41000, eaddr: '::' }), response: mapOk({ iport: 40000, eport: 40000, eaddr: A6 }) });
  add('pcp', 'map-ipv6-v4-suggestion', { rfc: 'RFC 6887 §11.1', description: 'IPv6 client suggesting ::ffff:0.0.0.0: a hint, the pinhole is made', source: A6, request: map({ client: A6, iport: 40000, eaddr: '0.0.0.0' }), response: mapOk({ iport: 40000, eport: 40000, eaddr: A6 }) });
  add('pcp', 'map-ipv6-own-address', { rfc: 'RFC 6887 §11.1', description: 'IPv6 client suggesting its own address: a hint', source: A6, request: map({ client: A6, iport: 40000, eaddr: A6 }), response: mapOk({ iport: 40000, eport: 40000, eaddr: A6 }) });
  r = map({ client: A6, iport: 40000, eport: 41000, options: PREFER_FAILURE });
  add('pcp', 'map-ipv6-prefer-failure-port', { rfc: 'RFC 6887 §13.2', description: 'IPv6 firewall cannot translate: PREFER_FAILURE for another port fails', source: A6, request: r, response: err(r, R.CANNOT_PROVIDE_EXTERNAL, SHORT) });
  const f6 = FILTER(64, 0, '2001:db8:ff::');
  add('pcp', 'map-ipv6-filter', { rfc: 'RFC 6887 §13.3', description: 'IPv6 pinhole limited to a remote /64', source: A6, request: map({ client: A6, iport: 40000, options: f6 }), response: mapOk({ iport: 40000, eport: 40000, eaddr: A6, options: f6 }) });
  r = map({ client: A, iport: 40000 });
  add('pcp', 'map-ipv6-source-v4-field', { rfc: 'RFC 6887 §8.2', description: 'IPv6 source with an IPv4 client field: ADDRESS_MISMATCH', source: A6, request: r, response: err(r, R.ADDRESS_MISMATCH, LONG) });
  const first6 = { source: A6, request: map({ client: A6, iport: 40010 }) };
  r = map({ client: A6, iport: 40010, nonce: NONCE2, lifetime: 0 });
  add('pcp', 'map-ipv6-delete-wrong-nonce', { rfc: 'RFC 6887 §15.1', description: 'IPv6 delete with another nonce: NOT_AUTHORIZED', source: A6, setup: [first6], request: r, response: err(r, R.NOT_AUTHORIZED, 3600) });
}

// PEER (§12)
{
  const peer = (o) => pcpReq({ op: 2, lifetime: o.lifetime ?? 3600, client: o.client ?? A, body: peerBody(o), options: o.options ?? '' });
  const remote = { rport: 443, raddr: '203.0.113.9' };
  add('pcp', 'peer', { rfc: 'RFC 6887 §12.3', description: 'PEER: SUCCESS, 80 octets, remote peer copied', source: A, request: peer({ iport: 40000, ...remote }), response: pcpResp({ op: 2, lifetime: 3600, body: peerBody({ iport: 40000, eport: 40000, eaddr: EXT, ...remote }) }) });
  const mapped = { source: A, request: map({ iport: 40000, eport: 40005 }) };
  add('pcp', 'peer-shares-map-port', { rfc: 'RFC 6887 §12.3, RFC 4787', description: 'PEER for an internal port that has a MAP uses the same external port', source: A, setup: [mapped], request: peer({ iport: 40000, ...remote }), response: pcpResp({ op: 2, lifetime: 3600, body: peerBody({ iport: 40000, eport: 40005, eaddr: EXT, ...remote }) }) });
  let r = peer({ iport: 40000, eport: 40001, ...remote, options: PREFER_FAILURE });
  add('pcp', 'peer-prefer-failure', { rfc: 'RFC 6887 §12.1', description: 'PREFER_FAILURE in PEER: MALFORMED_REQUEST', source: A, request: r, response: errUnparsed(r, R.MALFORMED_REQUEST, LONG) });
  r = peer({ iport: 40000, rport: 0, raddr: '203.0.113.9' });
  add('pcp', 'peer-zero-remote-port', { rfc: 'RFC 6887 §12.1', description: 'remote peer port 0: MALFORMED_REQUEST', source: A, request: r, response: err(r, R.MALFORMED_REQUEST, LONG) });
  r = peer({ iport: 40000, ...remote, options: FILTER(128, 0, '203.0.113.9') });
  add('pcp', 'peer-with-filter', { rfc: 'RFC 6887 §13.3', description: 'FILTER in PEER: MALFORMED_OPTION', source: A, request: r, response: errUnparsed(r, R.MALFORMED_OPTION, LONG) });
  const peered = { source: A, request: peer({ iport: 40020, ...remote }) };
  r = map({ iport: 40020, lifetime: 0 });
  add('pcp', 'map-delete-peer-mapping', { rfc: 'RFC 6887 §15', description: 'MAP delete where only a PEER mapping exists: NOT_AUTHORIZED', source: A, setup: [peered], request: r, response: err(r, R.NOT_AUTHORIZED, LONG) });
}

// NAT-PMP (RFC 6886)
{
  add('natpmp', 'external-address', { rfc: 'RFC 6886 §3.2', description: 'external address request: 12-octet reply', source: A, request: '0000', response: '00800000' + VAR4 + v4(EXT).slice(24) });
  add('natpmp', 'external-address-none', { rfc: 'RFC 6886 §3.2, §3.5', description: 'no external address yet: result 3, address zero', source: A, external: null, request: '0000', response: '00800003' + VAR4 + '00000000' });
  add('natpmp', 'map-udp', { rfc: 'RFC 6886 §3.3', description: 'map UDP 40001 for 7200 s: 16-octet reply', source: A, request: pmpMap(1, 40001, 40001, 7200), response: pmpMapResp(1, 0, 40001, 40001, 7200) });
  add('natpmp', 'map-tcp', { rfc: 'RFC 6886 §3.3', description: 'map TCP 40002 for 3600 s', source: A, request: pmpMap(2, 40002, 40002, 3600), response: pmpMapResp(2, 0, 40002, 40002, 3600) });
  add('natpmp', 'map-lifetime-clamped', { rfc: 'RFC 6886 §3.3', description: 'a request for 3 600 000 s is granted the 86400 s maximum', source: A, request: pmpMap(1, 40001, 40001, 3600000), response: pmpMapResp(1, 0, 40001, 40001, 86400) });
  add('natpmp', 'map-lifetime-short', { rfc: 'RFC 6886 §3.3', description: 'NAT-PMP never grants more than asked: 60 s stays 60 s', source: A, request: pmpMap(1, 40001, 40001, 60), response: pmpMapResp(1, 0, 40001, 40001, 60) });
  add('natpmp', 'map-low-port', { rfc: 'RFC 6886 §3.5 (policy)', description: 'internal port 80 refused: result 2, external port and lifetime zero', source: A, request: pmpMap(1, 80, 80, 3600), response: pmpMapResp(1, 2, 80, 0, 0) });
  add('natpmp', 'map-port-zero-with-lifetime', { rfc: 'RFC 6886 §3.3', description: 'internal port 0 with a lifetime (not a delete): result 2', source: A, request: pmpMap(1, 0, 0, 3600), response: pmpMapResp(1, 2, 0, 0, 0) });
  const made = { source: A, request: pmpMap(1, 40001, 40001, 7200) };
  add('natpmp', 'map-renewal', { rfc: 'RFC 6886 §3.3', description: 'a repeat is a renewal with the same external port', source: A, setup: [made], request: pmpMap(1, 40001, 40050, 7200), response: pmpMapResp(1, 0, 40001, 40001, 7200) });
  add('natpmp', 'map-taken', { rfc: 'RFC 6886 §3.3', description: 'suggested port held by another client: another port', source: B, setup: [made], request: pmpMap(1, 40001, 40001, 7200), response: '00810000' + VAR4 + u16(40001) + VAR2 + u32(7200) });
  add('natpmp', 'delete', { rfc: 'RFC 6886 §3.4', description: 'delete: result 0, external port 0, lifetime 0', source: A, setup: [made], request: pmpMap(1, 40001, 12345, 0), response: pmpMapResp(1, 0, 40001, 0, 0) });
  add('natpmp', 'delete-missing', { rfc: 'RFC 6886 §3.4', description: 'deleting what does not exist answers as a successful delete', source: A, request: pmpMap(1, 40001, 0, 0), response: pmpMapResp(1, 0, 40001, 0, 0) });
  add('natpmp', 'delete-all', { rfc: 'RFC 6886 §3.4', description: 'internal port 0, lifetime 0: all of the client\'s UDP mappings go; reply internal port 0', source: A, setup: [made, { source: A, request: pmpMap(1, 40003, 40003, 7200) }], request: pmpMap(1, 0, 0, 0), response: pmpMapResp(1, 0, 0, 0, 0) });
  const pcpMade = { source: A, request: map({ iport: 40020, eport: 40021 }) };
  add('natpmp', 'renews-pcp-mapping', { rfc: 'RFC 6886 §3.3, RFC 6887 App. A', description: 'NAT-PMP request for a port PCP mapped: the same mapping, same external port', source: A, setup: [pcpMade], request: pmpMap(1, 40020, 0, 7200), response: pmpMapResp(1, 0, 40020, 40021, 7200) });
  for (const op of [3, 127]) {
    const req = '00' + u8(op) + '0000' + '00000000';
    add('natpmp', `unsupported-opcode-${op}`, { rfc: 'RFC 6886 §3.5', description: `opcode ${op}: the request returned with the top bit set and result 5`, source: A, request: req, response: '00' + u8(0x80 | op) + '0005' + VAR4 });
  }
  add('natpmp', 'drop-response-opcode', { rfc: 'RFC 6886 §3.5', description: 'opcode 128 is a response: silently ignored', source: A, request: '00800000000000000000000000000000', response: null, malformed: true });
  add('natpmp', 'drop-short-map', { rfc: 'RFC 6886 §3.3', description: '11-octet mapping request: dropped', source: A, request: pmpMap(1, 40001, 40001, 7200).slice(0, 22), response: null, malformed: true });
  add('natpmp', 'drop-one-octet', { rfc: 'RFC 6886 §3', description: 'one octet: dropped', source: A, request: '00', response: null, malformed: true });
  add('natpmp', 'over-ipv6', { rfc: 'RFC 6886 §3, RFC 6887 §9', description: 'version 0 over IPv6 (NAT-PMP is IPv4-only): PCP UNSUPP_VERSION naming version 2', source: A6, request: '0000', response: '02800001' + u32(LONG) + VAR4 + '00'.repeat(12) });
}

rmSync(OUT, { recursive: true, force: true });
for (const c of cases) {
  const { dir, name, ...rest } = c;
  mkdirSync(join(OUT, dir), { recursive: true });
  const file = { description: rest.description, rfc: rest.rfc, source: rest.source, ...(rest.external === null ? { external: null } : {}), setup: rest.setup ?? [], request: rest.request, response: rest.response, malformed: rest.malformed ?? false };
  writeFileSync(join(OUT, dir, `${name}.json`), JSON.stringify(file, null, 2) + '\n');
}
console.log(`${cases.length} vectors written to ${OUT}`);
