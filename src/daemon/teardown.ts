// The daemon's one stack of cleanup steps: every part that starts pushes its
// stop, and a failed start and stop() both unwind the same stack, last
// started first stopped.

import type { Logger } from '../log.js';

/** Why the stack unwinds: some steps (flush on exit) belong to a real stop only. */
export type Unwinding = 'stop' | 'failed start';
export type Step = (why: Unwinding) => Promise<void> | void;

export class Teardown {
  private readonly steps: Step[] = [];

  constructor(private readonly log: Logger) {}

  push(step: Step): void {
    this.steps.push(step);
  }

  /**
   * Runs every step, newest first; a step that fails does not keep the ones
   * below it from running. Every step's error is logged (which step broke a
   * stop is what the admin needs); after a failed start the start's own
   * error is what matters, after stop() the first is thrown once all ran.
   */
  async unwind(why: Unwinding): Promise<void> {
    let first: unknown;
    for (let step = this.steps.pop(); step; step = this.steps.pop()) {
      try {
        await step(why);
      } catch (err) {
        first ??= err;
        this.log.error({ event: 'cleanup-failed', why, error: (err as Error).message, stack: (err as Error).stack?.split('\n').slice(1, 4).join(' | ') });
      }
    }
    if (first !== undefined && why === 'stop') throw first;
  }
}
