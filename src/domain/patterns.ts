// The small matchers policy rules are made of: address patterns and port
// ranges, parsed once when a policy is loaded, then matched per request.

import { addressBytes, familyOf, fromWire16, parseIp, type Family, type IpAddress } from '../net/address.js';

/**
 * An address pattern: an address, a CIDR prefix, or an IPv6 address with a
 * bit mask. The mask form is what survives renumbering:
 * `::1234:5678:abcd:ef01/::ffff:ffff:ffff:ffff` matches that interface
 * identifier under any /64 prefix the ISP delegates.
 */
export interface AddressPattern {
  readonly family: Family;
  /** The pattern's value with the unmasked bits zeroed. */
  readonly value: Buffer;
  readonly mask: Buffer;
  /** How the admin wrote it (canonicalised), for summaries and nft. */
  readonly text: string;
  /** For nft: 'exact' | 'prefix' (contiguous mask) | 'mask' (anything else). */
  readonly form: 'exact' | 'prefix' | 'mask';
  readonly prefixLength: number;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; expected: string };

export function parseAddressPattern(text: string): ParseResult<AddressPattern> {
  const expected = 'an IPv4/IPv6 address, a CIDR prefix (192.168.1.0/24, 2001:db8::/48) or an IPv6 address/mask (::1234:5678:abcd:ef01/::ffff:ffff:ffff:ffff)';
  const slash = text.indexOf('/');
  const addr = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!addr) return { ok: false, expected };
  const family = familyOf(addr);
  const bits = family === 4 ? 32 : 128;
  let mask: Buffer;
  if (slash < 0) {
    mask = Buffer.alloc(bits / 8, 0xff);
  } else {
    const rest = text.slice(slash + 1);
    if (/^\d+$/.test(rest)) {
      const length = Number(rest);
      if (length > bits) return { ok: false, expected: `a prefix length of at most ${bits}` };
      mask = prefixMask(bits, length);
    } else {
      const m = parseIp(rest);
      if (!m || familyOf(m) !== 6 || family !== 6) return { ok: false, expected };
      mask = Buffer.from(addressBytes(m));
    }
  }
  const value = Buffer.from(addressBytes(addr));
  for (let i = 0; i < value.length; i++) value[i] = (value[i] ?? 0) & (mask[i] ?? 0);
  const length = contiguousLength(mask);
  const form = length === bits ? 'exact' : length !== undefined ? 'prefix' : 'mask';
  const canon = family === 4 ? [...value].join('.') : fromWire16(value);
  const maskText = family === 6 ? fromWire16(mask) : '';
  return {
    ok: true,
    value: {
      family,
      value,
      mask,
      form,
      prefixLength: length ?? -1,
      text: form === 'exact' ? canon : form === 'prefix' ? `${canon}/${length}` : `${canon}/${maskText}`,
    },
  };
}

export function patternMatches(p: AddressPattern, addr: IpAddress): boolean {
  if (familyOf(addr) !== p.family) return false;
  const b = addressBytes(addr);
  for (let i = 0; i < b.length; i++) if (((b[i] ?? 0) & (p.mask[i] ?? 0)) !== p.value[i]) return false;
  return true;
}

/** Every address `inner` matches is also matched by `outer` (for FILTER prefixes against allowed peers). */
export function patternCovers(outer: AddressPattern, inner: AddressPattern): boolean {
  if (outer.family !== inner.family) return false;
  for (let i = 0; i < outer.mask.length; i++) {
    const om = outer.mask[i] ?? 0;
    // outer may only look at bits inner fixes, and they must agree.
    if ((om & (inner.mask[i] ?? 0)) !== om) return false;
    if (((inner.value[i] ?? 0) & om) !== outer.value[i]) return false;
  }
  return true;
}

function prefixMask(bits: number, length: number): Buffer {
  const m = Buffer.alloc(bits / 8);
  for (let bit = 0; bit < length; bit++) m[bit >> 3] = (m[bit >> 3] ?? 0) | (0x80 >> (bit & 7));
  return m;
}

/** The prefix length if the mask is contiguous ones then zeros, else undefined. */
function contiguousLength(mask: Buffer): number | undefined {
  let length = 0;
  let zero = false;
  for (let bit = 0; bit < mask.length * 8; bit++) {
    const set = ((mask[bit >> 3] ?? 0) & (0x80 >> (bit & 7))) !== 0;
    if (set && zero) return undefined;
    if (set) length++;
    else zero = true;
  }
  return length;
}

/** An inclusive port range. */
export interface PortRange {
  readonly min: number;
  readonly max: number;
}

export function parsePortRange(v: number | string): ParseResult<PortRange> {
  const expected = 'a port (0-65535) or a range like 1024-65535';
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(String(v));
  if (!m) return { ok: false, expected };
  const min = Number(m[1]);
  const max = m[2] === undefined ? min : Number(m[2]);
  if (min > 65535 || max > 65535) return { ok: false, expected };
  if (min > max) return { ok: false, expected: `a range whose start (${min}) is not above its end (${max})` };
  return { ok: true, value: { min, max } };
}

export function inRanges(ranges: readonly PortRange[], port: number): boolean {
  return ranges.some((r) => port >= r.min && port <= r.max);
}

/** The ports in both lists, as sorted disjoint ranges (a gap in either stays a gap). */
export function intersectRanges(a: readonly PortRange[], b: readonly PortRange[]): PortRange[] {
  const out: PortRange[] = [];
  for (const x of a) {
    for (const y of b) {
      const min = Math.max(x.min, y.min);
      const max = Math.min(x.max, y.max);
      if (min <= max) out.push({ min, max });
    }
  }
  out.sort((x, y) => x.min - y.min);
  const merged: PortRange[] = [];
  for (const r of out) {
    const last = merged[merged.length - 1];
    if (last && r.min <= last.max + 1) merged[merged.length - 1] = { min: last.min, max: Math.max(last.max, r.max) };
    else merged.push(r);
  }
  return merged;
}

/** How many ports the ranges hold (disjoint ranges assumed). */
export function rangesSize(ranges: readonly PortRange[]): number {
  return ranges.reduce((n, r) => n + r.max - r.min + 1, 0);
}

/** The `i`-th port of the ranges in order (0 ≤ i < rangesSize). */
export function nthPort(ranges: readonly PortRange[], i: number): number {
  let left = i;
  for (const r of ranges) {
    const size = r.max - r.min + 1;
    if (left < size) return r.min + left;
    left -= size;
  }
  throw new Error(`port index ${i} is outside the ranges`);
}

export function formatRange(r: PortRange): string {
  return r.min === r.max ? String(r.min) : `${r.min}-${r.max}`;
}
