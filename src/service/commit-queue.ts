// Group commit (docs/ARCHITECTURE.md): changes that arrive while a batch is
// in flight join the next batch, so the firewall sees one transaction per
// batch, not one per request, and the durable store one synced write. A
// submission learns whether its own changes took — and were recorded —
// before its reply leaves, and a refusal by the kernel is told apart from a
// record the disk could not take after the kernel did.

import type { FirewallBackend, FirewallChange } from '../firewall/backend.js';
import type { JournalRecord } from '../state/records.js';
import { NO_TELEMETRY, type CommitResult, type Telemetry } from '../telemetry.js';

/** Where committed changes are recorded (the durable store, when there is one). */
export interface Journal {
  append(records: readonly JournalRecord[]): void;
  /** Rejects if the records appended last could not be written; they are then dropped. */
  flush(): Promise<void>;
}

/**
 * Puts the kernel back in line with what is recorded, for a submission the
 * kernel took (in whole or part) but that will not be recorded. Runs with no
 * batch in flight, after every batch that went to the firewall before it, so
 * it decides from the current state, not the state at submission. `apply`
 * sends its changes to the firewall and tells whether all took.
 */
export type Undo = (apply: (changes: readonly FirewallChange[]) => Promise<boolean>) => Promise<void>;

export type CommitOutcome =
  | { result: 'committed' }
  /** The firewall refused a change; any of the submission's changes that took were undone. */
  | { result: 'refused' }
  /** The kernel took it, the journal could not record it, and the undo ran. */
  | { result: 'unrecorded'; error: Error };

interface Pending {
  changes: readonly FirewallChange[];
  records: readonly JournalRecord[];
  undo: Undo | undefined;
  resolve: (outcome: CommitOutcome) => void;
}

export class CommitQueue {
  private queue: Pending[] = [];
  private running = false;
  /** Serializes batches with exclusive work (reconciliation, compaction, undo). */
  private lock: Promise<unknown> = Promise.resolve();
  journal: Journal | undefined;

  constructor(
    private readonly backend: FirewallBackend,
    /** Largest number of changes one batch may carry. */
    private readonly maxBatch = 4096,
    /** Told each batch's outcome and how long firewall and journal took. */
    private readonly telemetry: Telemetry = NO_TELEMETRY,
  ) {}

  /** Resolves true once every change of this submission is committed and recorded; nothing is undone otherwise. */
  async submit(changes: readonly FirewallChange[], records: readonly JournalRecord[] = []): Promise<boolean> {
    return (await this.commit(changes, records)).result === 'committed';
  }

  /** Commits and records one submission; `undo` runs if the kernel took some of it but it is not committed and recorded. */
  commit(changes: readonly FirewallChange[], records: readonly JournalRecord[], undo?: Undo): Promise<CommitOutcome> {
    if (changes.length === 0 && (records.length === 0 || !this.journal)) return Promise.resolve({ result: 'committed' });
    return new Promise((resolve) => {
      this.queue.push({ changes, records, undo, resolve });
      if (!this.running) void this.drain();
    });
  }

  /** Runs `fn` with no batch in flight and none starting until it ends. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        // Let requests that arrived in this same tick join.
        await new Promise<void>((r) => setImmediate(r));
        const batch: Pending[] = [];
        let size = 0;
        while (this.queue.length > 0 && (batch.length === 0 || size + (this.queue[0]?.changes.length ?? 0) <= this.maxBatch)) {
          const p = this.queue.shift() as Pending;
          batch.push(p);
          size += p.changes.length;
        }
        const started = performance.now();
        const { ok, durable } = await this.exclusive(() => this.commitBatch(batch));
        // Only a batch with firewall changes is an nft commit (an epoch record alone is not).
        const report = batch.some((p) => p.changes.length > 0) ? (result: CommitResult) => this.telemetry.commit(result, (performance.now() - started) / 1000) : () => undefined;
        // The next batch's firewall commit overlaps this batch's journal sync;
        // replies wait for both (the journal keeps batch order).
        durable.then(
          () => {
            report(ok.every(Boolean) ? 'committed' : 'refused');
            batch.forEach((p, i) => p.resolve(ok[i] ? { result: 'committed' } : { result: 'refused' }));
          },
          (err: unknown) => {
            report(ok.some(Boolean) ? 'unrecorded' : 'refused');
            void this.unrecorded(batch, ok, err as Error);
          },
        );
      }
    } finally {
      this.running = false;
    }
  }

  /** Firewall first, then the journal (one sync): only what the kernel took is recorded. */
  private async commitBatch(batch: readonly Pending[]): Promise<{ ok: boolean[]; durable: Promise<void> }> {
    const flat = batch.flatMap((p) => p.changes);
    let results: boolean[];
    try {
      results = flat.length ? await this.backend.apply(flat) : [];
    } catch {
      results = flat.map(() => false);
    }
    let i = 0;
    const ok: boolean[] = [];
    for (const p of batch) {
      const mine = results.slice(i, i + p.changes.length);
      i += p.changes.length;
      ok.push(mine.length === p.changes.length && mine.every(Boolean));
      // A replacement whose removal took and whose put did not left the
      // kernel with neither: put back what the caller will roll back to.
      if (!ok.at(-1) && mine.some(Boolean)) await this.runUndo(p);
    }
    if (!this.journal) return { ok, durable: Promise.resolve() };
    batch.forEach((p, j) => ok[j] && this.journal?.append(p.records));
    return { ok, durable: this.journal.flush() };
  }

  /**
   * The journal write failed after the kernel took the batch: each taken
   * submission's kernel change is undone (after any later batch the firewall
   * already took), so that no opening exists that the store does not record.
   */
  private async unrecorded(batch: readonly Pending[], ok: readonly boolean[], error: Error): Promise<void> {
    await this.exclusive(async () => {
      for (const [j, p] of batch.entries()) if (ok[j] && p.records.length > 0) await this.runUndo(p);
    });
    batch.forEach((p, j) => p.resolve(!ok[j] ? { result: 'refused' } : p.records.length > 0 ? { result: 'unrecorded', error } : { result: 'committed' }));
  }

  private async runUndo(p: Pending): Promise<void> {
    const apply = async (changes: readonly FirewallChange[]) => {
      if (changes.length === 0) return true;
      try {
        return (await this.backend.apply(changes)).every(Boolean);
      } catch {
        return false;
      }
    };
    // An undo that throws is a bug in it; the queue must keep serving.
    await p.undo?.(apply).catch(() => undefined);
  }
}
