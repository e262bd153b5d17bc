// GENA eventing (UDA 1.1 §4): subscriptions to the evented state variables,
// and NOTIFY deliveries when they change.
//
// CallStranger (CVE-2020-12695) made SUBSCRIBE an SSRF and amplification
// tool: a CALLBACK is accepted only when it names the subscriber's own
// address. Subscriptions are bounded per source and in all, deliveries have
// deadlines, follow no redirects, and a subscriber that stops answering is
// dropped.

import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import type { IpAddress } from '../net/address.js';
import type { Logger } from '../log.js';
import { GENA_NT, GENA_NTS_PROPCHANGE, propertySet, type CallbackUrl, type GenaRequest } from '../protocols/upnp/gena.js';
import { CONTENT_TYPE_XML } from '../protocols/upnp/http.js';
import type { ServiceName } from '../protocols/upnp/model.js';

export interface GenaLimits {
  maxSubscriptions: number;
  maxPerSource: number;
  /** Granted TIMEOUT when none (or infinite) is asked for, and the bounds of what is granted. */
  defaultTimeout: number;
  minTimeout: number;
  maxTimeout: number;
  deliveryTimeoutMs: number;
  /** Consecutive failed deliveries before the subscription is dropped. */
  maxFailures: number;
}

export const DEFAULT_GENA_LIMITS: GenaLimits = {
  maxSubscriptions: 64,
  maxPerSource: 8,
  defaultTimeout: 1800,
  minTimeout: 60,
  maxTimeout: 3600,
  deliveryTimeoutMs: 5000,
  maxFailures: 3,
};

interface Subscription {
  sid: string;
  service: ServiceName;
  source: IpAddress;
  callback: CallbackUrl;
  expiresAt: number;
  seq: number;
  failures: number;
  /** Deliveries to one subscriber go in order. */
  queue: Promise<void>;
}

export type GenaAnswer = { status: number; headers: [string, string][] };

/** The current values of a service's evented variables. */
export type EventedValues = (service: ServiceName) => [string, string][];

export class GenaManager {
  private readonly subs = new Map<string, Subscription>();
  private readonly last = new Map<ServiceName, Map<string, string>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly values: EventedValues,
    private readonly log: Logger,
    private readonly limits: GenaLimits = DEFAULT_GENA_LIMITS,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** Looks for changes every `ms` and tells subscribers (a cheap comparison of a few values). */
  start(ms = 1000): void {
    for (const s of ['WANIPConnection', 'WANIPv6FirewallControl', 'WANCommonInterfaceConfig'] as ServiceName[]) this.last.set(s, new Map(this.values(s)));
    this.timer = setInterval(() => this.poll(), ms);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.subs.clear();
  }

  get size(): number {
    return this.subs.size;
  }

  handle(service: ServiceName, req: GenaRequest, source: IpAddress): GenaAnswer {
    this.expire();
    if (req.kind === 'unsubscribe') {
      const s = this.subs.get(req.sid);
      if (!s || s.service !== service || s.source !== source) return { status: 412, headers: [] };
      this.subs.delete(req.sid);
      return { status: 200, headers: [] };
    }
    const timeout = Math.min(this.limits.maxTimeout, Math.max(this.limits.minTimeout, req.timeoutSeconds ?? this.limits.defaultTimeout));
    if (req.kind === 'renew') {
      const s = this.subs.get(req.sid);
      if (!s || s.service !== service || s.source !== source) return { status: 412, headers: [] };
      s.expiresAt = this.now() + timeout * 1000;
      return { status: 200, headers: [['SID', s.sid], ['TIMEOUT', `Second-${timeout}`]] };
    }
    // The first callback naming the subscriber itself; anything else could
    // point us at a third party (CallStranger).
    const callback = req.callbacks.find((c) => c.address === source);
    if (!callback) return { status: 412, headers: [] };
    if (this.subs.size >= this.limits.maxSubscriptions) return { status: 503, headers: [] };
    if ([...this.subs.values()].filter((s) => s.source === source).length >= this.limits.maxPerSource) return { status: 503, headers: [] };
    // Bring every subscriber up to date first; the new one's initial event
    // is then also the baseline later changes are compared against.
    this.poll();
    const initial = this.values(service);
    this.last.set(service, new Map(initial));
    const sub: Subscription = { sid: `uuid:${randomUUID()}`, service, source, callback, expiresAt: this.now() + timeout * 1000, seq: 0, failures: 0, queue: Promise.resolve() };
    this.subs.set(sub.sid, sub);
    // UDA 1.1 §4.2: the initial event carries every evented variable; it
    // follows the SUBSCRIBE response, so it is sent on the next tick.
    setImmediate(() => this.deliver(sub, initial));
    return { status: 200, headers: [['SID', sub.sid], ['TIMEOUT', `Second-${timeout}`]] };
  }

  private expire(): void {
    const now = this.now();
    for (const [sid, s] of this.subs) if (s.expiresAt <= now) this.subs.delete(sid);
  }

  /** Compares every evented value with what subscribers last heard; sends the changes. */
  poll(): void {
    this.expire();
    // Nobody to tell: the values are not even read (counting mappings walks the table).
    if (this.subs.size === 0) return;
    for (const [service, before] of this.last) {
      const now = this.values(service);
      const changed = now.filter(([k, v]) => before.get(k) !== v);
      if (!changed.length) continue;
      this.last.set(service, new Map(now));
      for (const s of this.subs.values()) if (s.service === service) this.deliver(s, changed);
    }
  }

  private deliver(s: Subscription, vars: [string, string][]): void {
    const seq = s.seq;
    // GENA-08: SEQ counts up and wraps to 1, never back to 0.
    s.seq = s.seq >= 0xffffffff ? 1 : s.seq + 1;
    const body = Buffer.from(propertySet(vars), 'utf8');
    s.queue = s.queue.then(
      () =>
        new Promise<void>((resolve) => {
          const done = (ok: boolean) => {
            if (ok) s.failures = 0;
            else if (++s.failures >= this.limits.maxFailures) {
              this.subs.delete(s.sid);
              this.log.info({ event: 'gena-dropped', sid: s.sid, callback: s.callback.url });
            }
            resolve();
          };
          if (!this.subs.has(s.sid)) return resolve();
          const host = s.callback.address.includes(':') ? `[${s.callback.address}]` : s.callback.address;
          const r = request(
            {
              host: s.callback.address,
              port: s.callback.port,
              path: s.callback.path,
              method: 'NOTIFY',
              agent: false,
              timeout: this.limits.deliveryTimeoutMs,
              headers: { HOST: `${host}:${s.callback.port}`, 'CONTENT-TYPE': CONTENT_TYPE_XML, NT: GENA_NT, NTS: GENA_NTS_PROPCHANGE, SID: s.sid, SEQ: String(seq), 'CONTENT-LENGTH': String(body.length), CONNECTION: 'close' },
            },
            (res) => {
              res.resume();
              done((res.statusCode ?? 500) < 300);
            },
          );
          r.on('timeout', () => r.destroy(new Error('timeout')));
          r.on('error', () => done(false));
          r.end(body);
        }),
    );
  }
}
