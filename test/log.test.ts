// The log: pino's JSON lines with our level names and fields, levels that
// filter, bytes as hex, and the readable form for a terminal.

import t from 'tap';
import { createLogger, prettyLine } from '../src/log.js';

function capture(opts: Parameters<typeof createLogger>[0] = {}) {
  const lines: string[] = [];
  return { lines, log: createLogger({ ...opts, write: (l) => lines.push(l) }) };
}

t.test('JSON lines: level by name, ISO time, the decision fields as given, bytes as hex', async (t) => {
  const { lines, log } = capture({ format: 'json' });
  log.info({ event: 'map', via: 'pcp', client: '192.168.77.2', verdict: 'granted', lifetime: 120, nonce: Buffer.from('0102ff', 'hex') });
  t.equal(lines.length, 1);
  t.ok(lines[0]?.endsWith('\n'), 'one line each');
  const o = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
  t.match(o, { level: 'info', event: 'map', via: 'pcp', client: '192.168.77.2', verdict: 'granted', lifetime: 120, nonce: '0102ff' });
  t.match(o.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  t.notOk('pid' in o || 'hostname' in o, 'no pino base fields');
});

t.test('levels: below the chosen one is not written', async (t) => {
  const { lines, log } = capture({ format: 'json', level: 'warn' });
  log.debug({ event: 'a' });
  log.info({ event: 'b' });
  log.warn({ event: 'c' });
  log.error({ event: 'd' });
  t.same(lines.map((l) => (JSON.parse(l) as { event: string }).event), ['c', 'd']);
  const all = capture({ format: 'json', level: 'debug' });
  all.log.debug({ event: 'a' });
  t.equal(all.lines.length, 1, 'debug when asked for');
});

t.test('the readable form: time, level, event, then key=value', async (t) => {
  const { lines, log } = capture({ format: 'pretty' });
  log.warn({ event: 'lan-guard', status: 'MISSING', detail: 'no jump to portcullis_input', n: 3 });
  t.match(lines[0], /^\d\d:\d\d:\d\d WARN  lan-guard status=MISSING detail="no jump to portcullis_input" n=3\n$/);
  t.equal(prettyLine('not json\n'), 'not json\n', 'anything else passes through');
});

t.test('standard output: lines gathered per turn, in order, none lost at exit', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const logModule = new URL('../src/log.js', import.meta.url).href;
  // 1 000 lines, some in one turn past the per-write bound, then an exit in
  // the same turn; and a process that dies of an uncaught error.
  const script = (end: string) => `
    import { createLogger } from ${JSON.stringify(logModule)};
    const log = createLogger({ format: 'json' });
    for (let i = 0; i < 600; i++) log.info({ event: 'n', i });
    setImmediate(() => { for (let i = 600; i < 1000; i++) log.info({ event: 'n', i }); ${end} });`;
  for (const [what, end, status] of [
    ['process.exit', 'process.exit(0);', 0],
    ['an uncaught error', 'throw new Error("boom");', 1],
  ] as const) {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script(end)], { encoding: 'utf8', timeout: 60_000 });
    t.equal(r.status, status, `${what}: the exit status`);
    const seen = r.stdout.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { i: number }).i);
    t.same(seen, Array.from({ length: 1000 }, (_, i) => i), `${what}: all 1 000 lines, in order`);
  }
});
