// UPnP IGD in the lab, driven by Debian's upnpc (miniupnpc): the daemon in
// the router with real nftables, upnpc on the LAN hosts, real traffic from
// the WAN host.
//
// miniupnpc calls an IGD whose external address is private or documentation
// space "not connected", so the router's WAN side also gets 11.22.33.1/24
// (and the WAN host 11.22.33.2): addresses that exist only inside this
// test's namespaces; no packet leaves them.

import t from 'tap';
import type { ChildProcess } from 'node:child_process';
import { CLI, labUp, stateDir, waitForLine, type Lab } from './helpers/lab.js';
import { reaches } from './helpers/reach.js';
import { until } from './helpers/wait.js';

const lab: Lab = labUp(`pu${process.pid % 10000}`);
t.teardown(() => lab.down());

const EXT = '11.22.33.1';
const LAN4 = '192.168.77.2';
const LAN2_4 = '192.168.77.3';
const LAN6 = '2001:db8:77::2';
const LAN2_6 = '2001:db8:77::3';
const logs: string[] = [];
let daemon: ChildProcess;

lab.exec('rtr', ['ip', 'addr', 'add', '11.22.33.1/24', 'dev', 'wan0']);
lab.exec('wan', ['ip', 'addr', 'add', '11.22.33.2/24', 'dev', 'eth0']);

const upnpc = (node: 'lan' | 'lan2', args: string[]) => {
  const r = lab.exec(node, ['upnpc', ...args], { allowFail: true, timeoutMs: 20_000 });
  return r.stdout + r.stderr;
};
const dnat = () => lab.exec('rtr', ['nft', 'list', 'map', 'inet', 'portcullis', 'dnat4']).stdout;
const pinholes = () => lab.exec('rtr', ['nft', 'list', 'set', 'inet', 'portcullis', 'pinholes6']).stdout;

t.before(async () => {
  daemon = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--external-ip', EXT, '--state-dir', stateDir(), '--no-announce']);
  daemon.stdout?.on('data', (b: Buffer) => logs.push(...b.toString().split('\n').filter(Boolean)));
  await waitForLine(daemon, (l) => l.includes('"event":"started"'));
});

t.test('discovery finds a valid, connected IGD with the real external address', async (t) => {
  const out = upnpc('lan', ['-s']);
  t.match(out, /Found valid IGD : http:\/\/192\.168\.77\.1:5000\/[A-Za-z0-9_-]+\/ctl\/WANIPConnection/);
  t.match(out, /Status : Connected/);
  t.match(out, /ExternalIPAddress = 11\.22\.33\.1/);
  t.match(out, /Connection Type : IP_Routed/);
});

t.test('upnpc -a maps TCP and UDP; the WAN host reaches the LAN listener; -d closes it', async (t) => {
  t.match(upnpc('lan', ['-a', LAN4, '41001', '41001', 'UDP', '600']), /external 11\.22\.33\.1:41001 UDP is redirected to internal 192\.168\.77\.2:41001 \(duration=600\)/);
  t.match(upnpc('lan', ['-a', LAN4, '41002', '42002', 'TCP', '600']), /external 11\.22\.33\.1:42002 TCP is redirected to internal 192\.168\.77\.2:41002/);
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 41001, to: EXT }), 'UDP reaches');
  t.ok(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 41002, to: EXT, toPort: 42002 }), 'TCP reaches through external port 42002');
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 41002, to: EXT, toPort: 41002 }), 'not through another port');

  t.match(upnpc('lan', ['-d', '42002', 'TCP']), /UPNP_DeletePortMapping\(\) returned : 0/);
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 41002, to: EXT, toPort: 42002 }), 'closed after -d');
  t.notMatch(dnat(), /42002/, 'and gone from the kernel');
  t.match(upnpc('lan', ['-d', '42002', 'TCP']), /714|NoSuchEntryInArray/, 'deleting again: 714');
});

t.test('upnpc -l lists every mapping, including one made by NAT-PMP', async (t) => {
  t.match(lab.exec('lan', ['natpmpc', '-g', '192.168.77.1', '-a', '41003', '41003', 'tcp', '600'], { allowFail: true }).stdout, /Mapped public port 41003 protocol TCP/);
  const out = upnpc('lan', ['-l']);
  t.match(out, /UDP\s+41001->192\.168\.77\.2:41001\s+'libminiupnpc'/);
  t.match(out, /TCP\s+41003->192\.168\.77\.2:41003\s+'natpmp'/, 'the NAT-PMP mapping is listed');
  t.match(out, /GetGenericPortMappingEntry\(\) returned 713/, 'the listing ends at the first free index');
});

t.test('upnpc -L (GetListOfPortMappings) lists the mappings with their ports and descriptions', async (t) => {
  // miniupnpc reads NewPortListing raw (no entity decoding): an escaped
  // listing showed it no entries at all.
  t.match(upnpc('lan', ['-e', 'lab listing', '-a', LAN4, '41005', '42005', 'TCP', '600']), /external 11\.22\.33\.1:42005 TCP is redirected/);
  const out = upnpc('lan', ['-L']);
  const rows = out.split('\n').filter((l) => /^\s*\d+\s+(TCP|UDP)\s/.test(l));
  t.ok(rows.length >= 3, `${rows.length} entries listed:\n${out}`);
  t.match(out, /UDP\s+41001->192\.168\.77\.2:41001\s+'libminiupnpc'/, 'the UPnP UDP mapping, with its description');
  t.match(out, /TCP\s+42005->192\.168\.77\.2:41005\s+'lab listing'/, 'external 42005 to internal 41005, with its description');
  t.match(out, /TCP\s+41003->192\.168\.77\.2:41003\s+'natpmp'/, 'the NAT-PMP mapping');
  t.match(upnpc('lan', ['-d', '42005', 'TCP']), /UPNP_DeletePortMapping\(\) returned : 0/);
});

t.test('a mapping for another LAN host, or one the policy denies, is refused with 606; a taken port with 718', async (t) => {
  t.match(upnpc('lan', ['-a', LAN2_4, '41004', '41004', 'UDP', '600']), /failed with code 606 \(Action not authorized\)/, 'another host: 606');
  t.match(upnpc('lan', ['-a', LAN4, '80', '80', 'TCP', '600']), /failed with code 606/, 'a port below 1024 (default policy): 606');
  t.match(upnpc('lan2', ['-a', LAN2_4, '41001', '41001', 'UDP', '600']), /failed with code 718 \(ConflictInMappingEntry\)/, "lan's external port: 718");
  t.match(upnpc('lan2', ['-a', LAN2_4, '41003', '41003', 'TCP', '600']), /failed with code 729/, 'held by NAT-PMP: 729 ConflictWithOtherMechanisms');
  t.notMatch(dnat(), /41004/, 'nothing was installed');
});

t.test('upnpc pinhole commands: opens exactly that address and port; DeletePinhole closes it', async (t) => {
  const added = upnpc('lan', ['-6', '-A', '', '0', LAN6, '41010', '17', '600']);
  const id = /Pinhole ID = (\d+)/.exec(added)?.[1];
  t.ok(id, `AddPinhole returned a UniqueID (${added.trim().split('\n').pop()})`);
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 41010, to: LAN6 }), 'the WAN host reaches [::2]:41010');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 41011, to: LAN6 }), 'not the next port');
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 41010, to: LAN6 }), 'not TCP');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan2', port: 41010, to: LAN2_6 }), 'not another host');
  t.match(upnpc('lan', ['-6', '-A', '', '0', LAN6, '41010', '17', '600']), new RegExp(`Pinhole ID = ${id}\\b`), 'the same pinhole again: same UniqueID');
  t.match(pinholes(), /41010 (counter packets \d+ bytes \d+ )?timeout 10m/, 'in the kernel with the 600 s lease');
  // The WAN host's probes above went through it: the kernel counted them.
  t.match(upnpc('lan', ['-6', '-C', String(id)]), /IsWorking = Yes/, 'CheckPinholeWorking: yes');
  const packets = Number(/PinholePackets = (\d+)/.exec(upnpc('lan', ['-6', '-K', String(id)]))?.[1]);
  t.ok(packets >= 1, `GetPinholePackets counts the probes (${packets})`);
  // upnpc -U checks the pinhole works, then updates it.
  t.match(upnpc('lan', ['-6', '-U', String(id), '900']), /UpdatePinhole: Pinhole ID = \d+ with Lease Time: 900/);
  t.match(pinholes(), /41010 (counter packets \d+ bytes \d+ )?timeout 15m/, 'UpdatePinhole renewed the kernel entry to 900 s');
  t.match(upnpc('lan2', ['-6', '-D', String(id)]), /606/, "another host cannot delete it");
  t.match(upnpc('lan', ['-6', '-D', String(id)]), /DeletePinhole.*(OK|returned 0)|^(?![\s\S]*failed)/i, 'DeletePinhole');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 41010, to: LAN6 }), 'closed after DeletePinhole');
  t.notMatch(pinholes(), /41010/, 'gone from the kernel');
  t.match(upnpc('lan', ['-6', '-D', String(id)]), /704/, 'deleting again: 704 NoSuchEntry');
  t.match(upnpc('lan', ['-6', '-A', '', '0', LAN2_6, '41012', '17', '600']), /failed with code 606/, 'a pinhole for another host: 606');
  t.notMatch(pinholes(), /41012/);
});

t.test('nothing UPnP answers from the WAN side', async (t) => {
  const search = 'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n';
  const r = lab.exec('wan', ['socat', '-T', '2', '-', `UDP4-DATAGRAM:${EXT}:1900`], { input: search, allowFail: true, timeoutMs: 5000 });
  t.equal(r.stdout, '', 'no SSDP answer to the WAN address');
  const http = lab.exec('wan', ['socat', '-T', '2', '-', `TCP4:${EXT}:5000,connect-timeout=2`], { input: 'GET / HTTP/1.1\r\n\r\n', allowFail: true, timeoutMs: 5000 });
  t.not(http.code, 0, 'TCP 5000 on the WAN address does not accept');
  t.equal(http.stdout, '');
});

t.test('an address added to the LAN after start is served (HTTP and SSDP) within seconds', async (t) => {
  const desc = /desc: (http:\/\/192\.168\.77\.1:5000\/\S+)/.exec(upnpc('lan', ['-s']))?.[1];
  t.ok(desc, 'the description URL');
  lab.exec('rtr', ['ip', 'addr', 'add', '192.168.78.1/24', 'dev', 'br-lan']);
  lab.exec('lan', ['ip', 'addr', 'add', '192.168.78.2/24', 'dev', 'eth0']);
  await waitForLine(daemon, (l) => l.includes('"server":"upnp-http"') && l.includes('192.168.78.1'), 10_000);
  const path = new URL(desc ?? 'http://x/').pathname;
  const get = `GET ${path} HTTP/1.1\r\nHost: 192.168.78.1:5000\r\n\r\n`;
  const r = lab.exec('lan', ['socat', '-T', '3', '-', 'TCP4:192.168.78.1:5000,bind=192.168.78.2'], { input: get, allowFail: true, timeoutMs: 5000 });
  t.match(r.stdout, /InternetGatewayDevice:2/, 'the description from the new address');
  const search = 'M-SEARCH * HTTP/1.1\r\nHOST: 192.168.78.1:1900\r\nMAN: "ssdp:discover"\r\nST: upnp:rootdevice\r\n\r\n';
  const s = lab.exec('lan', ['socat', '-T', '2', '-', 'UDP4-DATAGRAM:192.168.78.1:1900,bind=192.168.78.2'], { input: search, allowFail: true, timeoutMs: 5000 });
  t.match(s.stdout, /LOCATION: http:\/\/192\.168\.78\.1:5000\//, 'a unicast search there names the new address');
});

t.test('ssdp:byebye for the whole set on stop, ssdp:alive at start with a larger BOOTID', async (t) => {
  // Each listener lives long enough for a loaded machine and is killed once read.
  const listen = async () => {
    const l = lab.spawn('lan', ['timeout', '60', 'socat', '-u', 'UDP4-RECV:1900,reuseaddr,ip-add-membership=239.255.255.250:eth0', 'STDOUT']);
    t.teardown(() => void l.kill());
    let got = '';
    l.stdout?.on('data', (d: Buffer) => (got += d.toString('latin1')));
    t.ok(await until(() => lab.exec('lan', ['ss', '-Hlnu', 'sport', '= :1900']).stdout.trim() !== '', 10_000), 'the listener is bound');
    const stop = async () => {
      l.kill();
      await until(() => l.exitCode !== null || l.signalCode !== null, 10_000);
    };
    return { text: () => got, stop };
  };
  const notifies = (text: string, nts: string) =>
    text
      .split('NOTIFY * HTTP/1.1')
      .filter((m) => m.includes(`NTS: ${nts}`))
      .map((m) => ({ nt: /\r\nNT: (\S+)/.exec(m)?.[1], boot: Number(/BOOTID\.UPNP\.ORG: (\d+)/.exec(m)?.[1]) }));
  const bye = await listen();
  daemon.kill('SIGTERM');
  const stopped = daemon;
  t.ok(await until(() => stopped.exitCode !== null || stopped.signalCode !== null, 30_000), 'the daemon exits');
  const byeTypes = () => new Set(notifies(bye.text(), 'ssdp:byebye').map((b) => b.nt)).size;
  await until(() => byeTypes() >= 10, 10_000);
  await bye.stop();
  const byes = notifies(bye.text(), 'ssdp:byebye');
  t.equal(new Set(byes.map((b) => b.nt)).size, 10, 'byebye for all 10 notification types');
  const oldBoot = byes[0]?.boot ?? 0;

  await new Promise((r) => setTimeout(r, 1100));
  const hello = await listen();
  daemon = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--external-ip', EXT, '--state-dir', stateDir(), '--no-announce']);
  await waitForLine(daemon, (l) => l.includes('"event":"started"'));
  await until(() => {
    const a = notifies(hello.text(), 'ssdp:alive');
    return new Set(a.map((x) => x.nt)).size >= 10 && a.length >= 20;
  }, 10_000);
  await hello.stop();
  const alive = notifies(hello.text(), 'ssdp:alive');
  t.equal(new Set(alive.map((a) => a.nt)).size, 10, 'alive for all 10 notification types');
  t.ok(alive.length >= 20, `sent more than once (${alive.length} messages)`);
  t.ok((alive[0]?.boot ?? 0) > oldBoot, `BOOTID grew (${oldBoot} → ${alive[0]?.boot})`);
});
