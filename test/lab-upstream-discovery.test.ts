// discoverUpstreams against a real kernel: a namespace of this test's own
// with a WAN and a LAN veth, real default routes, and discovery run inside
// it (`ip netns exec … node`, the compiled module). The DS-Lite softwire's
// detection is tested on iproute2's JSON in default-router.test.ts: this
// lab's kernel may lack ip6tnl.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { requireRoot } from './helpers/lab.js';
import type { Discovery } from '../src/net/upstream-discovery.js';

requireRoot();
const NS = `ud${process.pid % 100000}`;
const MODULE = fileURLToPath(new URL('../src/net/upstream-discovery.js', import.meta.url));

function sh(argv: string[]): string {
  const r = spawnSync(argv[0] ?? '', argv.slice(1), { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}
const ip = (...args: string[]) => sh(['ip', '-n', NS, ...args]);

sh(['ip', 'netns', 'add', NS]);
t.teardown(() => void spawnSync('ip', ['netns', 'del', NS], { timeout: 10_000 }));
ip('link', 'set', 'lo', 'up');
for (const [end, peer] of [['wan0', 'wan0-isp'], ['lan0', 'lan0-host']] as const) {
  ip('link', 'add', end, 'type', 'veth', 'peer', 'name', peer);
  ip('link', 'set', end, 'up');
  ip('link', 'set', peer, 'up');
}
ip('addr', 'add', '198.51.100.2/24', 'dev', 'wan0');
ip('addr', 'add', '2001:db8:1::2/64', 'dev', 'wan0', 'nodad');
ip('addr', 'add', '192.168.77.1/24', 'dev', 'lan0');

/** Runs discovery in the namespace, as the daemon there would. */
function discover(wanInterfaces: string[], optionFile: string): Discovery {
  const script = `const m = await import(${JSON.stringify(MODULE)});
process.stdout.write(JSON.stringify(await m.discoverUpstreamsWithNotes(${JSON.stringify({ wanInterfaces, optionFile })})));`;
  return JSON.parse(sh(['ip', 'netns', 'exec', NS, process.execPath, '--input-type=module', '-e', script])) as Discovery;
}

const emptyDir = () => mkdtempSync(join(tmpdir(), 'portcullis-upstream-'));
const NOTHING = join(emptyDir(), 'absent');

t.test('no default route: nothing is known', async (t) => {
  t.same(discover(['wan0'], NOTHING), { candidates: [], notes: [] });
});

t.test('the IPv4 default gateway on the WAN, then the IPv6 one with its interface', async (t) => {
  ip('route', 'add', 'default', 'via', '198.51.100.1', 'dev', 'wan0');
  ip('-6', 'route', 'add', 'default', 'via', 'fe80::1', 'dev', 'wan0');
  t.teardown(() => {
    ip('route', 'del', 'default');
    ip('-6', 'route', 'del', 'default');
  });
  t.same(discover(['wan0'], NOTHING), {
    candidates: [
      { address: '198.51.100.1', source: 'default-router', interface: 'wan0' },
      { address: 'fe80::1', source: 'default-router', interface: 'wan0' },
    ],
    notes: [],
  });
});

t.test('the DHCP hand-over file\'s servers come first, dhcpv6 before dhcpv4, then the default router', async (t) => {
  ip('route', 'add', 'default', 'via', '198.51.100.1', 'dev', 'wan0');
  t.teardown(() => void ip('route', 'del', 'default'));
  const dir = emptyDir();
  // As the udhcpc hook writes opt158 (List-Length 4, 203.0.113.9), and the odhcp6c hook OPTION_86.
  writeFileSync(join(dir, 'udhcpc-wan0'), 'dhcpv4 wan0 hex 04cb007109\n', { mode: 0o644 });
  writeFileSync(join(dir, 'odhcp6c-wan0'), 'dhcpv6 wan0 hex 20010db8000200000000000000000001\n', { mode: 0o644 });
  // A lease on the LAN side names no upstream.
  writeFileSync(join(dir, 'udhcpc-lan0'), 'dhcpv4 lan0 hex 04c0a84d09\n', { mode: 0o644 });
  t.same(discover(['wan0'], dir), {
    candidates: [
      { address: '2001:db8:2::1', source: 'dhcpv6', interface: 'wan0' },
      { address: '203.0.113.9', source: 'dhcpv4', interface: 'wan0' },
      { address: '198.51.100.1', source: 'default-router', interface: 'wan0' },
    ],
    notes: ['servers learned on lan0 are not used: it is not a WAN interface'],
  });
});

t.test('a default route on a LAN interface is not the upstream', async (t) => {
  ip('route', 'add', 'default', 'via', '192.168.77.254', 'dev', 'lan0');
  t.teardown(() => void ip('route', 'del', 'default'));
  t.same(discover(['wan0'], NOTHING), { candidates: [], notes: [] });
  t.same(discover(['lan0'], NOTHING).candidates, [{ address: '192.168.77.254', source: 'default-router', interface: 'lan0' }], 'it is found when that interface is the WAN');
});

t.test('a point-to-point WAN with no gateway (as PPPoE): the peer address is the default router', async (t) => {
  ip('addr', 'add', '100.64.7.9', 'peer', '100.64.0.1/32', 'dev', 'wan0');
  ip('route', 'add', 'default', 'dev', 'wan0');
  t.teardown(() => {
    ip('route', 'del', 'default');
    ip('addr', 'del', '100.64.7.9', 'peer', '100.64.0.1/32', 'dev', 'wan0');
  });
  t.same(discover(['wan0'], NOTHING).candidates, [{ address: '100.64.0.1', source: 'default-router', interface: 'wan0' }]);
});
