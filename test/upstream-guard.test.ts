// Issue 14: the upstream PCP server's datagrams count only from the WAN
// interface. Node tells no arrival interface, so the kernel drops UDP from
// the server's address and port that arrived elsewhere (ruleset.ts,
// upstreamLine), and the daemon sets that rule before its first datagram to
// the server. The lab proves the rule stops a forging LAN host
// (test/lab-cgn-forged.test.ts); here, the rule's text, its count in the
// guard check, and the daemon's wiring.

import t from 'tap';
import { guardRuleCount, inputRuleLines, ruleLines } from '../src/firewall/nft/ruleset.js';
import { mustParseIp } from '../src/net/address.js';
import { cgnDaemon } from './helpers/cgn-daemon.js';

const own = { family: 'inet' as const, table: 'portcullis', embedded: false };
const embedded = { family: 'inet' as const, table: 'fw4', embedded: true };
const base = { wans: ['wan0'], lan: ['br-lan'], mark: 0x10000000, guarded: { udp: [5351, 1900], tcp: [5000] } };

t.test('the rule: UDP from the server\'s address and port, not from the WAN, dropped and counted', async (t) => {
  const v4 = { ...base, upstream: { address: mustParseIp('100.64.0.1'), port: 5351 } };
  t.ok(ruleLines(own, v4).includes('input iifname != { "wan0" } ip saddr 100.64.0.1 udp sport 5351 counter drop'), 'own table');
  t.ok(ruleLines(embedded, v4).includes('portcullis_input iifname != { "wan0" } ip saddr 100.64.0.1 udp sport 5351 counter drop'), 'embedded: in the chain the admin jumps to from the input hook');
  const v6 = { ...base, upstream: { address: mustParseIp('2001:db8::1'), port: 15351 } };
  t.ok(ruleLines(own, v6).includes('input iifname != { "wan0" } ip6 saddr 2001:db8::1 udp sport 15351 counter drop'), 'an IPv6 server');
  t.notMatch(ruleLines(own, base).join('\n'), /udp sport/, 'no server, no rule');
  for (const topo of [base, v4]) {
    const guard = ruleLines(own, topo).filter((r) => r.startsWith('lan_only ') || r.startsWith('input '));
    t.equal(guard.length, guardRuleCount(topo), 'the guard check counts it');
  }
  t.same(inputRuleLines(own, v4), ruleLines(own, v4).filter((r) => r.startsWith('input ')), 'the input chain\'s rules alone, for the rewrite when the server changes');
});

t.test('the daemon guards the configured server before it asks it anything', async (t) => {
  const c = await cgnDaemon();
  t.teardown(async () => {
    await c.daemon.stop();
    c.upstream.sock.close();
  });
  t.same(c.firewall.upstreamGuard, { address: '127.0.0.1', port: c.upstream.port });
});

t.test('auto with no server that answers: no guard left behind', async (t) => {
  const c = await cgnDaemon({ upstream: 'auto' });
  t.teardown(async () => {
    await c.daemon.stop();
    c.upstream.sock.close();
  });
  t.equal(c.firewall.upstreamGuard, undefined);
});
