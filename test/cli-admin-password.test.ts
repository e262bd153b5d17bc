// `portcullis admin-password` through the real command: the hash it prints
// is one the admin server's login accepts for that password and refuses for
// another; what it refuses (empty, short, control characters, over 1 KiB,
// not UTF-8, an argument); and on a terminal (a pty from util-linux's
// `script`) the password asked twice and never echoed.

import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { CLI } from './helpers/lab.js';
import { checkPassword, parsePasswordHash } from '../src/server/admin/auth.js';

const run = (input: string | Buffer, args: string[] = []) => {
  const r = spawnSync(process.execPath, [CLI, 'admin-password', ...args], { input, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const hashOf = (out: string) => /^"passwordHash": "(scrypt\$[^"]+)"\n$/.exec(out)?.[1];

t.test('standard input: the printed line holds a hash the server accepts for that password and refuses for another', async (t) => {
  const r = run('correct horse battery\n');
  t.equal(r.code, 0, r.err);
  const hash = hashOf(r.out);
  t.ok(hash, `one config line on stdout: ${r.out}`);
  const parsed = parsePasswordHash(hash as string);
  t.equal(await checkPassword('correct horse battery', parsed), true, 'the same password logs in');
  t.equal(await checkPassword('correct horse batterY', parsed), false, 'another does not');
  t.equal(await checkPassword('correct horse battery\n', parsed), false, 'the line end is not part of it');
  t.match(r.err, /"admin" object of the config file/, 'where to put it, on stderr');
  t.notMatch(`${r.out}${r.err}`, /correct horse/, 'the password itself is never printed');

  const crlf = hashOf(run('correct horse battery\r\nsecond line ignored\n').out);
  t.equal(await checkPassword('correct horse battery', parsePasswordHash(crlf as string)), true, 'CRLF ends the line too; only the first line counts');
  const noNewline = hashOf(run('pässwörd-ünïcode').out);
  t.equal(await checkPassword('pässwörd-ünïcode', parsePasswordHash(noNewline as string)), true, 'no final newline; UTF-8 as a browser sends it');
  const longest = 'x'.repeat(1024);
  t.equal(await checkPassword(longest, parsePasswordHash(hashOf(run(`${longest}\n`).out) as string)), true, '1024 bytes: accepted');
});

t.test('refused with a clear message and exit 2, nothing on stdout', async (t) => {
  const cases: [string, string | Buffer, RegExp][] = [
    ['empty input', '', /the password is empty: nothing was made/],
    ['an empty line', '\nlater\n', /the password is empty/],
    ['7 characters', 'abcdefg\n', /the password is too short: at least 8 characters/],
    ['a tab inside', 'abc\tdefghij\n', /control character/],
    ['1025 bytes', `${'x'.repeat(1025)}\n`, /longer than 1024 bytes/],
    ['a megabyte without a newline', 'y'.repeat(1 << 20), /longer than 1024 bytes/],
    ['not UTF-8', Buffer.from([0x70, 0x61, 0x73, 0x73, 0xff, 0xfe, 0x77, 0x6f, 0x72, 0x64, 0x0a]), /not valid UTF-8/],
  ];
  for (const [what, input, message] of cases) {
    const r = run(input);
    t.equal(r.code, 2, `${what}: exit 2`);
    t.match(r.err, message, `${what}: ${r.err.trim()}`);
    t.equal(r.out, '', `${what}: no hash printed`);
  }
  const arg = run('', ['hunter2-password']);
  t.equal(arg.code, 2);
  t.match(arg.err, /takes no arguments: .*\(an argument shows in ps and the shell's history\)/);
  t.notMatch(arg.err, /hunter2/, 'and does not repeat it');
});

/** The command on a pty: each step waits for its prompt, then types. */
function onTerminal(steps: [RegExp, string][]): Promise<{ code: number | null; screen: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn('script', ['-qfec', `${process.execPath} ${CLI} admin-password`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let screen = '';
    let step = 0;
    let from = 0;
    const timer = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`no prompt within 60 s: ${JSON.stringify(screen)}`));
    }, 60_000);
    c.stdout.on('data', (b: Buffer) => {
      screen += b.toString();
      const next = steps[step];
      if (next && next[0].test(screen.slice(from))) {
        step++;
        from = screen.length;
        c.stdin.write(next[1]);
      }
    });
    c.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, screen });
    });
  });
}

t.test('on a terminal: asked twice, nothing echoed; Backspace edits; two different answers refused', async (t) => {
  const ok = await onTerminal([
    [/New admin password: $/, 'tty-passwordX\u007f\r'],
    [/Again: $/, 'tty-password\r'],
  ]);
  t.equal(ok.code, 0, ok.screen);
  t.notMatch(ok.screen, /tty-pass/, 'the typed password is not on the screen');
  const hash = /"passwordHash": "(scrypt\$[^"]+)"/.exec(ok.screen)?.[1];
  t.equal(await checkPassword('tty-password', parsePasswordHash(hash as string)), true, 'the hash is of what was typed, Backspace applied');

  const differ = await onTerminal([
    [/New admin password: $/, 'first-password\r'],
    [/Again: $/, 'other-password\r'],
  ]);
  t.not(differ.code, 0);
  t.match(differ.screen, /the two passwords differ: nothing was made/);
  t.notMatch(differ.screen, /passwordHash/);

  const short = await onTerminal([[/New admin password: $/, 'short\r']]);
  t.not(short.code, 0);
  t.match(short.screen, /too short: at least 8 characters/, 'refused before asking again');
  t.notMatch(short.screen, /Again/);
});
