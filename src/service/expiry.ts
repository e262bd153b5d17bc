// The expiry timer: one timeout, due at the earliest expiry in the table.
// Arming it for a later time leaves it where it is; it is set again after it
// fires. Unref'd: a pending expiry never keeps the process alive.

import type { Clock } from '../state/clock.js';

/** Milliseconds after the due time the timer fires, so that the mapping has surely ended by then. */
const SLACK_MS = 5;

export class ExpiryTimer {
  private timer: NodeJS.Timeout | undefined;
  private at = Number.POSITIVE_INFINITY;
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly fire: () => void,
  ) {}

  /** Makes sure the timer fires by monotonic `next` (undefined: nothing is due). */
  arm(next: number | undefined): void {
    if (next === undefined || next >= this.at || this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.at = next;
    this.timer = setTimeout(() => this.fire(), Math.max(0, next - this.clock.now()) + SLACK_MS);
    this.timer.unref();
  }

  /** Forgets the pending time (the expiry ran, by the timer or by hand): the next arm() sets it again. */
  reset(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.at = Number.POSITIVE_INFINITY;
  }

  stop(): void {
    this.stopped = true;
    this.reset();
  }
}
