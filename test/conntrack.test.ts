// Flows to forget go to one conntrack process per batch of filters
// (`conntrack -R FILE`), and one per filter for a tool without -R, each
// only for the filters a flow in the table matches (one `conntrack -L` per
// protocol first): fake tools record how they were run.

import t from 'tap';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConntrackFlusher, flowOf, type FlowSelector } from '../src/firewall/conntrack.js';
import { mustParseIp } from '../src/net/address.js';
import { memoryLogger } from './helpers/memory-logger.js';

/**
 * A stand-in for conntrack: each run appends "run ARGS" and its stdin to a
 * log; `-L` prints `table` (conntrack -L's lines) and fails with
 * `listFails`; `withoutR` answers -R like a tool older than 1.4.6.
 */
function fakeTool(withoutR: boolean, table = '', listFails = false): { binary: string; runs: () => string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-fake-conntrack-'));
  const log = join(dir, 'log');
  writeFileSync(log, '');
  writeFileSync(join(dir, 'table'), table);
  const binary = join(dir, 'conntrack');
  writeFileSync(
    binary,
    `#!/bin/sh\n${withoutR ? `if [ "$1" = "-R" ]; then echo "conntrack: invalid option -- 'R'" >&2; exit 2; fi\n` : ''}` +
      `if [ "$1" = "-L" ]; then echo "run $*" >> ${log}; ${listFails ? 'echo "conntrack: operation failed" >&2; exit 1' : `cat ${join(dir, 'table')}; exit 0`}; fi\n` +
      `if [ "$1" = "-R" ]; then echo "run -R" >> ${log}; cat "$2" >> ${log}; else echo "run $*" >> ${log}; fi\n`,
  );
  chmodSync(binary, 0o755);
  return { binary, runs: () => readFileSync(log, 'utf8').split('\n').filter(Boolean) };
}

const flows = (n: number): FlowSelector[] => Array.from({ length: n }, (_, i) => ({ by: 'source', protocol: 17, address: mustParseIp('192.168.77.10'), port: 20_000 + i }));
/** conntrack -L's line for a UDP flow from 192.168.77.10:port, masqueraded to 11.22.33.1:natPort. */
const udpFlow = (port: number, natPort = port) =>
  `udp      17 29 src=192.168.77.10 dst=198.51.100.2 sport=${port} dport=53 [UNREPLIED] src=198.51.100.2 dst=11.22.33.1 sport=53 dport=${natPort} mark=0 use=1\n`;
/** A flow for every one of flows(n). */
const tableOf = (n: number) => Array.from({ length: n }, (_, i) => udpFlow(20_000 + i)).join('');

t.test('one process takes the queued filters from a file', async (t) => {
  const tool = fakeTool(false, tableOf(300));
  const c = new ConntrackFlusher(memoryLogger(), { via: 'tool', binary: tool.binary });
  c.flush(flows(300));
  await c.idle();
  const lines = tool.runs();
  t.same(
    lines.filter((l) => l.startsWith('run ')),
    ['run -L -f ipv4 -p udp', 'run -R', 'run -L -f ipv4 -p udp', 'run -R'],
    '300 filters, two processes (at most 256 lines each), each after one listing',
  );
  const filters = lines.filter((l) => l.startsWith('-D '));
  t.equal(filters.length, 300);
  t.equal(filters[0], '-D -f ipv4 -p udp --orig-src 192.168.77.10 --orig-port-src 20000');
  t.equal(new Set(filters).size, 300, 'each filter once');
});

t.test('a tool without -R gets one filter per run', async (t) => {
  const tool = fakeTool(true, tableOf(3));
  const log = memoryLogger();
  const c = new ConntrackFlusher(log, { via: 'tool', binary: tool.binary });
  c.flush(flows(3));
  await c.idle();
  c.flush(flows(2));
  await c.idle();
  t.same(tool.runs().filter((l) => !l.startsWith('run -L')), [
    'run -D -f ipv4 -p udp --orig-src 192.168.77.10 --orig-port-src 20000',
    'run -D -f ipv4 -p udp --orig-src 192.168.77.10 --orig-port-src 20001',
    'run -D -f ipv4 -p udp --orig-src 192.168.77.10 --orig-port-src 20002',
    'run -D -f ipv4 -p udp --orig-src 192.168.77.10 --orig-port-src 20000',
    'run -D -f ipv4 -p udp --orig-src 192.168.77.10 --orig-port-src 20001',
  ]);
  t.equal(c.runs, 8, 'a listing before each batch, one -R attempt, then five single runs; -R is not tried again');
  t.same(log.lines.filter((l) => l.event === 'conntrack-failed'), [], 'falling back is not a failure');
});

t.test('filters no flow matches run no deletion; only those some flow matches do', async (t) => {
  // Flows from ports 20 001 and 20 003, and one translated to 11.22.33.1:40 000 (another endpoint's).
  const tool = fakeTool(false, udpFlow(20_001) + udpFlow(20_003) + udpFlow(30_000, 40_000) + 'tcp      6 117 TIME_WAIT src=192.168.77.10 dst=192.168.77.1 sport=20002 dport=5000 src=192.168.77.1 dst=192.168.77.10 sport=5000 dport=20002 [ASSURED] mark=0 use=1\n');
  const c = new ConntrackFlusher(memoryLogger(), { via: 'tool', binary: tool.binary });
  const ext = mustParseIp('11.22.33.1');
  c.flush([...flows(5), { by: 'translated-to', protocol: 17, address: ext, port: 40_000 }, { by: 'translated-to', protocol: 17, address: ext, port: 40_001 }]);
  await c.idle();
  t.same(tool.runs(), [
    'run -L -f ipv4 -p udp',
    'run -R',
    '-D -f ipv4 -p udp --orig-src 192.168.77.10 --orig-port-src 20001',
    '-D -f ipv4 -p udp --orig-src 192.168.77.10 --orig-port-src 20003',
    '-D -f ipv4 -p udp --reply-dst 11.22.33.1 --reply-port-dst 40000',
  ], 'a TCP flow does not stand for a UDP filter');

  const none = fakeTool(false, udpFlow(30_000, 30_000));
  const d = new ConntrackFlusher(memoryLogger(), { via: 'tool', binary: none.binary });
  d.flush(flows(100));
  await d.idle();
  t.same(none.runs(), ['run -L -f ipv4 -p udp'], 'one listing, no deletion');
});

t.test("'destination': the flows reaching a LAN endpoint, IPv4 after DNAT and IPv6, listed per family and deleted by the reply's source", async (t) => {
  // Inbound to 198.51.100.1:40101, DNATed to 192.168.77.2:40101; inbound to an IPv6 pinhole (the tool writes uncompressed zeros here).
  const v4 = 'udp      17 29 src=203.0.113.5 dst=198.51.100.1 sport=45040 dport=40101 src=192.168.77.2 dst=203.0.113.5 sport=40101 dport=45040 [ASSURED] mark=0 use=1\n';
  const v6 = 'tcp      6 431999 ESTABLISHED src=2001:db8:ff::2 dst=2001:db8:77:0:0:0:0:2 sport=45061 dport=40201 src=2001:db8:77:0:0:0:0:2 dst=2001:db8:ff::2 sport=40201 dport=45061 [ASSURED] mark=0 use=1\n';
  const tool = fakeTool(false, v4 + v6);
  const c = new ConntrackFlusher(memoryLogger(), { via: 'tool', binary: tool.binary });
  c.flush([
    { by: 'destination', protocol: 17, address: mustParseIp('192.168.77.2'), port: 40101 },
    { by: 'destination', protocol: 6, address: mustParseIp('2001:db8:77::2'), port: 40201 },
    // No flow reaches these: no deletion for them.
    { by: 'destination', protocol: 17, address: mustParseIp('192.168.77.2'), port: 40102 },
    { by: 'destination', protocol: 6, address: mustParseIp('2001:db8:77::3'), port: 40201 },
  ]);
  await c.idle();
  t.same(tool.runs(), [
    'run -L -f ipv4 -p udp',
    'run -L -f ipv6 -p tcp',
    'run -R',
    '-D -f ipv4 -p udp --reply-src 192.168.77.2 --reply-port-src 40101',
    '-D -f ipv6 -p tcp --reply-src 2001:db8:77::2 --reply-port-src 40201',
  ]);
});

t.test('one listing per protocol the filters name', async (t) => {
  const tool = fakeTool(false, '');
  const c = new ConntrackFlusher(memoryLogger(), { via: 'tool', binary: tool.binary });
  c.flush([...flows(2), { by: 'source', protocol: 6, address: mustParseIp('192.168.77.11'), port: 443 }]);
  await c.idle();
  t.same(tool.runs(), ['run -L -f ipv4 -p udp', 'run -L -f ipv4 -p tcp']);
});

t.test('a listing that fails: every filter is deleted for, as without one', async (t) => {
  const tool = fakeTool(false, '', true);
  const log = memoryLogger();
  const c = new ConntrackFlusher(log, { via: 'tool', binary: tool.binary });
  c.flush(flows(3));
  await c.idle();
  t.same(tool.runs().filter((l) => l.startsWith('-D')).length, 3);
  t.equal(log.lines.filter((l) => l.event === 'conntrack-failed').length, 1, 'the failed listing is logged');
});

t.test('conntrack -L lines: the original source and where the reply goes', async (t) => {
  t.same(flowOf(udpFlow(4000, 4001)), { protocol: 'udp', source: '192.168.77.10', sourcePort: 4000, replyTo: '11.22.33.1', replyToPort: 4001, replyFrom: '198.51.100.2', replyFromPort: 53 });
  t.equal(flowOf('conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.'), undefined);
  t.equal(flowOf('icmp     1 29 src=192.168.77.10 dst=198.51.100.2 type=8 code=0 id=1 src=198.51.100.2 dst=11.22.33.1 type=0 code=0 id=1 mark=0 use=1'), undefined, 'no ports');
  t.same(
    flowOf('tcp      6 431999 ESTABLISHED src=192.168.77.11 dst=203.0.113.9 sport=5555 dport=443 src=203.0.113.9 dst=11.22.33.1 sport=443 dport=6666 [ASSURED] mark=0 zone=3 use=1'),
    { protocol: 'tcp', source: '192.168.77.11', sourcePort: 5555, replyTo: '11.22.33.1', replyToPort: 6666, replyFrom: '203.0.113.9', replyFromPort: 443 },
    'a state, flags and a zone around the tuples',
  );
  t.equal(flowOf('udp 17 29 src=192.168.77.10 dst=198.51.100.2 sport=1 dport=2 src=198.51.100.2 dst=11.22.33.1 sport=2 dport=1 src=192.168.77.9 mark=0'), undefined, 'a third src= is not a flow line');
});

t.test('while changes keep coming, a run waits before the next, so filters gather', async (t) => {
  const tool = fakeTool(false, '');
  const c = new ConntrackFlusher(memoryLogger(), { via: 'tool', binary: tool.binary });
  const started = performance.now();
  c.flush(flows(300));
  await c.idle();
  t.same(tool.runs(), ['run -L -f ipv4 -p udp', 'run -L -f ipv4 -p udp'], 'two runs of at most 256 filters');
  t.ok(performance.now() - started >= 100, 'the second run waited at least 100 ms after the first');
});
