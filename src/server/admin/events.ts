// GET /api/events: server-sent events, so the page shows new mappings and
// expiries, static openings that came, went or followed their device, and
// devices that came or moved, without reloading. Each owner counts its
// changes (the service, the policy keeper, the neighbour table); while anyone
// listens their sum is looked at every POLL_MS and a move becomes one
// `openings` event (the page then asks /api/openings and /api/devices again). A comment line every HEARTBEAT_MS keeps proxies and
// idle timers from closing a quiet stream.
//
// Bounds: MAX_SUBSCRIBERS streams in all, PER_SOURCE from one address; a
// reader that does not keep up (more than MAX_BUFFERED bytes waiting) is cut
// off; a stream ends when its session does.

import type { ServerResponse } from 'node:http';

export const MAX_SUBSCRIBERS = 16;
export const PER_SOURCE = 4;
const POLL_MS = 500;
const HEARTBEAT_MS = 15_000;
const MAX_BUFFERED = 64 * 1024;

interface Subscriber {
  res: ServerResponse;
  source: string;
  /** Still logged in (a bearer token always is). */
  valid: () => boolean;
}

export class EventHub {
  private readonly subscribers = new Set<Subscriber>();
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private seen = 0;

  constructor(private readonly changes: () => number) {}

  get size(): number {
    return this.subscribers.size;
  }

  /** Starts a stream on `res`, or says why not (the caller answers 429). */
  subscribe(res: ServerResponse, source: string, valid: () => boolean): { ok: true } | { ok: false; error: string } {
    if (this.subscribers.size >= MAX_SUBSCRIBERS) return { ok: false, error: `${MAX_SUBSCRIBERS} event streams are open already` };
    if ([...this.subscribers].filter((s) => s.source === source).length >= PER_SOURCE) return { ok: false, error: `${PER_SOURCE} event streams from ${source} are open already` };
    const sub: Subscriber = { res, source, valid };
    this.subscribers.add(sub);
    res.once('close', () => this.drop(sub));
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    // Where the page stands now; `retry` tells EventSource how soon to come back after a cut.
    res.write(`retry: 2000\nevent: hello\ndata: ${JSON.stringify({ changes: this.changes() })}\n\n`);
    if (!this.timer) {
      // Changes while nobody listened are no news to a stream that just began.
      this.seen = this.changes();
      this.timer = setInterval(() => this.poll(), POLL_MS);
    }
    this.heartbeat ??= setInterval(() => this.send(': keep-alive\n\n'), HEARTBEAT_MS);
    return { ok: true };
  }

  /** Ends every stream (the server stops). */
  close(): void {
    for (const s of this.subscribers) s.res.end();
    this.subscribers.clear();
    this.idle();
  }

  private poll(): void {
    for (const s of this.subscribers) if (!s.valid()) s.res.end();
    const now = this.changes();
    if (now === this.seen) return;
    this.seen = now;
    this.send(`event: openings\ndata: ${JSON.stringify({ changes: now })}\n\n`);
  }

  private send(text: string): void {
    for (const s of this.subscribers) {
      if (s.res.writableLength > MAX_BUFFERED) s.res.destroy();
      else s.res.write(text);
    }
  }

  private drop(sub: Subscriber): void {
    this.subscribers.delete(sub);
    if (this.subscribers.size === 0) this.idle();
  }

  private idle(): void {
    clearInterval(this.timer);
    clearInterval(this.heartbeat);
    this.timer = this.heartbeat = undefined;
  }
}
