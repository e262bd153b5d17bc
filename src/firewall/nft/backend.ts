// The real firewall: nftables through its JSON API. See ruleset.ts for the
// objects; this file owns their lifecycle, batches and reconciliation.

import type { Logger } from '../../log.js';
import { type DesiredEntry, type FirewallBackend, type FirewallChange, type FirewallEntry, type Reconciled, type ReconcileOptions } from '../backend.js';
import { nftRunner, type NftCommand, type NftRunner } from './run.js';
import { ALL_PORTS, SET, elementConcats, elementKey, elementsOf, guardRuleCount, inputChain, inputRuleLines, isMap, objectName, ownedNames, setFor, ruleLines, setupScript, staticRules, STATIC_CHAINS, type Placement, type PortRun, type SetKey, type Topology, type UpstreamSource } from './ruleset.js';
import { OutboundElements, flowsOf, largestFreeRun, outboundElementsOf, type ElementOp, type Staged } from './outbound.js';
import { ConntrackFlusher } from '../conntrack.js';
import { closedStatics, endedFlows } from '../ended-flows.js';
import { packetCounts, packetsOf } from './counters.js';
import type { StaticOpening } from '../../domain/mapping.js';

export class NftSetupError extends Error {}

/** A sentinel element without timeout in each set: if it is gone, someone flushed the set. */
const CANARY: Record<SetKey, unknown> = {
  pinholes6: { elem: { val: { concat: ['::', 0, 0] } } },
  pinholes6Filtered: { elem: { val: { concat: ['::', 0, 0, '::', 0] } } },
  dnat4: [{ elem: { val: { concat: ['0.0.0.0', 0, 0] } } }, { concat: ['0.0.0.0', 0] }],
  dnat4Filtered: [{ elem: { val: { concat: ['0.0.0.0', 0, 0, '0.0.0.0', 0] } } }, { concat: ['0.0.0.0', 0] }],
  snat4: [{ elem: { val: { concat: ['0.0.0.0', 0, 0] } } }, { concat: ['0.0.0.0', 0] }],
  // No flow has source port 0.
  held4: { elem: { val: { concat: [0, 0] } } },
  admit4: { elem: { val: { concat: ['0.0.0.0', 0, 0] } } },
  admit4Filtered: { elem: { val: { concat: ['0.0.0.0', 0, 0, '0.0.0.0', 0] } } },
};

/** How long after an outbound element's end the sweep runs (the kernel's expiry comes first). */
const SWEEP_LAG_MS = 500;

/** A removal that cannot fail on an element the kernel already expired: add (1 s) then delete, atomically. */
const VANISH_TIMEOUT = 1;

export class NftBackend implements FirewallBackend {
  readonly name = 'nft';
  /** Whether re-adding an element updates its timeout on this kernel (probed at start). */
  renewInPlace = true;
  private readonly runner: NftRunner;
  batches = 0;
  private statics: readonly StaticOpening[] = [];
  private started = false;
  /** The SNAT and held-port elements, shared by the entries of one endpoint (outbound.ts). */
  private readonly outbound = new OutboundElements();
  /** Where held_nat masquerades flows from held source ports (ports nobody holds). */
  remap: PortRun = ALL_PORTS;
  readonly conntrack: ConntrackFlusher;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepAt = Number.POSITIVE_INFINITY;

  constructor(
    readonly placement: Placement,
    private topology: Topology,
    private readonly log: Logger,
    runner?: NftRunner,
    conntrack?: ConntrackFlusher,
  ) {
    this.runner = runner ?? nftRunner();
    this.conntrack = conntrack ?? new ConntrackFlusher(log);
  }

  /** false: a DS-Lite B4 — IPv4 entries are admitted in @admit4, with no DNAT, SNAT or held port here. */
  private get nat44(): boolean {
    return this.topology.nat44 !== false;
  }

  /** The changes whose entries translate IPv4 here (their SNAT and held-port elements): none without NAT44. */
  private translated<T>(items: readonly T[]): readonly T[] {
    return this.nat44 ? items : [];
  }

  /** Each set's reference, made once: every put names its set, and callers copy it (spread) into their commands. */
  private readonly refs = new Map<SetKey, Readonly<{ family: Placement['family']; table: string; name: string }>>();

  private ref(key: SetKey) {
    let r = this.refs.get(key);
    if (!r) {
      r = Object.freeze({ family: this.placement.family, table: this.placement.table, name: objectName(this.placement, SET[key]) });
      this.refs.set(key, r);
    }
    return r;
  }

  async start(): Promise<void> {
    const p = this.placement;
    const where = `table ${p.family} ${p.table}`;
    const tables = await this.runner.list(['list', 'tables']);
    if (!tables.ok) throw new NftSetupError(explain(tables.error));
    // Which way flows are forgotten (netlink or the tool) is chosen and logged
    // now, not at the first change; and only after the first nft call chose the
    // nft path: koffi takes its settings (libnftables.ts' stack size) only
    // before it loads its first library, which ctnetlink's libc would be.
    void this.conntrack.prepare();
    const exists = tables.items.some((i) => {
      const t = i.table as { family?: string; name?: string } | undefined;
      return t?.family === p.family && t.name === p.table;
    });
    if (p.embedded && !exists) {
      throw new NftSetupError(`${where} does not exist: embedded mode adds portcullis' chains and sets to an existing table (e.g. inet fw4)`);
    }
    if (!p.embedded && exists) await this.checkOwnership(where);
    await this.setup(where);
    this.started = true;
    this.renewInPlace = await this.probeRenewal();
    this.log.info({ event: 'nft-ready', table: where, embedded: p.embedded, path: this.runner.kind, renewal: this.renewInPlace ? 'in place' : 'delete+add' });
  }

  private async setup(where: string): Promise<void> {
    // An older table without the SNAT map, held set and NAT chains gains them
    // here: `add` creates what is missing and leaves the rest.
    let objects = await this.runner.script(setupScript(this.placement, this.topology, this.remap));
    if (!objects.ok && /File exists/.test(objects.stderr)) {
      // A set of ours exists with another definition (an older portcullis,
      // before pinholes counted packets). Sets cannot be altered in place.
      if (this.placement.embedded) {
        throw new NftSetupError(`${where} holds portcullis sets of an older layout: delete the portcullis_* sets and chains in it (they are recreated and refilled from the state directory)`);
      }
      this.log.warn({ event: 'nft-layout-upgrade', table: where, detail: 'recreating our table; its entries are reinstalled from the state directory' });
      await this.runner.script(`delete table ${this.placement.family} ${this.placement.table}\n`);
      objects = await this.runner.script(setupScript(this.placement, this.topology, this.remap));
    }
    const canaries = objects.ok ? await this.runner.batch(this.canaryCommands('add')) : objects;
    if (!canaries.ok) throw new NftSetupError(`could not create portcullis' objects in ${where}: ${explain(canaries.spawnError ?? canaries.stderr)}`);
    await this.applyStatics();
  }

  /**
   * The admin's static openings. Before start this only records them (start
   * installs them); afterwards the kernel's static rules are diffed against
   * them in one transaction: an unchanged opening is never touched, so it is
   * never closed, not even for an instant. The flows through an opening that
   * went are forgotten (ended-flows.ts): the admin closed it.
   */
  async setStatics(statics: readonly StaticOpening[]): Promise<{ added: number; removed: number; kept: number }> {
    const before = this.statics;
    this.statics = statics;
    const applied = this.started ? await this.applyStatics() : { added: 0, removed: 0, kept: 0 };
    const closed = closedStatics(this.started ? before : statics, statics);
    if (closed.unbounded.length) this.log.info({ event: 'conntrack-statics-unbounded', statics: closed.unbounded.slice(0, 8), detail: 'flows through these pinholes (a prefix, a pattern or many ports) end on their own' });
    this.conntrack.end(closed.selectors);
    return applied;
  }

  private async applyStatics(): Promise<{ added: number; removed: number; kept: number }> {
    const p = this.placement;
    const want = staticRules(p, this.topology, this.statics);
    const have: { chain: string; handle: number; comment?: string }[] = [];
    for (const c of STATIC_CHAINS) {
      const listing = await this.runner.list(['-a', 'list', 'chain', p.family, p.table, objectName(p, c)]);
      if (!listing.ok) throw new NftSetupError(`cannot list ${objectName(p, c)}: ${listing.error}`);
      for (const i of listing.items) {
        const r = i.rule as { chain: string; handle: number; comment?: string } | undefined;
        if (r) have.push(r);
      }
    }
    const lines: string[] = [];
    let kept = 0;
    const present = new Set<string>();
    for (const r of have) {
      if (r.comment !== undefined && want.get(r.comment)?.chain === r.chain && !present.has(r.comment)) {
        present.add(r.comment);
        kept++;
      } else {
        lines.push(`delete rule ${p.family} ${p.table} ${r.chain} handle ${r.handle}`);
      }
    }
    let added = 0;
    for (const [id, w] of want) {
      if (present.has(id)) continue;
      lines.push(`add rule ${p.family} ${p.table} ${w.chain} ${w.rule}`);
      added++;
    }
    if (lines.length) {
      const r = await this.runner.script(lines.join('\n') + '\n');
      if (!r.ok) throw new NftSetupError(`could not install static openings: ${explain(r.spawnError ?? r.stderr)}`);
    }
    const removed = lines.length - added;
    if (added || removed) this.log.info({ event: 'nft-statics', added, removed, kept });
    await this.moveRemap(true);
    return { added, removed, kept };
  }

  /** Own-table mode refuses a table of that name holding anything portcullis did not create. */
  private async checkOwnership(where: string): Promise<void> {
    const listing = await this.terseTable();
    if (!listing.ok) throw new NftSetupError(`cannot read ${where}: ${listing.error}`);
    const owned = ownedNames(this.placement);
    const foreign: string[] = [];
    for (const item of listing.items) {
      const set = (item.set ?? item.map) as { name: string } | undefined;
      const chain = item.chain as { name: string } | undefined;
      if (set && !owned.sets.includes(set.name)) foreign.push(`set ${set.name}`);
      if (chain && !owned.chains.includes(chain.name)) foreign.push(`chain ${chain.name}`);
      for (const kind of ['counter', 'quota', 'limit', 'ct helper', 'flowtable', 'secmark', 'synproxy']) {
        if (item[kind]) foreign.push(kind);
      }
    }
    if (foreign.length) {
      throw new NftSetupError(
        `${where} exists and holds objects portcullis did not create (${foreign.slice(0, 5).join(', ')}): ` +
          'give another table name (--nft-table) or embed into it (--nft-embed)',
      );
    }
  }

  /**
   * Our table's objects and rules without set elements. `nft -t list ruleset`
   * takes milliseconds at any size, while `nft -t list table` (nft 1.0.6)
   * still fetches every element: a second per 100 000.
   */
  private async terseTable(): Promise<{ ok: true; items: Record<string, unknown>[] } | { ok: false; error: string }> {
    const r = await this.runner.list(['-t', 'list', 'ruleset']);
    if (!r.ok) return r;
    const ours = (o: unknown) => {
      const x = o as { family?: string; table?: string; name?: string } | undefined;
      return x?.family === this.placement.family && (x.table ?? x.name) === this.placement.table;
    };
    return { ok: true, items: r.items.filter((i) => Object.values(i).some(ours)) };
  }

  /** Does `add element` on an existing element replace its timeout on this kernel? */
  private async probeRenewal(): Promise<boolean> {
    const probe = { elem: { val: { concat: ['::', 0, 1] }, timeout: 60 } };
    const again = { elem: { val: { concat: ['::', 0, 1] }, timeout: 3600 } };
    const set = this.ref('pinholes6');
    await this.runner.batch([{ add: { element: { ...set, elem: [probe] } } }, { add: { element: { ...set, elem: [again] } } }]);
    const listing = await this.runner.list(['list', 'set', set.family, set.table, set.name]);
    await this.runner.batch(this.vanish('pinholes6', [{ elem: { val: { concat: ['::', 0, 1] } } }]));
    if (!listing.ok) return false;
    const s = listing.items.find((i) => i.set)?.set as { elem?: { elem?: { val: { concat: unknown[] }; timeout?: number } }[] } | undefined;
    const found = s?.elem?.find((e) => {
      const c = normalizeListed('pinholes6', e.elem?.val.concat ?? []);
      return c[0] === '::' && c[1] === 0 && c[2] === 1;
    });
    return (found?.elem?.timeout ?? 0) > 60;
  }

  private canaryCommands(op: 'add' | 'delete'): NftCommand[] {
    return (Object.keys(SET) as SetKey[]).map((k) => ({ [op]: { element: { ...this.ref(k), elem: [CANARY[k]] } } }));
  }

  /** Commands that remove elements whether or not the kernel still has them. */
  private vanish(set: SetKey, elems: unknown[]): NftCommand[] {
    const withTimeout = elems.map((e) => withElemTimeout(e, VANISH_TIMEOUT));
    const bare = elems.map((e) => withElemTimeout(e, undefined));
    return [{ add: { element: { ...this.ref(set), elem: withTimeout } } }, { delete: { element: { ...this.ref(set), elem: bare } } }];
  }

  /**
   * Puts a change's commands on `cmds`. Consecutive puts into one set share
   * one `add element` command (the same transaction either way; a re-added
   * element, even twice in one command, only gets the later timeout): a
   * batch of 2 048 pinholes is one command, not 2 048 each naming the set.
   */
  private pushCommands(cmds: NftCommand[], c: FirewallChange): void {
    const set = setFor(c.entry, this.nat44);
    if (c.op === 'remove') {
      cmds.push(...this.vanish(set, elementsOf(c.entry, undefined, this.nat44)));
      return;
    }
    if (!this.renewInPlace) cmds.push(...this.vanish(set, elementsOf(c.entry, undefined, this.nat44)));
    this.pushAdd(cmds, set, elementsOf(c.entry, c.timeoutSeconds, this.nat44));
  }

  private pushOutbound(cmds: NftCommand[], ops: readonly ElementOp[]): void {
    for (const o of ops) {
      if (o.op === 'vanish') {
        cmds.push(...this.vanish(o.set, [o.elem]));
        continue;
      }
      if (!this.renewInPlace) cmds.push(...this.vanish(o.set, [withElemTimeout(o.elem, undefined)]));
      this.pushAdd(cmds, o.set, [o.elem]);
    }
  }

  private pushAdd(cmds: NftCommand[], set: SetKey, elems: readonly unknown[]): void {
    const ref = this.ref(set);
    const last = (cmds[cmds.length - 1] as { add?: { element?: { name: string; elem: unknown[] } } } | undefined)?.add?.element;
    if (last?.name === ref.name && last.elem) last.elem.push(...elems);
    else cmds.push({ add: { element: { ...ref, elem: [...elems] } } });
  }

  /** A batch of changes with their shared SNAT/held elements; the holdings follow only if the kernel took it. */
  private async applyStaged(changes: readonly FirewallChange[]): Promise<Staged | undefined> {
    const staged = this.outbound.stage(this.translated(changes));
    const cmds: NftCommand[] = [];
    for (const c of changes) this.pushCommands(cmds, c);
    this.pushOutbound(cmds, staged.ops);
    const r = await this.runner.batch(cmds);
    if (!r.ok) {
      staged.rollback();
      if (changes.length > 1) this.log.warn({ event: 'nft-batch-failed', changes: changes.length, error: (r.spawnError ?? r.stderr).trim().slice(0, 500) });
      return undefined;
    }
    staged.commit();
    return staged;
  }

  async apply(batch: readonly FirewallChange[]): Promise<boolean[]> {
    this.batches++;
    const whole = await this.applyStaged(batch);
    const done: Staged[] = [];
    let results: boolean[];
    if (whole) {
      done.push(whole);
      results = batch.map(() => true);
    } else {
      // One bad change must not sink the others: retry each alone.
      results = [];
      for (const c of batch) {
        const one = batch.length > 1 ? await this.applyStaged([c]) : undefined;
        if (one) done.push(one);
        results.push(one !== undefined);
      }
    }
    if (done.some((d) => d.newlyHeld.some((p) => p >= this.remap.min && p <= this.remap.max))) await this.moveRemap(false);
    this.conntrack.flush(done.flatMap((d) => flowsOf(d.moved)));
    this.conntrack.end(endedFlows(batch, results));
    this.armSweep();
    return results;
  }

  /**
   * Wakes when the first outbound holder's time is up, a little after the
   * kernel expired its element (a flow re-translated before that would get
   * the old port again).
   */
  private armSweep(): void {
    const at = this.outbound.earliestEnd + SWEEP_LAG_MS;
    if (at >= this.sweepAt || !Number.isFinite(at)) return;
    if (this.sweepTimer) clearTimeout(this.sweepTimer);
    this.sweepAt = at;
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = undefined;
      this.sweepAt = Number.POSITIVE_INFINITY;
      this.conntrack.flush(flowsOf(this.outbound.sweep()));
      this.armSweep();
    }, Math.max(0, at - performance.now()));
    this.sweepTimer.unref();
  }

  /**
   * Keeps held_nat's port run clear of every held port (mappings' and static
   * forwards'). Rewritten only when a newly held port falls into it, which
   * the largest free run makes rare.
   */
  private async moveRemap(onlyIfHit: boolean): Promise<void> {
    const held = [...this.outbound.heldPorts(), ...staticPorts(this.statics)];
    if (onlyIfHit && !held.some((p) => p >= this.remap.min && p <= this.remap.max)) return;
    const next = largestFreeRun(held);
    if (next.min === this.remap.min && next.max === this.remap.max) return;
    const chain = objectName(this.placement, 'held_nat');
    const at = `${this.placement.family} ${this.placement.table}`;
    const rule = ruleLines(this.placement, this.topology, next).find((l) => l.startsWith(`${chain} `))!;
    const r = await this.runner.script(`flush chain ${at} ${chain}\nadd rule ${at} ${rule}\n`);
    if (!r.ok) {
      this.log.warn({ event: 'nft-remap-failed', error: (r.spawnError ?? r.stderr).trim().slice(0, 300) });
      return;
    }
    this.remap = next;
    this.log.info({ event: 'nft-remap', min: next.min, max: next.max });
  }

  /**
   * The upstream PCP server's datagrams count only from the WAN (ruleset.ts,
   * upstreamLine). Our input chain's rules are rewritten in one transaction,
   * so the LAN guard never lapses; a later setup (repair) writes it again.
   */
  async guardUpstream(server: UpstreamSource | undefined): Promise<void> {
    this.topology = { ...this.topology, upstream: server };
    if (!this.started) return;
    const at = `${this.placement.family} ${this.placement.table}`;
    const input = inputChain(this.placement);
    const lines = [`flush chain ${at} ${input}`, ...inputRuleLines(this.placement, this.topology).map((r) => `add rule ${at} ${r}`)];
    const r = await this.runner.script(lines.join('\n') + '\n');
    if (!r.ok) throw new NftSetupError(`could not guard the upstream server's address: ${explain(r.spawnError ?? r.stderr)}`);
  }

  async stop(): Promise<void> {
    // Granted entries stay in the kernel and expire on their own.
    if (this.sweepTimer) clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    this.sweepAt = Number.POSITIVE_INFINITY;
  }

  /** Packets an IPv6 pinhole admitted (its set elements' counters); undefined when unknown. */
  packets(entry: FirewallEntry): Promise<number | undefined> {
    return packetsOf(this.runner, (k) => this.ref(k), entry, this.nat44);
  }

  /** Packets of many pinholes, by entryKey: one listing per pinhole set (counters.ts). */
  packetCounts(entries: readonly FirewallEntry[]): Promise<Map<string, number>> {
    return packetCounts(this.runner, (k) => this.ref(k), entries, this.nat44);
  }

  /**
   * Is the arrival-interface guard in force (ruleset.ts, guardLines)? Our
   * input chain and its rules exist, and the packets reach them: in our own
   * table through its hook; embedded, through the admin's jump from a base
   * chain on the input hook. The daemon answers no request while this is
   * false.
   */
  async guard(): Promise<{ ok: boolean; detail: string }> {
    const listing = await this.terseTable();
    if (!listing.ok) return { ok: false, detail: `cannot read the ruleset: ${listing.error}` };
    const input = inputChain(this.placement);
    const chains = listing.items.map((i) => i.chain as { name: string; hook?: string } | undefined).filter((c) => c !== undefined);
    const ours = chains.find((c) => c.name === input);
    if (!ours) return { ok: false, detail: `chain ${input} is missing` };
    const guardRules = listing.items.filter((i) => {
      const r = i.rule as { chain?: string } | undefined;
      return r?.chain === input || r?.chain === objectName(this.placement, 'lan_only');
    }).length;
    if (guardRules !== guardRuleCount(this.topology)) return { ok: false, detail: `the rules of ${input} are not in place` };
    if (!this.placement.embedded) return ours.hook === 'input' ? { ok: true, detail: 'own input hook' } : { ok: false, detail: `${input} is not on the input hook` };
    const inputHooks = new Set(chains.filter((c) => c.hook === 'input').map((c) => c.name));
    const jumped = listing.items.some((i) => {
      const r = i.rule as { chain?: string; expr?: Record<string, { target?: string }>[] } | undefined;
      return r?.chain !== undefined && inputHooks.has(r.chain) && (r.expr ?? []).some((e) => e.jump?.target === input || e.goto?.target === input);
    });
    const where = `${this.placement.family} ${this.placement.table}`;
    return jumped
      ? { ok: true, detail: 'jump from the input hook' }
      : { ok: false, detail: `no rule jumps to ${input} from a base chain on the input hook: add it first in that chain, e.g. \`nft insert rule ${where} input jump ${input}\`` };
  }

  /** Cheap check (no element dump): our chains and sets exist, rules are in place, no set was flushed. */
  async intact(): Promise<boolean> {
    const p = this.placement;
    const listing = await this.terseTable();
    if (!listing.ok) return false;
    const owned = ownedNames(p);
    const sets = new Set(listing.items.map((i) => ((i.set ?? i.map) as { name?: string } | undefined)?.name).filter(Boolean));
    const chains = new Set(listing.items.map((i) => (i.chain as { name?: string } | undefined)?.name).filter(Boolean));
    if (!owned.sets.every((s) => sets.has(s)) || !owned.chains.every((c) => chains.has(c))) return false;
    const expectedRules = ruleLines(p, this.topology, this.remap).length + staticRules(p, this.topology, this.statics).size;
    const rules = listing.items.filter((i) => (i.rule as { chain?: string } | undefined) && owned.chains.includes((i.rule as { chain: string }).chain)).length;
    if (rules !== expectedRules) return false;
    // Deleting the canaries fails the whole (atomic) batch if any is gone;
    // re-adding them in the same batch leaves the sets as they were.
    const probe = await this.runner.batch([...this.canaryCommands('delete'), ...this.canaryCommands('add')]);
    return probe.ok;
  }

  /**
   * Makes the kernel match `desired`: recreates missing objects, adds missing
   * elements with their remaining timeouts, removes elements no mapping owns.
   * Returns what it repaired. With `defer`, missing elements are not added
   * but their entries returned (ReconcileOptions): the outbound holdings are
   * already those of every desired entry, and a put of a deferred entry
   * writes its shared elements again.
   */
  async reconcile(desired: readonly DesiredEntry[], opts: ReconcileOptions = {}): Promise<Reconciled> {
    const recreated = !(await this.intact());
    if (recreated) {
      await this.setup(`table ${this.placement.family} ${this.placement.table}`);
    }
    // What the kernel holds, each marked once a desired entry (or a shared
    // element) claims it. Nothing is built per desired element beyond its
    // key: after a reboot the kernel is empty and `desired` may be 100 000.
    const have = new Map<string, { set: SetKey; elem: unknown; wanted: boolean }>();
    for (const key of Object.keys(SET) as SetKey[]) {
      const ref = this.ref(key);
      const listing = await this.runner.list(['list', isMap(key) ? 'map' : 'set', ref.family, ref.table, ref.name]);
      if (!listing.ok) continue;
      const obj = listing.items.find((i) => i.set || i.map);
      const elems = ((obj?.set ?? obj?.map) as { elem?: unknown[] } | undefined)?.elem ?? [];
      for (const raw of elems) {
        const concat = normalizeListed(key, concatOf(raw));
        if (isCanary(key, concat)) continue;
        // The SNAT map's data is part of what must match: a renumbered WAN changes only the data.
        have.set(elementKey(key, [...concat, ...dataOf(key, raw)]), { set: key, elem: raw, wanted: false });
      }
    }
    const adds: NftCommand[] = [];
    let added = 0;
    const claim = (key: string) => {
      const h = have.get(key);
      if (h) h.wanted = true;
      return h !== undefined;
    };
    // The shared elements every desired entry's holdings call for (the latest
    // holder's data, the longest timeout); the missing ones wait for an owner.
    const missingShared = new Map<string, { set: SetKey; elem: unknown }>();
    // After a reboot the kernel holds nothing: every entry is missing, and
    // its element keys (two strings and their arrays, for 100 000 entries)
    // need not be built to find that out.
    const kernelEmpty = have.size === 0;
    const shared = this.outbound.reset(this.translated(desired));
    // Deferred into an empty kernel, each shared element comes back with the
    // first batch that holds one of its holders (apply stages it as a put),
    // and its data is its latest holder's own: none is left without an
    // entry to bring it, so none need be looked up.
    if (!(kernelEmpty && opts.defer)) {
      for (const o of shared) {
        const key = elementKey(o.set, [...concatOf(o.elem), ...dataOf(o.set, o.elem)]);
        if (!claim(key)) missingShared.set(key, o);
      }
    }
    const deferred: FirewallEntry[] = [];
    for (const d of desired) {
      const set = setFor(d.entry, this.nat44);
      let missing = kernelEmpty;
      if (!kernelEmpty) {
        for (const concat of elementConcats(d.entry, this.nat44)) {
          if (claim(elementKey(set, concat))) continue;
          missing = true;
        }
      }
      if (missing && !opts.defer) {
        const elems = elementsOf(d.entry, d.timeoutSeconds, this.nat44).filter((elem) => !have.has(elementKey(set, concatOf(elem))));
        this.pushAdd(adds, set, elems);
        added += elems.length;
      }
      // With defer, the first entry that holds a missing shared element (with its own data) brings it back.
      // (Only IPv4 entries hold one, and once all are claimed there is nothing to look up.)
      if (opts.defer && this.nat44 && d.entry.family === 4 && missingShared.size > 0) {
        for (const o of outboundElementsOf(d.entry)) missing = missingShared.delete(elementKey(o.set, o.concat)) || missing;
      }
      if (missing && opts.defer) deferred.push(d.entry);
    }
    // Not deferred, or a shared element whose data no entry of its own names (a moved endpoint): now.
    for (const w of missingShared.values()) {
      this.pushAdd(adds, w.set, [w.elem]);
      added++;
    }
    const cmds: NftCommand[] = [];
    let removed = 0;
    // Removals first: a map element with stale data blocks adding its key.
    for (const h of have.values()) {
      if (h.wanted) continue;
      cmds.push(...this.vanish(h.set, [stripListed(h.elem)]));
      removed++;
    }
    cmds.push(...adds);
    if (cmds.length) {
      const r = await this.runner.batch(cmds);
      if (!r.ok) throw new NftSetupError(`reconciliation batch failed: ${r.stderr.trim().slice(0, 500)}`);
    }
    await this.moveRemap(true);
    this.armSweep();
    return opts.defer ? { added, removed, recreated, deferred } : { added, removed, recreated };
  }
}

function withElemTimeout(e: unknown, timeout: number | undefined): unknown {
  if (Array.isArray(e)) return [withElemTimeout(e[0], timeout), e[1]];
  const inner = (e as { elem: { val: unknown } }).elem;
  return { elem: { val: inner.val, ...(timeout !== undefined ? { timeout } : {}) } };
}

function concatOf(e: unknown): unknown[] {
  const el = Array.isArray(e) ? e[0] : e;
  const val = (el as { elem?: { val?: { concat?: unknown[] } }; concat?: unknown[] }).elem?.val ?? el;
  return (val as { concat?: unknown[] }).concat ?? [];
}

/** nft lists protocol numbers by their /etc/protocols name (0 is "ip"); we write 0, "tcp", "udp". */
function normalizeListed(set: SetKey, concat: unknown[]): unknown[] {
  const at = set === 'held4' ? 0 : 1;
  return concat.map((v, i) => (i === at && (v === 'ip' || v === 'hopopt') ? 0 : v));
}

/** A map element's data (the SNAT map's external address and port); nothing for sets and the DNAT maps. */
function dataOf(set: SetKey, e: unknown): unknown[] {
  if (set !== 'snat4' || !Array.isArray(e)) return [];
  return (e[1] as { concat?: unknown[] }).concat ?? [];
}

function staticPorts(statics: readonly StaticOpening[]): number[] {
  return statics.flatMap((s) => (s.kind === 'forward' ? [s.port] : []));
}

function stripListed(e: unknown): unknown {
  if (Array.isArray(e)) return [stripListed(e[0]), e[1]];
  const concat = concatOf(e);
  return { elem: { val: { concat } } };
}

function isCanary(set: SetKey, concat: unknown[]): boolean {
  if (set === 'held4') return concat[1] === 0;
  return (concat[0] === '::' || concat[0] === '0.0.0.0') && concat[1] === 0 && concat[2] === 0;
}

/** Turns nft's complaint into the cause and the fix. */
export function explain(error: string): string {
  const e = error.trim();
  if (/ENOENT|not found/i.test(e) && !/No such file or directory/.test(e)) {
    return `the nft binary was not found (${e}): install the Debian package nftables`;
  }
  if (/EACCES|Operation not permitted|Permission denied/i.test(e)) {
    return `nftables refused (${e}): run as root or with CAP_NET_ADMIN`;
  }
  if (/Protocol not supported|nf_tables/i.test(e)) {
    return `the kernel has no nf_tables (${e}): load the nf_tables module or use --backend memory for a dry run`;
  }
  return e;
}
