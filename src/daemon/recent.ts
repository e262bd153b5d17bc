// What `portcullis status` tells of the daemon's recent past: when it
// started, the last few errors, the last firewall repair and whether the LAN
// guard is in place. Remembered from the log lines the parts write anyway
// (`lan-guard`, `nft-repaired`, every error), so no part reports twice.
// Bounded: the last MAX_ERRORS errors, each detail cut at MAX_DETAIL chars.

import type { LogFields, Logger } from '../log.js';

const MAX_ERRORS = 5;
const MAX_DETAIL = 300;

export interface RecentError {
  /** ISO time. */
  at: string;
  event: string;
  detail: string;
}

export interface LastRepair {
  at: string;
  why: string;
  added: number;
  removed: number;
  /** The table (or our chains) had to be made again. */
  recreated: boolean;
}

export interface GuardState {
  status: 'in place' | 'MISSING';
  detail: string;
  /** When it was last found so. */
  since: string;
}

export class RecentEvents {
  /** Wall-clock milliseconds. */
  readonly startedAt: number;
  /** The daemon's logger: every line passes through unchanged, and what status needs is kept. */
  readonly logger: Logger;
  private readonly errorLines: RecentError[] = [];
  private repair: LastRepair | undefined;
  private guardState: GuardState | undefined;

  constructor(
    inner: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.startedAt = now();
    this.logger = {
      debug: (f) => inner.debug(f),
      info: (f) => inner.info(f),
      warn: (f) => {
        this.see(f);
        inner.warn(f);
      },
      error: (f) => {
        this.see(f);
        this.errorLines.push({ at: this.iso(), event: String(f.event ?? ''), detail: detailOf(f) });
        if (this.errorLines.length > MAX_ERRORS) this.errorLines.shift();
        inner.error(f);
      },
    };
  }

  errors(): readonly RecentError[] {
    return this.errorLines;
  }

  lastRepair(): LastRepair | undefined {
    return this.repair;
  }

  guard(): GuardState | undefined {
    return this.guardState;
  }

  private see(f: LogFields): void {
    if (f.event === 'nft-repaired') {
      this.repair = { at: this.iso(), why: String(f.why ?? ''), added: Number(f.added ?? 0), removed: Number(f.removed ?? 0), recreated: f.recreated === true };
    } else if (f.event === 'lan-guard' && (f.status === 'in place' || f.status === 'MISSING')) {
      this.guardState = { status: f.status, detail: String(f.detail ?? ''), since: this.iso() };
    }
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }
}

/** The line's own words: its error or detail, else its other fields. */
function detailOf(f: LogFields): string {
  const { event: _event, ...rest } = f;
  const text = typeof f.error === 'string' ? f.error : typeof f.detail === 'string' ? f.detail : JSON.stringify(rest);
  return text.length > MAX_DETAIL ? `${text.slice(0, MAX_DETAIL)}…` : text;
}
