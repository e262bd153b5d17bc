// The PCP epoch (RFC 6887 §8.5) and NAT-PMP "Seconds Since Start of Epoch"
// (RFC 6886 §3.6) come from one start: seconds since the mapping state began.
// The start survives restarts through the durable store, so a client that
// checks the epoch sees no reset when its mappings were kept.

import type { Clock } from './clock.js';
import type { EpochStart } from './records.js';

export class Epoch {
  private startMono: number;
  private startWall: number;

  constructor(private readonly clock: Clock) {
    this.startMono = clock.now();
    this.startWall = clock.wall();
  }

  /** Whole seconds since the state began, as both protocols carry it. */
  seconds(): number {
    return Math.floor(Math.max(0, this.clock.now() - this.startMono) / 1000) >>> 0;
  }

  /** State was lost, or the external address changed: clients must learn it (RFC 6887 §8.5). */
  reset(): void {
    this.startMono = this.clock.now();
    this.startWall = this.clock.wall();
  }

  /** Continues an epoch that began at `startMono` on this boot's monotonic clock. */
  restore(startMono: number): void {
    this.startMono = startMono;
    this.startWall = this.clock.wall() - (this.clock.now() - startMono);
  }

  /** What the store records. */
  start(): EpochStart {
    return { wall: this.startWall, mono: this.startMono, bootId: this.clock.bootId() };
  }
}
