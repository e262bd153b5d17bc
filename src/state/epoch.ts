// The PCP epoch (RFC 6887 §8.5) and NAT-PMP "Seconds Since Start of Epoch"
// (RFC 6886 §3.6) come from one origin: seconds since the mapping state began.
// The origin survives restarts through the durable store, so a client that
// checks the epoch sees no reset when its mappings were kept.

import type { Clock } from './clock.js';
import type { EpochOrigin } from './store.js';

export class Epoch {
  private originMono: number;
  private originWall: number;

  constructor(private readonly clock: Clock) {
    this.originMono = clock.now();
    this.originWall = clock.wall();
  }

  /** Whole seconds since the state began, as both protocols carry it. */
  seconds(): number {
    return Math.floor(Math.max(0, this.clock.now() - this.originMono) / 1000) >>> 0;
  }

  /** State was lost, or the external address changed: clients must learn it (RFC 6887 §8.5). */
  reset(): void {
    this.originMono = this.clock.now();
    this.originWall = this.clock.wall();
  }

  /** Continues an epoch that began at `originMono` on this boot's monotonic clock. */
  restore(originMono: number): void {
    this.originMono = originMono;
    this.originWall = this.clock.wall() - (this.clock.now() - originMono);
  }

  /** What the store records. */
  origin(): EpochOrigin {
    return { wall: this.originWall, mono: this.originMono, bootId: this.clock.bootId() };
  }
}
