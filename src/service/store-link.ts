// The service's side of the durable store: whether the store takes records
// (after a failed write it probes the disk, and nothing is granted that it
// could not record), the log lines and refusals for a store that does not,
// and compaction in the background once a commit asks for it.

import type { Logger } from '../log.js';
import type { Clock } from '../state/clock.js';
import type { DurableStore } from '../state/store.js';
import { refuse, type Refused } from '../domain/requests.js';

export class StoreLink {
  store: DurableStore | undefined;
  /** A journal write failed and no write has succeeded since. */
  private down = false;

  constructor(
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /**
   * After a failed journal write, whether the store takes records again (it
   * probes the disk). Free while writes succeed.
   */
  async writable(): Promise<boolean> {
    const store = this.store;
    if (!store?.failure) return true;
    const ok = await store.writable();
    if (ok) this.up();
    return ok;
  }

  /** A commit was recorded: the store is up, and may want compacting. */
  committed(): void {
    this.up();
    const store = this.store;
    if (!store?.wantsCompaction()) return;
    // The store snapshots what it has recorded, not the table: a change
    // there may still be in flight, and may yet fail. The slow part runs
    // beside the commits.
    store
      .compactInBackground({ mono: this.clock.now(), wall: this.clock.wall(), bootId: this.clock.bootId() })
      .catch((err: unknown) => this.log.error({ event: 'store-compaction-failed', error: (err as Error).message }));
  }

  /** A journal write failed; `detail` says where that leaves kernel and store. */
  writeFailed(error: Error, detail: string): void {
    this.down = true;
    this.log.error({ event: 'store-write-failed', stateDir: this.store?.dir, error: error.message, detail });
  }

  /** The refusal for a change the journal could not record (its kernel change was undone). */
  unrecorded(error: Error): Refused {
    this.writeFailed(error, 'the kernel change was undone; grants are refused until the state directory takes writes again');
    return refuse('NO_RESOURCES', `the state store could not record it: ${error.message}`);
  }

  /** The refusal while the store cannot be written (before anything reaches the kernel). */
  refusal(): Refused {
    return refuse('NO_RESOURCES', `the state store cannot be written: ${this.store?.failure?.message ?? 'unknown error'}`);
  }

  private up(): void {
    if (!this.down) return;
    this.down = false;
    this.log.warn({ event: 'store-writable-again', stateDir: this.store?.dir });
  }
}
