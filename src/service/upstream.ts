// Behind the ISP's NAT (RFC 7648, PCP proxy): every IPv4 mapping is made
// here first, then asked of the upstream PCP server (the CGN or the DS-Lite
// AFTR) for this mapping's external address and port: a MAP as a MAP (its
// FILTERs with it, so upstream filters too), a PEER as a PEER (the outbound
// flow crosses the ISP's NAT as well, and the client must learn where it
// leaves from there: RFC 7648 §3 handles PEER like MAP). A mapping counts as
// granted only when upstream granted it; the client is told upstream's
// address and port and a lifetime no longer than upstream's (for the doors
// whose clients renew: PCP, NAT-PMP). What the daemon must keep alive itself
// (UPnP leases longer than upstream's, static forwards) it renews upstream
// before upstream's lifetime runs out (RFC 6887 §11.2.1), and what ends here
// is removed upstream too.
//
// This room decides what to ask and what an answer does to the table; the
// bytes and the retransmissions are the wire's (src/client/upstream-pcp.ts),
// reached through `UpstreamServer`.

import { createHmac } from 'node:crypto';
import type { IpAddress } from '../net/address.js';
import type { Logger } from '../log.js';
import type { Clock } from '../state/clock.js';
import type { MappingTable } from '../state/table.js';
import { keyOf, nonceBytes, reachedAt, type Mapping, type NonceHex, type UpstreamPart, type Via } from '../domain/mapping.js';
import { refuse, type FilterStep, type Granted, type MapOutcome, type Refusal } from '../domain/requests.js';
import type { TableChanges } from './table-changes.js';

/** One MAP (RFC 6887 §11.1) or PEER (§12.1) for the upstream server, about this router's external port. */
export interface UpstreamAsk {
  protocol: number;
  /** The mapping's external port here (upstream's internal port); with THIRD_PARTY, the LAN host's port. */
  internalPort: number;
  suggestedExternalPort: number;
  suggestedExternalAddress?: IpAddress;
  /** Seconds; 0 removes. */
  lifetime: number;
  nonce: Buffer;
  preferFailure: boolean;
  /** The PCP Client's IP Address field: this router's address toward upstream. */
  client: IpAddress;
  /** RFC 7648 §3.3: the LAN host, when this router does no NAT44 of its own (DS-Lite). */
  thirdParty?: IpAddress;
  /** How long the asker can wait for the answer, retransmissions included (milliseconds). */
  patienceMs: number;
  /** The LAN client whose request this is (none: the daemon's own work): one client gets a share of the cap, not all of it. */
  owner?: string;
  /** A PEER: its one remote peer (absent: a MAP). */
  remotePeer?: { address: IpAddress; port: number };
  /** A MAP's FILTER options (§13.3), in order; 'clear' first, so upstream's set becomes this one. */
  filters?: readonly FilterStep[];
}

/** What a door's request tells the relay beyond the mapping it granted (a MAP's or a PEER's). */
export interface UpstreamCause {
  /** The door asking now (a mapping may be renewed through another door than made it): how long its client waits. */
  via: Via;
  client: IpAddress;
  suggestedExternalPort: number;
  preferFailure?: boolean;
  filters?: readonly FilterStep[];
}

export type UpstreamAnswer =
  | { ok: true; externalAddress: IpAddress; externalPort: number; lifetime: number }
  | { ok: false; refusal: Refusal; detail: string; lifetime?: number };

/** The upstream PCP server as the service sees it (the wire: src/client/upstream-pcp.ts). */
export interface UpstreamServer {
  map(ask: UpstreamAsk): Promise<UpstreamAnswer>;
  /** Requests that may still be started before the cap on requests in flight is reached. */
  spare(): number;
}

/** What the relay is told by the daemon: where upstream is, and how this router faces it. */
export interface UpstreamLine {
  server: UpstreamServer;
  /** Keys the nonces of mappings that came without one (NAT-PMP, UPnP, static); kept in the state directory. */
  nonceKey: Buffer;
  /** Upstream's external address, as its last answer said: what clients are told (undefined until known). */
  publicAddress(): IpAddress | undefined;
  /** The PCP Client IP field toward upstream (undefined while the WAN has no address). */
  clientAddress(): IpAddress | undefined;
  /** DS-Lite: no NAT44 here; upstream maps the LAN host itself, named by THIRD_PARTY. */
  thirdParty: boolean;
  /** How long a LAN client's request may wait for upstream, in milliseconds. */
  patienceMs: number;
}

/** Mappings whose upstream address or port changed, for the doors to tell their clients. */
export type UpstreamMoved = (moved: Mapping[]) => void;

/** Renewals and re-creations the relay starts at most per pass (the wire's cap bounds them too). */
const PACE = 32;

/**
 * A UPnP control point waits for its SOAP answer over one HTTP exchange
 * (miniupnpc: 5 s), not retransmitting as a PCP client does: the refusal
 * must be out well before that on a busy router, or the client hears only
 * a dropped connection. 3.5 s still lets §8.1.1's first retransmission
 * (2.7–3.3 s) go out.
 */
const SOAP_PATIENCE_MS = 3_500;

export class UpstreamRelay {
  /** Mappings to make again upstream (it lost its state), by key: at most the table's size. */
  private stale = new Set<string>();
  private readonly busy = new Set<string>();
  /** Background attempts that failed: when to try again, and the wait after that (RFC 6887 §8.1.1's doubling). */
  private readonly retry = new Map<string, { at: number; waitMs: number }>();
  private readonly stats = { relayed: 0, refused: 0, unanswered: 0, removed: 0 };
  /** After removeAllUpstream (the daemon is exiting): nothing more is asked of upstream. */
  private retired = false;
  onMoved: UpstreamMoved = () => undefined;

  constructor(
    private readonly line: UpstreamLine,
    private readonly table: MappingTable,
    private readonly edit: TableChanges,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /**
   * The relay over `line`, or none (undefined): then, not relayed (any more),
   * what upstream once granted is not where clients are told they are reached.
   */
  static over(line: UpstreamLine | undefined, table: MappingTable, edit: TableChanges, clock: Clock, log: Logger): UpstreamRelay | undefined {
    if (line) return new UpstreamRelay(line, table, edit, clock, log);
    for (const m of [...table.values()]) if (m.upstream) table.put({ ...m, upstream: undefined });
    return undefined;
  }

  /** Upstream's external address, as its last answer said (undefined until known). */
  publicAddress(): IpAddress | undefined {
    return this.line.publicAddress();
  }

  /** Whether a mapping goes upstream: IPv4, MAP or PEER kind (IPv6 pinholes do not cross the ISP's NAT44). */
  static concerns(m: Mapping): boolean {
    return m.family === 4;
  }

  /** The nonce upstream knows a mapping by: a PCP client's own (relayed, RFC 7648), else one of the daemon's, the same after a restart. */
  nonceOf(m: Mapping): NonceHex {
    if (m.upstream) return m.upstream.nonce;
    if (m.nonce) return m.nonce;
    return createHmac('sha256', this.line.nonceKey).update(keyOf(m)).digest('hex').slice(0, 24);
  }

  counts(): { relayed: number; refused: number; unanswered: number; removed: number } {
    return { ...this.stats };
  }

  /**
   * The second half of a grant: `granted` is in table, kernel and journal
   * here; now upstream. Upstream's yes records its part with the mapping (and
   * shortens the mapping to upstream's lifetime for a door whose client
   * renews); its no or its silence undoes the local grant — a new mapping
   * leaves, a renewal goes back to `before` — and the client hears the
   * refusal.
   */
  async afterGrant(req: UpstreamCause, granted: Granted, before: Mapping | undefined): Promise<MapOutcome> {
    const m = granted.mapping;
    const client = this.line.clientAddress();
    const patienceMs = req.via === 'upnp' ? Math.min(this.line.patienceMs, SOAP_PATIENCE_MS) : this.line.patienceMs;
    const answer: UpstreamAnswer = client
      ? await this.line.server.map({ ...this.ask(m, client, req, patienceMs, (before?.filters.length ?? 0) > 0), owner: req.client })
      : { ok: false, refusal: 'NETWORK_FAILURE', detail: 'the WAN has no IPv4 address to ask upstream from' };
    const current = this.table.get(keyOf(m));
    if (!answer.ok) {
      this.count(answer);
      await this.undo(m, current, before);
      return { ok: false, refusal: answer.refusal, detail: `upstream: ${answer.detail}`, lifetime: answer.lifetime };
    }
    this.stats.relayed++;
    const now = this.clock.now();
    const part = this.partOf(answer, m, now);
    if (!current || current.externalPort !== m.externalPort) {
      // Removed or moved while upstream was asked: its remover could not tell upstream (it had no part yet), this does.
      if (!current?.upstream) this.gone([{ ...m, upstream: part }]);
      return refuse('NETWORK_FAILURE', 'the mapping changed while upstream was asked');
    }
    const selfRenewing = m.origin === 'pcp' || m.origin === 'natpmp';
    const told = selfRenewing ? Math.min(granted.lifetime, answer.lifetime) : granted.lifetime;
    const next: Mapping = selfRenewing ? { ...current, upstream: part, lifetime: told, expiresAt: current.grantedAt + told * 1000 } : { ...current, upstream: part };
    const out = await this.edit.grant(next, current, []);
    if (!out.ok) {
      // Upstream has it, this router could not record it: neither keeps it.
      this.gone([next]);
      await this.undo(m, this.table.get(keyOf(m)), undefined);
      return out;
    }
    this.retry.delete(keyOf(m));
    this.stale.delete(keyOf(m));
    return { ok: true, mapping: next, lifetime: told };
  }

  /** The MAP-kind IPv4 mapping upstream reaches at `externalPort`. A scan: a proxying router's table is a home's, not a CGN's. */
  holderOf(protocol: number, externalPort: number): Mapping | undefined {
    for (const m of this.table.values()) {
      if (UpstreamRelay.concerns(m) && m.kind === 'map' && m.protocol === protocol && reachedAt(m).port === externalPort) return m;
    }
    return undefined;
  }

  /** Mappings that ended here (removed, expired, revoked, replaced): upstream removes them too, as far as the cap allows. */
  gone(ended: readonly Mapping[]): void {
    const client = this.line.clientAddress();
    if (!client || this.retired) return;
    for (const m of ended) void this.removeUpstream(m, client, this.line.patienceMs);
  }

  /**
   * --flush-on-exit: the client mappings' upstream parts are removed upstream
   * before the daemon exits, so the ISP keeps no port open for what this
   * router dropped. Waits for the answers no longer than `deadlineMs`; after
   * it the relay asks upstream nothing more (the wire closes next). Static
   * forwards stay: the flush keeps them here too, and upstream's lifetime
   * ends them now that nobody renews them.
   */
  async removeAllUpstream(deadlineMs: number): Promise<{ asked: number; answered: number }> {
    const client = this.line.clientAddress();
    this.retired = true;
    if (!client) return { asked: 0, answered: 0 };
    const asked: Promise<boolean>[] = [];
    for (const m of this.table.values()) {
      if (m.origin === 'static') continue;
      const p = this.removeUpstream(m, client, deadlineMs);
      if (p) asked.push(p);
    }
    let answered = 0;
    for (const p of asked) void p.then((ok) => (answered += ok ? 1 : 0));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(asked), new Promise((r) => (timer = setTimeout(r, deadlineMs)))]);
    clearTimeout(timer);
    return { asked: asked.length, answered };
  }

  /** Lifetime 0 upstream for `m`, if it has an upstream part and the cap allows; resolves to whether upstream confirmed. */
  private removeUpstream(m: Mapping, client: IpAddress, patienceMs: number): Promise<boolean> | undefined {
    if (!UpstreamRelay.concerns(m) || !m.upstream) return undefined;
    this.retry.delete(keyOf(m));
    // RFC 6887 §12.3: PEER cannot shorten a mapping; upstream's lifetime (no longer than ours for a PCP client) ends it.
    if (m.kind === 'peer') return undefined;
    if (this.line.server.spare() <= 0) {
      // Upstream ends it with its own lifetime, which this router renews no more.
      this.log.warn({ event: 'upstream-remove-skipped', internalPort: m.externalPort, detail: 'too many upstream requests in flight' });
      return undefined;
    }
    this.stats.removed++;
    const ask = { ...this.ask(m, client, undefined, patienceMs), lifetime: 0 };
    return this.line.server.map(ask).then((a) => {
      if (!a.ok) this.log.warn({ event: 'upstream-remove-failed', internalPort: m.externalPort, refusal: a.refusal, detail: a.detail });
      return a.ok;
    });
  }

  /** Upstream lost its state (epoch, ANNOUNCE) or this router's address toward it changed: every upstream mapping is made again. */
  recreateAll(): void {
    this.stale = new Set(this.mappingsUpstream());
    this.retry.clear();
  }

  /**
   * One pass of the background work, at most PACE requests: upstream
   * mappings made again after a loss, renewed before upstream's lifetime runs
   * out where the mapping here outlives it (RFC 6887 §11.2.1: between 1/2 and
   * 5/8 of the lifetime), and made for mappings that have no upstream part
   * yet (static forwards, mappings restored from before the proxy).
   */
  async pass(): Promise<void> {
    const client = this.line.clientAddress();
    if (!client || this.retired) return;
    const now = this.clock.now();
    let budget = Math.min(PACE, this.line.server.spare());
    const work: Promise<void>[] = [];
    for (const m of this.table.values()) {
      if (budget <= 0) break;
      if (!UpstreamRelay.concerns(m) || m.expiresAt <= now || this.busy.has(keyOf(m)) || !this.due(m, now)) continue;
      budget--;
      work.push(this.renew(m, client, now));
    }
    await Promise.all(work);
  }

  private due(m: Mapping, now: number): boolean {
    const r = this.retry.get(keyOf(m));
    if (r && r.at > now) return false;
    const u = m.upstream;
    if (!u) return true;
    if (this.stale.has(keyOf(m))) return true;
    if (u.expiresAt >= m.expiresAt) return false;
    // Renew once 1/2 to 5/8 of upstream's lifetime has passed, the point chosen by the nonce so renewals spread.
    const share = 0.5 + (parseInt(u.nonce.slice(0, 2), 16) / 255) * 0.125;
    return u.expiresAt - now <= u.lifetime * 1000 * (1 - share);
  }

  private async renew(m: Mapping, client: IpAddress, now: number): Promise<void> {
    const key = keyOf(m);
    this.busy.add(key);
    try {
      // A renewal may wait until upstream's mapping would end; a new one a minute.
      const patienceMs = m.upstream && m.upstream.expiresAt > now ? Math.max(this.line.patienceMs, m.upstream.expiresAt - now) : 60_000;
      const answer = await this.line.server.map(this.ask(m, client, undefined, patienceMs));
      const current = this.table.get(key);
      if (!current || current.externalPort !== m.externalPort) return;
      if (!answer.ok) {
        this.count(answer);
        const waitMs = Math.min((this.retry.get(key)?.waitMs ?? 1500) * 2, 1_024_000);
        this.retry.set(key, { at: this.clock.now() + waitMs, waitMs });
        this.log.warn({ event: 'upstream-renewal-failed', internal: current.internalAddress, protocol: current.protocol, internalPort: current.internalPort, refusal: answer.refusal, detail: answer.detail, retryInSeconds: Math.round(waitMs / 1000) });
        return;
      }
      this.stats.relayed++;
      this.retry.delete(key);
      this.stale.delete(key);
      const next: Mapping = { ...current, upstream: this.partOf(answer, current, this.clock.now()) };
      // Where the internet reaches it changed (upstream moved it, or it was reached here before upstream made it): its client is told.
      const was = reachedAt(current);
      const moved = was.address !== answer.externalAddress || was.port !== answer.externalPort;
      if (current.origin === 'static') this.table.put(next);
      else if (!(await this.edit.grant(next, current, [])).ok) return;
      if (moved) this.onMoved([next]);
    } finally {
      this.busy.delete(key);
    }
  }

  private *mappingsUpstream(): Iterable<string> {
    for (const m of this.table.values()) if (UpstreamRelay.concerns(m) && m.upstream) yield keyOf(m);
  }

  /** `hadFilters`: the mapping had FILTERs before this request (upstream may hold them: a clear goes up even when none are left). */
  private ask(m: Mapping, client: IpAddress, req: UpstreamCause | undefined, patienceMs: number, hadFilters = false): UpstreamAsk {
    const u = m.upstream;
    // A renewal asks for what it has; a client's own suggestion (PREFER_FAILURE: UPnP's exact port) goes up as it came.
    const suggested = req?.preferFailure ? req.suggestedExternalPort : u?.externalPort ?? (req?.suggestedExternalPort || m.externalPort);
    return {
      protocol: m.protocol,
      // RFC 7648 §3.3: behind this router's NAT44, upstream's internal port is our external one;
      // with none (DS-Lite), upstream maps the LAN host's own endpoint, named in THIRD_PARTY.
      internalPort: this.line.thirdParty ? m.internalPort : m.externalPort,
      suggestedExternalPort: suggested,
      suggestedExternalAddress: u?.externalAddress,
      lifetime: m.origin === 'static' ? Math.min(m.lifetime, 86_400) : Math.max(1, Math.ceil((m.expiresAt - this.clock.now()) / 1000)),
      nonce: nonceBytes(this.nonceOf(m)),
      preferFailure: req?.preferFailure === true,
      client,
      thirdParty: this.line.thirdParty ? m.internalAddress : undefined,
      patienceMs,
      remotePeer: m.kind === 'peer' ? m.remotePeer : undefined,
      // Upstream's filters become this mapping's: cleared, then each. Never a FILTER for a mapping that
      // has had none (UPnP sends a clear with every wildcard RemoteHost): an upstream that does not
      // filter (FILTER is mandatory to process, §13.3) would refuse every such mapping.
      filters: m.kind === 'map' && (m.filters.length > 0 || hadFilters) ? ['clear', ...m.filters] : undefined,
    };
  }

  private partOf(a: { externalAddress: IpAddress; externalPort: number; lifetime: number }, m: Mapping, now: number): UpstreamPart {
    return { externalAddress: a.externalAddress, externalPort: a.externalPort, nonce: this.nonceOf(m), lifetime: a.lifetime, expiresAt: now + a.lifetime * 1000 };
  }

  private count(a: { refusal: Refusal }): void {
    if (a.refusal === 'NETWORK_FAILURE') this.stats.unanswered++;
    else this.stats.refused++;
  }

  /** Upstream said no: the local half goes — a new mapping leaves, a renewal goes back to what it was. */
  private async undo(m: Mapping, current: Mapping | undefined, before: Mapping | undefined): Promise<void> {
    if (!current || current.externalPort !== m.externalPort) return;
    // Only what upstream had granted goes back: a mapping still waiting for its first answer (a retransmission's) does not.
    if (before?.upstream && before.externalPort === m.externalPort && before.expiresAt > this.clock.now()) {
      await this.edit.grant(before, current, []);
      return;
    }
    const out = await this.edit.removal([current]);
    if (out?.result !== 'committed') this.log.error({ event: 'upstream-undo-failed', internal: m.internalAddress, protocol: m.protocol, internalPort: m.internalPort, detail: 'the local mapping stays until it expires' });
  }
}
