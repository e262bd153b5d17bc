// One sequence of nftables operations through one runner, printed as JSON:
// run as `ip netns exec NS node nft-sequence.js library|process`, because an
// in-process libnftables talks to the namespace of the process it is in.
// `backend PATH`: the daemon's backend with nft.path PATH started, and what
// its log said.

import { resolveConfig } from '../../src/config.js';
import { makeBackend } from '../../src/daemon/firewall.js';
import { libraryRunner, openLibnftables } from '../../src/firewall/nft/libnftables.js';
import { monotonicClock } from '../../src/state/clock.js';
import { memoryLogger } from './memory-logger.js';
import { nftRunner, type NftResult, type NftRunner } from '../../src/firewall/nft/run.js';

const SET = { family: 'inet', table: 't', name: 's' };
const elem = (addr: string, port: number) => ({ concat: [addr, port] });

/** nft's error text without where it came from (`/tmp/…/batch-1.nft:1:1-3:` for a file, nothing for a buffer). */
const errorLines = (r: NftResult) =>
  r.stderr
    .split('\n')
    .filter((l) => /Error:/.test(l))
    .map((l) => l.slice(l.indexOf('Error:')));

async function sequence(runner: NftRunner) {
  const out: Record<string, unknown> = {};
  const created = await runner.script('add table inet t\nadd set inet t s { type ipv4_addr . inet_service; flags timeout; }\nadd chain inet t c\nadd rule inet t c ip saddr . tcp dport @s counter accept\n');
  out.created = created.ok;
  const added = await runner.batch([{ add: { element: { ...SET, elem: [elem('10.0.0.1', 80), elem('10.0.0.2', 443)] } } }]);
  out.added = added.ok;
  // The second command names a set that does not exist: nothing of the batch may stay.
  const failed = await runner.batch([{ add: { element: { ...SET, elem: [elem('10.0.0.9', 9)] } } }, { add: { element: { ...SET, name: 'nope', elem: [elem('10.0.0.8', 8)] } } }]);
  out.failed = { ok: failed.ok, errors: errorLines(failed) };
  const badScript = await runner.script('add element inet t s { 10.0.0.7 . 7 }\nadd element inet t nope { 10.0.0.6 . 6 }\n');
  out.badScript = { ok: badScript.ok, errors: errorLines(badScript) };
  const set = await runner.list(['list', 'set', 'inet', 't', 's']);
  out.set = set.ok ? set.items.filter((i) => 'set' in i) : set;
  const chain = await runner.list(['-a', 'list', 'chain', 'inet', 't', 'c']);
  out.ruleHandles = chain.ok ? chain.items.filter((i) => 'rule' in i).map((i) => typeof (i.rule as { handle?: unknown }).handle) : chain;
  const tables = await runner.list(['-t', 'list', 'tables']);
  out.tables = tables.ok ? tables.items.filter((i) => 'table' in i) : tables;
  const got = await runner.script('get element inet t s { 10.0.0.1 . 80 }\n');
  out.got = { ok: got.ok, stdout: got.stdout.replace(/\s+/g, ' ').trim() };
  const missing = await runner.list(['list', 'set', 'inet', 't', 'nope']);
  out.missing = missing.ok ? missing : { ok: false, errors: missing.error.split('\n').filter((l) => /Error:/.test(l)).map((l) => l.slice(l.indexOf('Error:'))) };
  const unknownOption = await runner.list(['-x', 'list', 'tables']);
  out.unknownOption = unknownOption.ok;
  return out;
}

const which = process.argv[2];
if (which === 'backend') {
  const log = memoryLogger();
  const cfg = resolveConfig({}, { lan: ['lan0'], wan: 'wan0', nft: { path: process.argv[3] as 'auto' } });
  const started = await makeBackend(cfg, monotonicClock, log)
    .start()
    .then(() => 'started', (err: Error) => err.message);
  process.stdout.write(JSON.stringify({ started, lines: log.lines.filter((l) => String(l.event).startsWith('nft-')) }));
} else {
  const runner = which === 'library' ? libraryRunner(await openLibnftables()) : nftRunner();
  process.stdout.write(JSON.stringify({ kind: runner.kind, result: await sequence(runner) }));
}
