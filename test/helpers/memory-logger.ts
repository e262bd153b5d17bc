// A logger that keeps its lines, for tests that assert on decisions.

import type { LogFields, Logger } from '../../src/log.js';

/** Collects lines for tests. */
export function memoryLogger(): Logger & { lines: LogFields[] } {
  const lines: LogFields[] = [];
  const push = (level: string) => (f: LogFields) => lines.push({ level, ...f });
  return { lines, debug: push('debug'), info: push('info'), warn: push('warn'), error: push('error') };
}
