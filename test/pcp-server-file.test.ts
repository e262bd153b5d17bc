// The option file DHCP client hooks write (src/net/pcp-server-file.ts): the
// line grammar, what counts (WAN interfaces only, dhcpv6 before dhcpv4), what
// is refused and said, and the reader's bounds on a real directory.

import { chmodSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import fc from 'fast-check';
import { resolveRuns, resolveSeed } from './helpers/fuzz.js';
import { spawnSync } from 'node:child_process';
import {
  learnedServers,
  MAX_FILE_BYTES,
  MAX_FILES,
  MAX_LINES,
  parseHexData,
  parseOptionTexts,
  readOptionTexts,
} from '../src/net/pcp-server-file.js';

const WAN = ['wan0', 'wan6'];
const parse = (text: string, wan = WAN) => parseOptionTexts([{ name: 'f', text }], wan);

t.test('hex data: continuous, or colon-separated octets of one or two digits (dhclient)', async (t) => {
  t.same(parseHexData('04C0000201'), Buffer.from([4, 0xc0, 0, 2, 1]));
  t.same(parseHexData('4:c0:0:2:1'), Buffer.from([4, 0xc0, 0, 2, 1]));
  t.equal(parseHexData('4c0'), undefined, 'odd digits');
  t.equal(parseHexData('4::c0'), undefined, 'an empty octet');
  t.equal(parseHexData('4:c00'), undefined, 'three digits');
  t.equal(parseHexData('zz'), undefined);
});

t.test('servers in order: dhcpv6 first, then dhcpv4; the WAN interfaces in their order', async (t) => {
  const r = parse(
    [
      '# written by the udhcpc hook',
      'dhcpv4 wan0 hex 04c6336401',
      '',
      'dhcpv6 wan6 hex 20010db8000000000000000000000001',
      'dhcpv6 wan6 hex 20010db80000000000000000000000020000000000000000' + '0000ffffcb007109',
    ].join('\n'),
  );
  t.same(r.notes, []);
  t.same(r.servers, [
    { source: 'dhcpv6', interface: 'wan6', addresses: ['2001:db8::1'] },
    { source: 'dhcpv6', interface: 'wan6', addresses: ['2001:db8::2', '203.0.113.9'] },
    { source: 'dhcpv4', interface: 'wan0', addresses: ['198.51.100.1'] },
  ]);
});

t.test('dhcpv4 hex lines of one interface are the instances of one option, joined in order', async (t) => {
  const r = parse('dhcpv4 wan0 hex 08c63364\ndhcpv4 wan0 hex 01c6336402\ndhcpv4 wan0 hex 04:cb:0:71:9\n');
  t.same(r.servers.map((s) => s.addresses), [['198.51.100.1', '198.51.100.2'], ['203.0.113.9']]);
  t.same(r.notes, []);
});

t.test('instances are joined within one file (one DHCP message), never across two clients\' files', async (t) => {
  const r = parseOptionTexts(
    [
      { name: 'udhcpc-wan0', text: 'dhcpv4 wan0 hex 04c6336401\n' },
      { name: 'dhclient-wan0', text: 'dhcpv4 wan0 hex 04cb007109\n' },
    ],
    WAN,
  );
  t.same(r.servers.map((s) => s.addresses), [['198.51.100.1'], ['203.0.113.9']]);
  const cut = parseOptionTexts([{ name: 'a', text: 'dhcpv4 wan0 hex 08c6336401\n' }, { name: 'b', text: 'dhcpv4 wan0 hex c6336402\n' }], WAN);
  t.same(cut.servers, [], 'a list cut short in one file is not completed from another');
  t.equal(cut.notes.length, 2);
});

t.test('addr lines: one server a line, the same rules (discard, dedupe) as decoded options', async (t) => {
  const r = parse('dhcpv6 wan0 addr 2001:DB8::1 192.0.2.1 2001:db8::1\ndhcpv6 wan0 addr ff02::1\n');
  t.same(r.servers, [{ source: 'dhcpv6', interface: 'wan0', addresses: ['2001:db8::1', '192.0.2.1'] }]);
  t.same(r.notes, ['dhcpv6 on wan0: ff02::1 discarded (multicast)']);
});

t.test('stale-safe: lines of an interface that is not a WAN interface are not used, and said', async (t) => {
  const r = parse('dhcpv4 eth9 hex 04c6336401\ndhcpv6 br-lan addr 2001:db8::7\n');
  t.same(r.servers, []);
  t.same(r.notes, ['servers learned on eth9 are not used: it is not a WAN interface', 'servers learned on br-lan are not used: it is not a WAN interface']);
});

t.test('malformed lines are skipped with the line and the reason; a malformed option is refused whole', async (t) => {
  const r = parse(
    [
      'dhcpv5 wan0 hex 00',
      'dhcpv4 wan0/x hex 00',
      'dhcpv4 wan0 base64 AAAA',
      'dhcpv4 wan0 hex 04c6336401 extra',
      'dhcpv4 wan0 hex xyz',
      'dhcpv6 wan0 addr fe80::1%eth0',
      'dhcpv6 wan0 addr',
      'dhcpv6 wan6 hex 20010db8',
      'dhcpv4 wan6 hex 04c6336401',
      'dhcpv4 wan6 addr 198.51.100.3',
    ].join('\n'),
  );
  t.same(r.servers, []);
  t.same(r.notes, [
    "f line 1: 'dhcpv5' is not dhcpv6 or dhcpv4",
    "f line 2: 'wan0/x' is not an interface name",
    "f line 3: 'base64' is not hex or addr",
    'f line 4: hex takes one DATA field, not 2',
    'f line 5: the DATA is not hex octets',
    "f line 6: 'fe80::1%eth0' is not an IP address",
    'f line 7: addr takes 1 to 8 addresses, not 0',
    'dhcpv6 on wan6 (f line 8): OPTION_V6_PCP_SERVER instance 1: option-length 4 is not a multiple of 16; not used',
    'dhcpv4 on wan6 (f line 9, f line 10): hex and addr lines mixed: which one is the option is unclear; not used',
  ]);
});

t.test('bounds: lines past the cap are not read; an overlong line is refused', async (t) => {
  const many = Array.from({ length: MAX_LINES + 5 }, () => 'dhcpv6 wan0 addr 2001:db8::1').join('\n');
  const r = parse(many);
  t.same(r.notes, [
    `f line ${MAX_LINES + 1}: more than ${MAX_LINES} lines; the rest is not read`,
    `dhcpv6 on wan0 (f line 1 and ${MAX_LINES - 1} more lines): ${MAX_LINES} servers, more than the 8 taken; not used`,
  ]);
  t.same(r.servers, []);
  const long = parse(`dhcpv4 wan0 hex ${'04c6336401'.repeat(700)}`);
  t.match(long.notes, [/f line 1: longer than \d+ characters/]);
});

const dir = () => mkdtempSync(join(tmpdir(), 'portcullis-pcp-servers-'));

t.test('reader: a directory of hook files, name order, dot files (writes in progress) left out', async (t) => {
  const d = dir();
  chmodSync(d, 0o755);
  writeFileSync(join(d, 'udhcpc-wan0'), 'dhcpv4 wan0 hex 04c6336401\n', { mode: 0o644 });
  writeFileSync(join(d, 'odhcp6c-wan0'), 'dhcpv6 wan0 addr 2001:db8::1\n', { mode: 0o644 });
  writeFileSync(join(d, '.udhcpc-wan0.tmp'), 'dhcpv4 wan0 hex 04cb007109\n', { mode: 0o644 });
  const r = await learnedServers(d, ['wan0']);
  t.same(r.notes, []);
  t.same(r.servers.map((s) => [s.source, s.addresses]), [
    ['dhcpv6', ['2001:db8::1']],
    ['dhcpv4', ['198.51.100.1']],
  ]);
});

t.test('reader: a plain file at the path is read; nothing at the path is nothing, quietly', async (t) => {
  const d = dir();
  const f = join(d, 'pcp-servers');
  writeFileSync(f, 'dhcpv4 wan0 addr 198.51.100.1\n', { mode: 0o644 });
  t.same((await learnedServers(f, ['wan0'])).servers.map((s) => s.addresses), [['198.51.100.1']]);
  t.same(await readOptionTexts(join(d, 'absent')), { texts: [], notes: [] });
});

t.test('reader: links are not followed, oversized and writable-by-others files are not read', async (t) => {
  const d = dir();
  chmodSync(d, 0o755);
  const outside = join(dir(), 'elsewhere');
  writeFileSync(outside, 'dhcpv4 wan0 addr 198.51.100.66\n', { mode: 0o644 });
  symlinkSync(outside, join(d, 'a-link'));
  writeFileSync(join(d, 'b-big'), `# ${'x'.repeat(MAX_FILE_BYTES)}\n`, { mode: 0o644 });
  writeFileSync(join(d, 'c-open'), 'dhcpv4 wan0 addr 198.51.100.67\n');
  chmodSync(join(d, 'c-open'), 0o666);
  writeFileSync(join(d, 'd-good'), 'dhcpv4 wan0 addr 198.51.100.1\n', { mode: 0o644 });
  const r = await learnedServers(d, ['wan0']);
  t.same(r.servers.map((s) => s.addresses), [['198.51.100.1']]);
  t.same(r.notes, [`${join(d, 'b-big')} is not read: larger than ${MAX_FILE_BYTES} bytes`, `${join(d, 'c-open')} is not read: writable by its group and others`]);
});

t.test('reader: a directory others may write is not read at all; at most MAX_FILES files', async (t) => {
  const open = dir();
  writeFileSync(join(open, 'x'), 'dhcpv4 wan0 addr 198.51.100.1\n', { mode: 0o644 });
  chmodSync(open, 0o777);
  t.same(await readOptionTexts(open), { texts: [], notes: [`${open} is not read: writable by its group and others`] });
  const full = dir();
  chmodSync(full, 0o755);
  mkdirSync(join(full, 'a-subdir'));
  for (let i = 0; i < MAX_FILES + 2; i++) writeFileSync(join(full, `f${String(i).padStart(2, '0')}`), '# empty\n', { mode: 0o644 });
  const r = await readOptionTexts(full);
  t.equal(r.texts.length, MAX_FILES);
  t.same(r.notes, [`${full}: ${MAX_FILES + 2} files, only the first ${MAX_FILES} are read`]);
});

t.test('reader: a FIFO at the path (nobody writing) does not hang discovery; it is refused', async (t) => {
  const d = dir();
  const fifo = join(d, 'pcp-servers');
  t.equal(spawnSync('mkfifo', ['-m', '0644', fifo]).status, 0, 'mkfifo');
  t.same(await readOptionTexts(fifo), { texts: [], notes: [`${fifo} is not read: not a regular file`] });
});

const SEED = resolveSeed(7292);
const RUNS = resolveRuns(1000);

t.test('fuzz: any text parses without a throw, within the bounds', async (t) => {
  const line = fc.oneof(
    fc.string({ maxLength: 80 }),
    fc.tuple(fc.constantFrom('dhcpv4', 'dhcpv6'), fc.constantFrom('wan0', 'lan0'), fc.constantFrom('hex', 'addr'), fc.string({ maxLength: 60 }))
      .map((f) => f.join(' ')),
    fc.tuple(fc.constantFrom('dhcpv4 wan0 hex ', 'dhcpv6 wan0 hex '), fc.uint8Array({ maxLength: 80 })).map(([p, b]) => p + Buffer.from(b).toString('hex')),
  );
  fc.assert(
    fc.property(fc.array(line, { maxLength: 40 }), (lines) => {
      const r = parseOptionTexts([{ name: 'f', text: lines.join('\n') }], ['wan0']);
      return r.servers.length <= 16 && r.servers.every((s) => s.interface === 'wan0' && s.addresses.length >= 1 && s.addresses.length <= 8);
    }),
    { numRuns: RUNS, seed: SEED },
  );
  t.pass(`${RUNS} runs, FUZZ_SEED=${SEED}`);
});
