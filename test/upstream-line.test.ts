// Issue 14: a warning where the line is not what the settings say. A DS-Lite
// B4 (--no-nat44) whose WAN has a public IPv4 address is probably not on
// DS-Lite; --upstream-pcp auto on a public WAN address has no ISP NAT to
// relay to. Said in the log at start and by doctor.

import t from 'tap';
import type { NetworkInterfaceInfo } from 'node:os';
import { runChecks, type SystemView } from '../src/doctor/checks.js';
import { lineMismatch } from '../src/net/wan-address.js';
import { mustParseIp } from '../src/net/address.js';
import { cgnDaemon } from './helpers/cgn-daemon.js';

const PUBLIC = mustParseIp('198.51.100.1');
const CGN = mustParseIp('100.64.0.2');

t.test('the verdicts', async (t) => {
  t.match(lineMismatch(PUBLIC, { nat44: false, upstreamAuto: false }), { level: 'warn', detail: /--no-nat44 \(DS-Lite B4\) but the WAN has the public IPv4 address 198\.51\.100\.1/, fix: /drop --no-nat44/ });
  t.match(lineMismatch(PUBLIC, { nat44: true, upstreamAuto: true }), { level: 'info', detail: /auto has nothing to relay to/ });
  t.equal(lineMismatch(PUBLIC, { nat44: true, upstreamAuto: false }), undefined, 'an explicit server on a public line: the admin knows');
  t.equal(lineMismatch(CGN, { nat44: false, upstreamAuto: true }), undefined, 'behind the ISP\'s NAT: as the settings say');
  t.equal(lineMismatch(mustParseIp('192.0.0.2'), { nat44: false, upstreamAuto: true }), undefined, 'a DS-Lite B4 address');
  t.equal(lineMismatch(undefined, { nat44: false, upstreamAuto: true }), undefined, 'no IPv4 address (the softwire has none yet)');
});

/** Just enough system for the WAN address check. */
function view(wan: string): SystemView {
  return {
    nftJson: async () => ({ ok: false, error: 'not asked here' }),
    read: () => '1\n',
    links: async () => new Map([['lan0', { up: true }], ['wan0', { up: true }]]),
    interfaces: (): NodeJS.Dict<NetworkInterfaceInfo[]> => ({ wan0: [{ address: wan, cidr: `${wan}/24`, netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false }] }),
    upstreamPcp: async () => ({ tried: [] }),
  };
}
const settings = { lan: ['lan0'], wans: ['wan0'], nft: { table: 'portcullis', embed: false, mark: 0x10000000 } };
const wanCheck = async (wan: string, more: object) => (await runChecks({ ...settings, ...more }, view(wan))).find((c) => c.name === 'WAN address');

t.test('doctor', async (t) => {
  t.match(await wanCheck(PUBLIC, { nat44: false, upstreamPcp: 'auto' }), { status: 'warn', detail: /--no-nat44 .*public IPv4 address 198\.51\.100\.1/, fix: /drop --no-nat44/ });
  t.match(await wanCheck(PUBLIC, { upstreamPcp: 'auto' }), { status: 'ok', detail: /address of the router's own; no ISP NAT in the way .*auto has nothing to relay to/ });
  t.match(await wanCheck(PUBLIC, { upstreamPcp: 'off' }), { status: 'ok', detail: /^198\.51\.100\.1 is an address of the router's own$/ });
});

t.test('the daemon says it at start', async (t) => {
  const auto = await cgnDaemon({ wanAddress: PUBLIC, upstream: 'auto' });
  await auto.daemon.stop();
  auto.upstream.sock.close();
  t.match(auto.log.lines.find((l) => l.event === 'upstream-not-needed'), { level: 'info', detail: /auto has nothing to relay to/ });
  const dslite = await cgnDaemon({ wanAddress: PUBLIC, cfg: { nat44: false } });
  await dslite.daemon.stop();
  dslite.upstream.sock.close();
  t.match(dslite.log.lines.find((l) => l.event === 'line-mismatch'), { level: 'warn', detail: /--no-nat44/ });
  const cgn = await cgnDaemon({ upstream: 'auto' });
  await cgn.daemon.stop();
  cgn.upstream.sock.close();
  t.notOk(cgn.log.lines.some((l) => l.event === 'line-mismatch' || l.event === 'upstream-not-needed'), 'behind the ISP\'s NAT: nothing to say');
});
