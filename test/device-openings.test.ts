// Device openings resolved: which of a device's addresses are opened (the
// neighbour table's, by link-layer address; never link-local; at most
// MAX_DEVICE_ADDRESSES, the newest), when its EUI-64 identifier's mask is
// added, where its IPv4 forward goes, and what the loader accepts. The nft
// rules they make keep their ids when another address comes or goes.

import t from 'tap';
import { mustParseIp, type IpAddress } from '../src/net/address.js';
import type { DhcpLease } from '../src/net/dhcp-leases.js';
import { Neighbours, parseNeighbours, type Neighbour } from '../src/net/neighbours.js';
import { DeviceLocator } from '../src/daemon/device-statics.js';
import { MAX_DEVICE_ADDRESSES, eui64Identifier, eui64Pattern, resolveDevice, resolveStatics, sightingOf, usesEui64 } from '../src/policy/device-openings.js';
import { PolicyError, parsePolicyText, summarize } from '../src/policy/load.js';
import { staticRules } from '../src/firewall/nft/ruleset.js';
import type { DeviceOpening } from '../src/domain/mapping.js';

const MAC = '52:54:00:12:34:56';
/** 5054:00ff:fe12:3456: U/L bit of 0x52 flipped, ff:fe in the middle. */
const EUI = '2001:db8:77::5054:ff:fe12:3456';
const n = (address: string, lladdr = MAC, updated?: number, iface = 'br-lan'): Neighbour => ({ address: mustParseIp(address), interface: iface, lladdr, ...(updated !== undefined ? { updated } : {}) });

function device(yaml: string): DeviceOpening {
  const p = parsePolicyText(`version: 1\nrules: []\nstatic:\n${yaml}`, 'p.yaml');
  const d = p.statics[0];
  if (d?.kind !== 'device') throw new Error('not a device opening');
  return d;
}
const problems = (yaml: string): string[] => {
  try {
    parsePolicyText(`version: 1\nrules: []\nstatic:\n${yaml}`, 'p.yaml');
    return [];
  } catch (err) {
    return (err as PolicyError).problems as string[];
  }
};

t.test('modified EUI-64: the identifier, the test for it and its mask', async (t) => {
  t.equal(eui64Identifier(MAC).toString('hex'), '505400fffe123456');
  t.equal(eui64Identifier('02:00:00:00:00:01').toString('hex'), '000000fffe000001', 'a local address has the bit cleared');
  t.ok(usesEui64(mustParseIp(EUI), MAC));
  t.notOk(usesEui64(mustParseIp('2001:db8:77::5254:ff:fe12:3456'), MAC), 'the bit not flipped is not it');
  t.notOk(usesEui64(mustParseIp('2001:db8:77::1234:5678:9abc:def0'), MAC), 'a stable-privacy identifier is not');
  t.notOk(usesEui64(mustParseIp('192.168.77.2'), MAC));
  t.equal(eui64Pattern(MAC).text, '::5054:ff:fe12:3456/::ffff:ffff:ffff:ffff');
  t.equal(eui64Pattern(MAC).form, 'mask');
});

t.test('a device\'s addresses: its own, global, resolved, newest first, capped', async (t) => {
  const table = parseNeighbours(
    JSON.stringify([
      { dst: '2001:db8:77::2', dev: 'br-lan', lladdr: MAC, updated: 30, state: ['STALE'] },
      { dst: '2001:db8:77::a', dev: 'br-lan', lladdr: MAC.toUpperCase(), updated: 2, state: ['REACHABLE'] },
      { dst: 'fe80::5054:ff:fe12:3456', dev: 'br-lan', lladdr: MAC, state: ['REACHABLE'] },
      { dst: '2001:db8:77::f', dev: 'br-lan', lladdr: MAC, state: ['FAILED'] },
      { dst: '2001:db8:77::e', dev: 'br-lan', state: ['INCOMPLETE'] },
      { dst: '2001:db8:77::3', dev: 'br-lan', lladdr: '02:00:00:00:00:03', state: ['REACHABLE'] },
      { dst: '192.168.77.2', dev: 'br-lan', lladdr: MAC, updated: 5, state: ['DELAY'] },
    ]),
  );
  const seen = sightingOf(MAC, table, [], 0);
  t.same(seen.ipv6, ['2001:db8:77::a', '2001:db8:77::2'], 'newest first; link-local, FAILED, INCOMPLETE and other devices left out');
  t.equal(seen.ipv4, '192.168.77.2');
  t.equal(seen.eui64, false, 'no EUI-64 address among them (the link-local one does not count)');

  const many = Array.from({ length: 40 }, (_, i) => n(`2001:db8:77::${(i + 0x100).toString(16)}`, MAC, 100 - i));
  const capped = sightingOf(MAC, [...many, n(EUI, MAC, 500)], [], 0);
  t.equal(capped.ipv6.length, MAX_DEVICE_ADDRESSES, `at most ${MAX_DEVICE_ADDRESSES}`);
  t.equal(capped.ipv6[0], '2001:db8:77::127', 'the newest kept');
  t.notOk(capped.ipv6.includes(EUI as IpAddress), 'the oldest dropped');
  t.equal(capped.eui64, true, 'the EUI-64 identifier is seen even on an address past the cap');
});

t.test('IPv4: the neighbour table\'s address, the leased one of two, else a live lease', async (t) => {
  const lease = (address: string, expires: number, mac = MAC): DhcpLease => ({ family: 4, address: mustParseIp(address), expires, mac });
  t.equal(sightingOf(MAC, [n('192.168.77.20', MAC, 1), n('192.168.77.2', MAC, 9)], [lease('192.168.77.2', 0)], 1000).ipv4, '192.168.77.2', 'two in the table: the leased one');
  t.equal(sightingOf(MAC, [], [lease('192.168.77.7', 2000)], 1000).ipv4, '192.168.77.7', 'nothing in the table: the lease');
  t.equal(sightingOf(MAC, [], [lease('192.168.77.7', 500)], 1000).ipv4, undefined, 'an ended lease: nothing');
  t.equal(sightingOf(MAC, [], [lease('192.168.77.8', 0, '02:00:00:00:00:08')], 1000).ipv4, undefined, 'another device\'s lease: nothing');
});

t.test('resolved: a pinhole per address, the mask once EUI-64 is seen, a forward per port, `from` split by family', async (t) => {
  const d = device(`  - name: nas\n    device: { mac: "${MAC.toUpperCase()}", protocol: any, ports: 8000-8001, from: [203.0.113.0/24, "2001:db8:4000::/48"] }\n`);
  t.equal(d.mac, MAC, 'lowercased');
  const out = resolveDevice(d, { ipv6: [mustParseIp('2001:db8:77::2')], ipv4: mustParseIp('192.168.77.2'), eui64: true });
  t.same(out.filter((s) => s.kind === 'pinhole').map((s) => (s.kind === 'pinhole' ? [s.to.text, s.from?.map((f) => f.text)] : [])), [
    ['2001:db8:77::2', ['2001:db8:4000::/48']],
    ['::5054:ff:fe12:3456/::ffff:ffff:ffff:ffff', ['2001:db8:4000::/48']],
  ]);
  t.same(out.filter((s) => s.kind === 'forward').map((s) => (s.kind === 'forward' ? `${s.protocol}/${s.port}→${s.to}:${s.toPort} ${s.from?.map((f) => f.text).join()}` : '')), [
    '6/8000→192.168.77.2:8000 203.0.113.0/24',
    '6/8001→192.168.77.2:8001 203.0.113.0/24',
    '17/8000→192.168.77.2:8000 203.0.113.0/24',
    '17/8001→192.168.77.2:8001 203.0.113.0/24',
  ]);
  t.ok(out.every((s) => s.device === MAC && s.name === 'nas'), 'each part names its device opening');
  t.same(resolveDevice(d, { ipv6: [], eui64: false }), [], 'not seen: nothing open');
  const v6only = device(`  - name: v6\n    device: { mac: "${MAC}", protocol: tcp, ports: 443, from: "2001:db8:4000::/48" }\n`);
  t.notOk(resolveDevice(v6only, { ipv6: [], ipv4: mustParseIp('192.168.77.2'), eui64: false }).some((s) => s.kind === 'forward'), 'a from of only IPv6 sources forwards no IPv4');
  t.same(resolveStatics([d], () => ({ ipv6: [], eui64: false })), []);
});

t.test('nft: one rule per address, and a new address leaves the others\' ids as they were', async (t) => {
  const d = device(`  - name: nas\n    device: { mac: "${MAC}", protocol: tcp, ports: 443 }\n`);
  const placement = { family: 'inet' as const, table: 'portcullis', embedded: false };
  const topo = { wans: ['wan0'], lan: ['br-lan'], mark: 0x10000000, guarded: { udp: [5351], tcp: [] } };
  const one = staticRules(placement, topo, resolveDevice(d, { ipv6: [mustParseIp('2001:db8:77::2')], ipv4: mustParseIp('192.168.77.2'), eui64: false }));
  const two = staticRules(placement, topo, resolveDevice(d, { ipv6: [mustParseIp('2001:db8:77::9'), mustParseIp('2001:db8:77::2')], ipv4: mustParseIp('192.168.77.2'), eui64: false }));
  t.ok([...one.keys()].every((id) => two.has(id)), 'every rule of the first address is kept by id');
  t.equal(two.size, one.size + 1, 'one rule more');
  t.match([...two.values()].map((r) => r.rule).join('\n'), /ip6 daddr 2001:db8:77::9 meta l4proto tcp th dport 443/);
  t.match([...one.values()].map((r) => r.rule).join('\n'), /fib daddr type local dnat ip to 192\.168\.77\.2:443/, 'the IPv4 forward, as an address forward makes it');
  t.match([...one.values()].map((r) => r.rule).join('\n'), /ip saddr 192\.168\.77\.2 meta l4proto tcp th sport 443 masquerade to :443/, 'with its SNAT');
  t.same(staticRules(placement, topo, [d]).size, 0, 'an unresolved device opening makes no rule');
  const embedded = staticRules({ ...placement, table: 'fw4', embedded: true }, topo, resolveDevice(d, { ipv6: [mustParseIp('2001:db8:77::2')], ipv4: mustParseIp('192.168.77.2'), eui64: false }));
  t.match([...embedded.values()].find((r) => r.rule.includes('ip6 daddr')), { chain: 'portcullis_static_fwd', rule: /ip6 daddr 2001:db8:77::2 .* accept comment/ }, 'embedded: in our prefixed chain, admitted packets accepted');
  t.match([...embedded.values()].find((r) => r.rule.includes('dnat')), { chain: 'portcullis_static_pre' });
});

t.test('the loader: a device entry checked like the rest', async (t) => {
  t.match(problems(`  - name: a\n    device: { mac: "01:00:5e:00:00:01", protocol: tcp, ports: 443 }\n`), [/\/static\/0\/device\/mac: expected a device's own \(unicast\) link-layer address/]);
  t.match(problems(`  - name: a\n    device: { mac: "52:54:00:12:34", protocol: tcp, ports: 443 }\n`), [/\/static\/0\/device\/mac/]);
  t.match(problems(`  - name: a\n    device: { mac: "${MAC}", protocol: tcp, ports: 1-65535 }\n`), [/at most 64 ports/]);
  t.match(problems(`  - name: a\n    device: { mac: "${MAC}", protocol: tcp, ports: 0 }\n`), [/ports from 1 to 65535/]);
  t.match(problems(`  - name: a\n    device: { mac: "${MAC}", protocol: tcp, ports: 443, from: "::1/::ffff" }\n`), [/a mask is not possible here/]);
  t.match(problems(`  - name: a\n    forward: { protocol: tcp, port: 443, to: 192.168.77.9 }\n  - name: b\n    device: { mac: "${MAC}", protocol: any, ports: 440-450 }\n`), [/\/static\/1\/device\/ports: tcp\/443 is already forwarded by \/static\/0/]);
  t.match(problems(`  - name: a\n    device: { mac: "${MAC}", protocol: tcp, ports: 443 }\n    pinhole: { to: "::1", protocol: tcp, ports: 443 }\n`), [/give exactly one of 'pinhole', 'forward' or 'device'/]);
  const ok = parsePolicyText(`version: 1\nrules: []\nstatic:\n  - name: nas\n    description: the NAS\n    device: { mac: "${MAC}", protocol: udp, ports: [53, 5353] }\n`, 'p.yaml');
  t.match(ok.statics[0], { kind: 'device', mac: MAC, protocols: [17], ports: [{ min: 53, max: 53 }, { min: 5353, max: 5353 }], description: 'the NAS' });
  t.match(summarize(ok), /static "nas": device udp 53, 5353 → 52:54:00:12:34:56/);
});

t.test('the daemon\'s locator: LAN interfaces only, and an EUI-64 identifier once seen is remembered', async (t) => {
  let rows: Neighbour[] = [n(EUI), n('2001:db8:77::2'), n('2001:db8:ff::5', MAC, 1, 'wan0')];
  const neighbours = new Neighbours(async () => rows, () => performance.now(), 0);
  const locator = new DeviceLocator(neighbours, ['br-lan'], undefined);
  await neighbours.refresh();
  t.match(locator.sighting(MAC), { ipv6: [mustParseIp(EUI), '2001:db8:77::2'], eui64: true }, 'the WAN interface\'s entry is no address of the LAN device');
  rows = [n('2001:db8:78::2')];
  await new Promise((r) => setTimeout(r, 150));
  await neighbours.refresh();
  t.match(locator.sighting(MAC), { ipv6: ['2001:db8:78::2'], eui64: true }, 'renumbered, the EUI-64 address gone: its mask stays');
  t.match(locator.sighting('02:00:00:00:00:07'), { ipv6: [], eui64: false }, 'a device never seen with it: no mask');
});
