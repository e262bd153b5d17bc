// Flows to forget go to one conntrack process per batch of filters
// (`conntrack -R FILE`), and one per filter for a tool without -R: fake tools
// record how they were run.

import t from 'tap';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConntrackFlusher, type FlowSelector } from '../src/firewall/conntrack.js';
import { mustParseIp } from '../src/net/address.js';
import { memoryLogger } from './helpers/memory-logger.js';

/** A stand-in for conntrack: each run appends "run ARGS" and its stdin to a log; `withoutR` answers -R like a tool older than 1.4.6. */
function fakeTool(withoutR: boolean): { binary: string; runs: () => string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-fake-conntrack-'));
  const log = join(dir, 'log');
  writeFileSync(log, '');
  const binary = join(dir, 'conntrack');
  writeFileSync(
    binary,
    `#!/bin/sh\n${withoutR ? `if [ "$1" = "-R" ]; then echo "conntrack: invalid option -- 'R'" >&2; exit 2; fi\n` : ''}if [ "$1" = "-R" ]; then echo "run -R" >> ${log}; cat "$2" >> ${log}; else echo "run $*" >> ${log}; fi\n`,
  );
  chmodSync(binary, 0o755);
  return { binary, runs: () => readFileSync(log, 'utf8').split('\n').filter(Boolean) };
}

const flows = (n: number): FlowSelector[] => Array.from({ length: n }, (_, i) => ({ by: 'source', protocol: 17, address: mustParseIp('192.168.77.10'), port: 20_000 + i }));

t.test('one process takes the queued filters from a file', async (t) => {
  const tool = fakeTool(false);
  const c = new ConntrackFlusher(memoryLogger(), tool.binary);
  c.flush(flows(300));
  await c.idle();
  const lines = tool.runs();
  t.same(
    lines.filter((l) => l.startsWith('run ')),
    ['run -R', 'run -R'],
    '300 filters, two processes (at most 256 lines each)',
  );
  const filters = lines.filter((l) => l.startsWith('-D '));
  t.equal(filters.length, 300);
  t.equal(filters[0], '-D -f ipv4 -p udp --orig-src 192.168.77.10 --orig-port-src 20000');
  t.equal(new Set(filters).size, 300, 'each filter once');
});

t.test('a tool without -R gets one filter per run', async (t) => {
  const tool = fakeTool(true);
  const log = memoryLogger();
  const c = new ConntrackFlusher(log, tool.binary);
  c.flush(flows(3));
  await c.idle();
  c.flush(flows(2));
  await c.idle();
  t.same(tool.runs(), [
    'run -D -f ipv4 -p udp --orig-src 192.168.77.10 --orig-port-src 20000',
    'run -D -f ipv4 -p udp --orig-src 192.168.77.10 --orig-port-src 20001',
    'run -D -f ipv4 -p udp --orig-src 192.168.77.10 --orig-port-src 20002',
    'run -D -f ipv4 -p udp --orig-src 192.168.77.10 --orig-port-src 20000',
    'run -D -f ipv4 -p udp --orig-src 192.168.77.10 --orig-port-src 20001',
  ]);
  t.equal(c.runs, 6, 'one -R attempt, then five single runs; -R is not tried again');
  t.same(log.lines.filter((l) => l.event === 'conntrack-failed'), [], 'falling back is not a failure');
});
