// The nft backend with real traffic: the daemon in the lab's router, real
// nftables, natpmpc and our PCP client on the LAN host, a WAN host sending.

import t from 'tap';
import type { ChildProcess } from 'node:child_process';
import { CLI, labUp, stateDir, waitForLine, type Lab } from './helpers/lab.js';
import { reaches } from './helpers/reach.js';

const lab: Lab = labUp(`pt${process.pid % 10000}`);
t.teardown(() => lab.down());

const EXT = '198.51.100.1';
const LAN6 = '2001:db8:77::2';
const LAN2_6 = '2001:db8:77::3';
let daemon: ChildProcess;
const logs: string[] = [];

function startDaemon(extra: string[] = []): ChildProcess {
  const d = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--min-lifetime', '1', '--state-dir', stateDir(), ...extra]);
  d.stdout?.on('data', (b: Buffer) => logs.push(...b.toString().split('\n').filter(Boolean)));
  return d;
}

const pcp = (node: 'lan' | 'lan2', server: string, args: string[]) => {
  const r = lab.exec(node, [process.execPath, CLI, 'pcp', 'map', '--server', server, ...args], { allowFail: true });
  return r.stdout ? (JSON.parse(r.stdout) as Record<string, unknown>) : { error: r.stderr };
};
const natpmpc = (...args: string[]) => lab.exec('lan', ['natpmpc', '-g', '192.168.77.1', ...args], { allowFail: true }).stdout;
const adminTable = () => lab.exec('rtr', ['nft', 'list', 'table', 'inet', 'lab_base']).stdout;

const adminBefore = adminTable();
// A second WAN address, to show FILTER admits one remote and not another.
lab.exec('wan', ['ip', 'addr', 'add', '198.51.100.3/24', 'dev', 'eth0']);
lab.exec('wan', ['ip', 'addr', 'add', '2001:db8:ff::3/64', 'dev', 'eth0', 'nodad']);

t.before(async () => {
  daemon = startDaemon();
  await waitForLine(daemon, (l) => l.includes('"event":"started"'));
});

t.test('before any request, nothing from the WAN reaches the LAN host', async (t) => {
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40001, to: EXT }), 'UDP via the external IPv4 address');
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40002, to: EXT }), 'TCP via the external IPv4 address');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40001, to: LAN6 }), 'UDP to the IPv6 address');
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40002, to: LAN6 }), 'TCP to the IPv6 address');
});

t.test('natpmpc maps UDP and TCP: the WAN host gets through; after deletion it does not', async (t) => {
  t.match(natpmpc('-a', '40001', '40001', 'udp', '600'), /Mapped public port 40001 protocol UDP/);
  t.match(natpmpc('-a', '40002', '40002', 'tcp', '600'), /Mapped public port 40002 protocol TCP/);
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40001, to: EXT }), 'UDP reaches');
  t.ok(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40002, to: EXT }), 'TCP reaches');
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40001, to: EXT }), 'TCP to the UDP mapping does not');
  t.match(natpmpc('-a', '0', '40001', 'udp', '0'), /Mapped public port 0 protocol UDP to local port 40001 liftime 0/);
  t.match(natpmpc('-a', '0', '40002', 'tcp', '0'), /liftime 0/);
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40001, to: EXT }), 'UDP closed again');
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40002, to: EXT }), 'TCP closed again');
});

t.test('a PCP MAP for an IPv6 port opens exactly that address, protocol and port', async (t) => {
  const r = pcp('lan', '2001:db8:77::1', ['--proto', 'udp', '--port', '40010', '--lifetime', '600']);
  t.match(r, { result: 'SUCCESS', externalAddress: LAN6, externalPort: 40010 });
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40010, to: LAN6 }), 'the port opens');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40011, to: LAN6 }), 'the neighbouring port stays closed');
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40010, to: LAN6 }), 'TCP on that port stays closed');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan2', port: 40010, to: LAN2_6 }), 'another LAN host stays closed');
});

t.test('PCP FILTER admits only the named remote', async (t) => {
  const r6 = pcp('lan', '2001:db8:77::1', ['--proto', 'udp', '--port', '40020', '--filter', '[2001:db8:ff::2/128]']);
  t.match(r6, { result: 'SUCCESS' });
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40020, to: LAN6, fromAddress: '2001:db8:ff::2' }), 'IPv6: the named remote');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40020, to: LAN6, fromAddress: '2001:db8:ff::3' }), 'IPv6: another remote');
  const r4 = pcp('lan', '192.168.77.1', ['--proto', 'udp', '--port', '40021', '--filter', '198.51.100.2/32']);
  t.match(r4, { result: 'SUCCESS', externalAddress: EXT });
  const ext = Number(r4.externalPort);
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40021, to: EXT, toPort: ext, fromAddress: '198.51.100.2' }), 'IPv4: the named remote');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40021, to: EXT, toPort: ext, fromAddress: '198.51.100.3' }), 'IPv4: another remote');
});

t.test('flushing the daemon\'s chains and sets behind its back is repaired within 30 s', async (t) => {
  pcp('lan', '2001:db8:77::1', ['--proto', 'tcp', '--port', '40030', '--lifetime', '600']);
  t.ok(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40030, to: LAN6 }), 'open before');
  const from = logs.length;
  // An OpenWrt-style reload: every rule of the table gone, and the sets emptied.
  lab.exec('rtr', ['nft', 'flush table inet portcullis; flush set inet portcullis pinholes6; flush map inet portcullis dnat4']);
  t.notMatch(lab.exec('rtr', ['nft', 'list', 'table', 'inet', 'portcullis']).stdout, /drop|40030/, 'rules and elements gone');
  // The reconcile period is 10 s; 30 s leaves a loaded machine room for a late pass.
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && !logs.slice(from).some((l) => l.includes('"event":"nft-repaired"'))) await new Promise((r) => setTimeout(r, 250));
  t.ok(logs.slice(from).some((l) => l.includes('"event":"nft-repaired"')), 'repair logged');
  t.ok(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 40030, to: LAN6 }), 'open again');
});

t.test('a 10 s mapping stops passing traffic within 2 s of expiry with the daemon SIGKILLed', async (t) => {
  // 10 s, so that the probe's processes starting on a loaded machine fit in it.
  const r = pcp('lan', '2001:db8:77::1', ['--proto', 'udp', '--port', '40040', '--lifetime', '10']);
  const granted = Date.now();
  t.match(r, { result: 'SUCCESS', lifetime: 10 });
  daemon.kill('SIGKILL');
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40040, to: LAN6 }), 'open while it lasts, daemon dead');
  await new Promise((res) => setTimeout(res, Math.max(0, granted + 10_000 + 2000 - Date.now())));
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40040, to: LAN6 }), 'closed by the kernel\'s timeout');
});

t.test('the admin\'s own table is byte-identical after a daemon run', async (t) => {
  t.equal(adminTable(), adminBefore);
});

t.test('startup errors name the cause and the fix', async (t) => {
  lab.exec('rtr', ['nft', 'add table inet taken; add chain inet taken mine']);
  const taken = lab.exec('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--nft-table', 'taken', '--state-dir', stateDir()], { allowFail: true, timeoutMs: 60_000 });
  t.equal(taken.code, 2);
  t.match(taken.stderr, /table inet taken exists and holds objects portcullis did not create \(chain mine\)/);
  t.match(lab.exec('rtr', ['nft', 'list', 'table', 'inet', 'taken']).stdout, /chain mine/, 'left untouched');
  const noNft = lab.exec('rtr', ['env', 'PATH=/nonexistent', process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--state-dir', stateDir()], { allowFail: true, timeoutMs: 60_000 });
  t.equal(noNft.code, 2);
  t.match(noNft.stderr, /nft binary was not found.*install the Debian package nftables/);
  const noIface = lab.exec('rtr', [process.execPath, CLI, 'serve', '--lan', 'nosuch0', '--wan', 'wan0'], { allowFail: true, timeoutMs: 60_000 });
  t.match(noIface.stderr, /interface nosuch0 does not exist/);
  const noWan = lab.exec('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'nosuch1', '--wan', 'nosuch2'], { allowFail: true, timeoutMs: 60_000 });
  t.equal(noWan.code, 2, 'no WAN interface there at all: refused');
  t.match(noWan.stderr, /none of the WAN interfaces exists \(nosuch1, nosuch2\)/);
});

t.test('embedded mode: only its own chains and sets in the admin\'s table, reached by one jump', async (t) => {
  lab.exec('rtr', ['nft', '-f', '-'], {
    input: `table inet fw4 {
  chain input { type filter hook input priority filter; policy accept; }
  chain forward { type filter hook forward priority filter; policy accept; }
  chain dstnat { type nat hook prerouting priority dstnat; policy accept; }
}
`,
  });
  const d = startDaemon(['--nft-table', 'fw4', '--nft-embed', '--port', '5351']);
  t.teardown(() => void d.kill('SIGTERM'));
  await waitForLine(d, (l) => l.includes('"event":"started"'));
  const listing = lab.exec('rtr', ['nft', 'list', 'table', 'inet', 'fw4']).stdout;
  t.match(listing, /chain portcullis_forward/);
  t.match(listing, /set portcullis_pinholes6/);
  t.notMatch(listing, /chain wan_to_lan|set pinholes6 /, 'no unprefixed objects');
  // The admin's lines: input jumps to our guard first (until then nothing is
  // answered), the forward chain jumps to ours, then drops unsolicited WAN traffic.
  lab.exec('rtr', ['nft', 'insert rule inet fw4 input jump portcullis_input; add rule inet fw4 forward iifname "wan0" jump portcullis_forward; add rule inet fw4 forward iifname "wan0" ct state new drop; add rule inet fw4 dstnat jump portcullis_prerouting']);
  await waitForLine(d, (l) => l.includes('"event":"lan-guard"') && l.includes('in place'), 20_000);
  // The own-table run left its table; remove it so only fw4 decides.
  lab.exec('rtr', ['nft', 'delete', 'table', 'inet', 'portcullis']);
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40050, to: LAN6 }), 'closed before a request');
  t.match(pcp('lan', '2001:db8:77::1', ['--proto', 'udp', '--port', '40050']), { result: 'SUCCESS' });
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40050, to: LAN6 }), 'open after');
});
