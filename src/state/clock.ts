// Time. Lifetimes and the epoch run on the system's monotonic clock
// (CLOCK_MONOTONIC: milliseconds since boot, the same for every process of
// this boot), so an NTP step neither expires nor extends a mapping and a
// restarted daemon can still use what its predecessor recorded. The durable
// store also records wall-clock time and the boot id: after a reboot the
// monotonic clock starts again and only the wall clock (if sane) carries over.

import { readFileSync } from 'node:fs';

export interface Clock {
  /** Monotonic milliseconds since boot. */
  now(): number;
  /** Wall-clock milliseconds since 1970 (may jump). */
  wall(): number;
  /** Identifies this boot: monotonic times from another boot mean nothing. */
  bootId(): string;
}

let cachedBootId: string | undefined;

export const monotonicClock: Clock = {
  now: () => Number(process.hrtime.bigint() / 1_000_000n),
  wall: () => Date.now(),
  bootId: () => {
    try {
      cachedBootId ??= readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      cachedBootId ??= `unknown-${process.pid}-${Date.now()}`;
    }
    return cachedBootId;
  },
};

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
