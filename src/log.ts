// Log lines through pino, the ecosystem's JSON logger: one object per line,
// one per decision (who asked what, the verdict, the granted lifetime), so an
// admin can grep and a machine can parse. Levels: debug < info < warn < error.
// On a terminal (or with format 'pretty') the same fields read as one line of
// text instead.

import { pino, stdTimeFunctions, type DestinationStream } from 'pino';

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(fields: LogFields): void;
  info(fields: LogFields): void;
  warn(fields: LogFields): void;
  error(fields: LogFields): void;
}

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFormat = 'json' | 'pretty';

export interface LogOptions {
  level?: LogLevel;
  /** Default: pretty on a terminal, JSON otherwise. */
  format?: LogFormat;
  /** Where lines go (default: standard output, see `stdoutLines`). */
  write?: (line: string) => void;
}

/** Lines gathered before a write regardless of the event loop's turn. */
const LINES_PER_WRITE = 256;
let toStdout: ((line: string) => void) | undefined;

/**
 * Standard output, one write per turn of the event loop: under load the
 * daemon logs a decision per request, and a write(2) per line cost ~7 µs of
 * its main thread each (a file or a pipe to journald is written
 * synchronously). Lines keep their order; what is gathered goes out before
 * the loop waits again, at LINES_PER_WRITE, and at exit (process.exit
 * included), so no line is lost but to SIGKILL within the same turn.
 */
function stdoutLines(): (line: string) => void {
  if (toStdout) return toStdout;
  let pending: string[] = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (pending.length === 0) return;
    const out = pending.join('');
    pending = [];
    process.stdout.write(out);
  };
  process.on('exit', flush);
  toStdout = (line) => {
    pending.push(line);
    if (pending.length >= LINES_PER_WRITE) flush();
    else if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  return toStdout;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const format = opts.format ?? (process.stdout.isTTY ? 'pretty' : 'json');
  const write = opts.write ?? stdoutLines();
  const destination: DestinationStream = { write: format === 'pretty' ? (line) => write(prettyLine(line)) : write };
  const p = pino(
    {
      level: opts.level ?? 'info',
      base: null,
      timestamp: stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        // Nonces and other bytes as hex, not as pino's {type, data} arrays.
        log: (fields) => hexBuffers(fields),
      },
    },
    destination,
  );
  return {
    debug: (f) => p.debug(f),
    info: (f) => p.info(f),
    warn: (f) => p.warn(f),
    error: (f) => p.error(f),
  };
}

function hexBuffers(fields: LogFields): LogFields {
  let out: LogFields | undefined;
  // By key, not Object.entries: every line passes here, and entries built a
  // [key, value] array per field of every decision line (a tenth of the
  // daemon's garbage under PCP load, by bench/alloc-probe.ts).
  for (const k in fields) {
    const v = fields[k];
    if (!Buffer.isBuffer(v)) continue;
    out ??= { ...fields };
    out[k] = v.toString('hex');
  }
  return out ?? fields;
}

/** `07:25:57 WARN  lan-guard status=MISSING detail="…"`: the JSON line for a person. */
export function prettyLine(json: string): string {
  let o: LogFields;
  try {
    o = JSON.parse(json) as LogFields;
  } catch {
    return json;
  }
  const { time, level, event, ...rest } = o;
  const clock = typeof time === 'string' ? time.slice(11, 19) : '';
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' && !/[\s"=]/.test(v) && v !== '' ? v : JSON.stringify(v)}`);
  return `${clock} ${String(level ?? '').toUpperCase().padEnd(5)} ${String(event ?? '')}${fields.length ? ` ${fields.join(' ')}` : ''}\n`;
}
