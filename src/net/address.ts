// IP addresses as the protocols see them: PCP carries every address in a
// 16-octet field, IPv4 as an IPv4-mapped IPv6 address (RFC 6887 §5), so the
// one wire form here is a 16-byte Buffer and the one text form is canonical
// (dotted quad for IPv4, RFC 5952 compressed lowercase for IPv6).

import { isIPv4, isIPv6 } from 'node:net';
import { remembered } from './remembered.js';

/** Canonical text form of an IPv4 or IPv6 address (no zone). */
export type IpAddress = string & { readonly __brand: 'IpAddress' };
export type Family = 4 | 6;

export function familyOf(addr: IpAddress): Family {
  return addr.includes(':') ? 6 : 4;
}

/**
 * Texts parsed lately, remembered: a request's source is parsed by several
 * checks, and the same few hundred LAN sources come again and again; the
 * regular expressions of `isIPv6` and the split into groups cost more than
 * the rest of a PCP decision's parsing.
 */
const REMEMBERED = 4_096;
/** Longer texts are no address (an IPv6 literal with zone is at most ~60 characters) and are not remembered. */
const PARSED_TEXT_MAX = 64;
const parseRemembered = remembered(REMEMBERED, parseUncached);

/** Parses text (optionally with a %zone, which is dropped) into canonical form. */
export function parseIp(text: string): IpAddress | undefined {
  return text.length <= PARSED_TEXT_MAX ? parseRemembered(text) : parseUncached(text);
}

function parseUncached(text: string): IpAddress | undefined {
  const bare = text.split('%')[0] ?? '';
  if (isIPv4(bare)) return bare.split('.').map(Number).join('.') as IpAddress;
  if (isIPv6(bare)) {
    const bytes = ipv6TextToBytes(bare);
    if (!bytes) return undefined;
    // An IPv4-mapped IPv6 address is the IPv4 host: a dual-stack socket
    // reports IPv4 peers that way.
    return fromWire16(bytes);
  }
  return undefined;
}

/** The zone of `fe80::1%eth0` (the interface a socket names a link-local peer by), if any. */
export function zoneOf(text: string): string | undefined {
  const at = text.indexOf('%');
  return at < 0 ? undefined : text.slice(at + 1);
}

export function mustParseIp(text: string): IpAddress {
  const a = parseIp(text);
  if (!a) throw new Error(`not an IP address: ${text}`);
  return a;
}

function ipv6TextToBytes(text: string): Buffer | undefined {
  let s = text;
  const tail: number[] = [];
  // Embedded dotted quad in the last 32 bits.
  const lastColon = s.lastIndexOf(':');
  const maybeV4 = s.slice(lastColon + 1);
  if (maybeV4.includes('.')) {
    if (!isIPv4(maybeV4)) return undefined;
    for (const o of maybeV4.split('.')) tail.push(Number(o));
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parse = (part: string): number[] => (part === '' ? [] : part.split(':').map((h) => parseInt(h, 16)));
  const head = parse(halves[0] ?? '');
  const rest = halves.length === 2 ? parse(halves[1] ?? '') : [];
  const fill = halves.length === 2 ? 8 - head.length - rest.length : 0;
  const groups = [...head, ...new Array<number>(Math.max(0, fill)).fill(0), ...rest];
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return undefined;
  const buf = Buffer.alloc(16);
  groups.forEach((g, i) => buf.writeUInt16BE(g, i * 2));
  if (tail.length === 4) for (let i = 0; i < 4; i++) buf[12 + i] = tail[i] ?? 0;
  return buf;
}

const V4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/**
 * RFC 6887 §5: an address is IPv4 only if all of the first 96 bits match
 * ::ffff:0:0/96 (80 zero bits then 16 one bits).
 */
export function isV4MappedWire(buf: Buffer): boolean {
  return buf.length === 16 && buf.subarray(0, 12).equals(V4_MAPPED_PREFIX);
}

/** 16-octet PCP address field → canonical address. */
export function fromWire16(buf: Buffer): IpAddress {
  if (isV4MappedWire(buf)) return `${buf[12]}.${buf[13]}.${buf[14]}.${buf[15]}` as IpAddress;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(i * 2));
  // RFC 5952: compress the longest run (length ≥ 2) of zero groups, first one on ties.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':') as IpAddress;
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}` as IpAddress;
}

/**
 * Wire forms made lately, remembered: every answer carries the client's and
 * the external address, the same few again and again. Callers get their own
 * copy (they may write into it).
 */
const wireRemembered = remembered(REMEMBERED, wireOf);

/** Canonical address → 16-octet PCP address field (IPv4 as ::ffff:a.b.c.d). */
export function toWire16(addr: IpAddress): Buffer {
  return Buffer.from(wireRemembered(addr));
}

function wireOf(addr: IpAddress): Buffer {
  if (familyOf(addr) === 4) {
    const buf = Buffer.alloc(16);
    V4_MAPPED_PREFIX.copy(buf, 0);
    addr.split('.').forEach((o, i) => (buf[12 + i] = Number(o)));
    return buf;
  }
  const b = ipv6TextToBytes(addr);
  if (!b) throw new Error(`bad IPv6 address ${addr}`);
  return b;
}

/** Address bytes in their own family's length: 4 for IPv4, 16 for IPv6. */
export function addressBytes(addr: IpAddress): Buffer {
  const w = toWire16(addr);
  return familyOf(addr) === 4 ? w.subarray(12) : w;
}

export function ipv4ToBytes(addr: IpAddress): Buffer {
  return addressBytes(addr);
}

export function ipv4FromBytes(buf: Buffer): IpAddress {
  return `${buf[0]}.${buf[1]}.${buf[2]}.${buf[3]}` as IpAddress;
}

/** A prefix: network address and length in that family's own bit count. */
export interface Prefix {
  readonly address: IpAddress;
  readonly length: number;
}

export function prefixContains(p: Prefix, addr: IpAddress): boolean {
  if (familyOf(p.address) !== familyOf(addr)) return false;
  return bitsEqual(bytesToCompare(p.address), bytesToCompare(addr), p.length);
}

/**
 * Address bytes for the comparisons every request makes (from the LAN?
 * which interface? link-local?), remembered: parsing the same IPv6 text five
 * times a request was ~5 % of the daemon's time under load. Never handed
 * out (a caller could change them).
 */
const bytesToCompare = remembered(REMEMBERED, addressBytes);

function bitsEqual(a: Buffer, b: Buffer, bits: number): boolean {
  const whole = bits >> 3;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  const rem = bits & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return ((a[whole] ?? 0) & mask) === ((b[whole] ?? 0) & mask);
}

/** Zeroes the host bits so that equal prefixes compare equal as text. */
export function normalizePrefix(addr: IpAddress, length: number): Prefix {
  const bytes = Buffer.from(addressBytes(addr));
  for (let bit = length; bit < bytes.length * 8; bit++) {
    const i = bit >> 3;
    bytes[i] = (bytes[i] ?? 0) & ~(0x80 >> (bit & 7));
  }
  const canon = familyOf(addr) === 4 ? ipv4FromBytes(bytes) : fromWire16(bytes);
  return { address: canon, length };
}

export function parsePrefix(text: string): Prefix | undefined {
  const [a, l] = text.split('/');
  const addr = parseIp(a ?? '');
  if (!addr) return undefined;
  const max = familyOf(addr) === 4 ? 32 : 128;
  const length = l === undefined ? max : Number(l);
  if (!Number.isInteger(length) || length < 0 || length > max) return undefined;
  return normalizePrefix(addr, length);
}

export function formatPrefix(p: Prefix): string {
  return `${p.address}/${p.length}`;
}

export function isUnspecified(addr: IpAddress): boolean {
  return addr === '0.0.0.0' || addr === '::';
}

export function isLinkLocal(addr: IpAddress): boolean {
  if (familyOf(addr) === 4) return addr.startsWith('169.254.');
  const b = bytesToCompare(addr);
  return b[0] === 0xfe && ((b[1] ?? 0) & 0xc0) === 0x80;
}

export function isMulticast(addr: IpAddress): boolean {
  if (familyOf(addr) === 4) {
    const first = Number(addr.split('.')[0]);
    return first >= 224 && first <= 239;
  }
  return addr.startsWith('ff');
}

/**
 * The /64 an IPv6 address is in: on a LAN the unit one host can fill with
 * as many addresses as it likes (SLAAC, privacy addresses), so fairness
 * counts it as one.
 */
export function subnet64(addr: IpAddress): Prefix {
  return normalizePrefix(addr, 64);
}
