// A WAN zone of several interfaces (a DS-Lite line: --wan wan0 --wan ds0):
// every rule that is about arrival on or leaving by the WAN matches any of
// them, as one anonymous set `{ "wan0", "ds0" }` (the DNAT maps, the SNAT
// and held-port rules, the forward jump to wan_to_lan, the upstream PCP
// server's guard). The rules' text here; then the same ruleset through
// in-process libnftables and through nft processes, each in a namespace of
// its own, listed back by nft and passing the backend's own checks. The
// traffic is proven in test/lab-dslite.test.ts.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ruleLines, setupScript, type Topology } from '../src/firewall/nft/ruleset.js';
import { mustParseIp } from '../src/net/address.js';
import { requireRoot } from './helpers/lab.js';

const own = { family: 'inet' as const, table: 'portcullis', embedded: false };
const embedded = { family: 'inet' as const, table: 'fw4', embedded: true };
const topo: Topology = { wans: ['wan0', 'ds0'], lan: ['lan0'], mark: 0x10000000, guarded: { udp: [5351], tcp: [5000] }, upstream: { address: mustParseIp('192.0.0.1'), port: 5351 } };
const ZONE = '{ "wan0", "ds0" }';

t.test('every WAN match is the zone, in both placements', async (t) => {
  for (const [what, p, pre, post, input] of [
    ['own table', own, 'prerouting', 'postrouting', 'input'],
    ['embedded', embedded, 'portcullis_prerouting', 'portcullis_postrouting', 'portcullis_input'],
  ] as const) {
    const rules = ruleLines(p, topo);
    const wanRules = rules.filter((r) => /[io]ifname (!= )?\{ "wan0"/.test(r));
    t.equal(rules.filter((r) => r.includes('"wan0"') || r.includes('"ds0"')).length, wanRules.length, `${what}: no rule names one WAN alone`);
    t.ok(wanRules.every((r) => r.includes(ZONE)), `${what}: each names both, in the admin's order`);
    t.equal(rules.filter((r) => r.startsWith(`${pre} iifname ${ZONE} meta nfproto ipv4 `)).length, 3, `${what}: the admin's forwards and both DNAT maps, for arrival on either`);
    t.equal(rules.filter((r) => r.startsWith(`${post} oifname ${ZONE} meta nfproto ipv4 `)).length, 3, `${what}: SNAT, the forwards' SNAT and the held ports, leaving by either`);
    t.ok(rules.includes(`${input} iifname != ${ZONE} ip saddr 192.0.0.1 udp sport 5351 counter drop`), `${what}: the upstream server counts from either WAN`);
  }
  t.ok(ruleLines(own, topo).includes(`forward iifname ${ZONE} oifname { "lan0" } jump wan_to_lan`), 'own table: what arrives on either WAN for the LAN meets the pinholes, admit4 and the drop');
  t.ok(ruleLines(own, { ...topo, wans: ['wan0'] }).includes('forward iifname { "wan0" } oifname { "lan0" } jump wan_to_lan'), 'one WAN: the same form with one name');
});

t.test('names are checked before they reach a script', async (t) => {
  t.throws(() => setupScript(own, { ...topo, wans: ['wan0', 'ds0"; flush ruleset'] }), /bad interface name/);
  t.throws(() => setupScript(own, { ...topo, wans: [] }), /no WAN interface/);
});

const HELPER = fileURLToPath(new URL('./helpers/nft-multiwan.js', import.meta.url));

interface Listed {
  started: string;
  intact: boolean;
  guard: boolean;
  path: string;
  rules: { chain: string; expr: Record<string, unknown>[] }[];
}

/** The interface names a listed rule matches with `meta iifname|oifname`, per key, as nft gives them back. */
function nameMatches(rule: Listed['rules'][number]): { key: string; op: string; names: unknown }[] {
  return rule.expr
    .map((e) => e.match as { op: string; left: { meta?: { key: string } }; right: unknown } | undefined)
    .filter((m) => m !== undefined && (m.left.meta?.key === 'iifname' || m.left.meta?.key === 'oifname'))
    .map((m) => ({ key: m!.left.meta!.key, op: m!.op, names: (m!.right as { set?: unknown }).set ?? m!.right }));
}

t.test('real nftables takes the zone through libnftables and through nft processes alike', async (t) => {
  requireRoot();
  const results: Record<string, Listed> = {};
  for (const path of ['library', 'process']) {
    const ns = `pnmw${process.pid % 10000}${path[0]}`;
    spawnSync('ip', ['netns', 'add', ns]);
    t.teardown(() => void spawnSync('ip', ['netns', 'del', ns]));
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, HELPER, path, 'wan0', 'ds0'], { encoding: 'utf8', timeout: 60_000 });
    t.equal(r.status, 0, `${path}: ${r.stderr}`);
    const got = JSON.parse(r.stdout) as Listed;
    results[path] = got;
    t.equal(got.started, 'started', `${path}: the backend starts`);
    t.equal(got.path, path, `${path}: through that path`);
    t.ok(got.intact, `${path}: its intactness check counts the rules nft lists back`);
    t.ok(got.guard, `${path}: its guard check finds the input rules in place`);
    const byChain = (chain: string) => got.rules.filter((x) => x.chain === chain).flatMap(nameMatches);
    // A set: nft gives its elements back sorted, not in the admin's order.
    const zone = { op: '==', names: ['ds0', 'wan0'] };
    t.same(byChain('prerouting').filter((m) => m.key === 'iifname' && (m.names as string[]).includes('wan0')), [zone, zone, zone].map((z) => ({ key: 'iifname', ...z })), `${path}: prerouting matches arrival on either WAN`);
    t.same(byChain('postrouting').filter((m) => m.key === 'oifname' && (m.names as string[]).includes('wan0')), [zone, zone, zone].map((z) => ({ key: 'oifname', ...z })), `${path}: postrouting matches leaving by either WAN`);
    t.same(byChain('forward'), [{ key: 'iifname', ...zone }, { key: 'oifname', op: '==', names: 'lan0' }], `${path}: the forward jump takes either WAN`);
    t.same(byChain('input').filter((m) => m.op === '!='), [{ key: 'iifname', op: '!=', names: ['ds0', 'wan0'] }], `${path}: the upstream guard drops what arrived on neither`);
  }
  t.same(results.library!.rules, results.process!.rules, 'both paths leave the same rules');
});
