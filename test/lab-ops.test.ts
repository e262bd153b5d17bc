// The admin's commands in the lab: the real CLI binary in the router's
// namespace against a real daemon (nftables), mappings made by real clients
// (natpmpc, `portcullis pcp map`), traffic from the WAN host. ls names each
// device by its link-layer address from the router's neighbour table; rm
// takes a mapping out of the kernel; status counts what ls shows and tells a
// repair; with the daemon gone each says so.

import t from 'tap';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { CLI, labUp, stateDir, waitForLine, type Lab } from './helpers/lab.js';
import { reaches } from './helpers/reach.js';

const lab: Lab = labUp(`po${process.pid % 10000}`);
t.teardown(() => lab.down());

const EXT = '198.51.100.1';
const STATE = stateDir();
const CONFIG = join(STATE, 'config.json');
// A short reconcile period, so the repair below is seen within seconds.
writeFileSync(CONFIG, JSON.stringify({ reconcileSeconds: 1 }));
const logs: string[] = [];
let daemon: ChildProcess;

const cli = (args: string[]) => lab.exec('rtr', [process.execPath, CLI, ...args, '--state-dir', STATE], { allowFail: true });
const macOf = (node: 'lan' | 'lan2') => (JSON.parse(lab.exec(node, ['ip', '-j', 'link', 'show', 'eth0']).stdout) as { address: string }[])[0]?.address ?? '';
const dnat = () => lab.exec('rtr', ['nft', 'list', 'map', 'inet', 'portcullis', 'dnat4']).stdout;
interface Row {
  id: number;
  device?: string;
  protocol: string;
  internal: string;
  external: string;
  origin: string;
}
const rows = () => (JSON.parse(cli(['ls', '--json']).stdout) as { mappings: Row[] }).mappings;

t.before(async () => {
  daemon = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--config', CONFIG, '--lan', 'br-lan', '--wan', 'wan0', '--state-dir', STATE, '--no-announce', '--no-upnp']);
  daemon.stdout?.on('data', (b: Buffer) => logs.push(...b.toString().split('\n').filter(Boolean)));
  await waitForLine(daemon, (l) => l.includes('"event":"started"'));
});

t.test('natpmpc and portcullis pcp map: ls shows them with IDs and the devices\' link-layer addresses; status counts them', async (t) => {
  const n = lab.exec('lan', ['natpmpc', '-g', '192.168.77.1', '-a', '5001', '5001', 'udp', '600'], { allowFail: true, timeoutMs: 20_000 });
  t.match(n.stdout, /Mapped public port 5001 protocol UDP to local port 5001/, n.stdout + n.stderr);
  const p4 = JSON.parse(lab.exec('lan2', [process.execPath, CLI, 'pcp', 'map', '--server', '192.168.77.1', '--proto', 'tcp', '--port', '42010', '--description', 'web']).stdout) as { result: string; externalPort: number };
  t.match(p4, { result: 'SUCCESS' });
  const p6 = JSON.parse(lab.exec('lan', [process.execPath, CLI, 'pcp', 'map', '--server', '2001:db8:77::1', '--proto', 'udp', '--port', '42020']).stdout) as { result: string };
  t.match(p6, { result: 'SUCCESS' });

  const lanMac = macOf('lan');
  const lan2Mac = macOf('lan2');
  const r = cli(['ls']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, new RegExp(`^\\d+\\s+${lanMac}\\s+udp\\s+198\\.51\\.100\\.1:5001 → 192\\.168\\.77\\.2:5001\\s+natpmp\\s+(9m[0-5]\\ds|10m00s)`, 'm'), `natpmpc's mapping, lan's device ${lanMac}`);
  t.match(r.stdout, new RegExp(`^\\d+\\s+${lan2Mac}\\s+tcp\\s+198\\.51\\.100\\.1:${p4.externalPort} → 192\\.168\\.77\\.3:42010\\s+pcp\\s+\\S+\\s+web$`, 'm'), `pcp's, lan2's device ${lan2Mac}`);
  t.match(r.stdout, new RegExp(`^\\d+\\s+${lanMac}\\s+udp\\s+\\[2001:db8:77::2\\]:42020 → \\[2001:db8:77::2\\]:42020\\s+pcp`, 'm'), 'the pinhole, the same device');

  const s = JSON.parse(cli(['status', '--json']).stdout) as Record<string, unknown>;
  t.match(s, {
    running: true,
    mappings: { total: 3, byOrigin: { pcp: 2, natpmp: 1, upnp: 0, static: 0 }, byFamily: { ipv4: 2, ipv6: 1 } },
    firewall: { backend: 'nft', guard: { status: 'in place' }, reconcileSeconds: 1 },
    errors: [],
  });
  t.equal((s.mappings as { total: number }).total, rows().length, 'status counts what ls lists');
});

t.test('rm ID: the kernel element is gone and the WAN host no longer reaches it', async (t) => {
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 5001, to: EXT, toPort: 5001 }), 'reached before');
  t.match(dnat(), /udp \. 5001 /, 'the element is in the kernel');
  const id = rows().find((m) => m.origin === 'natpmp')?.id;
  const r = cli(['rm', String(id)]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, new RegExp(`^removed ${id}: natpmp udp 198\\.51\\.100\\.1:5001 → 192\\.168\\.77\\.2:5001 \\(${macOf('lan')}, `));
  t.notMatch(dnat(), /udp \. 5001 /, 'the element is gone');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 5001, to: EXT, toPort: 5001 }), 'not reached after');
  t.ok(logs.some((l) => l.includes('"event":"mapping-removed"') && l.includes('"by":"admin"')), 'the daemon logged the admin\'s removal');
  t.notOk(rows().some((m) => m.origin === 'natpmp'), 'ls no longer shows it');
});

t.test('rm --client: that client\'s mappings go, others stay', async (t) => {
  const ext = Number(rows().find((m) => m.internal === '192.168.77.3:42010')?.external.split(':')[1]);
  t.ok(await reaches(lab, { proto: 'tcp', listen: 'lan2', port: 42010, to: EXT, toPort: ext }), 'lan2 reached before');
  const r = cli(['rm', '--client', '192.168.77.3']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^removed \d+: pcp tcp .*192\.168\.77\.3:42010/);
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan2', port: 42010, to: EXT, toPort: ext }), 'lan2 not reached after');
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 42020, to: '2001:db8:77::2' }), 'lan\'s pinhole still open');
  const again = cli(['rm', '--client', '192.168.77.3']);
  t.equal(again.code, 1, 'nothing left to remove: exit 1');
  t.match(again.stderr, /nothing removed: no mapping of 192\.168\.77\.3/);
  t.match(JSON.parse(cli(['status', '--json']).stdout), { mappings: { total: 1, byFamily: { ipv4: 0, ipv6: 1 } } }, 'status counts what is left');
});

t.test('status tells the last repair after someone flushes the daemon\'s sets', async (t) => {
  t.match(cli(['status']).stdout, /^  checked every 1 s; no repair since start$/m);
  lab.exec('rtr', ['nft', 'flush set inet portcullis pinholes6']);
  const deadline = Date.now() + 10_000;
  let out = '';
  while (Date.now() < deadline && !/last repair/.test(out)) {
    out = cli(['status']).stdout;
    await new Promise((r) => setTimeout(r, 250));
  }
  t.match(out, /^  checked every 1 s; last repair \S+Z \(objects or elements missing\): 1 added, 0 removed(, recreated)?$/m, out);
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 42020, to: '2001:db8:77::2' }), 'and the pinhole is back');
});

t.test('the daemon gone: status exit 3 with the store\'s counts, ls from the store, rm exit 3', async (t) => {
  daemon.kill('SIGTERM');
  await once(daemon, 'exit');
  const s = cli(['status']);
  t.equal(s.code, 3, 'exit 3');
  t.match(s.stdout, /^portcullis is not running: no daemon is listening at /m);
  t.match(s.stdout, /^store: .*mappings 1 \(pcp 1, natpmp 0, upnp 0, static 0; IPv4 0, IPv6 1\)/m);
  const ls = cli(['ls']);
  t.equal(ls.code, 0, ls.stderr);
  t.match(ls.stdout, /^-\s+-\s+udp\s+\[2001:db8:77::2\]:42020 → \[2001:db8:77::2\]:42020\s+pcp/m, 'no ID or device from the store');
  const rm = cli(['rm', '1']);
  t.equal(rm.code, 3);
  t.match(rm.stderr, /nothing removed: no daemon is listening/);
});
