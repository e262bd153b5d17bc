// How a change reaches the table, the kernel and the store together. A
// mapping enters the table holding its IPv4 external port, or leaves it
// (the port then held back for its endpoint, RFC 6887 §15); a grant or a
// removal goes to the firewall and the journal in one commit; and if either
// refuses, table and kernel go back to what the journal holds.

import type { Logger } from '../log.js';
import type { Clock } from '../state/clock.js';
import { internalEndpoint, type MappingTable } from '../state/table.js';
import { putRecord, removalRecord } from '../state/records.js';
import { keyOf, type Mapping } from '../domain/mapping.js';
import { refuse, type MapOutcome } from '../domain/requests.js';
import type { CommitOutcome, CommitQueue, Undo } from './commit-queue.js';
import type { ExpiryTimer } from './expiry.js';
import { removals, replacement } from './firewall-entries.js';
import type { StoreLink } from './store-link.js';

/** One mapping's part in a change: `mine` takes the place of `previous` (undefined on either side: none). */
export interface Step {
  mine?: Mapping;
  previous?: Mapping;
}

export class TableChanges {
  constructor(
    private readonly table: MappingTable,
    private readonly commits: CommitQueue,
    private readonly stores: StoreLink,
    private readonly expiry: ExpiryTimer,
    private readonly clock: Clock,
    private readonly log: Logger,
    /** Seconds an ended mapping's external port stays held back for its endpoint. */
    private readonly reuseSeconds: number,
  ) {}

  armExpiry(): void {
    this.expiry.arm(this.table.nextExpiry());
  }

  /**
   * A mapping enters the table, holding its IPv4 external port; `key`: its
   * key as a string already kept elsewhere (the store's). `arm` false: the
   * caller arms the expiry once after many (a restore).
   */
  enter(m: Mapping, key?: string, arm = true): void {
    if (m.family === 4) this.table.acquireBinding(internalEndpoint(m.internalAddress, m.protocol, m.internalPort), m.protocol, m.externalPort);
    this.table.put(m, key);
    if (arm) this.armExpiry();
  }

  /**
   * A mapping leaves the table. One that ended (removed, expired, revoked,
   * replaced) leaves its external port held back for its endpoint for the
   * reuse time (§15); a reservation rolled back (`ended` false) was never
   * anyone's, and frees it at once.
   */
  leave(m: Mapping, ended = true): void {
    if (!this.table.remove(keyOf(m))) return;
    if (m.family !== 4) return;
    const now = this.clock.now();
    const hold = ended && m.origin !== 'static' ? { nonce: m.nonce, origin: m.origin, now, until: now + this.reuseSeconds * 1000 } : undefined;
    this.table.releaseBinding(internalEndpoint(m.internalAddress, m.protocol, m.internalPort), m.protocol, hold);
  }

  /** Puts back a mapping that left, unless its identity or its external port was taken meanwhile. */
  reinstate(m: Mapping): void {
    if (this.table.get(keyOf(m))) return;
    const holder = m.family === 4 ? this.table.holderOfExternalPort(m.protocol, m.externalPort) : undefined;
    if (holder && holder.internal !== internalEndpoint(m.internalAddress, m.protocol, m.internalPort)) return;
    this.enter(m);
  }

  /** Puts `mine` in the table: in its previous mapping's place if that is still there (a renewal keeps its binding), else it enters. */
  private place(mine: Mapping): void {
    if (!this.table.get(keyOf(mine))) return this.enter(mine);
    this.table.put(mine);
    this.armExpiry();
  }

  /** Puts `previous` back in place of `mine` (or takes `mine` out), unless something newer replaced `mine` meanwhile. */
  private rollBack(mine: Mapping, previous: Mapping | undefined): void {
    if (this.table.get(keyOf(mine)) !== mine) return;
    if (previous?.externalPort === mine.externalPort) {
      this.table.put(previous);
      this.armExpiry();
      return;
    }
    this.leave(mine, false);
    if (previous) this.reinstate(previous);
  }

  /** The table as it was before `steps`. */
  private putBack(steps: readonly Step[]): void {
    for (const { mine, previous } of steps) {
      if (mine) this.rollBack(mine, previous);
      else if (previous) this.reinstate(previous);
    }
  }

  /**
   * Commits a grant: `mine` takes the place of `previous` (the mapping of its
   * identity before: renewed, moved, or none) while `displaced` (already out
   * of the table) leave the kernel and the store, in one firewall commit and
   * one journal write. Whatever fails, the table goes back as it was.
   */
  async grant(mine: Mapping, previous: Mapping | undefined, displaced: readonly Mapping[]): Promise<MapOutcome> {
    const now = this.clock.now();
    this.place(mine);
    const steps: Step[] = [{ mine, previous }, ...displaced.map((m) => ({ previous: m }))];
    // The reservation above is held while a store that failed is probed.
    if (!(await this.stores.writable())) {
      this.putBack(steps);
      return this.stores.refusal();
    }
    const changes = [...removals(displaced), ...replacement(previous, mine, now)];
    const records = [...displaced.map((m) => removalRecord(m, this.clock)), putRecord(mine, this.clock)];
    const out = await this.commits.commit(changes, records, this.undoTo(steps));
    if (out.result === 'committed') {
      this.stores.committed();
      return { ok: true, mapping: mine, lifetime: mine.lifetime };
    }
    // Unrecorded: the undo has already put table and kernel back.
    if (out.result === 'unrecorded') return this.stores.unrecorded(out.error);
    this.putBack(steps);
    return refuse('FIREWALL_FAILED', 'firewall commit failed');
  }

  /**
   * Takes mappings out of table, kernel and store in one commit. If the
   * firewall refuses or the store cannot be written (undefined), they stay,
   * as they do in the kernel; if only the journal write fails, the undo puts
   * the kernel back.
   */
  async removal(victims: readonly Mapping[], endFlows = false): Promise<CommitOutcome | undefined> {
    for (const m of victims) this.leave(m);
    const unrecordable = victims.length > 0 && !(await this.stores.writable());
    const out = unrecordable
      ? undefined
      : await this.commits.commit(removals(victims, endFlows), victims.map((m) => removalRecord(m, this.clock)), this.undoTo(victims.map((m) => ({ previous: m }))));
    if (out?.result === 'committed') this.stores.committed();
    // The kernel still has them: so must we (an undo already put back what it could).
    else if (out?.result !== 'unrecorded') for (const m of victims) this.reinstate(m);
    return out;
  }

  /**
   * Mappings that ended (remove-all, revoked leases, the admin's removal)
   * leave table, kernel and store; whether that committed. `endFlows`: their
   * running flows end too (firewall-entries.ts, removals).
   */
  async removeEnded(victims: readonly Mapping[], endFlows = false): Promise<boolean> {
    const out = await this.removal(victims, endFlows);
    if (out?.result === 'unrecorded') this.stores.writeFailed(out.error, 'the kernel change was undone');
    return out?.result === 'committed';
  }

  /**
   * The undo of a change the kernel took but the journal did not record:
   * kernel and table go back to each step's `previous` (what the journal
   * still holds), in place of its `mine`. A renewal goes back to its old
   * lifetime too, rather than keep one no record backs: the client was told
   * it failed and renews again, and a crash meanwhile would restore the old
   * one anyway. A key that a newer change took meanwhile is left to that
   * change. If the firewall refuses the undo, the table keeps `mine`, as the
   * kernel does: it expires on its own, and a restart's reconciliation drops
   * it from the kernel, since the store never had it.
   */
  private undoTo(steps: readonly Step[]): Undo {
    return async (apply) => {
      const now = this.clock.now();
      const due = steps
        .filter((s) => this.table.get(keyOf((s.mine ?? s.previous) as Mapping)) === s.mine)
        .map((s) => ({ mine: s.mine, previous: s.previous && s.previous.expiresAt > now ? s.previous : undefined }));
      const changes = due.flatMap(({ mine, previous }) => (previous ? replacement(mine, previous, now) : mine ? removals([mine]) : []));
      if (!(await apply(changes))) {
        this.log.error({ event: 'store-undo-failed', mappings: due.length, detail: 'the firewall refused to undo changes the store could not record; the table keeps what the kernel holds' });
        return;
      }
      this.putBack(due);
    };
  }
}
