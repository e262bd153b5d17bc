// A host is a device (docs/ARCHITECTURE.md, glossary: one link-layer address in
// the kernel's neighbour table, with all its addresses): on a home LAN every device shares one /64, so a
// device flooding from 2 000 addresses of that /64 must be one host for
// quotas and rates, and another device in the same /64 must not pay for it.

import t from 'tap';
import { MemoryFirewall } from '../src/firewall/memory.js';
import { memoryLogger } from './helpers/memory-logger.js';
import { mustParseIp, type IpAddress } from '../src/net/address.js';
import { hostUnit, hostsBy } from '../src/net/hosts.js';
import { Neighbours, type Neighbour } from '../src/net/neighbours.js';
import { policyFromDocument } from '../src/policy/load.js';
import { requesterOf, FairShare, shareOf } from '../src/server/fair-share.js';
import { PREFIX_SHARE, RateLimiter } from '../src/net/rate-limit.js';
import { DEFAULT_SERVICE_CONFIG, MappingService } from '../src/service/mapping-service.js';
import { ManualClock } from './helpers/manual-clock.js';
import { Epoch } from '../src/state/epoch.js';

const HOG_MAC = '02:00:00:00:00:aa';
const VICTIM_MAC = '02:00:00:00:00:bb';
const HOG = Array.from({ length: 2000 }, (_, i) => mustParseIp(`2001:db8:77::${(0x1000 + i).toString(16)}`));
const VICTIM = mustParseIp('2001:db8:77::3');
/** A forger's addresses that never answer neighbour solicitation: not in the table. */
const UNRESOLVED = Array.from({ length: 300 }, (_, i) => mustParseIp(`2001:db8:77::9:${(i + 1).toString(16)}`));

const table: Neighbour[] = [
  ...HOG.map((address) => ({ address, interface: 'br-lan', lladdr: HOG_MAC })),
  { address: VICTIM, interface: 'br-lan', lladdr: VICTIM_MAC },
  { address: mustParseIp('192.168.77.3'), interface: 'br-lan', lladdr: VICTIM_MAC },
];

async function neighbours(): Promise<Neighbours> {
  const n = new Neighbours(() => Promise.resolve(table));
  // The first lookup starts the read; wait for it like the daemon's first requests would.
  n.deviceOf(VICTIM);
  await new Promise((r) => setTimeout(r, 10));
  return n;
}

t.test('hostsBy: the device where the table knows it, else the /64 (per link for link-local) or the IPv4 address', async (t) => {
  const hostOf = hostsBy(await neighbours());
  t.equal(hostOf(HOG[0] as string), `device br-lan/${HOG_MAC}`);
  t.equal(hostOf(HOG[1999] as string), hostOf(HOG[0] as string), '2 000 addresses, one device');
  t.equal(hostOf('192.168.77.3'), hostOf(VICTIM), 'a device\'s IPv4 and IPv6 addresses are one host');
  t.not(hostOf(VICTIM), hostOf(HOG[0] as string), 'another device in the same /64 is another host');
  t.equal(hostOf(UNRESOLVED[0] as string), '2001:db8:77::/64', 'unattributed: its /64');
  t.equal(hostOf('192.168.77.99'), '192.168.77.99', 'unattributed IPv4: itself');
  t.equal(hostUnit('fe80::1%br-lan'), 'fe80::/64%br-lan', 'link-local /64s are per link');
});

t.test('quotas: the per-client limit holds for the device across its addresses; another device in the /64 keeps its own', async (t) => {
  const hostOf = hostsBy(await neighbours());
  const clock = new ManualClock();
  const doc = { version: 1 as const, rules: [{ name: 'all', action: 'allow' as const, match: { internalPorts: '1024-65535' }, limits: { maxMappingsPerClient: 16, requestsPerSecond: 0 } }] };
  const service = new MappingService(
    { ...DEFAULT_SERVICE_CONFIG, maxMappings: 2000 },
    policyFromDocument(doc, 'hosts', () => clock.now()).policy,
    new MemoryFirewall(clock),
    { externalIPv4: () => mustParseIp('198.51.100.1'), isLanHost: () => true, isRouterAddress: () => false, interfaceOf: () => 'br-lan', hostOf },
    clock,
    new Epoch(clock),
    memoryLogger(),
  );
  const map = (a: IpAddress, port: number) => service.map({ via: 'pcp', client: a, internalAddress: a, protocol: 17, internalPort: port, suggestedExternalPort: 0, lifetime: 3600 });
  let granted = 0;
  for (const a of HOG) if ((await map(a, 40000)).ok) granted++;
  t.equal(granted, 16, 'the flooding device holds its 16, not 16 per address');
  for (let p = 0; p < 16; p++) t.ok((await map(VICTIM, 41000 + p)).ok, `the other device in the same /64 is served (${p + 1})`);
  const over = await map(VICTIM, 42000);
  t.match(over, { ok: false, refusal: 'USER_EX_QUOTA' }, 'and it has a quota of its own');
});

t.test('rates: a device\'s 2 000 addresses share one host bucket; another device in the same /64 keeps its rate', async (t) => {
  const hostOf = hostsBy(await neighbours());
  let now = 0;
  const limiter = new RateLimiter(10, 20, 8192, () => now, hostOf);
  let passed = 0;
  for (const a of HOG) if (limiter.take(a)) passed++;
  t.equal(passed, 20 * PREFIX_SHARE, `a burst of ${20 * PREFIX_SHARE} for the whole device`);
  let victim = 0;
  for (let i = 0; i < 20; i++) if (limiter.take(VICTIM)) victim++;
  t.equal(victim, 20, 'the other device gets its whole burst');
  now += 1000;
  passed = 0;
  for (const a of HOG) if (limiter.take(a)) passed++;
  t.equal(passed, 10 * PREFIX_SHARE, 'and the flooding device its rate per second, not 2 000 times it');
});

t.test('slot pools (HTTP, GENA, SSDP): one device holds at most its share, another in the same /64 still gets slots', async (t) => {
  const hostOf = hostsBy(await neighbours());
  const pool = new FairShare(shareOf(128, 8));
  let hog = 0;
  for (const a of HOG) if (pool.take(requesterOf(a, undefined, [], hostOf))) hog++;
  t.equal(hog, 32, 'a quarter of the pool');
  t.ok(pool.take(requesterOf(VICTIM, undefined, [], hostOf)), 'the other device is admitted');
});

t.test('hostUnit keeps its answers: the same across more sources than it keeps, zones apart', async (t) => {
  const sources = Array.from({ length: 10_000 }, (_, i) => `2001:db8:${(i % 7).toString(16)}::${i.toString(16)}`);
  for (let round = 0; round < 2; round++) {
    t.ok(
      sources.every((s, i) => hostUnit(s) === (i % 7 === 0 ? '2001:db8::/64' : `2001:db8:${(i % 7).toString(16)}::/64`)),
      `round ${round + 1}: every address counted under its /64`,
    );
  }
  t.equal(hostUnit('fe80::1%br-lan'), 'fe80::/64%br-lan');
  t.equal(hostUnit('fe80::1%br-guest'), 'fe80::/64%br-guest', 'a kept answer for one zone is not given to another');
  t.equal(hostUnit('192.168.77.10'), '192.168.77.10');
});
