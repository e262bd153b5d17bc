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
