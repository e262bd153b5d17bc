// Group commit (DESIGN.md): changes that arrive while a batch is in flight
// join the next batch, so the firewall sees one transaction per batch, not
// one per request. Each submitter learns whether its own changes took.

import type { FirewallBackend, FirewallChange } from '../firewall/backend.js';

interface Pending {
  changes: readonly FirewallChange[];
  resolve: (ok: boolean) => void;
}

export class CommitQueue {
  private queue: Pending[] = [];
  private running = false;
  /** Serializes batches with exclusive work (reconciliation) on the firewall. */
  private lock: Promise<unknown> = Promise.resolve();
  /** Largest number of changes one batch may carry. */
  constructor(
    private readonly backend: FirewallBackend,
    private readonly maxBatch = 4096,
  ) {}

  /** Resolves true once every change of this submission is committed. */
  submit(changes: readonly FirewallChange[]): Promise<boolean> {
    if (changes.length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      this.queue.push({ changes, resolve });
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
        const flat = batch.flatMap((p) => p.changes);
        let results: boolean[];
        try {
          results = await this.exclusive(() => this.backend.apply(flat));
        } catch {
          results = flat.map(() => false);
        }
        let i = 0;
        for (const p of batch) {
          const mine = results.slice(i, i + p.changes.length);
          i += p.changes.length;
          p.resolve(mine.length === p.changes.length && mine.every(Boolean));
        }
      }
    } finally {
      this.running = false;
    }
  }
}
