// Group commit (DESIGN.md): changes that arrive while a batch is in flight
// join the next batch, so the firewall sees one transaction per batch, not
// one per request, and the durable store one fdatasync. A submission learns
// whether its own changes took — and were recorded — before its reply leaves.

import type { FirewallBackend, FirewallChange } from '../firewall/backend.js';
import type { JournalRecord } from '../state/store.js';

/** Where committed changes are recorded (the durable store, when there is one). */
export interface Journal {
  append(records: readonly JournalRecord[]): void;
  flush(): Promise<void>;
}

interface Pending {
  changes: readonly FirewallChange[];
  records: readonly JournalRecord[];
  resolve: (ok: boolean) => void;
}

export class CommitQueue {
  private queue: Pending[] = [];
  private running = false;
  /** Serializes batches with exclusive work (reconciliation, compaction). */
  private lock: Promise<unknown> = Promise.resolve();
  journal: Journal | undefined;

  constructor(
    private readonly backend: FirewallBackend,
    /** Largest number of changes one batch may carry. */
    private readonly maxBatch = 4096,
  ) {}

  /** Resolves true once every change of this submission is committed and recorded. */
  submit(changes: readonly FirewallChange[], records: readonly JournalRecord[] = []): Promise<boolean> {
    if (changes.length === 0 && (records.length === 0 || !this.journal)) return Promise.resolve(true);
    return new Promise((resolve) => {
      this.queue.push({ changes, records, resolve });
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
        const { ok, durable } = await this.exclusive(() => this.commit(batch));
        // The next batch's firewall commit overlaps this batch's fdatasync;
        // replies wait for both (the journal keeps batch order).
        durable.then(
          () => batch.forEach((p, i) => p.resolve(ok[i] ?? false)),
          () => batch.forEach((p) => p.resolve(false)),
        );
      }
    } finally {
      this.running = false;
    }
  }

  /** Firewall first, then the journal (one sync): only what the kernel took is recorded. */
  private async commit(batch: readonly Pending[]): Promise<{ ok: boolean[]; durable: Promise<void> }> {
    const flat = batch.flatMap((p) => p.changes);
    let results: boolean[];
    try {
      results = flat.length ? await this.backend.apply(flat) : [];
    } catch {
      results = flat.map(() => false);
    }
    let i = 0;
    const ok = batch.map((p) => {
      const mine = results.slice(i, i + p.changes.length);
      i += p.changes.length;
      return mine.length === p.changes.length && mine.every(Boolean);
    });
    if (!this.journal) return { ok, durable: Promise.resolve() };
    batch.forEach((p, j) => ok[j] && this.journal?.append(p.records));
    return { ok, durable: this.journal.flush() };
  }
}
