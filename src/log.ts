// JSON log lines, one object per line: one per decision (who asked what,
// verdict, granted lifetime), so an admin can grep and a machine can parse.

export type LogFields = Record<string, unknown>;

export interface Logger {
  info(fields: LogFields): void;
  warn(fields: LogFields): void;
  error(fields: LogFields): void;
}

export function jsonLogger(write: (line: string) => void = (l) => process.stdout.write(l)): Logger {
  const emit = (level: string, fields: LogFields) =>
    write(JSON.stringify({ time: new Date().toISOString(), level, ...fields }, replacer) + '\n');
  return {
    info: (f) => emit('info', f),
    warn: (f) => emit('warn', f),
    error: (f) => emit('error', f),
  };
}

function replacer(_k: string, v: unknown): unknown {
  if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer') {
    return Buffer.from((v as { data: number[] }).data).toString('hex');
  }
  return v;
}
