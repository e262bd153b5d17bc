// The double-NAT lab (issue 14, RFC 7648): lan → cpe (portcullis as PCP
// proxy, WAN address in 100.64.0.0/10) → isp (portcullis as the CGN's PCP
// server, masquerading to the internet) → wan, real nftables in both. Real
// natpmpc and upnpc and portcullis' own PCP client (Debian has no PCP port
// control client: its libpcp is Performance Co-Pilot) in the LAN each get the
// ISP's public address and a port, and the WAN host reaches the LAN host
// through both NATs; removal and expiry close it end to end; the ISP's daemon
// restarted with its state wiped is repaired by the CPE without any client
// doing anything; upstream's refusal and upstream's silence reach the
// clients as failures.

import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { CLI, announcedEpoch, labUp, lanClients, listenForAnnouncements, logLines, logged, stateDir, stopped, waitForLine } from './helpers/lab.js';
import { reaches, shortMapping } from './helpers/reach.js';
import { until } from './helpers/wait.js';

const lab = labUp(`cg${process.pid % 10000}`, 'lab-cgn.sh');
t.teardown(() => lab.down());

/** The ISP's public address (scripts/lab-cgn.sh says why not documentation space). */
const PUBLIC = '11.22.33.1';
const ispPolicy = join(stateDir(), 'isp-policy.yaml');
writeFileSync(
  ispPolicy,
  `version: 1
rules:
  - name: reserved
    action: deny
    match:
      internalPorts: 40660-40669
  - name: subscribers
    action: allow
    match:
      internalPorts: 1024-65535
      externalPorts: 1024-65535
    limits:
      maxLifetime: 86400
      maxMappingsPerClient: 128
      requestsPerSecond: 50
`,
);

/** A daemon in a namespace, its log lines collected. */
function serve(node: 'cpe' | 'isp', args: string[]): { proc: ChildProcess; lines: string[] } {
  const proc = lab.spawn(node, [process.execPath, CLI, 'serve', '--min-lifetime', '5', ...args]);
  return { proc, lines: logLines(proc) };
}

const startIsp = async (dir: string) => {
  const isp = serve('isp', ['--lan', 'cpe0', '--wan', 'wan0', '--no-upnp', '--state-dir', dir, '--policy', ispPolicy]);
  await waitForLine(isp.proc, (l) => l.includes('"event":"started"'));
  return isp;
};
let isp = await startIsp(stateDir());
const cpeDir = stateDir();
let cpe = serve('cpe', ['--lan', 'lan0', '--wan', 'wan0', '--state-dir', cpeDir]);
t.teardown(() => {
  cpe.proc.kill('SIGTERM');
  isp.proc.kill('SIGTERM');
});

const { natpmpc, pcp, upnpc } = lanClients(lab, '192.168.77.1');
const ispEntries = () => lab.exec('isp', ['nft', '-j', 'list', 'map', 'inet', 'portcullis', 'dnat4']).stdout;

t.test('the CPE finds the ISP\'s PCP server (its default router) and relays to it', async (t) => {
  const line = await waitForLine(cpe.proc, (l) => l.includes('"event":"upstream-pcp"'), 20_000);
  t.match(line, /"server":"100\.64\.0\.1"/);
  t.match(line, /"source":"default-router"/);
  await waitForLine(cpe.proc, (l) => l.includes('"event":"started"'), 20_000);
});

t.test('doctor and status tell the upstream', async (t) => {
  const doc = lab.exec('cpe', [process.execPath, CLI, 'doctor', '--lan', 'lan0', '--wan', 'wan0'], { allowFail: true }).stdout;
  t.match(doc, /^ok +WAN address: 100\.64\.0\.2 is behind the ISP's NAT, and its PCP server 100\.64\.0\.1:5351 \(default-router\) answers/m);
  const st = lab.exec('cpe', [process.execPath, CLI, 'status', '--state-dir', cpeDir]).stdout;
  t.match(st, /upstream PCP \(auto\): 100\.64\.0\.1:5351 \(default-router\), external address 11\.22\.33\.1/);
  t.match(st, /last answer 20\d\d-/);
});

t.test('natpmpc: the ISP\'s public address, a port, and the WAN host reaches the LAN host through both NATs', async (t) => {
  const a = natpmpc();
  t.equal(a.code, 0, a.all);
  t.match(a.all, /Public IP address : 11\.22\.33\.1/, 'upstream\'s address, not 100.64.0.2');
  const r = natpmpc('-a', '40001', '40001', 'udp', '3600');
  t.equal(r.code, 0, r.all);
  const port = Number(/Mapped public port (\d+) protocol UDP to local port 40001 liftime (\d+)/.exec(r.all)?.[1]);
  t.ok(port > 0, `public port ${port}`);
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40001, to: PUBLIC, toPort: port }), 'UDP from the internet arrives');

  const del = natpmpc('-a', '0', '40001', 'udp', '0');
  t.equal(del.code, 0, del.all);
  // The client is answered before the ISP has deleted: wait for the ISP's kernel, then probe.
  await until(() => !/"100\.64\.0\.2"/.test(ispEntries()), 10_000, 250);
  t.notMatch(ispEntries(), /"100\.64\.0\.2"/, 'the removal reached the ISP\'s kernel');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40001, to: PUBLIC, toPort: port }), 'removed: closed end to end');
});

t.test('portcullis pcp: upstream\'s address and port; expiry closes it end to end', async (t) => {
  const r = pcp('--proto', 'tcp', '--port', '40002', '--lifetime', '600');
  t.match(r, { result: 'SUCCESS', externalAddress: PUBLIC, lifetime: 600 });
  t.ok(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40002, to: PUBLIC, toPort: r.externalPort as number }), 'TCP from the internet connects');

  const short = await shortMapping(lab, pcp, 40003, PUBLIC);
  t.match(short.answer, { result: 'SUCCESS', externalAddress: PUBLIC });
  t.ok((short.answer.lifetime as number) <= 12);
  t.ok(short.openWhileItLives, 'open while it lives');
  t.notOk(short.openAfter, 'expired: closed');
});

t.test('upnpc: the ISP\'s address and the exact port asked', async (t) => {
  const add = upnpc('-a', '192.168.77.2', '40004', '40004', 'UDP', '3600');
  t.match(add.all, /external 11\.22\.33\.1:40004 UDP is redirected to internal 192\.168\.77\.2:40004/, add.all);
  t.match(add.all, /ExternalIPAddress = 11\.22\.33\.1/);
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40004, to: PUBLIC, toPort: 40004 }), 'reached at the port UPnP asked for');
  const list = upnpc('-l');
  t.match(list.all, /UDP\s+40004->192\.168\.77\.2:40004/, 'listed by upstream\'s port');
  const del = upnpc('-d', '40004', 'UDP');
  t.equal(del.code, 0, del.all);
  await until(() => !/"40004"|: 40004,/.test(ispEntries()), 10_000, 250);
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40004, to: PUBLIC, toPort: 40004 }), 'deleted by upstream\'s port: closed');
});

t.test('upstream refuses: each client hears a failure, and nothing stays open here', async (t) => {
  const n = natpmpc('-a', '40661', '40661', 'udp', '3600');
  t.notMatch(n.all, /Mapped public port/, n.all);
  t.match(pcp('--proto', 'udp', '--port', '40662', '--lifetime', '600'), { result: 'NOT_AUTHORIZED' }, 'PCP: upstream\'s result relayed');
  const u = upnpc('-a', '192.168.77.2', '40663', '40663', 'UDP', '3600');
  t.match(u.all, /failed with code 606/, 'UPnP: 606 Action not authorized (RFC 6970 §4.3)');
  const cpeMaps = lab.exec('cpe', ['nft', '-j', 'list', 'map', 'inet', 'portcullis', 'dnat4']).stdout;
  t.notMatch(cpeMaps, /4066[123]/, 'the local halves were undone');
});

t.test('the ISP\'s daemon restarted with its state wiped: the CPE repairs without any client', async (t) => {
  const r = pcp('--proto', 'udp', '--port', '40005', '--lifetime', '3600');
  t.match(r, { result: 'SUCCESS', externalAddress: PUBLIC });
  const port = r.externalPort as number;
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40005, to: PUBLIC, toPort: port }));
  const heard = await listenForAnnouncements(lab, 15_000);
  isp.proc.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 300));
  // A fresh state directory: its reconciliation takes the old entries out of its kernel, its epoch starts at 0, and it announces.
  isp = await startIsp(stateDir());
  const deadline = Date.now() + 20_000;
  let back = false;
  while (!back && Date.now() < deadline) back = await reaches(lab, { proto: 'udp', listen: 'lan', port: 40005, to: PUBLIC, toPort: port });
  t.ok(back, 'reachable again at the same public port');
  t.ok(await logged(cpe.lines, (l) => l.includes('"event":"upstream-state-lost"')), 'the CPE saw the loss');
  const pcpAnnounce = heard.heard().filter((h) => h.from === '192.168.77.1' && h.hex.startsWith('02800000'));
  t.ok(pcpAnnounce.length > 0, 'the CPE announced to its LAN');
  t.ok(pcpAnnounce.some((h) => announcedEpoch(h) <= 2), `with its epoch started again (${pcpAnnounce.map(announcedEpoch).join(', ')})`);
});

t.test('the CPE restarted: a NAT-PMP mapping is renewed and removed upstream with the nonce it was made with', async (t) => {
  const r = natpmpc('-a', '40010', '40010', 'udp', '3600');
  const port = Number(/Mapped public port (\d+) protocol UDP/.exec(r.all)?.[1]);
  t.ok(port > 0, r.all);
  await stopped(cpe.proc);
  cpe = serve('cpe', ['--lan', 'lan0', '--wan', 'wan0', '--state-dir', cpeDir]);
  await waitForLine(cpe.proc, (l) => l.includes('"event":"started"'), 30_000);
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40010, to: PUBLIC, toPort: port }), 'still reachable after the restart');
  const ls = lab.exec('cpe', [process.execPath, CLI, 'ls', '--state-dir', cpeDir]).stdout;
  t.match(ls, new RegExp(`11\\.22\\.33\\.1:${port} → 100\\.64\\.0\\.2:\\d+ → 192\\.168\\.77\\.2:40010`), 'ls shows upstream\'s part, kept in the store');
  const again = natpmpc('-a', '40010', '40010', 'udp', '3600');
  t.match(again.all, new RegExp(`Mapped public port ${port} protocol UDP to local port 40010`), 'renewed upstream: the ISP saw the same nonce');
  const del = natpmpc('-a', '0', '40010', 'udp', '0');
  t.equal(del.code, 0, del.all);
  await until(() => !new RegExp(`"${port}"|: ${port},`).test(ispEntries()), 10_000, 250);
  t.notMatch(ispEntries(), new RegExp(`"${port}"|: ${port},`), 'gone from the ISP\'s kernel');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40010, to: PUBLIC, toPort: port }), 'removed end to end');
});

t.test('the ISP\'s external address changes: the CPE\'s epoch starts again, its clients hear the new address, the mappings follow', async (t) => {
  const r = pcp('--proto', 'udp', '--port', '40011', '--lifetime', '3600');
  t.match(r, { result: 'SUCCESS', externalAddress: PUBLIC });
  const heard = await listenForAnnouncements(lab, 20_000);
  // The new address stays when the old, primary one goes.
  lab.exec('isp', ['sysctl', '-qw', 'net.ipv4.conf.wan0.promote_secondaries=1']);
  lab.exec('isp', ['ip', 'addr', 'add', '11.22.33.5/24', 'dev', 'wan0']);
  lab.exec('isp', ['ip', 'addr', 'del', '11.22.33.1/24', 'dev', 'wan0']);
  const deadline = Date.now() + 20_000;
  let now = '';
  while (Date.now() < deadline && !now.includes('11.22.33.5')) {
    await new Promise((r) => setTimeout(r, 1000));
    now = natpmpc().all;
  }
  t.match(now, /Public IP address : 11\.22\.33\.5/, 'NAT-PMP tells the new address');
  t.ok(await logged(cpe.lines, (l) => l.includes('"event":"upstream-external-address"') && l.includes('"to":"11.22.33.5"')), 'the CPE logged the change');
  await new Promise((r) => setTimeout(r, 2000));
  const natpmpAnnounce = heard.heard().filter((h) => h.from === '192.168.77.1' && h.hex.startsWith('0080') && h.hex.endsWith('0b162105'));
  t.ok(natpmpAnnounce.length > 0, 'NAT-PMP announcements of 11.22.33.5 on the LAN');
  t.ok(natpmpAnnounce.some((h) => announcedEpoch(h) <= 5), 'with the epoch started again');
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40011, to: '11.22.33.5', toPort: r.externalPort as number }), 'the mapping moved with it, no client asking');
});

t.test('a silent upstream: failures within a bounded time', async (t) => {
  await stopped(cpe.proc);
  // Nothing answers on that port.
  cpe = serve('cpe', ['--lan', 'lan0', '--wan', 'wan0', '--state-dir', cpeDir, '--upstream-pcp', '100.64.0.1:5399']);
  await waitForLine(cpe.proc, (l) => l.includes('"event":"started"'), 30_000);
  const started = Date.now();
  const r = pcp('--proto', 'udp', '--port', '40006', '--lifetime', '600');
  const took = Date.now() - started;
  t.match(r, { result: 'NETWORK_FAILURE' });
  // Bounded, not fast: the client's own patience is 7.5 s, so NETWORK_FAILURE
  // above already says the daemon answered in time; this catches a hang.
  t.ok(took < 30_000, `PCP answered in ${took} ms`);
  const n = natpmpc('-a', '40007', '40007', 'udp', '3600');
  t.notMatch(n.all, /Mapped public port/, n.all);
  const found = upnpc('-a', '192.168.77.2', '40008', '40008', 'UDP', '3600');
  t.match(found.all, /No valid UPNP Internet Gateway Device found/, 'upstream\'s address unknown: the IGD says it is not connected');
  const desc = /desc: (\S+)/.exec(found.all)?.[1];
  t.ok(desc, 'but it was found');
  const u = upnpc('-u', desc ?? '', '-a', '192.168.77.2', '40008', '40008', 'UDP', '3600');
  t.match(u.all, /failed with code 501/, 'UPnP AddPortMapping, asked anyway: 501 Action failed');
});

t.test('no upstream on a CGN line: said at start, in the log, in doctor and in status; mappings granted here only', async (t) => {
  await Promise.all([stopped(cpe.proc), stopped(isp.proc)]);
  cpe = serve('cpe', ['--lan', 'lan0', '--wan', 'wan0', '--state-dir', cpeDir]);
  await waitForLine(cpe.proc, (l) => l.includes('"event":"started"'), 30_000);
  const none = cpe.lines.find((l) => l.includes('"event":"upstream-none"'));
  t.match(none, /no upstream PCP server answered.*NOT reachable from the internet/);
  t.ok(cpe.lines.some((l) => l.includes('"event":"wan-address"') && /NOT reachable/.test(l)), 'the WAN address\'s warning');
  const doc = lab.exec('cpe', [process.execPath, CLI, 'doctor', '--lan', 'lan0', '--wan', 'wan0'], { allowFail: true }).stdout;
  t.match(doc, /^WARN +WAN address: .*NOT reachable from the internet.*No upstream PCP server answered \(tried 100\.64\.0\.1:5351\)/m);
  const st = lab.exec('cpe', [process.execPath, CLI, 'status', '--state-dir', cpeDir]).stdout;
  t.match(st, /upstream PCP \(auto\): NONE: no upstream PCP server answered/);
  const a = natpmpc();
  t.match(a.all, /Public IP address : 100\.64\.0\.2/, 'granted here, with the address of this router');
});
