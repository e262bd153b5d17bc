// MappingService: the only place a mapping is born, renewed or dies. PCP,
// NAT-PMP (and later UPnP) translate their wire formats into these calls.
//
// Order of every change (DESIGN.md): policy → allocate → firewall commit →
// reply. The table is updated before the commit so that a concurrent request
// sees the reservation; if the commit fails the change is rolled back and the
// caller is told NO_RESOURCES.

import { familyOf, isLinkLocal, isMulticast, isUnspecified, type IpAddress } from '../net/address.js';
import type { FirewallBackend, FirewallChange, FirewallEntry } from '../firewall/backend.js';
import { THIRD_PARTY_REASON, type Limits, type Policy, type PolicyRequest } from '../policy/policy.js';
import { inRanges, nthPort, rangesSize } from '../domain/patterns.js';
import { hostUnit } from '../net/hosts.js';
import type { Clock } from '../state/clock.js';
import type { Epoch } from '../state/epoch.js';
import { MappingTable, internalEndpoint, type FreedPort } from '../state/table.js';
import { remainingMs, toStored, type DurableStore, type JournalRecord, type StoredMapping } from '../state/store.js';
import { normalizePrefix, parsePrefix, type Prefix } from '../net/address.js';
import { IPPROTO_TCP, IPPROTO_UDP, isMappableProtocol } from '../net/ipproto.js';
import type { Logger } from '../log.js';
import { CommitQueue, type Undo } from './commit-queue.js';
import { STATIC_LIFETIME, keyOf, mappingKey, remaining, sameFilter, sameFilters, type Mapping, type RemoteFilter, type StaticOpening, type Via } from '../domain/mapping.js';
import { refuse, type FilterStep, type MapOutcome, type MapRequest, type PeerRequest, type Refused, type RemoveOutcome, type RemoveRequest } from '../domain/requests.js';

export interface ServiceConfig {
  /** Seconds. RFC 6887 §15 recommends a 120 s minimum and a 24 h maximum. */
  minLifetime: number;
  maxLifetime: number;
  /** Global cap on mappings (all clients). */
  maxMappings: number;
  /** RFC 6887 §13.3: filters one mapping may carry (at least 1). */
  maxFiltersPerMapping: number;
  /** RFC 7220 §3: octets of description stored (at least 128). */
  maxDescriptionBytes: number;
  /**
   * Headroom for everyone else: the fraction of `maxMappings` one host may
   * hold (a host is an IPv4 address or an IPv6 /64, however many addresses
   * it uses), and one LAN interface.
   */
  hostShare: number;
  interfaceShare: number;
  /**
   * Seconds an external port freed by an IPv4 mapping's end stays held back
   * for its last holder (RFC 6887 §15: the NAT's reuse time).
   */
  portReuseSeconds: number;
}

export const DEFAULT_SERVICE_CONFIG: ServiceConfig = {
  minLifetime: 120,
  maxLifetime: 86400,
  maxMappings: 200_000,
  maxFiltersPerMapping: 16,
  maxDescriptionBytes: 128,
  // A quarter per host leaves room for three more that hog as much; three
  // quarters per interface keep a quarter of the table for the other LANs
  // (the same fractions as the HTTP and GENA slot pools).
  hostShare: 1 / 4,
  interfaceShare: 3 / 4,
  // RFC 6887 §15's reuse time is the NAT's idle-mapping time: RFC 4787 REQ-5
  // puts UDP's at 2 minutes or more. RFC 5382 REQ-5's TCP times are longer
  // (4 minutes for a closing connection), but a stray TCP segment of the old
  // connection is refused by the new host's stack rather than taken as data,
  // so one value serves both.
  portReuseSeconds: 120,
};

/**
 * A DHCP server's leases (src/net/dhcp-leases.ts). An address with no lease
 * is not capped: it may be configured by hand, and the lease file lists only
 * what the DHCP server handed out.
 */
export interface LeaseView {
  /** When the address's lease ends, in wall-clock milliseconds (Infinity: never); undefined: it has none. */
  leaseEnd(address: IpAddress): number | undefined;
}

/** Where the LAN is: who may ask, and which hosts a mapping may point at. */
export interface Network {
  /** IPv4 address inbound IPv4 mappings are reached at; undefined while the WAN has none. */
  externalIPv4(): IpAddress | undefined;
  /** The address is inside a LAN prefix. */
  isLanHost(addr: IpAddress): boolean;
  /** The address is one of the router's own. */
  isRouterAddress(addr: IpAddress): boolean;
  /** The LAN interface a host is on (for policy rules that match on it). */
  interfaceOf?(addr: IpAddress): string | undefined;
  /** The host (device) an address belongs to, for quotas and rates (src/net/hosts.ts); its /64 or itself without one. */
  hostOf?(addr: IpAddress): string;
}

/** What a policy swap did to the live table. */
export interface PolicySwapReport {
  /** Mappings the new policy no longer allows, removed from the kernel. */
  removed: { mapping: Mapping; rule: string; reason: string }[];
  staticsAdded: number;
  staticsRemoved: number;
  /** Client mappings that held a port a new static forward now takes. */
  evicted: Mapping[];
}


/** RFC 6887 §7.4's short error lifetime: the client may ask again soon. */
const SHORT_ERROR_SECONDS = 30;

/** RFC 6887 §11.3: "A PCP server MUST NOT create client mappings for external UDP ports 5350 or 5351." */
const RESERVED_UDP_PORTS: ReadonlySet<number> = new Set([5350, 5351]);

export class MappingService {
  private readonly commits: CommitQueue;
  private nextId = 1;
  private expiryTimer: NodeJS.Timeout | undefined;
  private expiryAt = Number.POSITIVE_INFINITY;
  private stopped = false;
  private store: DurableStore | undefined;
  /** A journal write failed and no write has succeeded since. */
  private storeDown = false;
  private leases: LeaseView | undefined;
  /** Addresses whose lease left the lease file, while their mappings could not be removed yet. */
  private readonly leasesLost = new Set<IpAddress>();

  constructor(
    private readonly cfg: ServiceConfig,
    private policy: Policy,
    private readonly firewall: FirewallBackend,
    private readonly network: Network,
    private readonly clock: Clock,
    private readonly epoch: Epoch,
    private readonly log: Logger,
    /** The live mappings; given by a test that looks at its indexes. Counts each mapping under its host's LAN interface. */
    private readonly table: MappingTable = new MappingTable((addr) => network.interfaceOf?.(addr), (addr) => network.hostOf?.(addr) ?? hostUnit(addr)),
  ) {
    this.commits = new CommitQueue(firewall);
  }

  // --- questions: the service's face for the doors, listings and the daemon ---

  externalIPv4(): IpAddress | undefined {
    return this.network.externalIPv4();
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
    const b = this.table.holderOfExternalPort(protocol, externalPort);
    return b ? this.table.get(`map|${b.internal}`) : undefined;
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

  private hostOf(addr: IpAddress): string {
    return this.network.hostOf?.(addr) ?? hostUnit(addr);
  }

  /** From now on every committed change is also recorded durably before its reply. */
  attachStore(store: DurableStore): void {
    this.store = store;
    this.commits.journal = store;
  }

  /**
   * Reinstalls mappings from the durable store with what they have left
   * (dropping what expired while the daemon was down). The firewall is
   * brought in line afterwards by reconciliation. Returns how many came back.
   */
  restore(stored: readonly StoredMapping[], lastWriteWall: number): { restored: number; expired: number } {
    const now = { mono: this.clock.now(), wall: this.clock.wall(), bootId: this.clock.bootId() };
    let restored = 0;
    let expired = 0;
    for (const s of stored) {
      const left = remainingMs(s, now, lastWriteWall);
      if (left <= 0) {
        expired++;
        continue;
      }
      const m: Mapping = {
        id: this.nextId++,
        kind: s.kind,
        family: s.family,
        internalAddress: s.internalAddress,
        protocol: s.protocol,
        internalPort: s.internalPort,
        externalAddress: s.externalAddress,
        externalPort: s.externalPort,
        filters: s.filters.map(([address, length, port]) => ({ prefix: normalizePrefix(address, length), port })),
        remotePeer: s.remotePeer ? { address: s.remotePeer[0], port: s.remotePeer[1] } : undefined,
        nonce: s.nonce !== undefined ? Buffer.from(s.nonce, 'hex') : undefined,
        origin: s.origin,
        client: s.owner,
        description: s.description,
        doorTag: s.doorTag,
        lifetime: s.lifetime,
        clientPort: s.clientPort,
        grantedAt: now.mono + left - s.lifetime * 1000,
        expiresAt: now.mono + left,
      };
      if (this.table.get(keyOf(m))) continue;
      this.install(m);
      restored++;
    }
    return { restored, expired };
  }

  /**
   * Removes every client mapping from the kernel and the store (--flush-on-exit).
   * The epoch starts again now, so clients that check it see the loss.
   */
  async flushAll(): Promise<number> {
    const victims = [...this.table.values()].filter((m) => m.origin !== 'static');
    for (const m of victims) this.uninstall(m);
    // No undo if only the journal fails: at exit, closing is the safe way to
    // be wrong. The store may bring them back at the next start for what is
    // left of the lifetimes their clients were granted.
    const out = await this.commits.commit(victims.map((m) => ({ op: 'remove', entry: entryOf(m) })), victims.map((m) => this.delRecord(m)));
    if (out.result === 'refused') {
      // The kernel still has them: so must we.
      for (const m of victims) if (!this.table.get(keyOf(m))) this.install(m);
      this.log.error({ event: 'flush-failed', mappings: victims.length, detail: 'firewall commit failed' });
      return 0;
    }
    if (out.result === 'unrecorded') this.storeWriteFailed(out.error, 'the mappings are gone from the kernel; the store still lists them');
    this.epoch.reset();
    await this.compactStore();
    return victims.length;
  }

  /**
   * The WAN's IPv4 address changed: every IPv4 mapping moves to the new
   * address with the same external port and what it has left (the ports move
   * together, so none can collide). Returns the moved mappings, for the
   * protocols to tell their clients.
   */
  async moveExternalAddress(to: IpAddress): Promise<Mapping[]> {
    const now = this.clock.now();
    const moved: Mapping[] = [];
    const changes: FirewallChange[] = [];
    for (const m of [...this.table.values()]) {
      if (m.family !== 4 || m.externalAddress === to || m.expiresAt <= now) continue;
      if (m.origin === 'static') {
        // Static forwards are rules that match any local address: only the listing changes.
        this.table.put({ ...m, externalAddress: to });
        continue;
      }
      const next: Mapping = { ...m, externalAddress: to };
      this.table.put(next);
      moved.push(next);
      changes.push({ op: 'remove', entry: entryOf(m) }, { op: 'put', entry: entryOf(next), timeoutSeconds: remaining(next, now) });
    }
    // No undo if only the journal fails: the old address is no longer the
    // router's, so entries on it would serve nothing. Table and kernel agree
    // on the new one; a restart finds the store's old address stale and moves
    // the restored mappings again.
    const out = await this.commits.commit(changes, moved.map((m) => this.putRecord(m)));
    if (out.result === 'unrecorded') this.storeWriteFailed(out.error, 'the mappings moved in the kernel; the store still has the old address');
    this.log.warn({ event: 'external-address-moved', to, mappings: moved.length, committed: out.result === 'committed' });
    return moved;
  }

  /**
   * Swaps in a new policy (already validated) and its static forwards. Live
   * mappings the new policy would not grant are removed from the kernel and
   * logged with the rule that now denies them; static forwards are diffed
   * against the table, so an unchanged one is never touched.
   */
  async swapPolicy(policy: Policy, statics: readonly StaticOpening[]): Promise<PolicySwapReport> {
    this.policy = policy;
    const removed: PolicySwapReport['removed'] = [];
    for (const m of this.table.values()) {
      if (m.origin === 'static') continue;
      const verdict = policy.decide(this.requestOf(m));
      if (verdict.allow) continue;
      removed.push({ mapping: m, rule: verdict.rule, reason: verdict.reason });
    }
    const diff = this.diffStaticForwards(statics.filter((s) => s.kind === 'forward'));
    const victims = [...removed.map((r) => r.mapping), ...diff.evicted];
    for (const m of victims) this.uninstall(m);
    for (const m of diff.remove) this.uninstall(m);
    for (const m of diff.add) this.install(m);
    const ok = await this.commits.submit(
      victims.map((m) => ({ op: 'remove' as const, entry: entryOf(m) })),
      victims.map((m) => this.delRecord(m)),
    );
    if (!ok) this.log.error({ event: 'policy-swap-commit-failed', mappings: victims.length });
    for (const r of removed) {
      this.log.warn({ event: 'mapping-revoked', via: r.mapping.origin, internal: r.mapping.internalAddress, protocol: r.mapping.protocol, internalPort: r.mapping.internalPort, externalPort: r.mapping.externalPort, rule: r.rule, reason: r.reason });
    }
    for (const m of diff.evicted) {
      this.log.warn({ event: 'mapping-evicted', via: m.origin, internal: m.internalAddress, protocol: m.protocol, externalPort: m.externalPort, reason: 'a static forward now holds its external port' });
    }
    return { removed, staticsAdded: diff.add.length, staticsRemoved: diff.remove.length, evicted: diff.evicted };
  }

  /** The request a live mapping amounts to, for judging it again under a new policy. */
  private requestOf(m: Mapping): PolicyRequest {
    return {
      via: m.origin === 'static' ? 'pcp' : m.origin,
      operation: m.kind,
      client: m.client,
      internalAddress: m.internalAddress,
      protocol: m.protocol,
      internalPort: m.internalPort,
      // The port it holds must be one the new policy would hand out.
      requiredExternalPort: m.family === 4 ? m.externalPort : undefined,
      filters: m.filters,
      interface: this.network.interfaceOf?.(m.client),
    };
  }

  private diffStaticForwards(forwards: readonly StaticOpening[]): { add: Mapping[]; remove: Mapping[]; evicted: Mapping[] } {
    const now = this.clock.now();
    const want = new Map<string, Mapping>();
    for (const f of forwards) {
      if (f.kind !== 'forward') continue;
      const m: Mapping = {
        id: this.nextId++,
        kind: 'map',
        family: 4,
        internalAddress: f.to,
        protocol: f.protocol,
        internalPort: f.toPort,
        externalAddress: this.network.externalIPv4() ?? ('0.0.0.0' as IpAddress),
        externalPort: f.port,
        // `from` patterns are addresses or CIDR prefixes (the loader refuses masks there).
        filters: (f.from ?? []).map((p) => ({ prefix: parsePrefix(p.text) as Prefix, port: 0 })),
        origin: 'static',
        client: f.to,
        description: `static:${f.name}`,
        lifetime: STATIC_LIFETIME,
        grantedAt: now,
        expiresAt: Number.POSITIVE_INFINITY,
      };
      want.set(`${keyOf(m)}|${m.externalPort}|${m.description}|${entryKeyOfFilters(m)}`, m);
    }
    const have = new Map<string, Mapping>();
    for (const m of this.table.values()) {
      if (m.origin === 'static') have.set(`${keyOf(m)}|${m.externalPort}|${m.description}|${entryKeyOfFilters(m)}`, m);
    }
    const remove = [...have].filter(([k]) => !want.has(k)).map(([, m]) => m);
    const add = [...want].filter(([k]) => !have.has(k)).map(([, m]) => m);
    // The admin's forward wins over a client's mapping of the same host and
    // port, or of the same external port.
    const evicted = new Map<string, Mapping>();
    const leaving = new Set(remove.map(keyOf));
    for (const m of add) {
      const same = this.table.get(keyOf(m));
      if (same && same.origin !== 'static') evicted.set(keyOf(same), same);
      if (same?.origin === 'static' && !leaving.has(keyOf(same))) remove.push(same);
      for (const holder of this.table.onExternalPort(m.protocol, m.externalPort)) if (holder.origin !== 'static') evicted.set(keyOf(holder), holder);
    }
    return { add, remove, evicted: [...evicted.values()] };
  }

  /** Every live mapping as the store writes it. */
  private storedMappings(): StoredMapping[] {
    const mono = this.clock.now();
    const wall = this.clock.wall();
    const boot = this.clock.bootId();
    return [...this.table.values()].filter((m) => m.origin !== 'static' && m.expiresAt > mono).map((m) => toStored(m, wall, mono, boot));
  }

  /** Folds the journal into a fresh snapshot, with no commit in flight. */
  async compactStore(): Promise<void> {
    const store = this.store;
    if (!store) return;
    await this.commits.exclusive(() => store.compact(this.storedMappings(), this.epoch.start(), this.clock.wall()));
  }

  /** Records a new epoch start (after a reset) before clients hear of it. */
  async recordEpoch(): Promise<boolean> {
    return this.commits.submit([], [{ op: 'epoch', at: this.clock.wall(), epoch: this.epoch.start() }]);
  }

  private putRecord(m: Mapping): JournalRecord {
    return { op: 'put', at: this.clock.wall(), m: toStored(m, this.clock.wall(), this.clock.now(), this.clock.bootId()) };
  }

  private delRecord(m: Mapping): JournalRecord {
    return { op: 'del', at: this.clock.wall(), key: keyOf(m) };
  }

  private afterCommit(): void {
    this.storeUp();
    const store = this.store;
    if (!store?.wantsCompaction()) return;
    // The store snapshots what it has recorded, not this table: a change
    // here may still be in flight, and may yet fail. The slow part runs
    // beside the commits.
    store
      .compactInBackground({ mono: this.clock.now(), wall: this.clock.wall(), bootId: this.clock.bootId() })
      .catch((err: unknown) => this.log.error({ event: 'store-compaction-failed', error: (err as Error).message }));
  }

  /**
   * After a failed journal write, whether the store takes records again (it
   * probes the disk): until it does, nothing is granted that it could not
   * record. Free while writes succeed.
   */
  private async storeWritable(): Promise<boolean> {
    const store = this.store;
    if (!store?.failure) return true;
    const ok = await store.writable();
    if (ok) this.storeUp();
    return ok;
  }

  private storeUp(): void {
    if (!this.storeDown) return;
    this.storeDown = false;
    this.log.warn({ event: 'store-writable-again', stateDir: this.store?.dir });
  }

  private storeWriteFailed(error: Error, detail: string): void {
    this.storeDown = true;
    this.log.error({ event: 'store-write-failed', stateDir: this.store?.dir, error: error.message, detail });
  }

  /** The refusal for a change the journal could not record (its kernel change was undone). */
  private unrecorded(error: Error): Refused {
    this.storeWriteFailed(error, 'the kernel change was undone; grants are refused until the state directory takes writes again');
    return refuse('NO_RESOURCES', `the state store could not record it: ${error.message}`);
  }

  /** The refusal while the store cannot be written (before anything reaches the kernel). */
  private storeRefusal(): Refused {
    return refuse('NO_RESOURCES', `the state store cannot be written: ${this.store?.failure?.message ?? 'unknown error'}`);
  }

  stop(): void {
    this.stopped = true;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
  }

  /** Creates or renews a MAP-kind mapping. */
  async map(req: MapRequest): Promise<MapOutcome> {
    const out = await this.mapInner(req);
    this.logDecision('map', req, out);
    return out;
  }

  private async mapInner(req: MapRequest): Promise<MapOutcome> {
    const key = mappingKey('map', req.internalAddress, req.protocol, req.internalPort);
    const existing = this.table.get(key);
    const now = this.clock.now();
    const filters = this.applyFilterSteps(existing?.origin === 'static' ? [] : existing?.filters ?? [], req.filters);
    const pre = this.admit(req, 'map', filters);
    if (!pre.ok) return pre;
    const { limits, family, externalAddress } = pre;

    if (existing?.origin === 'static') {
      // §11.3: a request matching a static mapping learns its external
      // address and port, with an infinite lifetime; nothing is recorded.
      if (req.preferFailure && req.suggestedExternalPort !== existing.externalPort) {
        return refuse('CANNOT_PROVIDE_EXTERNAL', `port ${existing.externalPort} is statically mapped`);
      }
      return { ok: true, mapping: existing, lifetime: STATIC_LIFETIME };
    }
    if (existing?.nonce && req.nonce && !existing.nonce.equals(req.nonce)) {
      // §11.3: NOT_AUTHORIZED, "with the lifetime of the error indicating
      // duration of that existing mapping".
      return { ...refuse('NOT_AUTHORIZED', 'nonce does not match the existing mapping'), lifetime: remaining(existing, now) };
    }

    const lifetime = this.grantLifetime(req.via, req.lifetime, limits, req.internalAddress);
    if (filters.length > this.cfg.maxFiltersPerMapping) {
      return refuse('EXCESSIVE_REMOTE_PEERS', `${filters.length} filters > ${this.cfg.maxFiltersPerMapping}`);
    }
    const description = req.description !== undefined ? this.clipDescription(req.description) : existing?.description ?? '';

    let externalPort: number;
    const internal = internalEndpoint(req.internalAddress, req.protocol, req.internalPort);
    if (existing) {
      // §11.3: an existing mapping is returned "regardless of the suggested
      // external address and port", unless PREFER_FAILURE insists on another.
      if (req.preferFailure && req.suggestedExternalPort !== existing.externalPort) {
        return refuse('CANNOT_PROVIDE_EXTERNAL', `mapping exists on external port ${existing.externalPort}`);
      }
      externalPort = existing.externalPort;
    } else {
      const full = this.quotaReached(req.internalAddress, limits);
      if (full) return full;
      const chosen = this.chooseExternalPort(req, family, internal, limits);
      if (!chosen.ok) return chosen;
      externalPort = chosen.port;
    }

    const mapping: Mapping = {
      id: existing?.id ?? this.nextId++,
      kind: 'map',
      family,
      internalAddress: req.internalAddress,
      protocol: req.protocol,
      internalPort: req.internalPort,
      externalAddress,
      externalPort,
      filters,
      nonce: existing?.nonce ?? req.nonce,
      // A mapping keeps the protocol that made it; a client may renew it through another.
      origin: existing?.origin ?? req.via,
      client: existing?.client ?? req.client,
      description,
      doorTag: req.doorTag ?? existing?.doorTag,
      lifetime,
      clientPort: req.clientPort ?? existing?.clientPort,
      grantedAt: now,
      expiresAt: now + lifetime * 1000,
    };
    const changes: FirewallChange[] = [];
    if (existing && !sameEntry(entryOf(existing), entryOf(mapping))) changes.push({ op: 'remove', entry: entryOf(existing) });
    changes.push({ op: 'put', entry: entryOf(mapping), timeoutSeconds: lifetime });
    return this.commitReplace(existing, mapping, changes, lifetime);
  }

  /** PCP PEER (RFC 6887 §12): an outbound flow's mapping, opened only to that remote peer. */
  async peer(req: PeerRequest): Promise<MapOutcome> {
    const out = await this.peerInner(req);
    this.logDecision('peer', req, out);
    return out;
  }

  private async peerInner(req: PeerRequest): Promise<MapOutcome> {
    if (familyOf(req.remotePeerAddress) !== familyOf(req.internalAddress) || isUnspecified(req.remotePeerAddress)) {
      return refuse('MALFORMED_REQUEST', `remote peer ${req.remotePeerAddress} does not fit ${req.internalAddress}`);
    }
    const fullLength = familyOf(req.remotePeerAddress) === 4 ? 32 : 128;
    const peerFilter: RemoteFilter = { prefix: { address: req.remotePeerAddress, length: fullLength }, port: req.remotePeerPort };
    const pre = this.admit({ ...req, preferFailure: false }, 'peer', [peerFilter]);
    if (!pre.ok) return pre;
    const { limits, family, externalAddress } = pre;
    const remote = { address: req.remotePeerAddress, port: req.remotePeerPort };
    const key = mappingKey('peer', req.internalAddress, req.protocol, req.internalPort, remote);
    const existing = this.table.get(key);
    const now = this.clock.now();
    if (existing?.nonce && !existing.nonce.equals(req.nonce)) {
      return { ...refuse('NOT_AUTHORIZED', 'nonce does not match the existing mapping'), lifetime: remaining(existing, now) };
    }
    // §12.3: "it is not possible to reduce the lifetime of a mapping ... using PEER".
    const lifetime = Math.max(this.grantLifetime(req.via, req.lifetime, limits, req.internalAddress), existing ? remaining(existing, now) : 0);
    const internal = internalEndpoint(req.internalAddress, req.protocol, req.internalPort);
    let externalPort: number;
    if (existing) {
      externalPort = existing.externalPort;
    } else {
      const full = this.quotaReached(req.internalAddress, limits);
      if (full) return full;
      // §12.1: a suggestion PEER cannot honour is CANNOT_PROVIDE_EXTERNAL.
      const chosen = this.chooseExternalPort(
        { ...req, preferFailure: req.suggestedExternalPort !== 0 },
        family,
        internal,
        limits,
      );
      if (!chosen.ok) return chosen;
      externalPort = chosen.port;
    }
    const mapping: Mapping = {
      id: existing?.id ?? this.nextId++,
      kind: 'peer',
      family,
      internalAddress: req.internalAddress,
      protocol: req.protocol,
      internalPort: req.internalPort,
      externalAddress,
      externalPort,
      filters: [peerFilter],
      remotePeer: remote,
      nonce: req.nonce,
      origin: existing?.origin ?? req.via,
      client: existing?.client ?? req.client,
      description: req.description !== undefined ? this.clipDescription(req.description) : existing?.description ?? '',
      lifetime,
      clientPort: req.clientPort ?? existing?.clientPort,
      grantedAt: now,
      expiresAt: now + lifetime * 1000,
    };
    return this.commitReplace(existing, mapping, [{ op: 'put', entry: entryOf(mapping), timeoutSeconds: lifetime }], lifetime);
  }

  /** Deletes one MAP-kind mapping. Deleting what does not exist succeeds (retransmissions). */
  async remove(req: RemoveRequest): Promise<RemoveOutcome> {
    const out = await this.removeInner(req);
    this.logDecision('remove', req, out.ok ? { ok: true, deleted: out.deleted } : out);
    return out;
  }

  private async removeInner(req: RemoveRequest): Promise<RemoveOutcome> {
    const key = mappingKey('map', req.internalAddress, req.protocol, req.internalPort);
    const existing = this.table.get(key);
    const now = this.clock.now();
    if (!existing) {
      // RFC 6887 §15: MAP may not delete an outbound (PEER) mapping.
      if (req.via === 'pcp' && this.table.bindingFor(internalEndpoint(req.internalAddress, req.protocol, req.internalPort))) {
        return refuse('NOT_AUTHORIZED', 'only an outbound (PEER) mapping exists for this port');
      }
      return { ok: true };
    }
    const denied = this.mayDelete(existing, req, now);
    if (denied) return denied;
    this.uninstall(existing);
    const unrecordable = !(await this.storeWritable());
    const out = unrecordable ? undefined : await this.commits.commit([{ op: 'remove', entry: entryOf(existing) }], [this.delRecord(existing)], this.undoTo([{ previous: existing }]));
    if (out?.result === 'committed') {
      this.afterCommit();
      return { ok: true, deleted: existing };
    }
    if (out?.result === 'unrecorded') return this.unrecorded(out.error);
    // The kernel still has it: so must we.
    if (!this.table.get(key)) this.install(existing);
    return out ? refuse('FIREWALL_FAILED', 'firewall commit failed') : this.storeRefusal();
  }

  /**
   * NAT-PMP delete-all (RFC 6886 §3.4): every mapping of this client and
   * protocol that a client may delete; static ones stay and make the result
   * NOT_AUTHORIZED after the rest are gone.
   */
  async removeAll(req: { via: Via; client: IpAddress; protocol: number }): Promise<{ ok: boolean; deleted: number; kept: number }> {
    const now = this.clock.now();
    const victims: Mapping[] = [];
    let kept = 0;
    for (const m of [...this.table.of(req.client)]) {
      if (m.kind !== 'map' || m.protocol !== req.protocol) continue;
      if (this.mayDelete(m, { ...req, internalAddress: req.client, internalPort: m.internalPort }, now)) kept++;
      else victims.push(m);
    }
    const ok = await this.removeEnded(victims);
    this.log.info({ event: 'remove-all', via: req.via, client: req.client, protocol: req.protocol, deleted: ok ? victims.length : 0, kept });
    return { ok: ok && kept === 0, deleted: ok ? victims.length : 0, kept };
  }

  /**
   * Takes mappings that ended out of table, kernel and store in one commit.
   * If the firewall refuses, they stay, as they do in the kernel; if only the
   * store fails, the kernel change is undone. Returns whether it committed.
   */
  private async removeEnded(victims: readonly Mapping[]): Promise<boolean> {
    for (const m of victims) this.uninstall(m);
    const unrecordable = victims.length > 0 && !(await this.storeWritable());
    const out = unrecordable
      ? undefined
      : await this.commits.commit(
          victims.map((m) => ({ op: 'remove', entry: entryOf(m) })),
          victims.map((m) => this.delRecord(m)),
          this.undoTo(victims.map((m) => ({ previous: m }))),
        );
    const ok = out?.result === 'committed';
    if (out?.result === 'unrecorded') this.storeWriteFailed(out.error, 'the kernel change was undone');
    // Refused: the kernel still has them, so must we (an undo already put back what it could).
    else if (!ok) for (const m of victims) if (!this.table.get(keyOf(m))) this.install(m);
    return ok;
  }

  /** Takes the DHCP server's leases into account from now on (undefined: no more). */
  useLeases(view: LeaseView | undefined): void {
    this.leases = view;
  }

  /**
   * RFC 6887 §15: the mappings of a host whose DHCP lease ended are
   * discarded. Revokes the mappings of every mapped address whose lease has
   * ended, and of each `lost` address (its lease left the lease file) that
   * has no lease now. Static forwards are the admin's and stay. Cheap enough
   * to run every few seconds: one lookup per mapped address.
   */
  async revokeEndedLeases(lost: readonly IpAddress[] = []): Promise<Mapping[]> {
    const view = this.leases;
    if (!view) return [];
    const wall = this.clock.wall();
    const ended = new Set<IpAddress>();
    for (const a of this.table.addresses()) {
      const end = view.leaseEnd(a);
      if (end !== undefined && end <= wall) ended.add(a);
    }
    // Lost leases are remembered until their mappings are gone: the file
    // reports a loss once.
    for (const a of lost) this.leasesLost.add(a);
    for (const a of this.leasesLost) if (view.leaseEnd(a) === undefined) ended.add(a);
    this.leasesLost.clear();
    const victims = [...ended].flatMap((a) => [...this.table.of(a)]).filter((m) => m.origin !== 'static');
    if (victims.length === 0) return [];
    if (!(await this.removeEnded(victims))) {
      for (const m of victims) this.leasesLost.add(m.internalAddress);
      this.log.error({ event: 'lease-revoke-failed', mappings: victims.length, detail: 'tried again at the next check' });
      return [];
    }
    for (const m of victims) {
      this.log.warn({ event: 'mapping-revoked', via: m.origin, internal: m.internalAddress, protocol: m.protocol, internalPort: m.internalPort, externalPort: m.externalPort, reason: 'DHCP lease ended' });
    }
    return victims;
  }

  /** Whole seconds left on an address's DHCP lease; undefined: no lease known (no cap). */
  private leaseLeft(address: IpAddress): number | undefined {
    const end = this.leases?.leaseEnd(address);
    if (end === undefined) return undefined;
    return end === Number.POSITIVE_INFINITY ? Number.POSITIVE_INFINITY : Math.floor((end - this.clock.wall()) / 1000);
  }

  /**
   * Runs `fn` with the firewall entries the table says must exist (and their
   * remaining seconds), while no commit is in flight: reconciliation compares
   * the kernel with this, and nothing moves under it.
   */
  withDesiredEntries<T>(fn: (desired: { entry: FirewallEntry; timeoutSeconds: number }[]) => Promise<T>): Promise<T> {
    return this.commits.exclusive(() => {
      const now = this.clock.now();
      const desired = [...this.table.values()]
        .filter((m) => m.origin !== 'static' && m.expiresAt > now)
        .map((m) => ({ entry: entryOf(m), timeoutSeconds: remaining(m, now) }));
      return fn(desired);
    });
  }

  /** Inbound packets a mapping has admitted, where the firewall counts them. */
  packets(m: Mapping): Promise<number | undefined> {
    return this.firewall.packets?.(entryOf(m)) ?? Promise.resolve(undefined);
  }

  /** Seconds left on a mapping. */
  remaining(m: Mapping): number {
    return m.origin === 'static' ? STATIC_LIFETIME : remaining(m, this.clock.now());
  }

  // --- the shared rules -------------------------------------------------

  private admit(
    req: MapRequest | PeerRequest,
    operation: 'map' | 'peer',
    filters: readonly RemoteFilter[],
  ): ({ ok: true; limits: Limits; family: 4 | 6; externalAddress: IpAddress }) | Refused {
    if (!isMappableProtocol(req.protocol) && req.protocol !== 0) {
      return refuse('UNSUPP_PROTOCOL', `protocol ${req.protocol}: this router maps only UDP and TCP`);
    }
    const family = familyOf(req.internalAddress);
    // A mapping points into the LAN, never at the router itself (which would
    // expose the router's own services to the WAN).
    if (this.network.isRouterAddress(req.internalAddress)) {
      return refuse('NOT_AUTHORIZED', `${req.internalAddress} is the router's own address`);
    }
    if (req.internalAddress !== req.client && (familyOf(req.client) !== family || !this.network.isLanHost(req.internalAddress))) {
      return refuse('NOT_AUTHORIZED', `${req.internalAddress} is not a LAN host`);
    }
    if (isUnspecified(req.internalAddress) || isMulticast(req.internalAddress) || (family === 6 && isLinkLocal(req.internalAddress))) {
      return refuse('NOT_AUTHORIZED', `no inbound mapping can reach ${req.internalAddress}`);
    }
    const insists = 'preferFailure' in req && req.preferFailure === true && req.suggestedExternalPort !== 0;
    const asked: PolicyRequest = {
      via: req.via,
      operation,
      client: req.client,
      internalAddress: req.internalAddress,
      protocol: req.protocol,
      internalPort: req.internalPort,
      requiredExternalPort: insists ? req.suggestedExternalPort : undefined,
      filters,
      interface: this.network.interfaceOf?.(req.client),
    };
    const verdict = this.policy.decide(asked);
    if (!verdict.allow) {
      // §13.1: a request the client could make for itself is refused only
      // for being on another's behalf: that is UNSUPP_OPTION on the PCP wire.
      const thirdPartyOnly =
        req.internalAddress !== req.client &&
        (verdict.reason === THIRD_PARTY_REASON || this.policy.decide({ ...asked, internalAddress: req.client }).allow);
      return refuse(thirdPartyOnly ? 'THIRD_PARTY_NOT_ALLOWED' : 'NOT_AUTHORIZED', `policy rule ${verdict.rule}: ${verdict.reason}`);
    }
    if (!this.policy.takeToken(verdict, req.client, this.hostOf(req.client))) {
      return refuse('RATE_LIMITED', `policy rule ${verdict.rule}: over ${verdict.limits.requestsPerSecond} requests/s`);
    }
    const leaseLeft = this.leaseLeft(req.internalAddress);
    if (leaseLeft !== undefined && leaseLeft < 1) {
      // §15: a host whose lease ended has no mappings. A short error: it may
      // renew its lease at any moment.
      return { ...refuse('NOT_AUTHORIZED', `the DHCP lease of ${req.internalAddress} has ended`), lifetime: SHORT_ERROR_SECONDS };
    }
    let externalAddress: IpAddress;
    if (family === 4) {
      const ext = this.network.externalIPv4();
      if (!ext) return refuse('NETWORK_FAILURE', 'the WAN has no IPv4 address');
      externalAddress = ext;
    } else {
      // A pinhole: the firewall translates nothing (RFC 6887 §11.1).
      externalAddress = req.internalAddress;
    }
    return { ok: true, limits: verdict.limits, family, externalAddress };
  }

  /**
   * Why `internalAddress` may not have one more mapping: its own quota, the
   * same quota summed over its host (one device, many addresses), a full
   * table, or its host's or its interface's share of the table.
   */
  private quotaReached(internalAddress: IpAddress, limits: Limits): Refused | undefined {
    const quota = limits.maxMappingsPerClient;
    if (this.table.countFor(internalAddress) >= quota) return refuse('USER_EX_QUOTA', `${internalAddress} holds ${quota} mappings`);
    const host = this.hostOf(internalAddress);
    const held = this.table.countForHost(internalAddress, host);
    if (host !== internalAddress && held >= quota) return refuse('USER_EX_QUOTA', `${host} holds ${quota} mappings`);
    if (this.table.size >= this.cfg.maxMappings) return refuse('NO_RESOURCES', 'mapping table full');
    const hostCap = Math.ceil(this.cfg.maxMappings * this.cfg.hostShare);
    if (held >= hostCap) return refuse('NO_RESOURCES', `${host} holds its share of the table (${hostCap} mappings)`);
    const iface = this.network.interfaceOf?.(internalAddress);
    const ifaceCap = Math.ceil(this.cfg.maxMappings * this.cfg.interfaceShare);
    if (iface !== undefined && this.table.countForInterface(iface) >= ifaceCap) return refuse('NO_RESOURCES', `interface ${iface} holds its share of the table (${ifaceCap} mappings)`);
    return undefined;
  }

  private grantLifetime(via: Via, requested: number, limits: Limits, internalAddress: IpAddress): number {
    const max = Math.min(this.cfg.maxLifetime, limits.maxLifetime);
    // RFC 6886 §3.3: NAT-PMP "SHOULD NOT offer a lease lifetime greater than
    // that requested"; PCP (§15) clamps into [min, max] both ways.
    const min = via === 'natpmp' ? 1 : this.cfg.minLifetime;
    const clamped = Math.max(Math.min(requested, max), Math.min(min, max));
    // §15: no mapping outlives its host's DHCP lease, even below the minimum
    // (admit() refused a host whose lease has ended).
    return Math.min(clamped, this.leaseLeft(internalAddress) ?? Number.POSITIVE_INFINITY);
  }

  private applyFilterSteps(current: readonly RemoteFilter[], steps: readonly FilterStep[] | undefined): RemoteFilter[] {
    // §13.3: new FILTERs add to the existing ones; prefix length 0 clears them.
    let out = [...current];
    for (const s of steps ?? []) {
      if (s === 'clear') out = [];
      else if (!out.some((f) => sameFilter(f, s))) out.push(s);
    }
    return out;
  }

  private clipDescription(text: string): string {
    // Control characters end up in logs and state; strip them, then cut on a
    // character boundary to the stored maximum (RFC 7220 §3 allows truncation).
    // eslint-disable-next-line no-control-regex
    let s = text.replace(/[\u0000-\u001f\u007f]/g, '');
    while (Buffer.byteLength(s, 'utf8') > this.cfg.maxDescriptionBytes) s = s.slice(0, -1);
    return s;
  }

  private portAvailable(protocol: number, port: number, who: Claimant, limits: Limits): boolean {
    if (!inRanges(limits.externalPorts, port)) return false;
    if (protocol === IPPROTO_UDP && RESERVED_UDP_PORTS.has(port)) return false;
    if (!this.table.isExternalPortFree(protocol, port)) return false;
    const held = this.table.heldBack(protocol, port, this.clock.now());
    if (held && !mayReclaim(held, who)) return false;
    // RFC 6886 §3.3: the companion port (same number, other protocol) stays
    // reserved for the client that holds this one.
    const companion = this.table.holderOfExternalPort(protocol === IPPROTO_TCP ? IPPROTO_UDP : IPPROTO_TCP, port);
    return !companion || companion.internal.startsWith(`${who.internalAddress}|`) || companion.internal === who.internal;
  }

  private chooseExternalPort(
    req: { via: Via; protocol: number; internalPort: number; suggestedExternalPort: number; preferFailure?: boolean; internalAddress: IpAddress; nonce?: Buffer },
    family: 4 | 6,
    internal: string,
    limits: Limits,
  ): { ok: true; port: number } | Refused {
    if (family === 6) {
      // A firewall cannot move a port: the external port is the internal one.
      if (req.preferFailure && req.suggestedExternalPort !== 0 && req.suggestedExternalPort !== req.internalPort) {
        return refuse('CANNOT_PROVIDE_EXTERNAL', 'an IPv6 pinhole cannot translate ports');
      }
      return { ok: true, port: req.internalPort };
    }
    // Another mapping (a PEER) of the same internal endpoint already holds an
    // external port: endpoint-independent mapping reuses it.
    const bound = this.table.bindingFor(internal);
    if (bound) {
      if (req.preferFailure && req.suggestedExternalPort !== bound.externalPort) {
        return refuse('CANNOT_PROVIDE_EXTERNAL', `this endpoint is bound to external port ${bound.externalPort}`);
      }
      return { ok: true, port: bound.externalPort };
    }
    const who: Claimant = { via: req.via, internal, internalAddress: req.internalAddress, nonce: req.nonce };
    const avail = (p: number) => this.portAvailable(req.protocol, p, who, limits);
    if (!limits.externalPortMayDiffer) {
      // Policy pins the external port to the internal one.
      if (req.preferFailure && req.suggestedExternalPort !== req.internalPort) {
        return refuse('CANNOT_PROVIDE_EXTERNAL', 'policy requires the external port to equal the internal port');
      }
      return avail(req.internalPort) ? { ok: true, port: req.internalPort } : refuse('CANNOT_PROVIDE_EXTERNAL', `external port ${req.internalPort} is taken`);
    }
    if (req.suggestedExternalPort !== 0 && avail(req.suggestedExternalPort)) return { ok: true, port: req.suggestedExternalPort };
    // §15: a client that comes back within the reuse time gets the port it
    // had, as if its mapping had never ended.
    const reclaim = this.table.heldFor(internal, this.clock.now());
    if (reclaim && !req.preferFailure && avail(reclaim.externalPort)) return { ok: true, port: reclaim.externalPort };
    if (req.preferFailure) {
      return refuse('CANNOT_PROVIDE_EXTERNAL', `external port ${req.suggestedExternalPort} is taken or not allowed`);
    }
    if (avail(req.internalPort)) return { ok: true, port: req.internalPort };
    // The ranges are numbered end to end, so a gap between two is never drawn.
    const ranges = limits.externalPorts;
    const span = rangesSize(ranges);
    // Random probes find a free port at once unless the ranges are nearly
    // full; then one bounded sweep decides.
    for (let i = 0; i < 32 && span > 0; i++) {
      const p = nthPort(ranges, Math.floor(Math.random() * span));
      if (avail(p)) return { ok: true, port: p };
    }
    const start = Math.floor(Math.random() * span);
    for (let i = 0; i < span; i++) {
      const p = nthPort(ranges, (start + i) % span);
      if (avail(p)) return { ok: true, port: p };
    }
    return refuse('NO_RESOURCES', 'no free external port');
  }

  private mayDelete(m: Mapping, req: RemoveRequest, now: number): Refused | undefined {
    if (m.origin === 'static') return refuse('NOT_AUTHORIZED', 'a static mapping cannot be deleted by a client');
    if (m.internalAddress !== req.client && m.client !== req.client) {
      return refuse('NOT_AUTHORIZED', `${req.client} does not own this mapping`);
    }
    if (m.nonce && req.nonce && !m.nonce.equals(req.nonce)) {
      return { ...refuse('NOT_AUTHORIZED', 'nonce does not match the existing mapping'), lifetime: remaining(m, now) };
    }
    return undefined;
  }

  private install(m: Mapping): void {
    const internal = internalEndpoint(m.internalAddress, m.protocol, m.internalPort);
    if (m.family === 4) this.table.acquireBinding(internal, m.protocol, m.externalPort);
    this.table.put(m);
    this.armExpiry();
  }

  /**
   * Takes a mapping out of the table. One that ended (deleted, expired,
   * revoked) leaves its external port held back for its endpoint for the
   * reuse time (§15); a reservation rolled back (`ended` false) was never
   * anyone's, and frees it at once.
   */
  private uninstall(m: Mapping, ended = true): void {
    if (!this.table.remove(keyOf(m))) return;
    if (m.family !== 4) return;
    const now = this.clock.now();
    const hold = ended && m.origin !== 'static' ? { nonce: m.nonce, origin: m.origin, now, until: now + this.cfg.portReuseSeconds * 1000 } : undefined;
    this.table.releaseBinding(internalEndpoint(m.internalAddress, m.protocol, m.internalPort), m.protocol, hold);
  }

  private async commitReplace(existing: Mapping | undefined, mapping: Mapping, changes: FirewallChange[], lifetime: number): Promise<MapOutcome> {
    if (existing) {
      this.table.put(mapping);
      this.armExpiry();
    } else {
      this.install(mapping);
    }
    // The reservation above is held while a store that failed is probed.
    if (!(await this.storeWritable())) {
      this.rollBack(mapping, existing);
      return this.storeRefusal();
    }
    const out = await this.commits.commit(changes, [this.putRecord(mapping)], this.undoTo([{ mine: mapping, previous: existing }]));
    if (out.result === 'committed') {
      this.afterCommit();
      return { ok: true, mapping, lifetime };
    }
    // Unrecorded: the undo has already put table and kernel back.
    if (out.result === 'unrecorded') return this.unrecorded(out.error);
    this.rollBack(mapping, existing);
    return refuse('FIREWALL_FAILED', 'firewall commit failed');
  }

  /** Puts `previous` back in the table in place of `mine`, unless something newer replaced `mine` meanwhile. */
  private rollBack(mine: Mapping, previous: Mapping | undefined): void {
    if (this.table.get(keyOf(mine)) !== mine) return;
    if (previous) this.table.put(previous);
    else this.uninstall(mine, false);
  }

  /**
   * The undo of a change the kernel took but the journal did not record:
   * kernel and table go back to `previous` (what the journal still holds), in
   * place of `mine` (undefined for a deletion). A renewal goes back to its old
   * lifetime too, rather than keep one no record backs: the client was told
   * it failed and renews again, and a crash meanwhile would restore the old
   * one anyway. A key that a newer change took meanwhile is left to that
   * change. If the firewall refuses the undo, the table keeps `mine`, as the
   * kernel does: it expires on its own, and a restart's reconciliation drops
   * it from the kernel, since the store never had it.
   */
  private undoTo(items: readonly { mine?: Mapping; previous?: Mapping }[]): Undo {
    return async (apply) => {
      const now = this.clock.now();
      const due = items
        .filter((i) => this.table.get(keyOf((i.mine ?? i.previous) as Mapping)) === i.mine)
        .map((i) => ({ mine: i.mine, back: i.previous && i.previous.expiresAt > now ? i.previous : undefined }));
      const changes: FirewallChange[] = [];
      for (const { mine, back } of due) {
        if (mine && (!back || !sameEntry(entryOf(mine), entryOf(back)))) changes.push({ op: 'remove', entry: entryOf(mine) });
        if (back) changes.push({ op: 'put', entry: entryOf(back), timeoutSeconds: remaining(back, now) });
      }
      if (!(await apply(changes))) {
        this.log.error({ event: 'store-undo-failed', mappings: due.length, detail: 'the firewall refused to undo changes the store could not record; the table keeps what the kernel holds' });
        return;
      }
      for (const { mine, back } of due) {
        if (mine) this.rollBack(mine, back);
        else if (back && !this.table.get(keyOf(back))) this.install(back);
      }
    };
  }

  private armExpiry(): void {
    const next = this.table.nextExpiry();
    if (next === undefined || next >= this.expiryAt || this.stopped) return;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryAt = next;
    this.expiryTimer = setTimeout(() => this.expireDue(), Math.max(0, next - this.clock.now()) + 5);
    this.expiryTimer.unref();
  }

  /** Drops mappings whose lifetime ended; the kernel expires their entries by itself. */
  expireDue(): void {
    this.expiryTimer = undefined;
    this.expiryAt = Number.POSITIVE_INFINITY;
    const now = this.clock.now();
    for (const m of [...this.table.dueBy(now)]) {
      this.uninstall(m);
      this.log.info({ event: 'expired', via: m.origin, internal: `${m.internalAddress}`, protocol: m.protocol, internalPort: m.internalPort, externalPort: m.externalPort });
    }
    this.armExpiry();
  }

  private logDecision(op: string, req: { via: Via; client: IpAddress; internalAddress?: IpAddress; protocol: number; internalPort?: number }, out: MapOutcome | RemoveOutcome): void {
    const base = { event: op, via: req.via, client: req.client, internal: req.internalAddress, protocol: req.protocol, internalPort: req.internalPort };
    if (!out.ok) this.log.info({ ...base, verdict: 'refused', refusal: out.refusal, detail: out.detail });
    else if ('mapping' in out) {
      this.log.info({ ...base, verdict: 'granted', externalAddress: out.mapping.externalAddress, externalPort: out.mapping.externalPort, lifetime: out.lifetime, filters: out.mapping.filters.length });
    } else this.log.info({ ...base, verdict: 'deleted', existed: out.deleted !== undefined });
  }
}


/** Who asks for an external port: its internal endpoint and how it proves it is the same client. */
interface Claimant {
  via: Via;
  /** internalEndpoint(address, protocol, port) */
  internal: string;
  internalAddress: IpAddress;
  nonce?: Buffer;
}

/**
 * §15: the client whose mapping freed a port may have it back during the
 * reuse time: the same internal address, protocol and port, and the same
 * nonce where both have one (the test renewals and deletes apply, so a host
 * that could have renewed the mapping may reclaim its port). UPnP names a
 * mapping by external port and internal client, and moves a client's own
 * mapping to another internal port by asking for the same external port
 * (igd.ts): for a port a UPnP mapping freed, the same internal client is the
 * same client.
 */
function mayReclaim(held: FreedPort, who: Claimant): boolean {
  if (held.origin === 'upnp' && who.via === 'upnp' && held.internal.startsWith(`${who.internalAddress}|`)) return true;
  return held.internal === who.internal && !(held.nonce && who.nonce && !held.nonce.equals(who.nonce));
}


export function entryOf(m: Mapping): FirewallEntry {
  return {
    family: m.family,
    protocol: m.protocol,
    externalAddress: m.externalAddress,
    externalPort: m.externalPort,
    internalAddress: m.internalAddress,
    internalPort: m.internalPort,
    filters: m.filters,
  };
}

function sameEntry(a: FirewallEntry, b: FirewallEntry): boolean {
  return (
    a.externalAddress === b.externalAddress &&
    a.externalPort === b.externalPort &&
    sameFilters(a.filters, b.filters)
  );
}

function entryKeyOfFilters(m: Mapping): string {
  return m.filters.map((f) => `${f.prefix.address}/${f.prefix.length}`).join(',');
}
