// Debian's natpmpc (libnatpmp), a real client, against the daemon in the
// lab's router namespace: external address, a UDP and a TCP mapping, deletion.

import t from 'tap';
import { CLI, labUp, listenForAnnouncements, stateDir, waitForLine } from './helpers/lab.js';
import { until } from './helpers/wait.js';

const lab = labUp(`pn${process.pid % 10000}`);
t.teardown(() => lab.down());

const announcements = await listenForAnnouncements(lab, 60_000);

const daemon = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--backend', 'memory', '--state-dir', stateDir()]);
const lines: string[] = [];
daemon.stdout?.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
t.teardown(() => void daemon.kill('SIGTERM'));

// natpmpc blocks this process (spawnSync): the daemon's log lines arrive
// after it returns. Waits until `seen` holds (at most 10 s), then says whether it does.
const logged = (seen: () => boolean): Promise<boolean> => until(seen, 10_000, 50);

// natpmpc -a takes <public port> <private port> <protocol> [lifetime].
const natpmpc = (...args: string[]) => {
  const r = lab.exec('lan', ['natpmpc', '-g', '192.168.77.1', ...args], { allowFail: true, timeoutMs: 20_000 });
  return { ...r, all: r.stdout + r.stderr };
};

t.test('daemon starts in the router namespace', async (t) => {
  const started = await waitForLine(daemon, (l) => l.includes('"event":"started"'));
  t.match(started, /"externalIPv4":"198\.51\.100\.1"/, 'external address from wan0');
});

t.test('announcements at start: NAT-PMP external address and PCP ANNOUNCE, repeated', async (t) => {
  // The first four leave at 0, 250, 750 and 1750 ms after the start: wait
  // for three of each kind rather than a fixed 2.5 s (a loaded machine is slower).
  const kinds = () => {
    const h = announcements.heard();
    return [h.filter((x) => x.hex.startsWith('00800000')).length, h.filter((x) => x.hex.startsWith('02800000') && x.from === '192.168.77.1').length, h.filter((x) => x.hex.startsWith('02800000') && x.from.startsWith('fe80:')).length];
  };
  await until(() => kinds().every((n) => n >= 3), 15_000);
  const heard = announcements.heard();
  const natpmp = heard.filter((h) => h.from === '192.168.77.1' && h.hex.startsWith('00800000') && h.hex.length === 24);
  t.ok(natpmp.length >= 3, `${natpmp.length} NAT-PMP announcements from 192.168.77.1 (0, 250, 750, 1750 ms)`);
  t.ok(natpmp.every((h) => h.hex.endsWith('c6336401')), 'carrying 198.51.100.1');
  const pcp4 = heard.filter((h) => h.from === '192.168.77.1' && h.hex.startsWith('02800000') && h.hex.length === 48);
  t.ok(pcp4.length >= 3, `${pcp4.length} PCP ANNOUNCEs over IPv4`);
  const pcp6 = heard.filter((h) => h.from.startsWith('fe80:') && h.hex.startsWith('02800000') && h.hex.length === 48);
  t.ok(pcp6.length >= 3, `${pcp6.length} PCP ANNOUNCEs over IPv6 from the router's link-local address`);
});

t.test('natpmpc learns the external address', async (t) => {
  const r = natpmpc();
  t.equal(r.code, 0, r.all);
  t.match(r.all, /Public IP address : 198\.51\.100\.1/);
});

t.test('natpmpc maps UDP and TCP, then deletes them', async (t) => {
  const udp = natpmpc('-a', '40001', '40001', 'udp', '3600');
  t.equal(udp.code, 0, udp.all);
  t.match(udp.all, /Mapped public port 40001 protocol UDP to local port 40001 liftime 3600/);
  const tcp = natpmpc('-a', '40002', '40002', 'tcp', '7200');
  t.equal(tcp.code, 0, tcp.all);
  t.match(tcp.all, /Mapped public port 40002 protocol TCP to local port 40002 liftime 7200/);
  t.ok(await logged(() => lines.some((l) => l.includes('"event":"map"') && l.includes('"client":"192.168.77.2"') && l.includes('"verdict":"granted"'))), 'decision logged');

  const delUdp = natpmpc('-a', '0', '40001', 'udp', '0');
  t.equal(delUdp.code, 0, delUdp.all);
  t.match(delUdp.all, /Mapped public port 0 protocol UDP to local port 40001 liftime 0/);
  const delTcp = natpmpc('-a', '0', '40002', 'tcp', '0');
  t.equal(delTcp.code, 0, delTcp.all);
  t.match(delTcp.all, /Mapped public port 0 protocol TCP to local port 40002 liftime 0/);
  const removed = () => lines.filter((l) => l.includes('"event":"remove"') && l.includes('"existed":true')).length;
  await logged(() => removed() >= 2);
  t.equal(removed(), 2, 'both deletions removed a mapping');
});

t.test('PCP to the router\'s link-local address, from a link-local and from a global source', async (t) => {
  const rll = /fe80::[0-9a-f:]+/.exec(lab.exec('rtr', ['ip', '-6', 'addr', 'show', 'dev', 'br-lan', 'scope', 'link']).stdout)?.[0];
  t.ok(rll, 'router has a link-local address');
  const pcp = (...args: string[]) => {
    const r = lab.exec('lan', [process.execPath, CLI, 'pcp', ...args, '--server', `${rll}%eth0`], { allowFail: true });
    return r.stdout ? (JSON.parse(r.stdout) as Record<string, unknown>) : { error: r.stderr };
  };
  t.match(pcp('announce'), { result: 'SUCCESS', lifetime: 0 }, 'link-local to link-local (the reply came from the address asked)');
  // Bitcoin Core's way: its global address as source, the router's fe80:: as server.
  t.match(pcp('map', '--proto', 'udp', '--port', '40060', '--bind', '2001:db8:77::2'), { result: 'SUCCESS', externalAddress: '2001:db8:77::2', externalPort: 40060 });
});

t.test('an address added to the LAN after start is served within seconds; a removed one is let go', async (t) => {
  lab.exec('rtr', ['ip', 'addr', 'add', '2001:db8:78::1/64', 'dev', 'br-lan', 'nodad']);
  lab.exec('lan', ['ip', 'addr', 'add', '2001:db8:78::2/64', 'dev', 'eth0', 'nodad']);
  const ask = () => lab.exec('lan', [process.execPath, CLI, 'pcp', 'announce', '--server', '2001:db8:78::1'], { allowFail: true }).stdout;
  let answer = '';
  for (let i = 0; i < 40 && !answer.includes('SUCCESS'); i++) {
    answer = ask();
    if (!answer.includes('SUCCESS')) await new Promise((r) => setTimeout(r, 250));
  }
  t.match(answer, /"result":"SUCCESS"/, 'PCP answered on the new address');
  lab.exec('rtr', ['ip', 'addr', 'del', '2001:db8:78::1/64', 'dev', 'br-lan']);
  // The address poll runs every 2 s: poll the log for its answer.
  t.ok(await logged(() => lines.some((l) => l.includes('"event":"stopped-listening"') && l.includes('2001:db8:78::1'))), 'the removed address is no longer bound');
});

t.test('a request from the WAN side gets no answer', async (t) => {
  // The WAN host aims at the router's LAN address (routed in) and its WAN address.
  for (const target of ['192.168.77.1', '198.51.100.1']) {
    lab.exec('wan', ['ip', 'route', 'replace', '192.168.77.0/24', 'via', '198.51.100.1']);
    const r = lab.exec('wan', ['natpmpc', '-g', target], { allowFail: true, timeoutMs: 30_000 });
    t.not(r.code, 0, `no reply to ${target}`);
    t.notMatch(r.stdout + r.stderr, /Public IP address/);
  }
});

t.test('natpmpc delete-all (private port 0) removes all of the client\'s UDP mappings', async (t) => {
  for (const p of ['40011', '40012']) t.equal(natpmpc('-a', p, p, 'udp', '600').code, 0);
  const all = natpmpc('-a', '0', '0', 'udp', '0');
  t.match(all.all, /Mapped public port 0 protocol UDP to local port 0 liftime 0/);
  t.ok(await logged(() => lines.some((l) => l.includes('"event":"remove-all"') && l.includes('"removed":2'))), 'two mappings removed');
});

t.test('SIGTERM stops the daemon cleanly', async (t) => {
  const exited = new Promise<number | null>((r) => daemon.on('exit', (code) => r(code)));
  daemon.kill('SIGTERM');
  t.equal(await exited, 0);
  t.ok(lines.some((l) => l.includes('"event":"stopped"')));
});
