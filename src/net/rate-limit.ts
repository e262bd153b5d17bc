// Per-source token buckets, in a bounded table: a flood from one host (or
// from many spoofed ones) costs a fixed amount of memory and never starves
// another host.
//
// A host is not an address: over IPv6 one host takes as many addresses as it
// likes. So a source is also charged to a bucket of its host (src/net/hosts.ts:
// its device where the kernel's neighbour table knows it, else its /64),
// PREFIX_SHARE times an address's size: 2 000 addresses of one device get
// PREFIX_SHARE times one address's rate, not 2 000 times.
//
// Memory: each table holds at most `maxSources` keys, least recently used
// first out. Evicting a bucket forgives what it owed, so a flood of new
// addresses could refill its own buckets that way; it cannot refill its
// host's, which every one of its requests touches and so keeps fresh.

import { hostUnit, type HostOf } from './hosts.js';

/** A host's bucket: this many addresses' worth of rate and burst (a device has a few addresses). */
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
    /** The host a source is also charged to (src/net/hosts.ts); its device where the kernel knows it. */
    private readonly hostOf: HostOf = hostUnit,
  ) {}

  /** Buckets held, over both tables (at most twice `maxSources`). */
  get tracked(): number {
    return this.buckets.size + this.prefixBuckets.size;
  }

  /**
   * Takes `cost` tokens for `source` (an address, optionally with its
   * %zone) and for its host; false, with nothing taken from either, when
   * either is over its rate.
   */
  take(source: string, cost = 1, host = this.hostOf(source)): boolean {
    const t = this.now();
    const own = this.refill(this.buckets, source, t, this.burst, this.perSecond);
    // An address that is its own host (IPv4 without a known device) has one bucket.
    const shared = host === source ? undefined : this.refill(this.prefixBuckets, host, t, this.burst * PREFIX_SHARE, this.perSecond * PREFIX_SHARE);
    if (own.tokens < cost || (shared && shared.tokens < cost)) return false;
    own.tokens -= cost;
    if (shared) shared.tokens -= cost;
    return true;
  }

  /** Gives back what `take` took (an attempt that turned out not to count), never above the burst. */
  giveBack(source: string, cost = 1, host = this.hostOf(source)): void {
    const own = this.buckets.get(source);
    if (own) own.tokens = Math.min(this.burst, own.tokens + cost);
    const shared = host === source ? undefined : this.prefixBuckets.get(host);
    if (shared) shared.tokens = Math.min(this.burst * PREFIX_SHARE, shared.tokens + cost);
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
