// The WAN attacks the daemon's doors with forged LAN sources (issue 10 item 1).
// A WAN host gives itself the LAN host's addresses and sends PCP (IPv6 and
// IPv4), NAT-PMP and SSDP to the router's LAN addresses, and a neighbour on
// the WAN link uses its link-local address for SSDP and HTTP. Nothing may
// open: the kernel sets stay as they were and WAN→LAN traffic stays out, in
// our own table and embedded in an admin's table; the admin page's port
// answers nobody while its kernel guard is missing. Real nftables, real
// traffic, namespaces this test made.

import t, { type Test } from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { CLI, labUp, logLines, stateDir, waitForLine, type Lab } from './helpers/lab.js';
import { until } from './helpers/wait.js';
import { reaches } from './helpers/reach.js';
import { forge, natpmpMapRequest, pcpMapRequest, ssdpSearch } from './helpers/forge.js';

const lab: Lab = labUp(`ph${process.pid % 10000}`);
t.teardown(() => lab.down());

const EXT = '198.51.100.1';
const LAN4 = '192.168.77.2';
const LAN6 = '2001:db8:77::2';
const RTR4 = '192.168.77.1';
const RTR6 = '2001:db8:77::1';
const UDP = 17;

function startDaemon(extra: string[] = []): { child: ChildProcess; logs: string[] } {
  const dir = stateDir();
  // A short reconcile period, so the guard checks below take seconds.
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ reconcileSeconds: 2 }));
  const child = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--state-dir', dir, '--config', join(dir, 'config.json'), ...extra]);
  return { child, logs: logLines(child) };
}

const ADMIN_PORT = 9361;

/**
 * The admin API's HTTP status for an unauthenticated GET from `node` (0: no
 * HTTP answer). The WAN host is routed to the router's LAN address for it.
 */
function adminStatus(node: 'lan' | 'wan'): { code: number; status: number } {
  if (node === 'wan') lab.exec('wan', ['ip', 'route', 'replace', `${RTR4}/32`, 'via', EXT]);
  try {
    const r = lab.exec(node, ['curl', '-s', '-o', '/dev/null', '--max-time', '5', '-w', '%{http_code}', `http://${RTR4}:${ADMIN_PORT}/api/openings`], { allowFail: true });
    return { code: r.code, status: Number(r.stdout.trim() || 0) };
  } finally {
    if (node === 'wan') lab.exec('wan', ['ip', 'route', 'del', `${RTR4}/32`], { allowFail: true });
  }
}

async function stop(d: { child: ChildProcess }): Promise<void> {
  if (d.child.exitCode !== null) return;
  d.child.kill('SIGTERM');
  await new Promise((r) => d.child.once('exit', r));
}

/** Every element of the mapping sets in `table`, as text (canaries included: they never change). */
function elements(table: string, prefix: string): string {
  const out: string[] = [];
  for (const [kind, name] of [['set', 'pinholes6'], ['set', 'pinholes6_filtered'], ['map', 'dnat4'], ['map', 'dnat4_filtered']] as const) {
    const r = lab.exec('rtr', ['nft', 'list', kind, 'inet', table, `${prefix}${name}`]).stdout;
    out.push(r.replace(/expires \S+/g, '').replace(/counter packets \d+ bytes \d+/g, ''));
  }
  return out.join('\n');
}

function wanLinkLocal(): string {
  const j = JSON.parse(lab.exec('wan', ['ip', '-j', '-6', 'addr', 'show', 'dev', 'eth0', 'scope', 'link']).stdout) as { addr_info: { local?: string }[] }[];
  const a = j[0]?.addr_info.find((i) => i.local)?.local;
  if (!a) throw new Error('the WAN host has no link-local address');
  return a;
}

/** The attack, from the WAN namespace. Returns what came back to the attacker. */
function attack(t: Test, ports: { pcp6: number; pcp4: number; natpmp: number }): void {
  // The WAN host takes the LAN host's addresses and a route to the router's LAN side.
  lab.exec('wan', ['ip', 'addr', 'add', `${LAN6}/128`, 'dev', 'eth0', 'nodad']);
  lab.exec('wan', ['ip', 'addr', 'add', `${LAN4}/32`, 'dev', 'eth0']);
  lab.exec('wan', ['ip', 'route', 'add', `${RTR4}/32`, 'via', EXT]);
  try {
    const sent = [
      forge(lab, 'wan', { proto: 'udp', dst: RTR6, port: 5351, src: LAN6, payload: pcpMapRequest(LAN6, UDP, ports.pcp6, 3600), waitMs: 800 }),
      forge(lab, 'wan', { proto: 'udp', dst: RTR4, port: 5351, src: LAN4, payload: pcpMapRequest(LAN4, UDP, ports.pcp4, 3600), waitMs: 800 }),
      forge(lab, 'wan', { proto: 'udp', dst: RTR4, port: 5351, src: LAN4, payload: natpmpMapRequest(ports.natpmp, ports.natpmp, 3600), waitMs: 800 }),
      forge(lab, 'wan', { proto: 'udp', dst: RTR6, port: 1900, src: LAN6, payload: ssdpSearch(`[${RTR6}]:1900`), waitMs: 800 }),
      forge(lab, 'wan', { proto: 'udp', dst: RTR4, port: 1900, src: LAN4, payload: ssdpSearch(`${RTR4}:1900`), waitMs: 800 }),
    ];
    // The replies would go to the real LAN host; the mapping is the prize.
    for (const s of sent) t.notOk(s.reply, 'no reply reaches the WAN');
  } finally {
    lab.exec('wan', ['ip', 'route', 'del', `${RTR4}/32`], { allowFail: true });
    lab.exec('wan', ['ip', 'addr', 'del', `${LAN4}/32`, 'dev', 'eth0'], { allowFail: true });
    lab.exec('wan', ['ip', 'addr', 'del', `${LAN6}/128`, 'dev', 'eth0'], { allowFail: true });
  }
  // A neighbour on the WAN link, with its own link-local address: here a
  // reply does come back to it if the door is open.
  const ll = `${wanLinkLocal()}%eth0`;
  const search = forge(lab, 'wan', { proto: 'udp', dst: RTR6, port: 1900, src: ll, payload: ssdpSearch(`[${RTR6}]:1900`), waitMs: 1500 });
  t.notOk(search.reply, 'SSDP from a WAN link-local source: no LOCATION');
  const http = forge(lab, 'wan', { proto: 'tcp', dst: RTR6, port: 5000, src: ll, payload: Buffer.from(`GET / HTTP/1.1\r\nHost: [${RTR6}]:5000\r\n\r\n`), waitMs: 2500 });
  t.notOk(http.connected, 'HTTP from a WAN link-local source: no connection');
  const pcpLl = forge(lab, 'wan', { proto: 'udp', dst: RTR6, port: 5351, src: ll, payload: pcpMapRequest(LAN6, UDP, ports.pcp6, 3600), waitMs: 800 });
  t.notOk(pcpLl.reply, 'PCP from a WAN link-local source: no answer');
}

async function nothingOpened(t: Test, ports: { pcp6: number; pcp4: number; natpmp: number }): Promise<void> {
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: ports.pcp6, to: LAN6 }), 'the forged IPv6 PCP request opened nothing');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: ports.pcp4, to: EXT }), 'the forged IPv4 PCP request opened nothing');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: ports.natpmp, to: EXT }), 'the forged NAT-PMP request opened nothing');
}

const pcp = (server: string, args: string[]) => {
  const r = lab.exec('lan', [process.execPath, CLI, 'pcp', 'map', '--server', server, ...args], { allowFail: true });
  return r.stdout ? (JSON.parse(r.stdout) as Record<string, unknown>) : { error: r.stderr };
};

t.test('own table: forged LAN sources from the WAN open nothing', async (t) => {
  const d = startDaemon();
  t.teardown(() => stop(d));
  await waitForLine(d.child, (l) => l.includes('"event":"started"'));
  t.ok(d.logs.some((l) => l.includes('"event":"lan-guard"') && l.includes('in place')), 'the guard was checked and found in place');
  const ruleset = lab.exec('rtr', ['nft', 'list', 'table', 'inet', 'portcullis']).stdout;
  t.match(ruleset, /hook input priority (-5|filter - 5)/, 'an input chain of our own');
  t.match(ruleset, /iifname != "br-lan" drop/, 'our ports only from the LAN interface');
  t.match(ruleset, /fib saddr \. iif oif missing drop/, 'and a reverse-path check');
  t.match(ruleset, /update @flood_devices \{ ether saddr limit rate over 200\/second burst 400 packets \} counter packets \d+ bytes \d+ drop/, 'and a per-device UDP rate in the kernel');
  // The doors work from the LAN: the test below is not vacuous.
  t.match(pcp(RTR6, ['--proto', 'udp', '--port', '41000']), { result: 'SUCCESS' }, 'a LAN host is served');
  const before = elements('portcullis', '');
  const ports = { pcp6: 41001, pcp4: 41002, natpmp: 30003 };
  attack(t, ports);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(elements('portcullis', ''), before, 'the kernel sets are unchanged');
  await nothingOpened(t, ports);
  t.notOk(d.logs.some((l) => l.includes('"verdict":"granted"') && /4100[123]|30003/.test(l)), 'the daemon granted nothing to the forgeries');
});

t.test('own table: a device flooding our UDP port is cut in the kernel, before the socket; another device is served', async (t) => {
  const d = startDaemon();
  t.teardown(() => stop(d));
  await waitForLine(d.child, (l) => l.includes('"event":"started"'));
  const drops = () => Number(/packets (\d+)/.exec(lab.exec('rtr', ['nft', '-a', 'list', 'chain', 'inet', 'portcullis', 'lan_only']).stdout.replace(/\n/g, ' '))?.[1] ?? 0);
  // 3 000 junk datagrams as fast as one process sends them (well over 200/s).
  const flood = `const s = require('node:dgram').createSocket('udp6'); let n = 0; const b = Buffer.alloc(60); (function go() { for (let i = 0; i < 100 && n < 3000; i++, n++) s.send(b, 5351, '${RTR6}'); if (n < 3000) setImmediate(go); else setTimeout(() => process.exit(0), 200); })();`;
  lab.exec('lan', [process.execPath, '-e', flood], { timeoutMs: 20_000 });
  const mac = (JSON.parse(lab.exec('lan', ['ip', '-j', 'link', 'show', 'dev', 'eth0']).stdout) as { address: string }[])[0]?.address ?? '';
  t.match(lab.exec('rtr', ['nft', 'list', 'set', 'inet', 'portcullis', 'flood_devices']).stdout, mac, 'the flooding device is counted by its link-layer address');
  t.ok(drops() > 1000, `the kernel dropped ${drops()} of the 3 000 (burst 400, then 200/s)`);
  const r = lab.exec('lan2', [process.execPath, CLI, 'pcp', 'map', '--server', RTR6, '--proto', 'udp', '--port', '41030'], { allowFail: true });
  t.match(r.stdout, /"result":"SUCCESS"/, 'another device is served at once');
});

t.test('own table: the daemon stops answering while the guard is gone, and says so', async (t) => {
  const d = startDaemon();
  t.teardown(() => stop(d));
  await waitForLine(d.child, (l) => l.includes('"event":"started"'));
  lab.exec('rtr', ['nft', 'flush', 'chain', 'inet', 'portcullis', 'lan_only']);
  // Read from the collected lines: both may come in one chunk, which two
  // waitForLine calls in a row would miss.
  const guard = (l: string) => l.includes('"event":"lan-guard"');
  const missingAt = () => d.logs.findIndex((l) => guard(l) && l.includes('MISSING'));
  t.ok(await until(() => missingAt() >= 0, 20_000), 'the missing guard is logged');
  // Reconciliation repairs our objects; the guard comes back with them.
  t.ok(await until(() => d.logs.some((l, i) => i > missingAt() && guard(l) && l.includes('in place')), 20_000), 'then the guard is in place again');
  t.match(pcp(RTR6, ['--proto', 'udp', '--port', '41010']), { result: 'SUCCESS' }, 'served again once repaired');
});

t.test('embedded: nothing is answered until the admin adds the input jump; forgeries open nothing after', async (t) => {
  lab.exec('rtr', ['nft', 'delete', 'table', 'inet', 'portcullis'], { allowFail: true });
  lab.exec('rtr', ['nft', '-f', '-'], {
    input: `table inet fw4 {
  chain input { type filter hook input priority filter; policy accept; }
  chain forward { type filter hook forward priority filter; policy accept; }
  chain dstnat { type nat hook prerouting priority dstnat; policy accept; }
}
`,
  });
  t.teardown(() => void lab.exec('rtr', ['nft', 'delete', 'table', 'inet', 'fw4'], { allowFail: true }));
  const d = startDaemon(['--nft-table', 'fw4', '--nft-embed', '--admin', `${RTR4}:${ADMIN_PORT}`]);
  t.teardown(() => stop(d));
  await waitForLine(d.child, (l) => l.includes('"event":"started"'));
  const missing = d.logs.find((l) => l.includes('"event":"lan-guard"'));
  t.match(missing, /MISSING.*nft insert rule inet fw4 input jump portcullis_input/, 'the log names the missing jump and the command');
  t.match(pcp(RTR6, ['--proto', 'udp', '--port', '41020']), { error: /.+/ }, 'a LAN request gets no answer while unguarded');
  // The admin page is misconfigured the same way: no kernel guard on its port.
  // The WAN host reaches the socket, and the daemon answers it nothing.
  const fromWan = adminStatus('wan');
  t.equal(fromWan.status, 0, `the WAN host gets no HTTP answer from the unguarded admin port (curl exit ${fromWan.code})`);
  t.equal(adminStatus('lan').status, 0, 'nor does the LAN host, while the guard is unconfirmed');
  lab.exec('rtr', ['nft', 'insert rule inet fw4 input jump portcullis_input; add rule inet fw4 forward iifname "wan0" jump portcullis_forward; add rule inet fw4 forward iifname "wan0" ct state new drop; add rule inet fw4 dstnat jump portcullis_prerouting']);
  await waitForLine(d.child, (l) => l.includes('"event":"lan-guard"') && l.includes('in place'), 20_000);
  t.match(pcp(RTR6, ['--proto', 'udp', '--port', '41021']), { result: 'SUCCESS' }, 'served once the jump is there');
  t.equal(adminStatus('lan').status, 401, 'the admin page answers the LAN host once guarded');
  t.equal(adminStatus('wan').status, 0, 'and still not the WAN host');
  const before = elements('fw4', 'portcullis_');
  const ports = { pcp6: 41022, pcp4: 41023, natpmp: 30024 };
  attack(t, ports);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(elements('fw4', 'portcullis_'), before, 'the kernel sets are unchanged');
  await nothingOpened(t, ports);
});
