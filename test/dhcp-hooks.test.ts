// The DHCP client hooks shipped in packaging/dhcp/, run as their clients
// run them (sourced by a POSIX shell with the client's variables), writing
// into a directory of this test's own; what they write is then read by the
// daemon's own reader (src/net/pcp-server-file.ts).

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { learnedServers } from '../src/net/pcp-server-file.js';

const HOOKS = fileURLToPath(new URL('../../packaging/dhcp/', import.meta.url));

function fresh(): string {
  return join(mkdtempSync(join(tmpdir(), 'portcullis-hooks-')), 'pcp-servers');
}

/** Sources `hook` in sh with these positional arguments and variables, as the DHCP client's script does. */
function runHook(dir: string, hook: string, args: string[], vars: Record<string, string>): { code: number; stderr: string } {
  const r = spawnSync('sh', ['-c', `. "${join(HOOKS, hook)}"`, 'sh', ...args], {
    encoding: 'utf8',
    timeout: 10_000,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PORTCULLIS_PCP_SERVERS: dir, PORTCULLIS_PCP_WRITER: join(HOOKS, 'portcullis-pcp-servers'), ...vars },
  });
  return { code: r.status ?? -1, stderr: r.stderr };
}

const visible = (dir: string) => (existsSync(dir) ? readdirSync(dir).sort() : []);

t.test('udhcpc: opt158 on bound is written, the daemon reads it; deconfig removes it', async (t) => {
  const dir = fresh();
  t.equal(runHook(dir, 'udhcpc.user', ['bound'], { interface: 'wan0', opt158: '08c6336401c633640204cb007109' }).code, 0);
  t.same(visible(dir), ['udhcpc-wan0'], 'one file, no temporary left');
  t.equal(statSync(dir).mode & 0o777, 0o755, 'a directory the reader trusts');
  t.equal(statSync(join(dir, 'udhcpc-wan0')).mode & 0o777, 0o644);
  const r = await learnedServers(dir, ['wan0']);
  t.same(r, {
    servers: [
      { source: 'dhcpv4', interface: 'wan0', addresses: ['198.51.100.1', '198.51.100.2'] },
      { source: 'dhcpv4', interface: 'wan0', addresses: ['203.0.113.9'] },
    ],
    notes: [],
  });
  t.equal(runHook(dir, 'udhcpc.user', ['renew'], { interface: 'wan0' }).code, 0, 'a renewal without the option');
  t.same(visible(dir), [], 'forgets the servers');
  runHook(dir, 'udhcpc.user', ['bound'], { interface: 'wan0', opt158: '04c6336401' });
  runHook(dir, 'udhcpc.user', ['deconfig'], { interface: 'wan0' });
  t.same(visible(dir), []);
});

t.test('odhcp6c: OPTION_86 written on bound, kept on an RA update, removed when stopped', async (t) => {
  const dir = fresh();
  const v6 = '20010db8000200000000000000000001' + '00000000000000000000ffffcb007109';
  t.equal(runHook(dir, 'odhcp6c.user', ['wan0', 'bound'], { OPTION_86: v6 }).code, 0);
  t.same((await learnedServers(dir, ['wan0'])).servers, [{ source: 'dhcpv6', interface: 'wan0', addresses: ['2001:db8:2::1', '203.0.113.9'] }]);
  runHook(dir, 'odhcp6c.user', ['wan0', 'ra-updated'], {});
  t.same(visible(dir), ['odhcp6c-wan0'], 'an RA says nothing about DHCP options');
  runHook(dir, 'odhcp6c.user', ['wan0', 'stopped'], {});
  t.same(visible(dir), []);
});

t.test('dhclient: option 158 as decimal octets, option 86 as addresses; EXPIRE removes', async (t) => {
  const dir = fresh();
  t.equal(runHook(dir, 'dhclient-exit-hook', [], { reason: 'BOUND', interface: 'eth1', new_pcp_server_v4: '4 198 51 100 1' }).code, 0);
  t.equal(runHook(dir, 'dhclient-exit-hook', [], { reason: 'BOUND6', interface: 'eth1', new_dhcp6_pcp_server: '2001:db8:2::1 2001:db8:2::2' }).code, 0);
  t.same((await learnedServers(dir, ['eth1'])).servers, [
    { source: 'dhcpv6', interface: 'eth1', addresses: ['2001:db8:2::1', '2001:db8:2::2'] },
    { source: 'dhcpv4', interface: 'eth1', addresses: ['198.51.100.1'] },
  ]);
  runHook(dir, 'dhclient-exit-hook', [], { reason: 'EXPIRE', interface: 'eth1' });
  runHook(dir, 'dhclient-exit-hook', [], { reason: 'STOP6', interface: 'eth1' });
  t.same(visible(dir), []);
  runHook(dir, 'dhclient-exit-hook', [], { reason: 'BOUND', interface: 'eth1', new_pcp_server_v4: '4 198 51 100 999' });
  t.same(visible(dir), [], 'an octet over 255 writes nothing');
});

t.test('the writer refuses what is not a name, hex or an address, and writes nothing', async (t) => {
  const dir = fresh();
  const writer = join(HOOKS, 'portcullis-pcp-servers');
  const cases: [string[], RegExp][] = [
    [['set', 'udhcpc', 'dhcpv4', '../../etc', 'hex', '04c6336401'], /'..\/..\/etc' is not an interface name/],
    [['set', 'udhcpc', 'dhcpv4', 'wan0', 'hex', '04c6;reboot'], /'04c6;reboot' is not hex/],
    [['set', 'udhcpc', 'dhcpv9', 'wan0', 'hex', '04'], /'dhcpv9' is not dhcpv6 or dhcpv4/],
    [['set', 'x/y', 'dhcpv4', 'wan0', 'hex', '04'], /'x\/y' is not a client name/],
    [['set', 'udhcpc', 'dhcpv4', 'wan0', 'addr', '$(id)'], /is not addr/],
    [['set', 'udhcpc', 'dhcpv4', 'wan0', 'b64', 'AAAA'], /'b64' is not hex or addr/],
    [['clear', 'udhcpc', '../x'], /is not an interface name/],
  ];
  for (const [args, why] of cases) {
    const r = spawnSync('sh', [writer, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', PORTCULLIS_PCP_SERVERS: dir } });
    t.equal(r.status, 2, args.join(' '));
    t.match(r.stderr, why);
  }
  t.same(visible(dir), []);
});

t.test('a hook whose writer fails does not fail the DHCP client\'s script, even under set -e', async (t) => {
  for (const [hook, args, vars] of [
    ['udhcpc.user', ['bound'], { interface: 'wan0', opt158: '04c6336401' }],
    ['odhcp6c.user', ['wan0', 'bound'], { OPTION_86: '20010db8000200000000000000000001' }],
    ['dhclient-exit-hook', [], { reason: 'BOUND', interface: 'eth1', new_pcp_server_v4: '4 198 51 100 1' }],
  ] as const) {
    const r = spawnSync('sh', ['-e', '-c', `. "${join(HOOKS, hook)}"; echo the script goes on`, 'sh', ...args], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '', PORTCULLIS_PCP_WRITER: '/nonexistent/portcullis-pcp-servers', ...vars },
    });
    t.equal(r.status, 0, hook);
    t.equal(r.stdout, 'the script goes on\n', hook);
  }
});
