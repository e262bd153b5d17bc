// The IPv4 WAN of a WAN zone (--wan wan0 --wan ds0): the first interface, in
// the admin's order, with a global IPv4 address; its address is the
// external one unless --external-ip says otherwise, and the watch follows
// it across every WAN (a softwire that comes up after the native link).

import t from 'tap';
import type { NetworkInterfaceInfo } from 'node:os';
import { AddressWatch } from '../src/net/address-watch.js';
import { ipv4Wan } from '../src/net/wan-address.js';
import { mustParseIp } from '../src/net/address.js';
import { memoryLogger } from './helpers/memory-logger.js';

const nic = (cidr: string): NetworkInterfaceInfo => {
  const address = cidr.slice(0, cidr.indexOf('/'));
  return (address.includes(':')
    ? { address, cidr, netmask: '', family: 'IPv6', mac: '02:00:00:00:00:01', internal: false, scopeid: 0 }
    : { address, cidr, netmask: '', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false }) as NetworkInterfaceInfo;
};

t.test('the first WAN with IPv4, in the admin\'s order', async (t) => {
  const read = () => ({ wan0: [nic('2001:db8:64::2/64'), nic('169.254.1.1/16')], ds0: [nic('192.0.0.2/29')], wan1: [nic('198.51.100.1/24')] });
  t.same(ipv4Wan(['wan0', 'ds0', 'wan1'], read), { interface: 'ds0', address: '192.0.0.2' }, 'wan0 has IPv6 and link-local IPv4 only');
  t.same(ipv4Wan(['wan1', 'ds0'], read), { interface: 'wan1', address: '198.51.100.1' }, 'the order decides, not the list of interfaces');
  t.equal(ipv4Wan(['wan0', 'gone0'], read), undefined, 'none has one');
});

t.test('the watch follows IPv4 onto another WAN and says where it came from', async (t) => {
  const now: NodeJS.Dict<NetworkInterfaceInfo[]> = { lan0: [nic('192.168.77.1/24')], wan0: [nic('2001:db8:64::2/64')] };
  const log = memoryLogger();
  const watch = new AddressWatch({ lan: ['lan0'], wans: ['wan0', 'ds0'], read: () => ({ ...now }), log });
  t.teardown(() => watch.stop());
  t.equal(watch.externalIPv4(), undefined);
  t.equal(watch.ipv4Wan(), undefined);
  t.match(log.lines, [{ level: 'warn', event: 'external-address', detail: 'wan0, ds0 have no IPv4 address yet: IPv4 requests get NETWORK_FAILURE' }]);
  const moved: string[] = [];
  watch.onExternalChange((a) => void moved.push(a));
  watch.start();
  now.ds0 = [nic('192.0.0.2/29')];
  const deadline = Date.now() + 6000;
  while (moved.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.same(moved, ['192.0.0.2'], 'the softwire\'s address, once it has one');
  t.equal(watch.ipv4Wan(), 'ds0');
  t.ok(log.lines.some((l) => l.event === 'external-address' && l.to === '192.0.0.2' && l.wan === 'ds0'), 'logged with the interface');

  const given = new AddressWatch({ lan: ['lan0'], wans: ['wan0', 'ds0'], externalIp: mustParseIp('203.0.113.7'), read: () => ({ ...now }), log: memoryLogger() });
  t.equal(given.externalIPv4(), '203.0.113.7', '--external-ip wins');
  t.equal(given.ipv4Wan(), 'ds0', 'the IPv4 WAN is still the one with the address (UPnP reads its link)');

  const fresh = memoryLogger();
  const started = new AddressWatch({ lan: ['lan0'], wans: ['wan0', 'ds0'], read: () => ({ ...now }), log: fresh });
  t.equal(started.externalIPv4(), '192.0.0.2');
  t.match(fresh.lines, [{ level: 'info', event: 'external-address', address: '192.0.0.2', wan: 'ds0' }], 'at start: which WAN the address came from');
});
