// The IGD control actions over the mapping service (memory firewall, hand-moved
// clock): IGD:2 lease rules, conflicts as 718/729, AddAnyPortMapping
// idempotence, listings shared with PCP/NAT-PMP, ranges, pinhole IDs and
// ownership, dispatch by action name whatever service was named.

import t from 'tap';
import { mustParseIp, type IpAddress } from '../src/net/address.js';
import type { Mapping } from '../src/domain/mapping.js';
import type { FirewallChange } from '../src/firewall/backend.js';
import { Neighbours, parseNeighbours, type Neighbour } from '../src/net/neighbours.js';
import { IgdControl, type ActionResult, type IgdEnvironment } from '../src/protocols/upnp/igd.js';
import { sameHostBy } from '../src/server/upnp-door.js';
import { harness } from './helpers/harness.js';

const A = mustParseIp('192.168.77.10');
const B = mustParseIp('192.168.77.11');
const A6 = mustParseIp('2001:db8:77::10');
/** A6's own ULA and link-local address: the same device, by its link-layer address. */
const A6_ULA = mustParseIp('fd00::10');
const A6_LL = mustParseIp('fe80::10');
const A6_MAC = '02:00:00:00:00:10';

/** The kernel's neighbour table as `ip -j neigh` would give it. */
const neighbour = (address: string, lladdr: string, iface = 'br-lan'): Neighbour => ({ address: mustParseIp(address), interface: iface, lladdr });
const TABLE: Neighbour[] = [neighbour(A6, A6_MAC), neighbour(A6_ULA, A6_MAC), neighbour(A6_LL, A6_MAC), neighbour('2001:db8:77::11', '02:00:00:00:00:11')];

const envWith = (table: readonly Neighbour[]): IgdEnvironment => ({
  uptime: () => 42,
  linkUp: () => true,
  wanCounters: () => ({ txBytes: 2 ** 33 + 5, rxBytes: 7, txPackets: 1, rxPackets: 2, speedMbps: 1000 }),
  outboundTimeout: (p) => (p === 6 ? 7440 : 180),
  sameHost: sameHostBy(new Neighbours(async () => table)),
});

function setup(table: readonly Neighbour[] = TABLE) {
  const h = harness();
  const igd = new IgdControl(h.service, envWith(table));
  const call = (client: IpAddress, action: string, args: Record<string, string | number>, service = 'WANIPConnection', version = 2): Promise<ActionResult> =>
    igd.handle({ serviceName: service, serviceVersion: version, action, args: new Map(Object.entries(args).map(([k, v]) => [k, String(v)])), client });
  return { h, igd, call };
}

const add = (client: IpAddress, ext: number, int: number, extra: Record<string, string | number> = {}) => ({
  NewRemoteHost: '',
  NewExternalPort: ext,
  NewProtocol: 'UDP',
  NewInternalPort: int,
  NewInternalClient: client,
  NewEnabled: 1,
  NewPortMappingDescription: 'game',
  NewLeaseDuration: 3600,
  ...extra,
});
const out = (r: ActionResult): Record<string, string | number> => (r.ok ? Object.fromEntries(r.out) : { error: r.error.code, detail: r.detail });

t.test('AddPortMapping: IGD:2 leases; lease 0 asks for the maximum', async (t) => {
  const { h, call } = setup();
  t.same(out(await call(A, 'AddPortMapping', add(A, 40000, 40000, { NewLeaseDuration: 0 }))), {});
  const m = h.service.byKey('map|192.168.77.10|17|40000');
  t.equal(m?.lifetime, 86400, '604800 asked, the shipped policy caps it at 24 h');
  t.match(out(await call(A, 'GetSpecificPortMappingEntry', { NewRemoteHost: '', NewExternalPort: 40000, NewProtocol: 'UDP' })), { NewInternalClient: A, NewInternalPort: '40000', NewLeaseDuration: '86400', NewEnabled: '1', NewPortMappingDescription: 'game' });
  h.clock.advance(5000);
  t.match(out(await call(A, 'GetSpecificPortMappingEntry', { NewRemoteHost: '', NewExternalPort: 40000, NewProtocol: 'UDP' })), { NewLeaseDuration: '86395' }, 'the remaining lease counts down');
  t.same(out(await call(A, 'AddPortMapping', add(A, 40001, 40001, { NewLeaseDuration: 700000 }))), {}, 'a lease beyond 604800 is cut, not refused');
  t.equal(h.service.byKey('map|192.168.77.10|17|40001')?.lifetime, 86400);
  t.match(out(await call(A, 'AddPortMapping', add(A, 0, 40002))), { error: 716 }, 'external port 0: 716');
  t.match(out(await call(A, 'AddPortMapping', add(A, 40003, 0))), { error: 732 }, 'internal port 0: 732');
  t.match(out(await call(A, 'AddPortMapping', add(A, 40004, 40004, { NewProtocol: 'SCTP' }))), { error: 402 });
  t.same(out(await call(A, 'AddPortMapping', add(A, 40005, 40005, { NewProtocol: 'udp' }))), {}, 'protocol case is forgiven');
  t.match(out(await call(A, 'AddPortMapping', add(A, 40006, 40006, { NewEnabled: 0 }))), { error: 402 }, 'disabled mappings are not kept');
  t.match(out(await call(A, 'AddPortMapping', add(A, 40007, 40007, { NewInternalClient: 'lan-host.example' }))), { error: 402 }, 'a host name is never resolved');
  t.match(out(await call(A, 'AddPortMapping', add(A, 40008, 40008, { NewPortMappingDescription: 'a\u0000b\u001bc' }))), {});
  t.equal(h.service.byKey('map|192.168.77.10|17|40008')?.description, 'abc', 'control characters stripped');
  const missing = add(A, 40009, 40009) as Record<string, string | number>;
  delete missing.NewPortMappingDescription;
  t.match(out(await call(A, 'AddPortMapping', missing)), { error: 402, detail: /NewPortMappingDescription/ }, 'a missing argument: 402');
});

t.test('secure mode: another host is 606, and so is what the policy denies', async (t) => {
  const { h, call } = setup();
  t.match(out(await call(A, 'AddPortMapping', add(B, 40000, 40000))), { error: 606 });
  t.match(out(await call(A, 'AddPortMapping', add(A, 80, 80))), { error: 606 }, 'port 80 under the shipped policy');
  t.match(out(await call(A, 'AddPortMapping', add(mustParseIp('192.168.77.1'), 40000, 40000))), { error: 606 }, "the router's own address");
  t.match(out(await call(A, 'AddPortMapping', add(mustParseIp('8.8.8.8'), 40000, 40000))), { error: 606 }, 'a host outside the LAN');
  t.equal(h.firewall.list().length, 0);
});

t.test('conflicts: 718 for another UPnP client, 729 for PCP/NAT-PMP; the same host moves its own', async (t) => {
  const { h, call } = setup();
  t.same(out(await call(A, 'AddPortMapping', add(A, 40000, 40000))), {});
  t.match(out(await call(B, 'AddPortMapping', add(B, 40000, 40000))), { error: 718 });
  t.match(await h.service.map({ via: 'natpmp', client: B, internalAddress: B, protocol: 6, internalPort: 41000, suggestedExternalPort: 41000, lifetime: 600 }), { ok: true });
  t.match(out(await call(A, 'AddPortMapping', add(A, 41000, 41000, { NewProtocol: 'TCP' }))), { error: 729 });
  // The same host asks for its external port again, now to another internal port.
  t.same(out(await call(A, 'AddPortMapping', add(A, 40000, 40100))), {});
  t.equal(h.service.byKey('map|192.168.77.10|17|40000'), undefined, 'the old mapping moved');
  t.equal(h.service.byKey('map|192.168.77.10|17|40100')?.externalPort, 40000);
  t.same(h.firewall.list().filter((e) => e.protocol === 17).map((e) => [e.externalPort, e.internalPort]), [[40000, 40100]], 'one kernel entry');
});

t.test("moving a client's own mapping is one change: if the kernel refuses the new entry, the old mapping stays in table and kernel", async (t) => {
  const { h, call } = setup();
  const apply = h.firewall.apply.bind(h.firewall);
  /** The kernel refuses to put the entry from external port `ext` to internal port `int`; the rest of each batch goes through. */
  const refusePut = (ext: number, int: number) => {
    const refused = (c: FirewallChange) => c.op === 'put' && c.entry.externalPort === ext && c.entry.internalPort === int;
    h.firewall.apply = async (batch: readonly FirewallChange[]) => {
      const taken = await apply(batch.filter((c) => !refused(c)));
      let i = 0;
      return batch.map((c) => (refused(c) ? false : (taken[i++] ?? false)));
    };
  };
  const kernel = () => h.firewall.list().map((e) => [e.externalPort, e.internalPort]);
  t.same(out(await call(A, 'AddPortMapping', add(A, 40000, 40000))), {});

  // The same external port to another internal port: the mapping on it would be replaced.
  refusePut(40000, 40100);
  t.match(out(await call(A, 'AddPortMapping', add(A, 40000, 40100))), { error: 501 }, 'the commit failed');
  t.equal(h.service.byKey('map|192.168.77.10|17|40000')?.externalPort, 40000, 'the old mapping is still in the table');
  t.equal(h.service.byKey('map|192.168.77.10|17|40100'), undefined, 'the new one is not');
  t.same(kernel(), [[40000, 40000]], 'and the kernel still has the old entry');

  // The same internal endpoint to another external port: it would move.
  refusePut(40001, 40000);
  t.match(out(await call(A, 'AddPortMapping', add(A, 40001, 40000))), { error: 501 }, 'the commit failed');
  t.equal(h.service.byKey('map|192.168.77.10|17|40000')?.externalPort, 40000, 'the mapping is still on its old port');
  t.same(kernel(), [[40000, 40000]], 'and so is its kernel entry');

  // With the kernel willing, both moves go through, each as one entry.
  h.firewall.apply = apply;
  t.same(out(await call(A, 'AddPortMapping', add(A, 40001, 40000))), {});
  t.same(kernel(), [[40001, 40000]]);
  t.same(out(await call(A, 'AddPortMapping', add(A, 40001, 40100))), {});
  t.equal(h.service.byKey('map|192.168.77.10|17|40000'), undefined);
  t.same(kernel(), [[40001, 40100]]);
  t.equal(h.service.count(), 1);
});

t.test('AddAnyPortMapping: the asked port if free, another otherwise; asking again returns the same', async (t) => {
  const { h, call } = setup();
  t.same(out(await call(A, 'AddAnyPortMapping', add(A, 45000, 45000))), { NewReservedPort: '45000' });
  const other = out(await call(B, 'AddAnyPortMapping', add(B, 45000, 45000)));
  t.ok(other.NewReservedPort && other.NewReservedPort !== '45000', `B gets another port (${other.NewReservedPort})`);
  h.clock.advance(60_000);
  t.same(out(await call(A, 'AddAnyPortMapping', add(A, 45000, 45000))), { NewReservedPort: '45000' }, 'a renewal by re-asking');
  t.same(out(await call(B, 'AddAnyPortMapping', add(B, 45000, 45000))), other, "B's renewal keeps B's port");
  t.equal(h.service.count(), 2);
});

t.test('listings show every protocol; delete and delete-range touch only your own', async (t) => {
  const { h, call } = setup();
  await call(A, 'AddPortMapping', add(A, 40002, 40002));
  await call(B, 'AddPortMapping', add(B, 40001, 40001));
  await h.service.map({ via: 'pcp', client: A, internalAddress: A, protocol: 17, internalPort: 40003, suggestedExternalPort: 40003, lifetime: 600, nonce: Buffer.alloc(12, 1) });
  const listed: string[] = [];
  for (let i = 0; ; i++) {
    const r = await call(A, 'GetGenericPortMappingEntry', { NewPortMappingIndex: i });
    if (!r.ok) {
      t.equal(r.error.code, 713, 'the end of the list: 713');
      break;
    }
    listed.push(`${out(r).NewExternalPort}:${out(r).NewInternalClient}:${out(r).NewPortMappingDescription}`);
  }
  t.same(listed, ['40001:192.168.77.11:game', '40002:192.168.77.10:game', '40003:192.168.77.10:pcp'], 'ordered by port, the PCP mapping included');
  t.match(out(await call(A, 'GetGenericPortMappingEntry', { NewPortMappingIndex: 'x' })), { error: 402 });
  const list = out(await call(A, 'GetListOfPortMappings', { NewStartPort: 40000, NewEndPort: 40010, NewProtocol: 'UDP', NewManage: 0, NewNumberOfPorts: 0 }));
  t.match(list.NewPortListing, /<p:NewExternalPort>40002<\/p:NewExternalPort>/);
  t.notMatch(list.NewPortListing, /40001/, "NewManage 0: only the caller's own");
  t.match(out(await call(A, 'GetListOfPortMappings', { NewStartPort: 50000, NewEndPort: 40000, NewProtocol: 'UDP', NewManage: 1, NewNumberOfPorts: 0 })), { error: 733 });
  t.match(out(await call(A, 'GetListOfPortMappings', { NewStartPort: 50000, NewEndPort: 50010, NewProtocol: 'UDP', NewManage: 1, NewNumberOfPorts: 0 })), { error: 730 });

  t.match(out(await call(A, 'DeletePortMapping', { NewRemoteHost: '', NewExternalPort: 40001, NewProtocol: 'UDP' })), { error: 606 }, "B's mapping: 606");
  t.match(out(await call(A, 'DeletePortMapping', { NewRemoteHost: '', NewExternalPort: 49999, NewProtocol: 'UDP' })), { error: 714 });
  t.match(out(await call(A, 'DeletePortMappingRange', { NewStartPort: 40010, NewEndPort: 40000, NewProtocol: 'UDP', NewManage: 1 })), { error: 733 });
  t.same(out(await call(A, 'DeletePortMappingRange', { NewStartPort: 40000, NewEndPort: 40010, NewProtocol: 'UDP', NewManage: 1 })), {});
  t.same(h.service.mappings().map((m) => m.internalAddress), [B], "only B's mapping is left");
  t.match(out(await call(A, 'DeletePortMappingRange', { NewStartPort: 40000, NewEndPort: 40010, NewProtocol: 'UDP', NewManage: 1 })), { error: 730 }, 'nothing of yours left: 730');
});

t.test('a specific RemoteHost becomes a filter and is part of the entry', async (t) => {
  const { h, call } = setup();
  t.same(out(await call(A, 'AddPortMapping', add(A, 40000, 40000, { NewRemoteHost: '203.0.113.5' }))), {});
  t.ok(h.firewall.route({ protocol: 17, source: mustParseIp('203.0.113.5'), sourcePort: 1, destination: mustParseIp('198.51.100.1'), destinationPort: 40000 }), 'that remote passes');
  t.notOk(h.firewall.route({ protocol: 17, source: mustParseIp('203.0.113.6'), sourcePort: 1, destination: mustParseIp('198.51.100.1'), destinationPort: 40000 }), 'another does not');
  t.match(out(await call(A, 'GetSpecificPortMappingEntry', { NewRemoteHost: '', NewExternalPort: 40000, NewProtocol: 'UDP' })), { error: 714 }, 'another RemoteHost is another entry');
  t.match(out(await call(A, 'GetSpecificPortMappingEntry', { NewRemoteHost: '203.0.113.5', NewExternalPort: 40000, NewProtocol: 'UDP' })), { NewInternalClient: A });
});

t.test('pinholes: IDs, duplicates, same host by link-layer address, ownership, expiry, counters', async (t) => {
  const { h, call } = setup();
  const pin = (client: IpAddress, host: IpAddress, port: number, extra: Record<string, string | number> = {}) =>
    call(client, 'AddPinhole', { RemoteHost: '', RemotePort: 0, InternalClient: host, InternalPort: port, Protocol: 17, LeaseTime: 600, ...extra }, 'WANIPv6FirewallControl', 1);
  const first = out(await pin(A6, A6, 40000));
  t.ok(first.UniqueID, `an ID (${first.UniqueID})`);
  t.same(out(await pin(A6, A6, 40000)), first, 'the same pinhole again: the same ID');
  t.equal(h.firewall.list().length, 1, 'one kernel entry');
  const second = out(await pin(A6, A6, 40001));
  t.not(second.UniqueID, first.UniqueID);
  t.match(out(await pin(A6, mustParseIp('2001:db8:77::11'), 40002)), { error: 606 }, 'another host: 606');
  t.same(Object.keys(out(await pin(A6_ULA, A6, 40003))), ['UniqueID'], 'its ULA asking for its global address: the same host');
  t.match(out(await pin(A6, A6, 0)), { error: 706 });
  t.match(out(await pin(A6, A6, 40004, { Protocol: 65535 })), { error: 707 });
  t.match(out(await pin(A6, A6, 40004, { Protocol: 132 })), { error: 705 });
  t.match(out(await pin(A6, A6, 40004, { LeaseTime: 0 })), { error: 402 });
  t.match(out(await pin(A6, A6, 40004, { LeaseTime: 86401 })), { error: 402 });
  t.match(out(await pin(A6, mustParseIp('fe80::10'), 40004)), { error: 606 }, 'link-local cannot be reached from the WAN');

  const fc = (client: IpAddress, action: string, args: Record<string, string | number>) => call(client, action, args, 'WANIPv6FirewallControl', 1);
  t.match(out(await fc(A6, 'CheckPinholeWorking', { UniqueID: first.UniqueID as string })), { error: 709 }, 'no traffic yet: 709');
  h.firewall.route({ protocol: 17, source: mustParseIp('2001:db8:ff::2'), sourcePort: 1, destination: A6, destinationPort: 40000 });
  t.same(out(await fc(A6, 'CheckPinholeWorking', { UniqueID: first.UniqueID as string })), { IsWorking: '1' });
  t.same(out(await fc(A6, 'GetPinholePackets', { UniqueID: first.UniqueID as string })), { PinholePackets: '1' });
  t.match(out(await fc(mustParseIp('2001:db8:77::11'), 'DeletePinhole', { UniqueID: first.UniqueID as string })), { error: 606 }, "someone else's: 606");
  t.same(out(await fc(A6, 'UpdatePinhole', { UniqueID: first.UniqueID as string, NewLeaseTime: 3000 })), {});
  t.equal(h.firewall.list().length, 3);
  t.same(out(await fc(A6, 'DeletePinhole', { UniqueID: first.UniqueID as string })), {});
  t.match(out(await fc(A6, 'DeletePinhole', { UniqueID: first.UniqueID as string })), { error: 704 }, 'again: 704');
  h.clock.advance(601_000);
  h.service.expireDue();
  t.match(out(await fc(A6, 'UpdatePinhole', { UniqueID: second.UniqueID as string, NewLeaseTime: 600 })), { error: 704 }, 'expired: 704');
  const third = out(await pin(A6, A6, 40005));
  t.not(third.UniqueID, first.UniqueID, 'a deleted ID is not reused at once');
});

t.test("a host's other address outside every LAN prefix (its ULA here) is the host, yet no mapping may point at it: 606", async (t) => {
  // igd-fuzz, seed 382791714: AddPinhole from A6 for its ULA opened a pinhole
  // to an address outside the LAN, because the asker became the ULA itself.
  const { h, igd, call } = setup();
  // The arguments as the SOAP body had them: a repeated LeaseTime leaves its last value in the map.
  const pinhole = (client: IpAddress, host: IpAddress, lease: string[], serviceName: string, serviceVersion: number) =>
    igd.handle({ serviceName, serviceVersion, action: 'AddPinhole', client, args: new Map([['RemoteHost', ''], ['RemotePort', '1024'], ['InternalClient', host], ['InternalPort', '1024'], ['Protocol', '6'], ...lease.map((l): [string, string] => ['LeaseTime', l])]) });
  for (const [service, version] of [['WANIPConnection', 2], ['WANIPv6FirewallControl', 1]] as const) {
    for (const lease of [['0', '1'], ['1'], ['600']]) {
      t.match(out(await pinhole(A6, A6_ULA, lease, service, version)), { error: 606, detail: /not a LAN host/ }, `${service}:${version}, LeaseTime ${lease.join(' then ')}: refused`);
    }
  }
  t.same(h.service.mappings(() => true), [], 'nothing in the table');
  t.same(h.firewall.list(), [], 'nothing in the kernel');
  t.same(Object.keys(out(await pinhole(A6_ULA, A6, ['600'], 'WANIPv6FirewallControl', 1))), ['UniqueID'], 'the ULA asking for its global address is still the same host');
  t.match(out(await call(A, 'AddPortMapping', add(mustParseIp('10.0.0.10'), 40000, 40000))), { error: 606 }, 'AddPortMapping outside the LAN: 606');
});

t.test('dispatch by action name, whatever service or version was named', async (t) => {
  const { call } = setup();
  t.same(out(await call(A, 'GetExternalIPAddress', {}, 'WANIPv6FirewallControl', 1)), { NewExternalIPAddress: '198.51.100.1' });
  t.same(Object.keys(out(await call(A6, 'AddPinhole', { RemoteHost: '', RemotePort: 0, InternalClient: A6, InternalPort: 40000, Protocol: 6, LeaseTime: 60 }, 'WANIPConnection', 2))), ['UniqueID'], 'AddPinhole sent to WANIPConnection');
  t.same(Object.keys(out(await call(A, 'AddAnyPortMapping', add(A, 45000, 45000), 'WANIPConnection', 1))), ['NewReservedPort'], 'a v2 action named as v1');
  t.match(out(await call(A, 'Frobnicate', {})), { error: 401 });
  t.same(out(await call(A, 'GetStatusInfo', {})), { NewConnectionStatus: 'Connected', NewLastConnectionError: 'ERROR_NONE', NewUptime: '42' });
  t.match(out(await call(A, 'ForceTermination', {})), { error: 606 }, 'the LAN cannot drop the WAN link');
  t.same(out(await call(A, 'GetTotalBytesSent', {}, 'WANCommonInterfaceConfig', 1)), { NewTotalBytesSent: '5' }, 'ui4 counters wrap');
  t.match(out(await call(A, 'GetOutboundPinholeTimeout', { RemoteHost: '', RemotePort: 0, InternalClient: A6, InternalPort: 1, Protocol: 6 }, 'WANIPv6FirewallControl', 1)), { OutboundPinholeTimeout: '7440' });
  t.match(out(await call(A, 'GetOutboundPinholeTimeout', { Protocol: 6 }, 'WANIPv6FirewallControl', 1)), { error: 402 }, 'CVE-2019-12108: missing arguments are 402, not a crash');
});

t.test("secure mode: the victim's interface identifier under fe80:: or a ULA, behind another link-layer address, is not the victim", async (t) => {
  const ATTACKER_MAC = '02:00:00:00:00:66';
  // The attacker configured A6's identifier (::10) under fe80:: and under a
  // ULA prefix; the kernel saw those addresses from the attacker's card. One
  // more ULA with the identifier never appeared in the table at all.
  const attackerLl = mustParseIp('fe80::10');
  const attackerUla = mustParseIp('fd99::10');
  const unseen = mustParseIp('fd42::10');
  const table = [neighbour(A6, A6_MAC), neighbour(A6_ULA, A6_MAC), neighbour(attackerLl, ATTACKER_MAC), neighbour(attackerUla, ATTACKER_MAC), neighbour('2001:db8:77::10', A6_MAC, 'wlan0')];
  const { h, call } = setup(table);
  const fc = (client: IpAddress, action: string, args: Record<string, string | number>) => call(client, action, args, 'WANIPv6FirewallControl', 1);
  const pin = (client: IpAddress, port: number) => fc(client, 'AddPinhole', { RemoteHost: '', RemotePort: 0, InternalClient: A6, InternalPort: port, Protocol: 17, LeaseTime: 600 });
  const victims = out(await pin(A6, 40000));
  t.ok(victims.UniqueID, "the victim's own pinhole");
  const id = victims.UniqueID as string;

  for (const [who, name] of [[attackerLl, 'fe80:: with the identifier'], [attackerUla, 'a ULA with the identifier'], [unseen, 'a ULA not in the neighbour table']] as const) {
    t.match(out(await pin(who, 40100)), { error: 606 }, `${name}: cannot add a pinhole to the victim`);
    t.match(out(await fc(who, 'UpdatePinhole', { UniqueID: id, NewLeaseTime: 3000 })), { error: 606 }, `${name}: cannot update the victim's pinhole`);
    t.match(out(await fc(who, 'DeletePinhole', { UniqueID: id })), { error: 606 }, `${name}: cannot delete it`);
    t.match(out(await fc(who, 'GetPinholePackets', { UniqueID: id })), { error: 606 }, `${name}: cannot read its counter`);
  }
  t.equal(h.service.count(), 1, "nothing added, the victim's pinhole still there");
  t.equal(h.service.remaining(h.service.mappings()[0] as Mapping), 600, 'and its lease untouched');

  const fromUla = out(await pin(A6_ULA, 40001));
  t.ok(fromUla.UniqueID, "the victim's own ULA (same link-layer address) adds one for its global address");
  t.same(out(await fc(A6_ULA, 'UpdatePinhole', { UniqueID: id, NewLeaseTime: 3000 })), {}, 'and updates the global address pinhole');
  t.same(out(await fc(A6_ULA, 'DeletePinhole', { UniqueID: fromUla.UniqueID as string })), {}, 'and deletes one');
  t.same(out(await fc(A6, 'DeletePinhole', { UniqueID: id })), {}, 'the global address itself, of course');
  t.equal(h.service.count(), 0);
});

t.test('neighbour table: bounded reads, cached briefly, one read at a time; unresolved entries prove nothing', async (t) => {
  const rows = parseNeighbours(
    JSON.stringify([
      { dst: '2001:db8:77::10', dev: 'br-lan', lladdr: '02:00:00:00:00:10', state: ['REACHABLE'] },
      { dst: 'fd00::10', dev: 'br-lan', lladdr: '02:00:00:00:00:10', state: ['STALE'] },
      { dst: 'fd00::66', dev: 'br-lan', lladdr: '02:00:00:00:00:10', state: ['FAILED'] },
      { dst: 'fd00::67', dev: 'br-lan', state: ['INCOMPLETE'] },
      { dst: 'not an address', dev: 'br-lan', lladdr: '02:00:00:00:00:10', state: ['REACHABLE'] },
    ]),
  );
  t.same(rows.map((r) => r.address), ['2001:db8:77::10', 'fd00::10'], 'FAILED, INCOMPLETE and junk left out');
  t.same(parseNeighbours('not json'), []);
  t.same(parseNeighbours('{"dst":"fd00::1"}'), []);

  let reads = 0;
  let now = 0;
  let release: () => void = () => undefined;
  const n = new Neighbours(
    () =>
      new Promise((resolve) => {
        reads++;
        release = () => resolve(rows);
      }),
    () => now,
    1500,
  );
  const asks = [n.sameDevice(A6, A6_ULA), n.sameDevice(A6, mustParseIp('fd00::66')), n.sameDevice(A6_ULA, A6)];
  await new Promise((r) => setImmediate(r));
  t.equal(reads, 1, 'three questions at once: one read');
  release();
  t.same(await Promise.all(asks), [true, false, true]);
  now = 1000;
  await n.sameDevice(A6, A6_ULA);
  t.equal(reads, 1, 'within 1.5 s: no new read');
  now = 2000;
  const again = n.sameDevice(A6, A6_ULA);
  await new Promise((r) => setImmediate(r));
  release();
  t.equal(await again, true);
  t.equal(reads, 2, 'older than 1.5 s: read again');
  const failing = new Neighbours(() => Promise.reject(new Error('ip: not found')));
  t.equal(await failing.sameDevice(A6, A6_ULA), false, 'a failed read proves nothing');
});

t.test('AddPinhole when every UniqueID is in use: 701, and nothing is opened that the client could never name', async (t) => {
  const h = harness();
  const igd = new IgdControl(h.service, envWith(TABLE), 3);
  const pin = (port: number) =>
    igd.handle({ serviceName: 'WANIPv6FirewallControl', serviceVersion: 1, action: 'AddPinhole', args: new Map(Object.entries({ RemoteHost: '', RemotePort: '0', InternalClient: A6, InternalPort: String(port), Protocol: '17', LeaseTime: '600' })), client: A6 });
  const ids = [];
  for (const port of [40001, 40002, 40003]) ids.push(out(await pin(port)).UniqueID);
  t.same(ids, ['1', '2', '3'], 'three ids, three pinholes');
  const before = h.service.count();
  t.match(out(await pin(40004)), { error: 701 }, 'the fourth is refused');
  t.equal(h.service.count(), before, 'and not opened');
  t.same(out(await pin(40002)), { UniqueID: '2' }, 'renewing an existing pinhole still works');
});
