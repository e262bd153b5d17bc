// The PCP epoch (RFC 6887 §8.5) and NAT-PMP "Seconds Since Start of Epoch"
// (RFC 6886 §3.6) come from one origin: seconds since the mapping state began.

import type { Clock } from './clock.js';

export class Epoch {
  private origin: number;

  constructor(private readonly clock: Clock) {
    this.origin = clock.now();
  }

  /** Whole seconds since the state began, as both protocols carry it. */
  seconds(): number {
    return Math.floor((this.clock.now() - this.origin) / 1000) >>> 0;
  }

  /** State was lost: clients must learn it (RFC 6887 §8.5). */
  reset(): void {
    this.origin = this.clock.now();
  }
}
