// The daemon's own guards, in-process (memory backend, real UDP on loopback):
// an address the router gains after start is never a mapping target (issue
// 10 item 11), and the shared LAN-source rule (src/net/lan-source.ts).

import { createSocket } from 'node:dgram';
import { mkdtempSync } from 'node:fs';
import { tmpdir, type NetworkInterfaceInfo } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { DEFAULTS, type Config } from '../src/config.js';
import { startDaemon } from '../src/daemon.js';
import { memoryLogger } from './helpers/memory-logger.js';
import { until } from './helpers/wait.js';
import { mustParseIp, parsePrefix, type Prefix } from '../src/net/address.js';
import { LanSources } from '../src/net/lan-source.js';
import type { LocalAddress } from '../src/net/interfaces.js';
import { parsePolicyText } from '../src/policy/load.js';
import { Opcode, OptionCode, ResultCode as PcpResult } from '../src/protocols/pcp/constants.js';
import { decodePcpResponse, encodePcpRequest } from '../src/protocols/pcp/codec.js';

const nic = (address: string, cidr: string, internal: boolean): NetworkInterfaceInfo =>
  ({ address, cidr, internal, netmask: '', family: address.includes(':') ? 'IPv6' : 'IPv4', mac: '02:00:00:00:00:01', ...(address.includes(':') ? { scopeid: 0 } : {}) }) as NetworkInterfaceInfo;

t.test('an address the router gains after start cannot become a mapping target', async (t) => {
  // The LAN is 127.0.0.0/8 on loopback; the router's other interface gains
  // 127.0.0.10 while the daemon runs.
  const extra: NetworkInterfaceInfo[] = [];
  const interfaces = (): NodeJS.Dict<NetworkInterfaceInfo[]> => ({
    lo: [nic('127.0.0.1', '127.0.0.1/8', true)],
    wan0: [nic('198.51.100.1', '198.51.100.1/24', false)],
    br1: [nic('192.0.2.1', '192.0.2.1/24', false), ...extra],
  });
  const port = 21000 + (process.pid % 20000);
  const policy = parsePolicyText(
    'version: 1\nrules:\n  - name: anyone-for-anyone\n    action: allow\n    match: { operation: [map, pinhole, third-party] }\n    limits: { thirdParty: true }\n',
    'test',
  );
  const cfg: Config = { ...DEFAULTS, stateDir: mkdtempSync(join(tmpdir(), 'portcullis-guard-')), lan: ['lo'], wans: ['wan0'], backend: 'memory', port, announce: false, upnp: { ...DEFAULTS.upnp, enabled: false } };
  const daemon = await startDaemon(cfg, memoryLogger(), { interfaces, policy });
  t.teardown(() => daemon.stop());
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  t.teardown(() => sock.close());
  const mapFor = (target: string, internalPort: number) =>
    new Promise<number | undefined>((resolve) => {
      const req = encodePcpRequest({
        opcode: Opcode.MAP,
        lifetime: 600,
        clientAddress: mustParseIp('127.0.0.1'),
        map: { nonce: Buffer.alloc(12, 7), protocol: 17, internalPort, externalPort: 0, externalAddress: mustParseIp('0.0.0.0') },
        options: [{ code: OptionCode.THIRD_PARTY, address: mustParseIp(target), v4: true }],
      });
      const timer = setTimeout(() => resolve(undefined), 5000);
      sock.once('message', (m) => {
        clearTimeout(timer);
        const d = decodePcpResponse(m);
        resolve(d.ok ? d.msg.result : undefined);
      });
      sock.send(req, port, '127.0.0.1');
    });
  t.equal(await mapFor('127.0.0.10', 40000), PcpResult.SUCCESS, 'another LAN host: granted');
  extra.push(nic('127.0.0.10', '127.0.0.10/32', false));
  // The address poll runs every 2 s: ask again (a fresh port each time) until it has seen it.
  let result: number | undefined;
  let internalPort = 40001;
  await until(async () => (result = await mapFor('127.0.0.10', internalPort++)) === PcpResult.NOT_AUTHORIZED, 10_000, 250);
  t.equal(result, PcpResult.NOT_AUTHORIZED, 'once it is the router\'s own address: refused');
});

t.test('LanSources: fail closed, link-local only with a LAN zone, otherwise a routable LAN prefix', async (t) => {
  const local = (address: string, iface: string, cidr: string): LocalAddress => ({
    address: mustParseIp(address),
    family: address.includes(':') ? 6 : 4,
    interface: iface,
    bindAddress: address.startsWith('fe80') ? `${address}%${iface}` : address,
    prefix: parsePrefix(cidr) as Prefix,
  });
  const s = new LanSources(['br-lan', 'wlan0'], [local('192.168.1.1', 'br-lan', '192.168.1.0/24'), local('2001:db8:1::1', 'br-lan', '2001:db8:1::/64'), local('fe80::1', 'br-lan', 'fe80::/64')]);
  t.equal(s.check('192.168.1.20'), undefined, 'closed until the kernel guard is confirmed');
  s.setGuarded(true);
  t.equal(s.check('192.168.1.20'), '192.168.1.20', 'a LAN IPv4 source');
  t.equal(s.check('::ffff:192.168.1.20'), '192.168.1.20', 'the same, IPv4-mapped from a dual-stack socket');
  t.equal(s.check('2001:db8:1::20'), '2001:db8:1::20', 'a LAN IPv6 source');
  t.equal(s.check('192.168.2.20'), undefined, 'outside every LAN prefix');
  t.equal(s.check('2001:db8:2::20'), undefined, 'another /64');
  t.equal(s.check('fe80::20%br-lan'), 'fe80::20', 'link-local with a LAN zone');
  t.equal(s.check('fe80::20%wlan0'), 'fe80::20', 'link-local on another LAN interface');
  t.equal(s.check('fe80::20%wan0'), undefined, 'link-local arriving on the WAN');
  t.equal(s.check('fe80::20'), undefined, 'link-local without a zone proves nothing');
  t.equal(s.check('fe80::20%br-lan', 'wlan0'), undefined, 'a link-scoped socket takes only its own link');
  t.equal(s.check('not an address'), undefined, 'garbage');
  t.notOk(s.isLanHost(mustParseIp('fe80::20')), 'a link-local prefix does not make a LAN host');
  s.update([local('192.168.5.1', 'br-lan', '192.168.5.0/24')]);
  t.equal(s.check('192.168.1.20'), undefined, 'a prefix the LAN lost no longer counts');
  t.equal(s.check('192.168.5.7'), '192.168.5.7', 'the new one does');
  s.setGuarded(false);
  t.equal(s.check('192.168.5.7'), undefined, 'closed again when the guard goes');
});

t.test('announcements and mapping updates leave no timers behind once sent', async (t) => {
  const interfaces = (): NodeJS.Dict<NetworkInterfaceInfo[]> => ({ lo: [nic('127.0.0.1', '127.0.0.1/8', true)], wan0: [nic('198.51.100.1', '198.51.100.1/24', false)] });
  const cfg: Config = { ...DEFAULTS, stateDir: mkdtempSync(join(tmpdir(), 'portcullis-guard-')), lan: ['lo'], wans: ['wan0'], backend: 'memory', port: 22000 + (process.pid % 20000), announce: false, upnp: { ...DEFAULTS.upnp, enabled: false } };
  const daemon = await startDaemon(cfg, memoryLogger(), { interfaces });
  t.teardown(() => daemon.stop());
  // A WAN address that flaps (a misbehaving DHCP server) asks for these again and again.
  for (let i = 0; i < 200; i++) {
    daemon.server.announce(3);
    daemon.server.sendMappingUpdates([{ to: mustParseIp('127.0.0.9'), port: 5350, message: () => Buffer.alloc(60) }]);
  }
  t.equal(daemon.server.pendingSends(), 1200, 'scheduled while pending');
  // They are due within 750 ms; a loaded machine may fire them late, a leak never drops them.
  await until(() => daemon.server.pendingSends() === 0, 10_000);
  t.equal(daemon.server.pendingSends(), 0, 'none kept after they fired');
});

t.test('the kernel guard: per-device UDP rate from the config, off with perSecond 0, and the rule count follows', async (t) => {
  const { ruleLines, guardRuleCount } = await import('../src/firewall/nft/ruleset.js');
  const p = { family: 'inet' as const, table: 'portcullis', embedded: false };
  const base = { wans: ['wan0'], lan: ['br-lan'], mark: 0x10000000, guarded: { udp: [5351, 1900], tcp: [5000] } };
  const guard = (topo: typeof base & { deviceUdpRate?: { perSecond: number; burst: number } }) => ruleLines(p, topo).filter((r) => r.startsWith('lan_only ') || r.startsWith('input '));
  t.match(guard(base).join('\n'), /limit rate over 200\/second burst 400 packets/, 'the default');
  t.match(guard({ ...base, deviceUdpRate: { perSecond: 50, burst: 60 } }).join('\n'), /limit rate over 50\/second burst 60 packets/, 'configured');
  t.notMatch(guard({ ...base, deviceUdpRate: { perSecond: 0, burst: 1 } }).join('\n'), /limit rate/, 'off');
  for (const topo of [base, { ...base, deviceUdpRate: { perSecond: 0, burst: 1 } }]) t.equal(guard(topo).length, guardRuleCount(topo), 'counted as written');
});
