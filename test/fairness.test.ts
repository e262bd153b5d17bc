// One host must not starve the others (issue 10, item 5). Over IPv6 a host
// has as many addresses as it likes, so the service counts mappings per
// address, per /64 and per LAN interface, and request rates per address and
// per /64; a flood from 2 000 addresses of one /64 leaves room and rate for
// a host in another /64 and on another interface.

import t from 'tap';
import { MemoryFirewall } from '../src/firewall/memory.js';
import { memoryLogger } from './helpers/memory-logger.js';
import { mustParseIp, parsePrefix, prefixContains, type IpAddress, type Prefix } from '../src/net/address.js';
import { policyFromDocument, type PolicyDocument } from '../src/policy/load.js';
import { PREFIX_SHARE, RateLimiter } from '../src/net/rate-limit.js';
import { DEFAULT_SERVICE_CONFIG, MappingService, type ServiceConfig } from '../src/service/mapping-service.js';
import type { MapOutcome } from '../src/domain/requests.js';
import { ManualClock } from './helpers/manual-clock.js';
import { MappingTable } from '../src/state/table.js';
import { Epoch } from '../src/state/epoch.js';

/** Two /64s on br-lan, one on br-guest, and an IPv4 LAN on br-lan. */
const LAN: [Prefix, string][] = [
  [parsePrefix('2001:db8:77::/64') as Prefix, 'br-lan'],
  [parsePrefix('2001:db8:78::/64') as Prefix, 'br-lan'],
  [parsePrefix('192.168.77.0/24') as Prefix, 'br-lan'],
  [parsePrefix('2001:db8:99::/56') as Prefix, 'br-guest'],
];
const ifaceOf = (a: IpAddress) => LAN.find(([p]) => prefixContains(p, a))?.[1];

/** 2 000 addresses of one host, all in 2001:db8:77::/64. */
const HOG = Array.from({ length: 2000 }, (_, i) => mustParseIp(`2001:db8:77::${(0x1000 + i).toString(16)}`));
const OTHER = mustParseIp('2001:db8:78::10');

function serviceWith(config: Partial<ServiceConfig>, limits: NonNullable<PolicyDocument['rules'][number]['limits']>) {
  const clock = new ManualClock();
  const firewall = new MemoryFirewall(clock);
  const doc: PolicyDocument = { version: 1, rules: [{ name: 'all', action: 'allow', match: { internalPorts: '1024-65535' }, limits }] };
  const table = new MappingTable(ifaceOf);
  const service = new MappingService(
    { ...DEFAULT_SERVICE_CONFIG, ...config },
    policyFromDocument(doc, 'fairness', () => clock.now()).policy,
    firewall,
    {
      externalIPv4: () => mustParseIp('198.51.100.1'),
      isLanHost: (a) => ifaceOf(a) !== undefined,
      isRouterAddress: () => false,
      interfaceOf: ifaceOf,
    },
    clock,
    new Epoch(clock),
    memoryLogger(),
    table,
  );
  const map = (a: IpAddress, port = 40000): Promise<MapOutcome> =>
    service.map({ via: 'pcp', client: a, internalAddress: a, protocol: 17, internalPort: port, suggestedExternalPort: 0, lifetime: 3600 });
  return { clock, firewall, service, table, map };
}

/** Each address asks once; returns the refusals by code. */
async function flood(map: (a: IpAddress) => Promise<MapOutcome>, from: readonly IpAddress[]): Promise<{ granted: number; refused: Record<string, number> }> {
  let granted = 0;
  const refused: Record<string, number> = {};
  for (const a of from) {
    const r = await map(a);
    if (r.ok) granted++;
    else refused[r.refusal] = (refused[r.refusal] ?? 0) + 1;
  }
  return { granted, refused };
}

t.test('the per-client quota counts the whole /64: 2 000 addresses hold what one may', async (t) => {
  const e = serviceWith({}, { maxMappingsPerClient: 128, requestsPerSecond: 0 });
  const r = await flood(e.map, HOG);
  t.equal(r.granted, 128, 'the /64 holds 128, not 2 000 × 128');
  t.same(r.refused, { USER_EX_QUOTA: 2000 - 128 });
  t.match(await e.map(OTHER), { ok: true }, 'a host in another /64 is served');
  t.match(await e.map(mustParseIp('192.168.77.20')), { ok: true }, 'and an IPv4 host');
  t.match(await e.map(HOG[0] as IpAddress), { ok: true }, 'a renewal inside the quota is still granted');
});

t.test('no /64 fills the table, whatever the policy allows one client: its share is a quarter', async (t) => {
  const e = serviceWith({ maxMappings: 1000 }, { maxMappingsPerClient: 100_000, requestsPerSecond: 0 });
  const r = await flood(e.map, HOG);
  t.equal(r.granted, 250, 'a quarter of the table');
  t.same(r.refused, { NO_RESOURCES: 1750 });
  t.equal(e.service.count(), 250, 'three quarters left for everyone else');
  const others = await flood(e.map, Array.from({ length: 100 }, (_, i) => mustParseIp(`2001:db8:78::${(i + 1).toString(16)}`)));
  t.equal(others.granted, 100, 'another /64 is served in full');
  t.equal(e.firewall.list().length, 350, 'the memory kernel agrees with the table');
});

t.test('no interface fills the table: another LAN keeps its share', async (t) => {
  const e = serviceWith({ maxMappings: 100 }, { maxMappingsPerClient: 100_000, requestsPerSecond: 0 });
  // The guest LAN floods from four of its /64s, 25 (a host's share) each.
  const guests = [0, 1, 2, 3].flatMap((net) => Array.from({ length: 25 }, (_, i) => mustParseIp(`2001:db8:99:${net}::${(i + 1).toString(16)}`)));
  const r = await flood(e.map, guests);
  t.equal(r.granted, 75, 'three quarters of the table for br-guest');
  t.same(r.refused, { NO_RESOURCES: 25 });
  t.equal(e.table.countForInterface('br-guest'), 75);
  t.match(await e.map(OTHER), { ok: true }, 'a br-lan host is served');
  t.match(await e.map(mustParseIp('192.168.77.20')), { ok: true }, 'and an IPv4 one');
});

t.test('request rate: 2 000 addresses of one /64 get the /64 rate; another /64 is still served', async (t) => {
  const e = serviceWith({}, { maxMappingsPerClient: 100_000, requestsPerSecond: 10, burst: 20 });
  const r = await flood(e.map, HOG);
  t.equal(r.granted, 20 * PREFIX_SHARE, `the /64's burst (${20 * PREFIX_SHARE}), not 2 000 bursts`);
  t.same(r.refused, { RATE_LIMITED: 2000 - 20 * PREFIX_SHARE });
  t.match(await e.map(OTHER), { ok: true }, 'a host in another /64 is served at once');
  e.clock.advance(1000);
  const later = await flood(e.map, HOG.map((a) => a));
  t.equal(later.granted, 10 * PREFIX_SHARE, 'a second later: one second of the /64 rate');
});

t.test('the server-side limiter: per address and per /64, per link for link-local', async (t) => {
  let now = 0;
  const l = new RateLimiter(20, 40, 8192, () => now);
  t.equal(HOG.filter((a) => l.take(a)).length, 40 * PREFIX_SHARE, 'the /64 bucket caps the flood');
  t.ok(l.take(OTHER), 'another /64');
  t.ok(l.take('192.168.77.20'), 'an IPv4 source');
  t.equal(Array.from({ length: 100 }, () => l.take('192.168.77.21')).filter(Boolean).length, 40, 'an IPv4 source has its own burst');
  // Every link has fe80::/64: link-local sources share a bucket per link, not one for the whole router.
  const onLan = Array.from({ length: 1000 }, (_, i) => `fe80::${(i + 1).toString(16)}%br-lan`);
  t.equal(onLan.filter((a) => l.take(a)).length, 40 * PREFIX_SHARE);
  t.ok(l.take('fe80::1%br-guest'), 'a link-local host on another link');
  now += 1000;
  t.equal(HOG.filter((a) => l.take(a)).length, 20 * PREFIX_SHARE, 'a second later: the /64 rate');
});

t.test('the limiter’s memory is bounded however many sources flood it', async (t) => {
  const l = new RateLimiter(20, 40, 1000, () => 0);
  for (let i = 0; i < 50_000; i++) l.take(`2001:db8:${(i >> 8).toString(16)}:${(i & 0xff).toString(16)}::1`);
  for (let i = 0; i < 50_000; i++) l.take(`10.${(i >> 16) & 0xff}.${(i >> 8) & 0xff}.${i & 0xff}`);
  t.ok(l.tracked <= 2000, `${l.tracked} buckets for 100 000 sources (at most 1 000 addresses and 1 000 /64s)`);
  // The /64 of a flood stays fresh (each of its requests touches it), so
  // cycling through new addresses does not buy it a new burst.
  const flooder = Array.from({ length: 5000 }, (_, i) => `2001:db8:77::${(i + 1).toString(16)}`);
  t.equal(flooder.filter((a) => l.take(a)).length, 40 * PREFIX_SHARE, 'evicting its address buckets does not refill its /64');
});
