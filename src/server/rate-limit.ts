// Per-source token buckets, in a bounded table: a flood from one host (or
// from many spoofed ones) costs a fixed amount of memory and never starves
// another host.
//
// A host is not an address: over IPv6 one host takes as many addresses in
// its /64 as it likes. So an IPv6 source is also charged to a bucket of its
// /64 (of its link, for link-local sources), PREFIX_SHARE times an address's
// size: 2 000 addresses in one /64 get PREFIX_SHARE times one address's
// rate, not 2 000 times.
//
// Memory: each table holds at most `maxSources` keys, least recently used
// first out. Evicting a bucket forgives what it owed, so a flood of new
// addresses could refill its own buckets that way; it cannot refill its
// /64's, which every one of its requests touches and so keeps fresh.

import { familyOf, formatPrefix, isLinkLocal, parseIp, subnet64 } from '../net/address.js';

/** A /64's bucket: this many addresses' worth of rate and burst (a few devices may share a /64). */
export const PREFIX_SHARE = 4;

type Bucket = { tokens: number; at: number };

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly prefixBuckets = new Map<string, Bucket>();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly maxSources = 8192,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Buckets held, over both tables (at most twice `maxSources`). */
  get tracked(): number {
    return this.buckets.size + this.prefixBuckets.size;
  }

  /**
   * Takes `cost` tokens for `source` (an address, optionally with its
   * %zone) and for its /64; false, with nothing taken from either, when
   * either is over its rate.
   */
  take(source: string, cost = 1): boolean {
    const t = this.now();
    const own = this.refill(this.buckets, source, t, this.burst, this.perSecond);
    const prefix = prefixKey(source);
    const shared = prefix === undefined ? undefined : this.refill(this.prefixBuckets, prefix, t, this.burst * PREFIX_SHARE, this.perSecond * PREFIX_SHARE);
    if (own.tokens < cost || (shared && shared.tokens < cost)) return false;
    own.tokens -= cost;
    if (shared) shared.tokens -= cost;
    return true;
  }

  /** The key's bucket brought up to time `t`, now the most recently used. */
  private refill(table: Map<string, Bucket>, key: string, t: number, burst: number, perSecond: number): Bucket {
    let b = table.get(key);
    if (b) {
      b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * perSecond);
      b.at = t;
      // Re-insert: Map order then doubles as least-recently-used order.
      table.delete(key);
    } else {
      b = { tokens: burst, at: t };
      if (table.size >= this.maxSources) {
        const oldest = table.keys().next().value;
        if (oldest !== undefined) table.delete(oldest);
      }
    }
    table.set(key, b);
    return b;
  }
}

/** The /64 an IPv6 source is charged to as well; link-local /64s are per link (every link has fe80::/64). */
function prefixKey(source: string): string | undefined {
  if (!source.includes(':')) return undefined;
  const zone = source.indexOf('%');
  const addr = parseIp(zone < 0 ? source : source.slice(0, zone));
  if (!addr || familyOf(addr) !== 6) return undefined;
  const net = formatPrefix(subnet64(addr));
  return isLinkLocal(addr) && zone >= 0 ? `${net}%${source.slice(zone + 1)}` : net;
}
