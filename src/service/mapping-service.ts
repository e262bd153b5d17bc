// MappingService: the one place a mapping is born, renewed or ends. The
// doors (PCP, NAT-PMP, UPnP) translate their wire formats into its requests;
// the daemon asks it questions and tells it of the WAN address, the policy
// and the DHCP leases.
//
// Order of every change (docs/ARCHITECTURE.md): policy → allocate → firewall
// commit → journal → reply. The table is updated before the commit so that a
// concurrent request sees the reservation; if the commit fails the change is
// rolled back and the caller told FIREWALL_FAILED (NO_RESOURCES when only
// the store could not record it: the kernel change is then undone).
//
// This file is the face and the order of things; each rule lives in a room
// of its own: admission.ts (the checks MAP and PEER share), allocation.ts
// (external ports), replace-own.ts (UPnP's replacement of its own),
// table-changes.ts (table, kernel and journal changed together, or put
// back), static-forwards.ts, lease-ends.ts, firewall-entries.ts (a mapping
// as the kernel holds it), store-link.ts, expiry.ts, decision-log.ts,
// service-config.ts, upstream.ts (the RFC 7648 relay behind the ISP's NAT),
// and state/records.ts (a mapping as the journal records it).

import { familyOf, isUnspecified, type IpAddress } from '../net/address.js';
import { entryKey, type FirewallBackend, type FirewallChange, type FirewallEntry } from '../firewall/backend.js';
import type { Policy } from '../policy/policy.js';
import { hostUnit } from '../net/hosts.js';
import type { Logger } from '../log.js';
import type { Clock } from '../state/clock.js';
import type { Epoch } from '../state/epoch.js';
import { MappingTable, internalEndpoint } from '../state/table.js';
import type { DurableStore } from '../state/store.js';
import { fromStored, putRecord, remainingMs, removalRecord, type StoredMapping } from '../state/records.js';
import { STATIC_LIFETIME, hasKey, keyOf, makeMapping, mappingKey, nonceHex, remaining, type Mapping, type RemoteFilter, type StaticOpening, type Via } from '../domain/mapping.js';
import { refuse, type MapOutcome, type MapRequest, type PeerRequest, type Refused, type RemoveOutcome, type RemoveRequest } from '../domain/requests.js';
import { CommitQueue } from './commit-queue.js';
import { Admission, applyFilterSteps, mayRemove, nonceRefusal, type Admitted, type Asked } from './admission.js';
import { ownInTheWay } from './replace-own.js';
import { chooseExternalPort } from './allocation.js';
import { diffStaticForwards, forwardTerms, type PolicySwapReport, type StaticForward } from './static-forwards.js';
import { entryOf, removals, replacement } from './firewall-entries.js';
import { StoreLink } from './store-link.js';
import { ExpiryTimer } from './expiry.js';
import { TableChanges } from './table-changes.js';
import { logDecision, logEnded } from './decision-log.js';
import type { LeaseView, Network, ServiceConfig } from './service-config.js';
import { LeaseEnds } from './lease-ends.js';
import { NO_TELEMETRY, type Telemetry } from '../telemetry.js';
import { UpstreamRelay, type UpstreamLine } from './upstream.js';

export { DEFAULT_SERVICE_CONFIG, type LeaseView, type Network, type ServiceConfig } from './service-config.js';
export { entryOf } from './firewall-entries.js';

export type { PolicySwapReport } from './static-forwards.js';

export class MappingService {
  private readonly commits: CommitQueue;
  private readonly admission: Admission;
  private readonly stores: StoreLink;
  private readonly expiry: ExpiryTimer;
  private readonly edit: TableChanges;
  private nextId = 1;
  private readonly leaseEnds = new LeaseEnds();
  /** Behind the ISP's NAT: the RFC 7648 relay every IPv4 mapping also goes through (service/upstream.ts). */
  private upstream?: UpstreamRelay;

  constructor(
    cfg: ServiceConfig,
    policy: Policy,
    private readonly firewall: FirewallBackend,
    private readonly network: Network,
    private readonly clock: Clock,
    private readonly epoch: Epoch,
    private readonly log: Logger,
    /** The live mappings; given by a test that looks at its indexes. Counts each mapping under its host's LAN interface. */
    private readonly table: MappingTable = new MappingTable((addr) => network.interfaceOf?.(addr), (addr) => network.hostOf?.(addr) ?? hostUnit(addr)),
    /** Told of every mapping that ends (and why), every commit, and an epoch started again by a flush. */
    private readonly telemetry: Telemetry = NO_TELEMETRY,
  ) {
    this.commits = new CommitQueue(firewall, undefined, telemetry);
    this.admission = new Admission(cfg, policy, network, table, clock);
    this.stores = new StoreLink(clock, log);
    this.expiry = new ExpiryTimer(clock, () => this.expireDue());
    this.edit = new TableChanges(table, this.commits, this.stores, this.expiry, clock, log, cfg.portReuseSeconds);
  }

  // --- questions: the service's face for the doors, listings and the daemon ---

  /** Where the internet reaches this router's IPv4 mappings: upstream's address behind the ISP's NAT (undefined until learned). */
  externalIPv4(): IpAddress | undefined {
    return this.upstream ? this.upstream.publicAddress() : this.network.externalIPv4();
  }

  /** Seconds since the mapping state began (RFC 6887 §8.5, RFC 6886 §3.2.1). */
  epochSeconds(): number {
    return this.epoch.seconds();
  }

  /** Counts every change to the live mappings: a listing cached at one count is current while it holds. */
  changes(): number {
    return this.table.version;
  }

  /** The live MAP-kind mapping of an internal endpoint (RFC 6887 §11.3's identity). */
  mappingOf(internalAddress: IpAddress, protocol: number, internalPort: number): Mapping | undefined {
    return this.table.get(mappingKey('map', internalAddress, protocol, internalPort));
  }

  /** The live mapping whose identity is `key` (`keyOf`), e.g. one a door remembered by its key. */
  byKey(key: string): Mapping | undefined {
    return this.table.get(key);
  }

  /** The MAP-kind mapping that holds an IPv4 external port, if one does (a PEER alone holds none that a door names). */
  holderOf(protocol: number, externalPort: number): Mapping | undefined {
    // Behind the ISP's NAT a door names upstream's port.
    return this.upstream ? this.upstream.holderOf(protocol, externalPort) : this.table.mapOnExternalPort(protocol, externalPort);
  }

  /** Every live mapping, read in place: no list is built (a metrics scrape at 100 000). */
  live(): Iterable<Mapping> {
    return this.table.values();
  }

  /** Every live mapping (static forwards included) that `match` accepts, in no set order. */
  mappings(match: (m: Mapping) => boolean = () => true): Mapping[] {
    const out: Mapping[] = [];
    for (const m of this.table.values()) if (match(m)) out.push(m);
    return out;
  }

  /** How many live mappings `match` accepts, without listing them. */
  count(match: (m: Mapping) => boolean = () => true): number {
    let n = 0;
    for (const m of this.table.values()) if (match(m)) n++;
    return n;
  }

  /** Inbound packets a mapping has admitted, where the firewall counts them. */
  packets(m: Mapping): Promise<number | undefined> {
    return this.firewall.packets?.(entryOf(m)) ?? Promise.resolve(undefined);
  }

  /** The same for many mappings, by id, asked of the firewall at once (one listing); mappings not counted are left out. */
  async packetCounts(mappings: readonly Mapping[]): Promise<Map<number, number>> {
    const out = new Map<number, number>();
    if (!this.firewall.packetCounts || mappings.length === 0) return out;
    const counts = await this.firewall.packetCounts(mappings.map(entryOf));
    for (const m of mappings) {
      const n = counts.get(entryKey(entryOf(m)));
      if (n !== undefined) out.set(m.id, n);
    }
    return out;
  }

  /** Seconds left on a mapping. */
  remaining(m: Mapping): number {
    return m.origin === 'static' ? STATIC_LIFETIME : remaining(m, this.clock.now());
  }

  // --- requests from the doors -------------------------------------------

  /** Creates or renews a MAP-kind mapping. */
  async map(req: MapRequest): Promise<MapOutcome> {
    const before = this.upstream ? this.table.get(mappingKey('map', req.internalAddress, req.protocol, req.internalPort)) : undefined;
    let out = await this.mapInner(req);
    // RFC 7648: granted only when upstream granted too (service/upstream.ts).
    if (this.upstream && out.ok && UpstreamRelay.concerns(out.mapping) && out.mapping.origin !== 'static') out = await this.upstream.afterGrant(req, out, before);
    logDecision(this.log, 'map', req, out);
    return out;
  }

  private async mapInner(asked: MapRequest): Promise<MapOutcome> {
    // Replacing is for the suggested port alone.
    const req = asked.replace ? { ...asked, preferFailure: true } : asked;
    const key = mappingKey('map', req.internalAddress, req.protocol, req.internalPort);
    const existing = this.table.get(key);
    const now = this.clock.now();
    const way = req.replace === 'own' ? ownInTheWay(this.table, req, existing, now) : { ok: true as const, displaced: [], moving: false };
    if (!way.ok) return way;
    // A mapping that moves to another external port is replaced, not renewed: the new one keeps nothing of it.
    const renewed = way.moving ? undefined : existing;
    const filters = applyFilterSteps(renewed?.origin === 'static' ? [] : renewed?.filters ?? [], req.filters);
    const pre = this.admission.admit(req, 'map', filters);
    if (!pre.ok) return pre;

    if (renewed?.origin === 'static') {
      // §11.3: a request matching a static mapping learns its external
      // address and port, with an infinite lifetime; nothing is recorded.
      if (req.preferFailure && req.suggestedExternalPort !== renewed.externalPort) {
        return refuse('CANNOT_PROVIDE_EXTERNAL', `port ${renewed.externalPort} is statically mapped`);
      }
      return { ok: true, mapping: renewed, lifetime: STATIC_LIFETIME };
    }
    const refused = nonceRefusal(renewed, req.nonce, now) ?? this.admission.tooManyFilters(filters);
    if (refused) return refused;
    // §11.3: an existing mapping is returned "regardless of the suggested
    // external address and port", unless PREFER_FAILURE insists on another.
    if (renewed && req.preferFailure && req.suggestedExternalPort !== renewed.externalPort) {
      return refuse('CANNOT_PROVIDE_EXTERNAL', `mapping exists on external port ${renewed.externalPort}`);
    }
    const lifetime = this.admission.grantLifetime(req.via, req.lifetime, pre.limits, req.internalAddress);

    // What is replaced leaves the table first: its ports and its quota are the new mapping's to take.
    const replaced = way.moving && existing ? [...way.displaced, existing] : way.displaced;
    for (const m of replaced) this.edit.leave(m);
    const replacing = new Set(replaced.map((m) => internalEndpoint(m.internalAddress, m.protocol, m.internalPort)));
    const port = renewed ? { ok: true as const, port: renewed.externalPort } : this.newPort(req, pre, replacing);
    if (!port.ok) {
      for (const m of replaced) this.edit.reinstate(m);
      return port;
    }
    const terms = this.admission.terms(req, renewed, { kind: 'map', family: pre.family, externalAddress: pre.externalAddress, externalPort: port.port, filters, lifetime });
    const out = await this.edit.grant(makeMapping(terms, renewed?.id ?? this.nextId++, now), existing, way.displaced);
    if (out.ok) {
      for (const m of replaced) logEnded(this.log, 'mapping-replaced', m, { newInternalPort: out.mapping.internalPort, newExternalPort: out.mapping.externalPort });
      // The client's own request ended them (UPnP's "replace my own", a mapping moved to another port).
      this.telemetry.removed('client', replaced.length);
      this.upstream?.gone(replaced);
    }
    return out;
  }

  /** PCP PEER (RFC 6887 §12): an outbound flow's mapping, opened only to that remote peer. */
  async peer(req: PeerRequest): Promise<MapOutcome> {
    const before = this.upstream ? this.table.get(mappingKey('peer', req.internalAddress, req.protocol, req.internalPort, { address: req.remotePeerAddress, port: req.remotePeerPort })) : undefined;
    let out = await this.peerInner(req);
    // RFC 7648 §3: behind the ISP's NAT the outbound flow crosses it too; upstream's PEER is where it leaves.
    if (this.upstream && out.ok && UpstreamRelay.concerns(out.mapping)) out = await this.upstream.afterGrant(req, out, before);
    logDecision(this.log, 'peer', req, out);
    return out;
  }

  private async peerInner(req: PeerRequest): Promise<MapOutcome> {
    if (familyOf(req.remotePeerAddress) !== familyOf(req.internalAddress) || isUnspecified(req.remotePeerAddress)) {
      return refuse('MALFORMED_REQUEST', `remote peer ${req.remotePeerAddress} does not fit ${req.internalAddress}`);
    }
    const fullLength = familyOf(req.remotePeerAddress) === 4 ? 32 : 128;
    const peerFilter: RemoteFilter = { prefix: { address: req.remotePeerAddress, length: fullLength }, port: req.remotePeerPort };
    const pre = this.admission.admit(req, 'peer', [peerFilter]);
    if (!pre.ok) return pre;
    const remotePeer = { address: req.remotePeerAddress, port: req.remotePeerPort };
    const existing = this.table.get(mappingKey('peer', req.internalAddress, req.protocol, req.internalPort, remotePeer));
    const now = this.clock.now();
    const wrongNonce = nonceRefusal(existing, req.nonce, now);
    if (wrongNonce) return wrongNonce;
    // §12.3: "it is not possible to reduce the lifetime of a mapping ... using PEER".
    const lifetime = Math.max(this.admission.grantLifetime(req.via, req.lifetime, pre.limits, req.internalAddress), existing ? remaining(existing, now) : 0);
    // §12.1: a suggestion PEER cannot honour is CANNOT_PROVIDE_EXTERNAL.
    const port = existing ? { ok: true as const, port: existing.externalPort } : this.newPort({ ...req, preferFailure: req.suggestedExternalPort !== 0 }, pre);
    if (!port.ok) return port;
    const terms = this.admission.terms(req, existing, { kind: 'peer', family: pre.family, externalAddress: pre.externalAddress, externalPort: port.port, filters: [peerFilter], remotePeer, lifetime });
    return this.edit.grant(makeMapping(terms, existing?.id ?? this.nextId++, now), existing, []);
  }

  /** A new mapping's external port, within its host's quota. */
  private newPort(req: Asked, admitted: Admitted, replacing?: ReadonlySet<string>): { ok: true; port: number } | Refused {
    const full = this.admission.quotaReached(req.internalAddress, admitted.limits, req.client);
    if (full) return full;
    const who = { via: req.via, internal: internalEndpoint(req.internalAddress, req.protocol, req.internalPort), internalAddress: req.internalAddress, nonce: req.nonce && nonceHex(req.nonce), replacing };
    return chooseExternalPort(this.table, req, admitted.family, who, admitted.limits, this.clock.now());
  }

  /** Removes one MAP-kind mapping. Removing what does not exist succeeds (retransmissions). */
  async remove(req: RemoveRequest): Promise<RemoveOutcome> {
    const out = await this.removeInner(req);
    logDecision(this.log, 'remove', req, out);
    return out;
  }

  private async removeInner(req: RemoveRequest): Promise<RemoveOutcome> {
    const existing = this.mappingOf(req.internalAddress, req.protocol, req.internalPort);
    if (!existing) {
      // RFC 6887 §15: MAP may not remove an outbound (PEER) mapping.
      if (req.via === 'pcp' && this.table.bindingFor(internalEndpoint(req.internalAddress, req.protocol, req.internalPort))) {
        return refuse('NOT_AUTHORIZED', 'only an outbound (PEER) mapping exists for this port');
      }
      return { ok: true };
    }
    const denied = mayRemove(existing, req.client, req.nonce, this.clock.now());
    if (denied) return denied;
    const out = await this.edit.removal([existing]);
    if (out?.result === 'committed') {
      this.telemetry.removed('client', 1);
      this.upstream?.gone([existing]);
      return { ok: true, removed: existing };
    }
    if (out?.result === 'unrecorded') return this.stores.unrecorded(out.error);
    return out ? refuse('FIREWALL_FAILED', 'firewall commit failed') : this.stores.refusal();
  }

  /**
   * NAT-PMP remove-all (RFC 6886 §3.4): every mapping of this client and
   * protocol that a client may remove; static ones stay and make the result
   * NOT_AUTHORIZED after the rest are gone.
   */
  async removeAll(req: { via: Via; client: IpAddress; protocol: number }): Promise<{ ok: boolean; removed: number; kept: number }> {
    const now = this.clock.now();
    const victims: Mapping[] = [];
    let kept = 0;
    for (const m of [...this.table.of(req.client)]) {
      if (m.kind !== 'map' || m.protocol !== req.protocol) continue;
      if (mayRemove(m, req.client, undefined, now)) kept++;
      else victims.push(m);
    }
    const ok = await this.edit.removeEnded(victims);
    if (ok) this.telemetry.removed('client', victims.length);
    if (ok) this.upstream?.gone(victims);
    this.log.info({ event: 'remove-all', via: req.via, client: req.client, protocol: req.protocol, removed: ok ? victims.length : 0, kept });
    return { ok: ok && kept === 0, removed: ok ? victims.length : 0, kept };
  }

  /**
   * The admin removes client mappings (`portcullis rm`), whoever made them
   * and whatever their nonce; the client's next renewal finds them gone.
   * Static forwards are the policy file's and stay. The flows already
   * running through them end too: the admin's Close stops the traffic, not
   * only new connections (a client's own delete does not: removals()).
   * Returns what was taken out of table, kernel and store (nothing, if the
   * firewall refused).
   */
  async removeAsAdmin(match: (m: Mapping) => boolean): Promise<{ ok: boolean; removed: Mapping[] }> {
    const victims = this.mappings((m) => m.origin !== 'static' && match(m));
    if (victims.length === 0) return { ok: true, removed: [] };
    const ok = await this.edit.removeEnded(victims, true);
    if (ok) this.telemetry.removed('admin', victims.length);
    if (ok) this.upstream?.gone(victims);
    for (const m of ok ? victims : []) {
      this.log.warn({ event: 'mapping-removed', by: 'admin', via: m.origin, internal: m.internalAddress, protocol: m.protocol, internalPort: m.internalPort, externalPort: m.externalPort });
    }
    return { ok, removed: ok ? victims : [] };
  }

  // --- what the daemon tells it ------------------------------------------

  /** From now on every committed change is also recorded durably before its reply. */
  attachStore(store: DurableStore): void {
    this.stores.store = store;
    this.commits.journal = store;
  }

  /**
   * Puts back mappings from the durable store with what they have left
   * (dropping what expired while the daemon was down). The firewall is
   * brought in line afterwards by reconciliation. Returns how many came back.
   * `made` is told each mapping with the record it came from and that
   * record's key in the store (the store keeps the mapping in the record's
   * place: DurableStore.adopt).
   */
  restore(stored: readonly StoredMapping[], lastWriteWall: number, made?: (key: string, from: StoredMapping, m: Mapping) => void): { restored: number; expired: number } {
    const now = { mono: this.clock.now(), wall: this.clock.wall(), bootId: this.clock.bootId() };
    let restored = 0;
    let expired = 0;
    this.table.filling(() => {
      for (const s of stored) {
        const left = remainingMs(s, now, lastWriteWall);
        if (left <= 0) {
          expired++;
          continue;
        }
        const m = fromStored(s, this.nextId++, now.mono + left);
        // The table keeps the store's copy of the key (the same text), not one of its own; checked without building another.
        const key = hasKey(m, s.key) ? s.key : keyOf(m);
        if (this.table.get(key)) continue;
        this.edit.enter(m, key, false);
        made?.(s.key, s, m);
        restored++;
      }
    });
    this.edit.armExpiry();
    return { restored, expired };
  }

  /**
   * Removes every client mapping from the kernel and the store (--flush-on-exit).
   * The epoch starts again now, so clients that check it see the loss.
   */
  async flushAll(): Promise<number> {
    const victims = [...this.table.values()].filter((m) => m.origin !== 'static');
    for (const m of victims) this.edit.leave(m);
    // No undo if only the journal fails: at exit, closing is the safe way to
    // be wrong. The store may bring them back at the next start for what is
    // left of the lifetimes their clients were granted.
    const out = await this.commits.commit(removals(victims), victims.map((m) => removalRecord(m, this.clock)));
    if (out.result === 'refused') {
      // The kernel still has them: so must we.
      for (const m of victims) this.edit.reinstate(m);
      this.log.error({ event: 'flush-failed', mappings: victims.length, detail: 'firewall commit failed' });
      return 0;
    }
    if (out.result === 'unrecorded') this.stores.writeFailed(out.error, 'the mappings are gone from the kernel; the store still lists them');
    this.telemetry.removed('admin', victims.length);
    this.epoch.reset();
    this.telemetry.epochReset();
    await this.compactStore();
    return victims.length;
  }

  /**
   * The WAN's IPv4 address changed: every IPv4 mapping moves to the new
   * address with the same external port and what it has left (the ports move
   * together, so none can collide). Returns the moved mappings, for the
   * doors to tell their clients.
   */
  async moveExternalAddress(to: IpAddress): Promise<Mapping[]> {
    const now = this.clock.now();
    const moved: Mapping[] = [];
    const changes: FirewallChange[] = [];
    for (const m of [...this.table.values()]) {
      if (m.family !== 4 || m.externalAddress === to || m.expiresAt <= now) continue;
      const next: Mapping = { ...m, externalAddress: to };
      this.table.put(next);
      // Static forwards are rules that match any local address: only the listing changes.
      if (m.origin === 'static') continue;
      moved.push(next);
      changes.push(...replacement(m, next, now));
    }
    // No undo if only the journal fails: the old address is no longer the
    // router's, so entries on it would serve nothing. Table and kernel agree
    // on the new one; a restart finds the store's old address stale and moves
    // the restored mappings again.
    const out = await this.commits.commit(changes, moved.map((m) => putRecord(m, this.clock)));
    if (out.result === 'unrecorded') this.stores.writeFailed(out.error, 'the mappings moved in the kernel; the store still has the old address');
    if (out.result !== 'refused') this.telemetry.removed('wan-change', moved.length);
    this.log.warn({ event: 'external-address-moved', to, mappings: moved.length, committed: out.result === 'committed' });
    // Upstream knew them by the old address (the PCP Client IP field): they are made again from the new one.
    this.upstream?.recreateAll();
    return moved;
  }

  /**
   * Swaps in a new policy (already validated) and its static forwards. Live
   * mappings the new policy would not grant are removed from the kernel and
   * logged with the rule that now denies them; static forwards are diffed
   * against the table, so an unchanged one is never touched.
   */
  async swapPolicy(policy: Policy, statics: readonly StaticOpening[]): Promise<PolicySwapReport> {
    this.admission.policy = policy;
    const removed: PolicySwapReport['removed'] = [];
    for (const m of this.table.values()) {
      if (m.origin === 'static') continue;
      const verdict = this.admission.verdictOn(m);
      if (!verdict.allow) removed.push({ mapping: m, rule: verdict.rule, reason: verdict.reason });
    }
    const now = this.clock.now();
    const external = this.network.externalIPv4();
    const forwards = statics.filter((s): s is StaticForward => s.kind === 'forward');
    const diff = diffStaticForwards(forwards.map((f) => makeMapping(forwardTerms(f, external), this.nextId++, now, Number.POSITIVE_INFINITY)), this.table);
    const victims = [...removed.map((r) => r.mapping), ...diff.evicted];
    for (const m of [...victims, ...diff.remove]) this.edit.leave(m);
    for (const m of diff.add) this.edit.enter(m);
    const ok = await this.commits.submit(removals(victims), victims.map((m) => removalRecord(m, this.clock)));
    if (!ok) this.log.error({ event: 'policy-swap-commit-failed', mappings: victims.length });
    else this.telemetry.removed('policy', victims.length);
    if (ok) this.upstream?.gone([...victims, ...diff.remove]);
    for (const r of removed) logEnded(this.log, 'mapping-revoked', r.mapping, { rule: r.rule, reason: r.reason });
    for (const m of diff.evicted) logEnded(this.log, 'mapping-evicted', m, { reason: 'a static forward now holds its external port' });
    return { removed, staticsAdded: diff.add.length, staticsRemoved: diff.remove.length, evicted: diff.evicted };
  }

  /** Folds the journal into a fresh snapshot, with no commit in flight. */
  async compactStore(): Promise<void> {
    const store = this.stores.store;
    if (!store) return;
    await this.commits.exclusive(() => {
      const now = { mono: this.clock.now(), wall: this.clock.wall(), bootId: this.clock.bootId() };
      return store.compactFrom(this.clientMappings(now.mono), this.epoch.start(), now);
    });
  }

  /** Records a new epoch start (after a reset) before clients hear of it. */
  async recordEpoch(): Promise<boolean> {
    return this.commits.submit([], [{ op: 'epoch', at: this.clock.wall(), epoch: this.epoch.start() }]);
  }

  /** Behind the ISP's NAT (RFC 7648): every IPv4 mapping also goes upstream (undefined: no more); the daemon runs the relay's `pass()`. */
  useUpstream(line: UpstreamLine): UpstreamRelay;
  useUpstream(line: undefined): undefined;
  useUpstream(line: UpstreamLine | undefined): UpstreamRelay | undefined {
    return (this.upstream = UpstreamRelay.over(line, this.table, this.edit, this.clock, this.log));
  }

  /** Takes the DHCP server's leases into account from now on (undefined: no more). */
  useLeases(view: LeaseView | undefined): void {
    this.admission.leases = view;
  }

  /**
   * RFC 6887 §15: the mappings of a host whose DHCP lease ended are
   * discarded. Revokes the mappings of every mapped address whose lease has
   * ended, and of each `lost` address (its lease left the lease file) that
   * has no lease now. Static forwards are the admin's and stay. Cheap enough
   * to run every few seconds: one lookup per mapped address.
   */
  async revokeEndedLeases(lost: readonly IpAddress[] = []): Promise<Mapping[]> {
    const view = this.admission.leases;
    if (!view) return [];
    const ended = this.leaseEnds.due(view, this.table.addresses(), lost, this.clock.wall());
    const victims = [...ended].flatMap((a) => [...this.table.of(a)]).filter((m) => m.origin !== 'static');
    if (victims.length === 0) return [];
    if (!(await this.edit.removeEnded(victims))) {
      this.leaseEnds.retry(victims.map((m) => m.internalAddress));
      this.log.error({ event: 'lease-revoke-failed', mappings: victims.length, detail: 'tried again at the next check' });
      return [];
    }
    for (const m of victims) logEnded(this.log, 'mapping-revoked', m, { reason: 'DHCP lease ended' });
    this.upstream?.gone(victims);
    this.telemetry.removed('lease', victims.length);
    return victims;
  }

  /**
   * Runs `fn` with the firewall entries the table says must exist (their
   * remaining seconds, and the key of the mapping each is), while no commit
   * is in flight: reconciliation compares the kernel with this, and nothing
   * moves under it. `only`: just the mappings of these keys that are still
   * there and alive (a reinstall in steps pays per step for what it carries).
   */
  withDesiredEntries<T>(fn: (desired: { key: string; entry: FirewallEntry; timeoutSeconds: number }[]) => Promise<T>, only?: readonly string[]): Promise<T> {
    return this.commits.exclusive(() => {
      const now = this.clock.now();
      // One array, built straight from the table with its own key strings.
      const desired: { key: string; entry: FirewallEntry; timeoutSeconds: number }[] = [];
      const take = (key: string, m: Mapping | undefined) => {
        if (m && m.origin !== 'static' && m.expiresAt > now) desired.push({ key, entry: entryOf(m), timeoutSeconds: remaining(m, now) });
      };
      if (only) for (const key of only) take(key, this.table.get(key));
      else for (const [key, m] of this.table.entries()) take(key, m);
      return fn(desired);
    });
  }

  /** What kernel entries and store records there must be: the clients' mappings alive at `now` (static forwards are rules of their own). */
  private clientMappings(now: number): [string, Mapping][] {
    return [...this.table.entries()].filter(([, m]) => m.origin !== 'static' && m.expiresAt > now);
  }

  /** Drops mappings whose lifetime ended; the kernel expires their entries by itself. */
  expireDue(): void {
    this.expiry.reset();
    const due = [...this.table.dueBy(this.clock.now())];
    for (const m of due) {
      this.edit.leave(m);
      logEnded(this.log, 'expired', m);
    }
    this.telemetry.removed('expired', due.length);
    this.upstream?.gone(due);
    this.edit.armExpiry();
  }

  stop(): void {
    this.expiry.stop();
  }
}
