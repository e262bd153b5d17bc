// Per-source token buckets, in a bounded table: a flood from one host (or
// from many spoofed ones) costs a fixed amount of memory and never starves
// another host.

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly maxSources = 8192,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes `cost` tokens for `source`; false (and nothing taken) when it is over its rate. */
  take(source: string, cost = 1): boolean {
    const t = this.now();
    let b = this.buckets.get(source);
    if (b) {
      b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) / 1000) * this.perSecond);
      b.at = t;
      // Re-insert: Map order then doubles as least-recently-used order.
      this.buckets.delete(source);
    } else {
      b = { tokens: this.burst, at: t };
      if (this.buckets.size >= this.maxSources) {
        const oldest = this.buckets.keys().next().value;
        if (oldest !== undefined) this.buckets.delete(oldest);
      }
    }
    this.buckets.set(source, b);
    if (b.tokens < cost) return false;
    b.tokens -= cost;
    return true;
  }
}
