// GENA eventing (UDA 1.1 §4): subscriptions to the evented state variables,
// and NOTIFY deliveries when they change.
//
// CallStranger (CVE-2020-12695) made SUBSCRIBE an SSRF and amplification
// tool: a CALLBACK is accepted only when it names the subscriber's own
// address. Subscriptions are bounded per source, per /64, per interface and
// in all (src/server/fair-share.ts). A delivery has an absolute deadline (a
// callback server trickling bytes cannot hold it), follows no redirects, and
// a subscriber that stops answering is dropped. While a NOTIFY is on its
// way, later changes collapse into at most one more, carrying the newest
// values: a subscriber that hangs costs one request and one small map.

import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import type { Logger } from '../log.js';
import { GENA_NT, GENA_NTS_PROPCHANGE, propertySet, type CallbackUrl, type GenaRequest } from '../protocols/upnp/gena.js';
import { CONTENT_TYPE_XML } from '../protocols/upnp/http.js';
import type { ServiceName } from '../protocols/upnp/device-tree.js';
import { FairShare, shareOf, type Requester } from './fair-share.js';

export interface GenaLimits {
  maxSubscriptions: number;
  maxPerSource: number;
  /** Granted TIMEOUT when none (or infinite) is asked for, and the bounds of what is granted. */
  defaultTimeout: number;
  minTimeout: number;
  maxTimeout: number;
  /** A delivery, connect to last byte, ends by then: absolute, not idle time. */
  deliveryDeadlineMs: number;
  /** Consecutive failed deliveries before the subscription is dropped. */
  maxFailures: number;
}

export const DEFAULT_GENA_LIMITS: GenaLimits = {
  maxSubscriptions: 64,
  maxPerSource: 8,
  defaultTimeout: 1800,
  minTimeout: 60,
  maxTimeout: 3600,
  deliveryDeadlineMs: 5000,
  maxFailures: 3,
};

/** Sends one NOTIFY; true if the subscriber accepted it (2xx) before the deadline. */
export type NotifySender = (callback: CallbackUrl, headers: Record<string, string>, body: Buffer, deadlineMs: number) => Promise<boolean>;

interface Subscription {
  sid: string;
  service: ServiceName;
  source: Requester;
  callback: CallbackUrl;
  expiresAt: number;
  seq: number;
  failures: number;
  /** Gives the subscription's slot back. */
  release: () => void;
  /** A NOTIFY is on its way. */
  sending: boolean;
  /** Changes since that NOTIFY left, newest value of each: the one NOTIFY sent next. */
  queued: Map<string, string> | undefined;
}

export type GenaAnswer = { status: number; headers: [string, string][] };

/** The current values of a service's evented variables. */
export type EventedValues = (service: ServiceName) => [string, string][];

export class GenaManager {
  private readonly subs = new Map<string, Subscription>();
  private readonly last = new Map<ServiceName, Map<string, string>>();
  private readonly slots: FairShare;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly values: EventedValues,
    private readonly log: Logger,
    private readonly limits: GenaLimits = DEFAULT_GENA_LIMITS,
    private readonly now: () => number = () => Date.now(),
    private readonly send: NotifySender = httpNotify,
  ) {
    this.slots = new FairShare(shareOf(limits.maxSubscriptions, limits.maxPerSource));
  }

  /** Looks for changes every `ms` and tells subscribers (a cheap comparison of a few values). */
  start(ms = 1000): void {
    for (const s of ['WANIPConnection', 'WANIPv6FirewallControl', 'WANCommonInterfaceConfig'] as ServiceName[]) this.last.set(s, new Map(this.values(s)));
    this.timer = setInterval(() => this.poll(), ms);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    for (const sid of [...this.subs.keys()]) this.remove(sid);
  }

  get size(): number {
    return this.subs.size;
  }

  /** NOTIFYs waiting behind the one on its way to `sid` (0 or 1). */
  queuedFor(sid: string): number {
    return this.subs.get(sid)?.queued ? 1 : 0;
  }

  handle(service: ServiceName, req: GenaRequest, from: Requester): GenaAnswer {
    this.expire();
    const source = from.address;
    if (req.kind === 'unsubscribe') {
      const s = this.subs.get(req.sid);
      if (!s || s.service !== service || s.source.address !== source) return { status: 412, headers: [] };
      this.remove(req.sid);
      return { status: 200, headers: [] };
    }
    const timeout = Math.min(this.limits.maxTimeout, Math.max(this.limits.minTimeout, req.timeoutSeconds ?? this.limits.defaultTimeout));
    if (req.kind === 'renew') {
      const s = this.subs.get(req.sid);
      if (!s || s.service !== service || s.source.address !== source) return { status: 412, headers: [] };
      s.expiresAt = this.now() + timeout * 1000;
      return { status: 200, headers: [['SID', s.sid], ['TIMEOUT', `Second-${timeout}`]] };
    }
    // The first callback naming the subscriber itself; anything else could
    // point us at a third party (CallStranger).
    const callback = req.callbacks.find((c) => c.address === source);
    if (!callback) return { status: 412, headers: [] };
    const release = this.slots.take(from);
    if (!release) return { status: 503, headers: [] };
    // Bring every subscriber up to date first; the new one's initial event
    // is then also the baseline later changes are compared against.
    this.poll();
    const initial = this.values(service);
    this.last.set(service, new Map(initial));
    const sub: Subscription = { sid: `uuid:${randomUUID()}`, service, source: from, callback, expiresAt: this.now() + timeout * 1000, seq: 0, failures: 0, release, sending: false, queued: undefined };
    this.subs.set(sub.sid, sub);
    // UDA 1.1 §4.2: the initial event carries every evented variable; it
    // follows the SUBSCRIBE response, so it is sent on the next tick.
    setImmediate(() => this.deliver(sub, initial));
    return { status: 200, headers: [['SID', sub.sid], ['TIMEOUT', `Second-${timeout}`]] };
  }

  private remove(sid: string): void {
    const s = this.subs.get(sid);
    if (!s) return;
    this.subs.delete(sid);
    s.queued = undefined;
    s.release();
  }

  private expire(): void {
    const now = this.now();
    for (const [sid, s] of this.subs) if (s.expiresAt <= now) this.remove(sid);
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

  /** Sends now, or folds the values into the one NOTIFY that follows the one on its way. */
  private deliver(s: Subscription, vars: [string, string][]): void {
    if (!this.subs.has(s.sid)) return;
    if (s.sending) {
      s.queued ??= new Map();
      for (const [k, v] of vars) s.queued.set(k, v);
      return;
    }
    s.sending = true;
    const seq = s.seq;
    // GENA-08: SEQ counts up and wraps to 1, never back to 0.
    s.seq = s.seq >= 0xffffffff ? 1 : s.seq + 1;
    const body = Buffer.from(propertySet(vars), 'utf8');
    const host = s.callback.address.includes(':') ? `[${s.callback.address}]` : s.callback.address;
    const headers = { HOST: `${host}:${s.callback.port}`, 'CONTENT-TYPE': CONTENT_TYPE_XML, NT: GENA_NT, NTS: GENA_NTS_PROPCHANGE, SID: s.sid, SEQ: String(seq), 'CONTENT-LENGTH': String(body.length), CONNECTION: 'close' };
    void this.send(s.callback, headers, body, this.limits.deliveryDeadlineMs)
      .catch(() => false)
      .then((ok) => {
        s.sending = false;
        if (ok) s.failures = 0;
        else if (++s.failures >= this.limits.maxFailures && this.subs.has(s.sid)) {
          this.remove(s.sid);
          this.log.info({ event: 'gena-dropped', sid: s.sid, callback: s.callback.url });
        }
        const next = s.queued;
        s.queued = undefined;
        if (next) this.deliver(s, [...next]);
      });
  }
}

/** NOTIFY over HTTP: no agent, no redirects, the whole exchange cut at the deadline. */
const httpNotify: NotifySender = (callback, headers, body, deadlineMs) =>
  new Promise((resolve) => {
    let settled = false;
    const settle = (ok: boolean) => {
      if (settled) return;
      settled = true;
      resolve(ok);
    };
    const r = request({ host: callback.address, port: callback.port, path: callback.path, method: 'NOTIFY', agent: false, headers }, (res) => {
      res.on('error', () => undefined);
      res.resume();
      settle((res.statusCode ?? 500) < 300);
      // A body still trickling in is cut by the same deadline.
      res.once('end', () => clearTimeout(deadline));
    });
    const deadline = setTimeout(() => r.destroy(new Error('deadline')), deadlineMs);
    r.once('close', () => {
      clearTimeout(deadline);
      settle(false);
    });
    r.on('error', () => settle(false));
    r.end(body);
  });
