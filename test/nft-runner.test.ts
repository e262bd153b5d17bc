// The two paths to the kernel: the same sequence through in-process
// libnftables and through an `nft` process per call gives the same results
// (each in a namespace of its own, since the library talks to the namespace
// of the process it is in); the library runner's serialization, options and
// watchdog against a fake context; and how nft.path chooses.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { libraryRunner, OUTPUT, TRIM_AFTER_BYTES, type NftCall, type NftContext } from '../src/firewall/nft/libnftables.js';
import { chooseRunner, type ChooseDeps } from '../src/firewall/nft/choose.js';
import { NftBackend, NftSetupError } from '../src/firewall/nft/backend.js';
import type { NftRunner } from '../src/firewall/nft/run.js';
import { memoryLogger } from './helpers/memory-logger.js';
import { requireRoot } from './helpers/lab.js';

const SEQUENCE = fileURLToPath(new URL('./helpers/nft-sequence.js', import.meta.url));

t.test('the same sequence through libnftables and through nft processes', async (t) => {
  requireRoot();
  const results: Record<string, { kind: string; result: Record<string, unknown> }> = {};
  for (const kind of ['library', 'process']) {
    const ns = `pnftr${process.pid % 10000}${kind[0]}`;
    spawnSync('ip', ['netns', 'add', ns]);
    t.teardown(() => void spawnSync('ip', ['netns', 'del', ns]));
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, SEQUENCE, kind], { encoding: 'utf8', timeout: 60_000 });
    t.equal(r.status, 0, `${kind}: ${r.stderr}`);
    results[kind] = JSON.parse(r.stdout);
  }
  const lib = results.library!;
  const proc = results.process!;
  t.equal(lib.kind, 'library');
  t.equal(proc.kind, 'process');
  const r = lib.result as Record<string, any>;
  t.equal(r.created, true, 'a script creates the table, set, chain and rule');
  t.equal(r.added, true, 'a JSON batch adds elements');
  t.same(r.failed, { ok: false, errors: ['Error: No such file or directory'] }, 'a failing batch reports nft’s error text');
  t.same(r.badScript, { ok: false, errors: ['Error: No such file or directory'] }, 'so does a failing script');
  t.same(
    r.set[0].set.elem,
    [{ concat: ['10.0.0.1', 80] }, { concat: ['10.0.0.2', 443] }],
    'the listing parses, and neither failing batch left anything (no 10.0.0.9, no 10.0.0.7)',
  );
  t.same(r.ruleHandles, ['number'], '-a lists handles');
  t.match(r.got, { ok: true, stdout: /elements = \{ 10\.0\.0\.1 \. 80 \}/ }, 'a script’s output comes back');
  t.same(r.missing, { ok: false, errors: ['Error: No such file or directory'] }, 'a failing listing reports the error text');
  t.equal(r.unknownOption, false);
  t.same(lib.result, proc.result, 'both paths give the same results');
});

t.test('the daemon’s backend takes the library by default, nft processes when told, and says which', async (t) => {
  requireRoot();
  const ns = `pnftb${process.pid % 10000}`;
  spawnSync('ip', ['netns', 'add', ns]);
  t.teardown(() => void spawnSync('ip', ['netns', 'del', ns]));
  const start = (path: string, env: string[] = []) => {
    spawnSync('ip', ['netns', 'exec', ns, 'nft', 'flush', 'ruleset']);
    const r = spawnSync('ip', ['netns', 'exec', ns, 'env', ...env, process.execPath, SEQUENCE, 'backend', path], { encoding: 'utf8', timeout: 60_000 });
    t.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { started: string; lines: Record<string, unknown>[] };
  };
  const auto = start('auto');
  t.equal(auto.started, 'started');
  t.match(auto.lines, [{ event: 'nft-ready', path: 'library' }]);
  t.equal(auto.lines.length, 1, 'no fallback line');
  t.match(start('process').lines, [{ event: 'nft-ready', path: 'process' }]);
  // Without nft on PATH: auto will not run on the library alone; library does.
  const noNft = ['PATH=/nonexistent'];
  const autoNoNft = start('auto', noNft);
  t.match(autoNoNft.started, /nft binary was not found.*install the Debian package nftables/);
  t.match(autoNoNft.lines, [{ event: 'nft-path', path: 'process', why: /^libnftables answers but nft, its fallback, does not: ENOENT/ }]);
  t.match(start('library', noNft).lines, [{ event: 'nft-ready', path: 'library' }]);
});

/** A context that records what it was asked and answers from `answer` (or never, when it returns undefined). */
function fakeContext(answer: (text: string, flags: number) => NftCall | undefined = () => ({ rc: 0, output: '', error: '' })) {
  const calls: { text: string; flags: number }[] = [];
  let running = 0;
  let overlapped = false;
  const ctx: NftContext = {
    run(text, flags, done) {
      calls.push({ text, flags });
      if (running++) overlapped = true;
      const r = answer(text, flags);
      if (r)
        setTimeout(() => {
          running--;
          done(r);
        }, 2);
    },
  };
  return { ctx, calls, overlapped: () => overlapped };
}

t.test('library runner: calls are serialized, in order, with the CLI’s options as output flags', async (t) => {
  const fake = fakeContext((text) => ({ rc: text.startsWith('bad') ? 1 : 0, output: text === 'list tables' ? '{"nftables":[{"table":{"name":"x"}}]}' : `out:${text}`, error: text.startsWith('bad') ? 'Error: bad\n' : '' }));
  const runner = libraryRunner(fake.ctx);
  const [a, b, c, d] = await Promise.all([
    runner.script('add table inet x\n'),
    runner.batch([{ add: { table: { family: 'inet', name: 'x' } } }]),
    runner.list(['-a', '-t', 'list', 'tables']),
    runner.script('bad\n'),
  ]);
  t.equal(fake.overlapped(), false, 'never two calls on the context at once');
  t.same(fake.calls, [
    { text: 'add table inet x\n', flags: 0 },
    { text: '{"nftables":[{"add":{"table":{"family":"inet","name":"x"}}}]}', flags: OUTPUT.JSON },
    { text: 'list tables', flags: OUTPUT.JSON | OUTPUT.HANDLE | OUTPUT.TERSE },
    { text: 'bad\n', flags: 0 },
  ]);
  t.same(a, { ok: true, stdout: 'out:add table inet x\n', stderr: '' });
  t.equal(b.ok, true);
  t.same(c, { ok: true, items: [{ table: { name: 'x' } }] });
  t.same(d, { ok: false, stdout: 'out:bad\n', stderr: 'Error: bad\n' });
  t.match(await runner.list(['-x', 'list', 'tables']), { ok: false, error: /-x/ }, 'an option with no library equivalent is refused, not ignored');
  t.equal(fake.calls.length, 4, 'and never reaches the context');
});

t.test('library runner: a call that moved TRIM_AFTER_BYTES or more is followed by a trim before the next call; small ones are not', async (t) => {
  const fake = fakeContext((text) => ({ rc: 0, output: text === 'list set inet t big' ? 'x'.repeat(TRIM_AFTER_BYTES) : '', error: '' }));
  const order: string[] = [];
  const ctx: NftContext = {
    run: (text, flags, done) => (order.push(text.slice(0, 20)), fake.ctx.run(text, flags, done)),
    release: (done) => (order.push('trim'), setTimeout(done, 2)),
  };
  const runner = libraryRunner(ctx);
  const big = Array.from({ length: 2048 }, (_, i) => ({ add: { element: { family: 'inet', table: 't', name: 's', elem: [{ elem: { val: { concat: ['2001:db8::1', 'udp', i] } } }] } } }));
  await Promise.all([runner.script('add table inet t\n'), runner.batch(big), runner.script('list tables\n'), runner.script('list set inet t big')]);
  await runner.script('last\n');
  t.same(order, ['add table inet t\n', '{"nftables":[{"add":', 'trim', 'list tables\n', 'list set inet t big', 'trim', 'last\n'], 'a large batch in, a large listing out: each trimmed after; the small calls not');
  const untrimmed = libraryRunner(fake.ctx);
  t.equal((await untrimmed.batch(big)).ok, true, 'a context without release (musl) runs as before');
});

t.test('library runner: a call that outlives the bound fails, and later calls take the fallback', async (t) => {
  const fake = fakeContext(() => undefined);
  const wedged: number[] = [];
  const fallbackCalls: string[] = [];
  const fallback: NftRunner = {
    kind: 'process',
    batch: async () => (fallbackCalls.push('batch'), { ok: true, stdout: '', stderr: '' }),
    script: async (text) => (fallbackCalls.push(text), { ok: true, stdout: 'from fallback', stderr: '' }),
    list: async () => ({ ok: true, items: [] }),
  };
  const runner = libraryRunner(fake.ctx, { timeoutMs: 30, fallback, onWedged: (ms) => wedged.push(ms) });
  t.equal(runner.kind, 'library');
  const [first, second] = await Promise.all([runner.batch([]), runner.script('list ruleset\n')]);
  t.match(first, { ok: false, stderr: /did not return within 30 ms/ });
  t.same(second, { ok: true, stdout: 'from fallback', stderr: '' }, 'the call queued behind it went to the fallback');
  t.same(wedged, [30], 'told once');
  t.equal(fake.calls.length, 1, 'the wedged context is not called again');
  t.same(fallbackCalls, ['list ruleset\n']);
  t.equal(runner.kind, 'process');

  const alone = libraryRunner(fakeContext(() => undefined).ctx, { timeoutMs: 10 });
  t.match(await alone.list(['list', 'tables']), { ok: false, error: /did not return within 10 ms/ });
  t.match(await alone.script('x'), { ok: false, stderr: /no further calls/ }, 'without a fallback, later calls fail at once');
});

const processRunner = (): NftRunner & { calls: string[] } => {
  const calls: string[] = [];
  return {
    kind: 'process',
    calls,
    batch: async () => (calls.push('batch'), { ok: true, stdout: '', stderr: '' }),
    script: async () => (calls.push('script'), { ok: true, stdout: '', stderr: '' }),
    list: async (args) => (calls.push(args.join(' ')), { ok: true, items: [] }),
  };
};

t.test('nft.path: auto takes the library when it loads and answers', async (t) => {
  const log = memoryLogger();
  const proc = processRunner();
  const lib = fakeContext((text) => ({ rc: 0, output: text === 'list tables' ? '{"nftables":[]}' : '', error: '' }));
  const runner = chooseRunner('auto', log, { open: async () => lib.ctx, process: () => proc });
  t.equal(runner.kind, undefined, 'nothing is chosen before the first call');
  t.same(await runner.list(['list', 'tables']), { ok: true, items: [] });
  t.equal(runner.kind, 'library');
  t.same(lib.calls.map((c) => c.text), ['list tables', 'list tables'], 'the probe, then the call');
  t.same(proc.calls, ['list tables'], 'nft, the fallback, was probed once');
  t.same(log.lines, [], 'nothing to say when the fast path works');
});

t.test('nft.path: auto falls back to nft processes, saying why', async (t) => {
  const answers = async () => fakeContext(() => ({ rc: 0, output: '', error: '' })).ctx;
  for (const [what, open, why] of [
    ['the library does not load', async () => Promise.reject(new Error('libnftables.so.1: cannot open shared object file')), /^libnftables does not load: libnftables.so.1: cannot open shared object file$/],
    ['the probe fails', async () => fakeContext(() => ({ rc: 1, output: '', error: 'Error: Operation not permitted\n' })).ctx, /^libnftables: 'list tables' failed: Error: Operation not permitted$/],
    ['nft, the fallback, is missing', answers, /^libnftables answers but nft, its fallback, does not: spawn nft ENOENT$/],
  ] as [string, ChooseDeps['open'], RegExp][]) {
    const log = memoryLogger();
    const proc = processRunner();
    const noNft = what.startsWith('nft');
    const runner = chooseRunner('auto', log, { open, process: () => (noNft ? { ...proc, list: async (args) => (proc.calls.push(args.join(' ')), { ok: false, error: 'spawn nft ENOENT' }) } : proc) });
    const [a, b] = await Promise.all([runner.list(['list', 'tables']), runner.script('x')]);
    t.same([a.ok, b.ok], [!noNft, true], `${what}: calls go to the process path`);
    t.same(proc.calls, noNft ? ['list tables', 'list tables', 'script'] : ['list tables', 'script']);
    t.equal(runner.kind, 'process');
    t.match(log.lines, [{ level: 'warn', event: 'nft-path', path: 'process', why }]);
    t.equal(log.lines.length, 1, `${what}: one line, once`);
  }
});

t.test('nft.path: process never opens the library; library that cannot load fails the backend’s start', async (t) => {
  let opened = false;
  const proc = processRunner();
  const processOnly = chooseRunner('process', memoryLogger(), { open: async () => ((opened = true), fakeContext().ctx), process: () => proc });
  await processOnly.batch([]);
  t.equal(opened, false);
  t.equal(processOnly.kind, 'process');

  const log = memoryLogger();
  const libraryOnly = chooseRunner('library', log, { open: async () => Promise.reject(new Error('Cannot find package koffi')), process: processRunner });
  const backend = new NftBackend({ family: 'inet', table: 'portcullis', embedded: false }, { wans: ['wan0'], lan: ['lan0'], mark: 1, deviceUdpRate: { perSecond: 0, burst: 1 }, guarded: { udp: [5351], tcp: [] } }, log, libraryOnly);
  await t.rejects(backend.start(), new NftSetupError("nft.path is 'library' but libnftables does not load: Cannot find package koffi"));
});
