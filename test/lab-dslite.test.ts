// The DS-Lite lab (issue 14; RFC 6333, RFC 7648 §3.3): lan → cpe (the B4:
// IPv6 only on its WAN, a softwire carrying IPv4 to the AFTR, portcullis as
// PCP proxy with --no-nat44) → aftr (NAT44, portcullis as its PCP server,
// its "LAN" the softwire) → wan. scripts/lab-dslite.sh makes the softwire
// an ip6tnl (ipip6) tunnel where the kernel has one, else a VXLAN over the
// IPv6-only WAN as a stand-in (this project's CI kernel has no ip6tnl);
// with the VXLAN, discovery (which knows an ip6tnl softwire) cannot name
// the AFTR, so the CPE is given --upstream-pcp 192.0.0.1.
//
// Proven with real natpmpc, the PCP client and upnpc in the LAN: each gets
// the AFTR's public address and a port, the WAN host reaches the LAN host,
// the CPE holds no DNAT for it (only an admit4 element), delete closes it
// end to end, and an AFTR that allows no third party makes each client
// hear a failure.
//
// The CPE's WAN zone is both links, as an admin gives it: --wan wan0 (native
// IPv6) --wan ds0 (the softwire, IPv4). The same daemon relays IPv4 through
// the softwire and admits IPv6 pinholes arriving natively on wan0 (the
// AFTR's namespace is the IPv6 internet host), and UPnP reports the link of
// the WAN that carries IPv4 (the softwire), not the first one given.

import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CLI, labUp, lanClients, logLines, stateDir, stopped, waitForLine } from './helpers/lab.js';
import { reaches, shortMapping, sourceSeen } from './helpers/reach.js';
import { pcpPeer } from './helpers/pcp-peer.js';
import { until } from './helpers/wait.js';

const prefix = `ds${process.pid % 10000}`;
const lab = labUp(prefix, 'lab-dslite.sh');
t.teardown(() => lab.down());
const softwire = spawnSync('bash', [fileURLToPath(new URL('../../scripts/lab-dslite.sh', import.meta.url)), 'softwire'], { env: { ...process.env, LAB_PREFIX: prefix }, encoding: 'utf8' }).stdout.trim();

const PUBLIC = '11.22.33.1';
const B4 = '192.0.0.2';
const LAN6 = '2001:db8:77::2';

/** The AFTR's policy: the subscriber's B4 may map for the hosts behind it (or not, `thirdParty: false`). */
function aftrPolicy(thirdParty: boolean, perSubscriber = 64): string {
  const file = join(stateDir(), 'aftr-policy.yaml');
  writeFileSync(
    file,
    `version: 1
rules:
  - name: subscriber
    action: allow
    match:
      client: ${B4}
      internalPorts: 1024-65535
      externalPorts: 1024-65535
    limits:
      maxLifetime: 86400
      maxMappingsPerClient: ${perSubscriber}
      requestsPerSecond: 50
      thirdParty: ${thirdParty}
`,
  );
  return file;
}

function serve(node: 'cpe' | 'aftr', args: string[]): { proc: ChildProcess; lines: string[] } {
  const proc = lab.spawn(node, [process.execPath, CLI, 'serve', '--min-lifetime', '5', ...args]);
  return { proc, lines: logLines(proc) };
}

const startAftr = async (thirdParty: boolean, perSubscriber?: number) => {
  const a = serve('aftr', ['--lan', 'ds0', '--wan', 'wan0', '--lan-route', '192.168.77.0/24', '--no-upnp', '--state-dir', stateDir(), '--policy', aftrPolicy(thirdParty, perSubscriber)]);
  await waitForLine(a.proc, (l) => l.includes('"event":"started"'), 20_000);
  return a;
};
const cpeDir = stateDir();
const startCpe = async () => {
  const c = serve('cpe', ['--lan', 'lan0', '--wan', 'wan0', '--wan', 'ds0', '--no-nat44', '--upstream-pcp', '192.0.0.1', '--state-dir', cpeDir]);
  await waitForLine(c.proc, (l) => l.includes('"event":"started"'), 30_000);
  return c;
};
let aftr = await startAftr(true);
let cpe = await startCpe();
t.teardown(() => {
  cpe.proc.kill('SIGTERM');
  aftr.proc.kill('SIGTERM');
});

const { natpmpc, pcp, upnpc } = lanClients(lab, '192.168.77.1');
const pcp6 = lanClients(lab, '2001:db8:77::1').pcp;
const cpePinholes = () => lab.exec('cpe', ['nft', '-j', 'list', 'set', 'inet', 'portcullis', 'pinholes6']).stdout;
const cpeSet = (name: string) => lab.exec('cpe', ['nft', '-j', 'list', name === 'admit4' ? 'set' : 'map', 'inet', 'portcullis', name]).stdout;
const aftrDnat = () => lab.exec('aftr', ['nft', '-j', 'list', 'map', 'inet', 'portcullis', 'dnat4']).stdout;

t.test(`the softwire (${softwire}) carries IPv4 inside IPv6: the WAN link has no IPv4`, async (t) => {
  t.ok(softwire === 'ip6tnl' || softwire === 'vxlan', `softwire ${softwire}`);
  const addrs = lab.exec('cpe', ['ip', '-4', '-o', 'addr', 'show', 'dev', 'wan0']).stdout;
  t.equal(addrs.trim(), '', 'no IPv4 address on the CPE\'s WAN');
  // tshark starts slowly on a loaded machine: wait until it says it captures,
  // then stop it ourselves once the probe is through (-l: line by line).
  const cap = lab.spawn('cpe', ['timeout', '60', 'tshark', '-l', '-n', '-i', 'wan0', '-T', 'fields', '-e', 'frame.protocols']);
  let out = '';
  let said = '';
  cap.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  cap.stderr?.on('data', (d: Buffer) => (said += d.toString()));
  await until(() => said.includes('Capturing on'), 30_000, 100);
  t.ok(await reaches(lab, { proto: 'udp', listen: 'wan', port: 40900, to: '11.22.33.2', from: 'lan' }), 'the LAN host reaches the internet through the AFTR');
  await until(() => out.split('\n').some((f) => /ipv6.*:ip:udp/.test(f)), 5000, 100);
  const ended = new Promise((r) => cap.on('exit', r));
  cap.kill('SIGINT');
  await ended;
  const frames = out.split('\n').filter(Boolean);
  t.ok(frames.length > 0, `frames captured on wan0: ${frames.length}`);
  t.ok(frames.every((f) => f.startsWith('eth:ethertype:ipv6')), `only IPv6 on the WAN: ${[...new Set(frames)].join(' | ')}`);
  t.ok(frames.some((f) => /ipv6.*:ip:udp/.test(f)), 'IPv4 inside IPv6');
});

t.test('the CPE\'s WAN zone is wan0 and ds0; its IPv4 address is the softwire\'s', async (t) => {
  const started = cpe.lines.find((l) => l.includes('"event":"started"'));
  t.match(started, /"externalIPv4":"192\.0\.0\.2"/);
  t.match(started, /"wan":\["wan0","ds0"\]/, 'the zone, in the admin\'s order');
  t.match(started, /"ipv4Wan":"ds0"/, 'IPv4 from the softwire: wan0 has none');
  t.ok(cpe.lines.some((l) => l.includes('"event":"external-address"') && l.includes('"wan":"ds0"') && l.includes('"address":"192.0.0.2"')), 'said at start, with the interface');
});

t.test('the CPE relays to the AFTR for each LAN host (THIRD_PARTY)', async (t) => {
  const line = cpe.lines.find((l) => l.includes('"event":"upstream-pcp"'));
  t.match(line, /"server":"192\.0\.0\.1"/);
  t.match(line, /"thirdParty":true/);
});

t.test('IPv6 beside the softwire: a PCP MAP opens the LAN host to traffic arriving natively on wan0; delete closes it', async (t) => {
  const probe = () => reaches(lab, { proto: 'udp', listen: 'lan', port: 40060, to: LAN6, from: 'aftr' });
  t.notOk(await probe(), 'nothing reaches the LAN host before the mapping');
  const nonce = 'fedcba9876543210fedcba98';
  const r = pcp6('--proto', 'udp', '--port', '40060', '--lifetime', '600', '--nonce', nonce);
  t.match(r, { result: 'SUCCESS', externalAddress: LAN6, externalPort: 40060 }, 'granted for the LAN host\'s own address and port');
  t.match(cpePinholes(), /"2001:db8:77::2",\s*"udp",\s*40060/, 'a pinhole in the CPE\'s kernel');
  t.ok(await probe(), 'UDP from the IPv6 internet, arriving on wan0, reaches the LAN host');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40061, to: LAN6, from: 'aftr' }), 'the neighbouring port stays closed');
  const del = pcp6('--proto', 'udp', '--port', '40060', '--lifetime', '0', '--nonce', nonce);
  t.match(del, { result: 'SUCCESS' });
  t.notMatch(cpePinholes(), /40060/, 'gone from the kernel');
  t.notOk(await probe(), 'deleted: closed again');
});

t.test('natpmpc: the AFTR\'s public address and a port, reached from the WAN; no DNAT in the CPE; delete closes it', async (t) => {
  const a = natpmpc();
  t.match(a.all, /Public IP address : 11\.22\.33\.1/, a.all);
  const r = natpmpc('-a', '40001', '40001', 'udp', '3600');
  t.equal(r.code, 0, r.all);
  const port = Number(/Mapped public port (\d+) protocol UDP to local port 40001/.exec(r.all)?.[1]);
  t.ok(port > 0, `public port ${port}`);
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40001, to: PUBLIC, toPort: port }), 'UDP from the internet arrives at the LAN host');
  t.match(aftrDnat(), /"192\.168\.77\.2", 40001/, 'the AFTR maps the LAN host itself (THIRD_PARTY), not the B4');
  t.notMatch(cpeSet('dnat4'), /192\.168\.77\.2/, 'no IPv4 DNAT in the CPE');
  t.notMatch(cpeSet('snat4'), /192\.168\.77\.2/, 'no IPv4 SNAT in the CPE');
  t.match(cpeSet('admit4'), /"192\.168\.77\.2",\s*"udp",\s*40001/, 'the CPE admits the LAN host\'s endpoint');

  const del = natpmpc('-a', '0', '40001', 'udp', '0');
  t.equal(del.code, 0, del.all);
  await until(() => !/"192\.168\.77\.2", 40001/.test(aftrDnat()), 10_000, 250);
  t.notMatch(aftrDnat(), /"192\.168\.77\.2", 40001/, 'gone from the AFTR');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40001, to: PUBLIC, toPort: port }), 'removed: closed end to end');
  t.notMatch(cpeSet('admit4'), /40001/, 'gone from the CPE');
});

t.test('portcullis pcp: TCP through the softwire; delete closes it', async (t) => {
  const nonce = '0123456789abcdef01234567';
  const r = pcp('--proto', 'tcp', '--port', '40002', '--lifetime', '600', '--nonce', nonce);
  t.match(r, { result: 'SUCCESS', externalAddress: PUBLIC });
  const port = r.externalPort as number;
  t.ok(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40002, to: PUBLIC, toPort: port }), 'TCP from the internet connects');
  const del = pcp('--proto', 'tcp', '--port', '40002', '--lifetime', '0', '--nonce', nonce);
  t.match(del, { result: 'SUCCESS' });
  await until(() => !new RegExp(`"192\\.168\\.77\\.2", 40002`).test(aftrDnat()), 10_000, 250);
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40002, to: PUBLIC, toPort: port }), 'deleted: closed');

  const short = await shortMapping(lab, pcp, 40003, PUBLIC);
  t.match(short.answer, { result: 'SUCCESS', externalAddress: PUBLIC });
  t.ok((short.answer.lifetime as number) <= 12);
  t.ok(short.openWhileItLives, 'open while it lives');
  t.notOk(short.openAfter, 'expired: closed');
  t.notMatch(cpeSet('admit4'), /40003/, 'the CPE\'s kernel let it go');
});

t.test('status and doctor tell the DS-Lite relay', async (t) => {
  const doc = lab.exec('cpe', [process.execPath, CLI, 'doctor', '--lan', 'lan0', '--wan', 'wan0', '--wan', 'ds0', '--no-nat44', '--upstream-pcp', '192.0.0.1'], { allowFail: true }).stdout;
  t.match(doc, /^ok +WAN wan0: wan0 is up; no IPv4 address \(IPv4 is ds0's\)$/m, doc);
  t.match(doc, /^ok +WAN ds0: ds0 is up; it carries IPv4 \(192\.0\.0\.2\): its address is the external one$/m);
  t.match(doc, /^ok +WAN address: 192\.0\.0\.2 .*192\.0\.0\.1:5351 \(configured\) answers: IPv4 mappings are asked of it for each LAN host \(DS-Lite, no NAT44 here/m, doc);
  const st = lab.exec('cpe', [process.execPath, CLI, 'status', '--state-dir', cpeDir]).stdout;
  t.match(st, /upstream PCP \(192\.0\.0\.1:5351\): 192\.0\.0\.1:5351 \(configured\), external address 11\.22\.33\.1/);
  t.match(st, /IPv4 mappings are asked of 192\.0\.0\.1 for each LAN host \(DS-Lite, no NAT44 here\)/);
});

t.test('upnpc: the AFTR\'s address and the port asked; delete closes it', async (t) => {
  const add = upnpc('-a', '192.168.77.2', '40004', '40004', 'UDP', '3600');
  t.match(add.all, /external 11\.22\.33\.1:40004 UDP is redirected to internal 192\.168\.77\.2:40004/, add.all);
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40004, to: PUBLIC, toPort: 40004 }), 'reached at the port UPnP asked for');
  const del = upnpc('-d', '40004', 'UDP');
  t.equal(del.code, 0, del.all);
  await until(() => !/"192\.168\.77\.2", 40004/.test(aftrDnat()), 10_000, 250);
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40004, to: PUBLIC, toPort: 40004 }), 'deleted: closed');
});

t.test('UPnP reports the IPv4 WAN\'s link: the softwire\'s counters, not the native link\'s', async (t) => {
  const rx = (dev: string) => Number(lab.exec('cpe', ['cat', `/sys/class/net/${dev}/statistics/rx_bytes`]).stdout.trim());
  const before = rx('ds0');
  const s = upnpc('-s');
  const after = rx('ds0');
  const native = rx('wan0');
  const recv = Number(/Bytes:\s+Sent:\s+\d+\s+Recv:\s+(\d+)/.exec(s.all)?.[1]);
  t.ok(recv >= before && recv <= after, `GetTotalBytesReceived ${recv} is ds0's (${before}..${after}), ${s.all}`);
  // wan0 carries the softwire's packets inside its own, and the native IPv6 probes besides.
  t.ok(native > after, `wan0's count (${native}) is not the one reported`);
});

t.test('the AFTR bounds a subscriber: its mappings for all its hosts count against one quota', async (t) => {
  await stopped(aftr.proc);
  aftr = await startAftr(true, 2);
  const ports = [40021, 40022, 40023].map((p) => natpmpc('-a', String(p), String(p), 'udp', '600'));
  t.match(ports[0]!.all, /Mapped public port \d+ protocol UDP to local port 40021/, ports[0]!.all);
  t.match(ports[1]!.all, /Mapped public port \d+ protocol UDP to local port 40022/, ports[1]!.all);
  t.notMatch(ports[2]!.all, /Mapped public port/, 'the third is over the B4\'s quota of 2');
  t.notMatch(cpeSet('admit4'), /40023/, 'and not admitted here');
  for (const p of [40021, 40022]) natpmpc('-a', '0', String(p), 'udp', '0');
});

t.test('PCP PEER through the softwire: the AFTR\'s address and port told, and the flow leaves the AFTR from them', async (t) => {
  const r = pcpPeer(lab, 40040, '11.22.33.2', 3478, 600);
  t.match(r, { result: 0, externalAddress: PUBLIC }, 'SUCCESS with the AFTR\'s public address');
  const seen = await sourceSeen(lab, { proto: 'udp', listen: 'wan', port: 3478, from: 'lan', fromPort: 40040, to: '11.22.33.2' });
  t.equal(seen, `${PUBLIC}:${r.externalPort}`, 'the remote peer sees the flow from the endpoint the client was told');
  t.notMatch(cpeSet('snat4'), /192\.168\.77\.2/, 'no SNAT in the CPE: the AFTR translates');
});

t.test('an AFTR that allows no third party: each client hears a failure, nothing stays open', async (t) => {
  await stopped(aftr.proc);
  aftr = await startAftr(false);
  const n = natpmpc('-a', '40011', '40011', 'udp', '3600');
  t.notMatch(n.all, /Mapped public port/, n.all);
  const p = pcp('--proto', 'udp', '--port', '40012', '--lifetime', '600');
  t.match(p, { result: 'UNSUPP_OPTION' }, 'PCP: the AFTR\'s UNSUPP_OPTION (RFC 6887 §13.1)');
  const u = upnpc('-a', '192.168.77.2', '40013', '40013', 'UDP', '3600');
  t.match(u.all, /failed with code 606/, 'UPnP: 606 Action not authorized');
  t.notMatch(cpeSet('admit4'), /4001[123]/, 'the local halves were undone');
  t.notMatch(aftrDnat(), /4001[123]/, 'nothing at the AFTR');
});
