// The default router as the upstream PCP server (src/net/default-router.ts):
// parsing `ip -j` output as iproute2 prints it, and choosing among routes.
// The lab test (lab-upstream-discovery) runs the same code against real
// routes; the DS-Lite softwire is exercised here, with the JSON iproute2
// prints for an ip6tnl tunnel (ip/link_ip6tnl.c: info_data proto, remote,
// local, link), because the lab's kernel may be built without ip6tnl.

import t from 'tap';
import fc from 'fast-check';
import { resolveRuns, resolveSeed } from './helpers/fuzz.js';
import { AFTR_ADDRESS, defaultRouters, parseDefaultRoutes, parseLinkFacts, type IpRunner } from '../src/net/default-router.js';

const ROUTES4 = JSON.stringify([
  { dst: 'default', gateway: '198.51.100.1', dev: 'wan0', metric: 100, flags: [] },
  { dst: 'default', gateway: '192.168.1.1', dev: 'br-lan', metric: 10, flags: [] },
  { type: 'unreachable', dst: 'default', dev: 'lo', metric: 4278198272, flags: [] },
]);
const ROUTES6 = JSON.stringify([{ dst: 'default', gateway: 'fe80::1', dev: 'wan0', metric: 1024, flags: [], pref: 'medium' }]);

const link = (ifname: string, extra: Record<string, unknown> = {}) => JSON.stringify([{ ifindex: 5, ifname, flags: ['UP'], addr_info: [], ...extra }]);
const SOFTWIRE = link('ds-wan6_4', {
  link_type: 'tunnel6',
  linkinfo: { info_kind: 'ip6tnl', info_data: { proto: 'ipip6', remote: '2001:db8:aft::1', local: '2001:db8:b4::2', link: 'wan0', ttl: 64, encap_limit: 4 } },
});

/** Answers `ip` from a table of outputs, and records what was asked. */
function fakeIp(outputs: Record<string, string>): IpRunner & { asked: string[] } {
  const asked: string[] = [];
  const run = (async (args: readonly string[]) => {
    const key = args.join(' ');
    asked.push(key);
    return key in outputs ? { stdout: outputs[key] } : { error: `ip ${key}: Device does not exist` };
  }) as IpRunner & { asked: string[] };
  run.asked = asked;
  return run;
}

t.test('routes: lowest metric first, nexthops of a multipath route each, non-unicast left out', async (t) => {
  t.same(parseDefaultRoutes(ROUTES4), [
    { gateway: '192.168.1.1', dev: 'br-lan', metric: 10 },
    { gateway: '198.51.100.1', dev: 'wan0', metric: 100 },
  ]);
  const multipath = JSON.stringify([
    { dst: 'default', metric: 5, flags: [], nexthops: [{ gateway: '198.51.100.1', dev: 'wan0', weight: 1 }, { gateway: '203.0.113.1', dev: 'wan1', weight: 1 }] },
  ]);
  t.same(parseDefaultRoutes(multipath), [
    { gateway: '198.51.100.1', dev: 'wan0', metric: 5 },
    { gateway: '203.0.113.1', dev: 'wan1', metric: 5 },
  ]);
  t.same(parseDefaultRoutes('[{"dst":"default","dev":"ds-wan6_4","scope":"link","flags":[]}]'), [{ dev: 'ds-wan6_4', metric: 0 }]);
});

t.test('routes: what is not ip\'s JSON, or carries junk, yields nothing rather than a throw', async (t) => {
  t.equal(parseDefaultRoutes('Error: ipv4: FIB table does not exist.'), undefined);
  t.equal(parseDefaultRoutes('{"dst":"default"}'), undefined);
  t.same(parseDefaultRoutes('[null, 7, {"dst":"default","gateway":"not-an-ip","dev":"wan0"}, {"dst":"default","gateway":"198.51.100.1","dev":"x/../../y"}]'), [
    { dev: 'wan0', metric: 0 },
  ]);
  const many = JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ dst: 'default', gateway: `198.51.100.${i + 1}`, dev: 'wan0', metric: i })));
  t.equal(parseDefaultRoutes(many)?.length, 16, 'at most MAX_ROUTES');
});

t.test('link facts: an ip6tnl softwire, a veth, a point-to-point peer', async (t) => {
  t.same(parseLinkFacts(SOFTWIRE), { kind: 'ip6tnl', tunnelProto: 'ipip6', underlying: 'wan0', peers: [] });
  t.same(parseLinkFacts(link('wan0', { linkinfo: { info_kind: 'veth' } })), { kind: 'veth', peers: [] });
  const ppp = link('pppoe-wan', {
    addr_info: [{ family: 'inet', local: '100.64.7.9', address: '100.64.0.1', prefixlen: 32 }, { family: 'inet6', local: 'fe80::5', prefixlen: 64 }],
  });
  t.same(parseLinkFacts(ppp), { peers: ['100.64.0.1'] });
  t.equal(parseLinkFacts('[]'), undefined);
  t.equal(parseLinkFacts('Device "x" does not exist.'), undefined);
});

t.test('a gateway on a WAN interface; not one on another interface; IPv4 before IPv6 (which keeps its interface)', async (t) => {
  const ip = fakeIp({ '-j -4 route show default': ROUTES4, '-j -6 route show default': ROUTES6, '-j -d addr show dev br-lan': link('br-lan') });
  const r = await defaultRouters(['wan0'], ip);
  t.same(r.routers, [
    { address: '198.51.100.1', interface: 'wan0', kind: 'router' },
    { address: 'fe80::1', interface: 'wan0', kind: 'router' },
  ]);
  t.same(r.notes, []);
  t.notOk(ip.asked.includes('-j -d addr show dev wan0'), 'a gateway on the WAN needs no look at the interface');
});

t.test('DS-Lite: an IPv4 default route into an ip6tnl ipip6 tunnel over the WAN is the AFTR, 192.0.0.1', async (t) => {
  const ip = fakeIp({
    '-j -4 route show default': '[{"dst":"default","dev":"ds-wan6_4","scope":"link","flags":[]}]',
    '-j -6 route show default': ROUTES6,
    '-j -d addr show dev ds-wan6_4': SOFTWIRE,
  });
  t.equal(AFTR_ADDRESS, '192.0.0.1');
  t.same((await defaultRouters(['wan0'], ip)).routers, [
    { address: '192.0.0.1', interface: 'ds-wan6_4', kind: 'ds-lite-aftr' },
    { address: 'fe80::1', interface: 'wan0', kind: 'router' },
  ]);
  // The admin may name the tunnel itself as the WAN.
  t.same((await defaultRouters(['ds-wan6_4'], ip)).routers, [{ address: '192.0.0.1', interface: 'ds-wan6_4', kind: 'ds-lite-aftr' }]);
  // A softwire over an interface that is not the WAN says nothing about this WAN.
  t.same((await defaultRouters(['wan9'], ip)).routers, []);
  // An ip6ip6 tunnel carries no IPv4: not a softwire; it has no gateway or peer either.
  const ip6ip6 = SOFTWIRE.replace('"ipip6"', '"ip6ip6"');
  const other = fakeIp({ '-j -4 route show default': '[{"dst":"default","dev":"ds-wan6_4","flags":[]}]', '-j -6 route show default': '[]', '-j -d addr show dev ds-wan6_4': ip6ip6 });
  t.same((await defaultRouters(['ds-wan6_4'], other)).routers, []);
});

t.test('PPPoE: no gateway on a point-to-point WAN link, its peer is the default router', async (t) => {
  const ip = fakeIp({
    '-j -4 route show default': '[{"dst":"default","dev":"pppoe-wan","scope":"link","flags":[]}]',
    '-j -6 route show default': '[]',
    '-j -d addr show dev pppoe-wan': link('pppoe-wan', { addr_info: [{ family: 'inet', local: '100.64.7.9', address: '100.64.0.1', prefixlen: 32 }] }),
  });
  t.same((await defaultRouters(['pppoe-wan'], ip)).routers, [{ address: '100.64.0.1', interface: 'pppoe-wan', kind: 'router' }]);
});

t.test('ip failing or printing something else: notes, and no routers from it', async (t) => {
  const ip = fakeIp({ '-j -6 route show default': 'garbage', '-j -4 route show default': '[{"dst":"default","dev":"wan0","flags":[]}]' });
  const r = await defaultRouters(['wan0'], ip);
  t.same(r.routers, []);
  t.same(r.notes, [
    'ip -j -d addr show dev wan0: Device does not exist',
    'the IPv4 default route on wan0 has no gateway, no peer and is no softwire: no default router to ask',
    'ip -j -6 route show default: not the JSON expected',
  ]);
});

const SEED = resolveSeed(6887);
const RUNS = resolveRuns(2000);

t.test('fuzz: any JSON, or any text, parses without a throw', async (t) => {
  fc.assert(
    fc.property(fc.oneof(fc.json(), fc.string()), (text) => {
      const routes = parseDefaultRoutes(text);
      parseLinkFacts(text);
      return routes === undefined || routes.length <= 16;
    }),
    { numRuns: RUNS, seed: SEED },
  );
  t.pass(`${RUNS} runs, FUZZ_SEED=${SEED}`);
});

t.test('interface look-ups are capped, so a table full of gateway-less routes cannot make discovery slow', async (t) => {
  const routes = JSON.stringify(Array.from({ length: 16 }, (_, i) => ({ dst: 'default', dev: `tun${i}`, metric: i, flags: [] })));
  const ip = fakeIp({ '-j -4 route show default': routes, '-j -6 route show default': '[]' });
  await defaultRouters(['wan0'], ip);
  t.equal(ip.asked.filter((a) => a.includes('addr show')).length, 4);
});
