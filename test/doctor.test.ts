// portcullis doctor's checks against real nftables rulesets and real links,
// in a network namespace this test makes (the checks' view runs nft and ip
// there), and the WAN address verdicts.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import type { NetworkInterfaceInfo } from 'node:os';
import { mustParseIp, type IpAddress } from '../src/net/address.js';
import { classifyWanIPv4 } from '../src/net/wan-address.js';
import { formatChecks, runChecks, type DoctorSettings, type SystemView } from '../src/doctor/checks.js';
import { requireRoot } from './helpers/lab.js';

requireRoot();
const NS = `pdoc${process.pid % 10000}`;
const sh = (args: string[], input?: string) => spawnSync('ip', ['netns', 'exec', NS, ...args], { encoding: 'utf8', input, timeout: 10_000 });
spawnSync('ip', ['netns', 'add', NS]);
t.teardown(() => void spawnSync('ip', ['netns', 'del', NS]));
sh(['ip', 'link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan0p']);
sh(['ip', 'link', 'add', 'wan0', 'type', 'veth', 'peer', 'name', 'wan0p']);
sh(['ip', 'link', 'set', 'wan0', 'up']);

const MARK = 0x10000000;
const SETTINGS: DoctorSettings = { lan: ['lan0'], wans: ['wan0'], nft: { table: 'portcullis', embed: false, mark: MARK } };

/** The real system, seen from inside the namespace; addresses as given (os.networkInterfaces cannot look into it). */
function view(opts: { forwarding?: [string, string]; addresses?: Record<string, string[]> } = {}): SystemView {
  const [v4, v6] = opts.forwarding ?? ['1\n', '1\n'];
  return {
    async nftJson(args) {
      const r = sh(['nft', '-j', ...args]);
      if (r.status !== 0) return { ok: false, error: r.stderr.trim() };
      return { ok: true, items: (JSON.parse(r.stdout) as { nftables: Record<string, unknown>[] }).nftables };
    },
    read: (path) => (path.includes('ipv4') ? v4 : v6),
    async links() {
      const r = sh(['ip', '-j', 'link', 'show']);
      return new Map((JSON.parse(r.stdout) as { ifname: string; flags: string[] }[]).map((l) => [l.ifname, { up: l.flags.includes('UP') }]));
    },
    interfaces: () => {
      const out: NodeJS.Dict<NetworkInterfaceInfo[]> = {};
      for (const [name, list] of Object.entries(opts.addresses ?? {})) {
        out[name] = list.map((cidr) => {
          const address = cidr.slice(0, cidr.indexOf('/'));
          return address.includes(':')
            ? { address, cidr, netmask: '', family: 'IPv6', mac: '00:00:00:00:00:00', internal: false, scopeid: 0 }
            : { address, cidr, netmask: '', family: 'IPv4', mac: '00:00:00:00:00:00', internal: false };
        });
      }
      return out;
    },
  };
}
const nft = (script: string) => {
  const r = sh(['nft', '-f', '-'], script);
  if (r.status !== 0) throw new Error(r.stderr);
};
const byName = (checks: Awaited<ReturnType<typeof runChecks>>, name: string) => checks.find((c) => c.name === name);

t.test('WAN addresses: public, RFC 1918, shared (CGN), DS-Lite, none, link-local', async (t) => {
  const cases: [string | undefined, string, boolean][] = [
    ['203.0.113.7', 'public', true],
    ['198.51.100.1', 'public', true],
    ['8.8.4.4', 'public', true],
    ['192.168.1.20', 'private', false],
    ['10.1.2.3', 'private', false],
    ['172.20.0.5', 'private', false],
    ['172.32.0.5', 'public', true],
    ['100.64.0.1', 'shared', false],
    ['100.127.255.254', 'shared', false],
    ['100.128.0.1', 'public', true],
    ['192.0.0.2', 'ds-lite', false],
    [undefined, 'ds-lite', false],
    ['169.254.3.4', 'link-local', false],
  ];
  for (const [a, kind, reachable] of cases) {
    const v = classifyWanIPv4(a === undefined ? undefined : mustParseIp(a));
    t.equal(v.kind, kind, `${a ?? 'no address'}: ${kind}`);
    t.equal(v.reachable, reachable);
    if (!reachable) t.match(v.detail, /NOT reachable from the internet/, 'says so plainly');
  }
});

t.test('a router in good shape: every check ok', async (t) => {
  sh(['ip', 'link', 'set', 'lan0', 'up']);
  nft('flush ruleset\n');
  const checks = await runChecks({ ...SETTINGS, externalIp: mustParseIp('203.0.113.7') }, view({ addresses: { lan0: ['192.168.1.1/24'] } }));
  t.same(checks.filter((c) => c.status !== 'ok'), [], formatChecks(checks));
  t.match(formatChecks(checks), /^ok +nftables: /m);
});

t.test('forwarding off, LAN down or missing: fail, each with its fix', async (t) => {
  nft('flush ruleset\n');
  sh(['ip', 'link', 'set', 'lan0', 'down']);
  const checks = await runChecks({ ...SETTINGS, lan: ['lan0', 'nope0'] }, view({ forwarding: ['0\n', '1\n'], addresses: { wan0: ['203.0.113.7/24'] } }));
  t.match(byName(checks, 'forwarding'), { status: 'fail', detail: /IPv4 forwarding is off/, fix: /net\.ipv4\.ip_forward=1/ });
  t.match(byName(checks, 'LAN lan0'), { status: 'fail', detail: /lan0 is down/, fix: 'ip link set lan0 up' });
  t.match(byName(checks, 'LAN nope0'), { status: 'fail', detail: /does not exist/ });
  t.match(byName(checks, 'WAN address'), { status: 'ok', detail: /203\.0\.113\.7/ }, 'the WAN interface\'s address when none is given');
  sh(['ip', 'link', 'set', 'lan0', 'up']);
});

t.test("the admin's forward chain with policy drop: fail without the mark line, ok with it", async (t) => {
  nft(`flush ruleset
table inet filter {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
  }
}
`);
  const before = await runChecks({ ...SETTINGS, externalIp: mustParseIp('203.0.113.7') }, view({ addresses: { lan0: ['192.168.1.1/24'] } }));
  const fp = byName(before, 'forward policy');
  t.match(fp, { status: 'fail', detail: /inet filter forward drops by default/ });
  t.equal(fp?.fix, 'nft insert rule inet filter forward meta mark & 0x10000000 == 0x10000000 accept', 'the fix is the one line, for that chain');
  // The admin runs the fix as printed.
  const r = sh(['nft', ...(fp?.fix ?? '').replace(/^nft /, '').split(' ')]);
  t.equal(r.status, 0, `the printed fix is a valid nft command: ${r.stderr}`);
  const after = await runChecks({ ...SETTINGS, externalIp: mustParseIp('203.0.113.7') }, view({ addresses: { lan0: ['192.168.1.1/24'] } }));
  t.match(byName(after, 'forward policy'), { status: 'ok' });
});

t.test('embedded: every missing jump named with its command; none missing is ok', async (t) => {
  nft(`flush ruleset
table inet fw4 {
  chain portcullis_input {
  }
  chain input {
    type filter hook input priority filter; policy drop;
    jump portcullis_input
  }
}
`);
  const s: DoctorSettings = { ...SETTINGS, externalIp: mustParseIp('203.0.113.7'), nft: { table: 'fw4', embed: true, mark: MARK } };
  const half = byName(await runChecks(s, view({ addresses: { lan0: ['192.168.1.1/24'] } })), 'embedded jumps');
  t.match(half, { status: 'fail' });
  t.notMatch(half?.detail ?? '', /portcullis_input/, 'the input jump is there');
  for (const c of ['portcullis_prerouting', 'portcullis_forward', 'portcullis_postrouting']) t.match(half?.detail ?? '', c, `${c} is missing`);
  t.match(half?.fix ?? '', /packaging\/openwrt\/nftables\.d/, 'OpenWrt: the include files');
  nft(`table inet fw4 {
  chain portcullis_prerouting {
  }
  chain portcullis_forward {
  }
  chain portcullis_postrouting {
  }
  chain dstnat {
    type nat hook prerouting priority dstnat; policy accept;
    jump portcullis_prerouting
  }
  chain forward_wan {
    jump portcullis_forward
  }
  chain srcnat {
    type nat hook postrouting priority srcnat; policy accept;
    jump portcullis_postrouting
  }
}
`);
  t.match(byName(await runChecks(s, view({ addresses: { lan0: ['192.168.1.1/24'] } })), 'embedded jumps'), { status: 'ok' });
});

t.test('behind another NAT: a warning that says IPv4 mappings are not reachable', async (t) => {
  nft('flush ruleset\n');
  for (const [a, re] of [
    ['100.64.1.2', /carrier-grade NAT/],
    ['192.168.0.10', /private address/],
  ] as [string, RegExp][]) {
    const checks = await runChecks({ ...SETTINGS, externalIp: a as IpAddress }, view({ addresses: { lan0: ['192.168.1.1/24'] } }));
    t.match(byName(checks, 'WAN address'), { status: 'warn', detail: re });
    t.match(formatChecks(checks), /^WARN +WAN address: .*NOT reachable from the internet/m);
  }
  const none = await runChecks(SETTINGS, view({ addresses: { lan0: ['192.168.1.1/24'] } }));
  t.match(byName(none, 'WAN address'), { status: 'warn', detail: /no IPv4 address/ }, 'no IPv4 on the WAN: DS-Lite or IPv6-only');
});

t.test('behind the ISP\'s NAT: relayed to a PCP server that answers is ok; none answering says so, with what was tried', async (t) => {
  const cgn = { ...SETTINGS, externalIp: '100.64.1.2' as IpAddress };
  const base = view({ addresses: { lan0: ['192.168.1.1/24'] } });
  const asked: (IpAddress | undefined)[] = [];
  const relayed = await runChecks(cgn, { ...base, upstreamPcp: async (a) => (asked.push(a), { found: { server: '100.64.0.1:5351', source: 'default-router' }, tried: ['100.64.0.1:5351'] }) });
  t.same(asked, ['100.64.1.2'], 'probed from the WAN address');
  t.match(byName(relayed, 'WAN address'), { status: 'ok', detail: /PCP server 100\.64\.0\.1:5351 \(default-router\) answers: IPv4 mappings are relayed/ });
  const silent = await runChecks(cgn, { ...base, upstreamPcp: async () => ({ tried: ['100.64.0.1:5351'] }) });
  t.match(byName(silent, 'WAN address'), { status: 'warn', detail: /NOT reachable from the internet.*No upstream PCP server answered \(tried 100\.64\.0\.1:5351\)/, fix: /--upstream-pcp/ });
  const nothing = await runChecks(cgn, { ...base, upstreamPcp: async () => ({ tried: [] }) });
  t.match(byName(nothing, 'WAN address'), { status: 'warn', detail: /none configured or discovered/ });
});

t.test('a WAN zone of several (DS-Lite: the native link and the softwire): each checked, the one with IPv4 named', async (t) => {
  sh(['ip', 'link', 'add', 'ds0', 'type', 'veth', 'peer', 'name', 'ds0p']);
  sh(['ip', 'link', 'set', 'ds0', 'up']);
  t.teardown(() => void sh(['ip', 'link', 'del', 'ds0']));
  const addresses = { lan0: ['192.168.1.1/24'], wan0: ['2001:db8:64::2/64'], ds0: ['192.0.0.2/29'] };
  const checks = await runChecks({ ...SETTINGS, wans: ['wan0', 'ds0', 'gone0'] }, view({ addresses }));
  t.match(byName(checks, 'WAN wan0'), { status: 'ok', detail: "wan0 is up; no IPv4 address (IPv4 is ds0's)" });
  t.match(byName(checks, 'WAN ds0'), { status: 'ok', detail: 'ds0 is up; it carries IPv4 (192.0.0.2): its address is the external one' });
  t.match(byName(checks, 'WAN gone0'), { status: 'warn', detail: /gone0 does not exist \(yet\): the daemon starts/, fix: /check --wan/ }, 'one WAN not there yet beside others: a warning (a softwire made after boot)');
  const none = await runChecks({ ...SETTINGS, wans: ['gone0', 'gone1'] }, view({ addresses }));
  t.match(byName(none, 'WAN gone0'), { status: 'fail', detail: /nor does any other WAN interface: the daemon does not start/ }, 'none there: a failure');
  t.match(byName(checks, 'WAN address'), { detail: /^192\.0\.0\.2 is a DS-Lite address/ }, 'the line is judged by the IPv4 WAN\'s address');
  // Both with IPv4: the admin's order decides.
  const both = await runChecks({ ...SETTINGS, wans: ['ds0', 'wan0'] }, view({ addresses: { ...addresses, wan0: ['198.51.100.1/24'] } }));
  t.match(byName(both, 'WAN wan0'), { status: 'ok', detail: 'wan0 is up; its IPv4 address 198.51.100.1 is not the external one: ds0 comes first in --wan' });
  t.match(byName(both, 'WAN address'), { detail: /^192\.0\.0\.2 / });
  sh(['ip', 'link', 'set', 'ds0', 'down']);
  t.match(byName(await runChecks({ ...SETTINGS, wans: ['wan0', 'ds0'] }, view({ addresses })), 'WAN ds0'), { status: 'warn', detail: 'ds0 is down: nothing arrives on it', fix: /ip link set ds0 up/ });
});
