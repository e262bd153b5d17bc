// A clock the test moves by hand: monotonic and wall time step together,
// unless a test steps the wall alone or reboots.

import type { Clock } from '../../src/state/clock.js';

/** A clock tests move by hand (wall and monotonic move together unless told otherwise). */
export class ManualClock implements Clock {
  constructor(
    private t = 1_000_000,
    private w = 1_800_000_000_000,
    private boot = 'boot-1',
  ) {}
  now(): number {
    return this.t;
  }
  wall(): number {
    return this.w;
  }
  bootId(): string {
    return this.boot;
  }
  advance(ms: number): void {
    this.t += ms;
    this.w += ms;
  }
  /** Steps the wall clock only (an NTP correction, or an RTC-less boot in 1970). */
  setWall(ms: number): void {
    this.w = ms;
  }
  /** A reboot: a new boot id and a monotonic clock near zero. */
  reboot(downtimeMs: number): void {
    this.boot = `${this.boot}+`;
    this.t = 5_000;
    this.w += downtimeMs;
  }
}
