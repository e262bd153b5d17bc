// The command line in the lab's router namespace: `portcullis doctor` run as
// the admin runs it, with the WAN interface given a public (documentation),
// a shared (RFC 6598) and a private (RFC 1918) address; and serve's log
// flags, --log-level and --log-format, on a daemon's real output.

import t from 'tap';
import { once } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { CLI, labUp, stateDir, waitForLine, type Lab } from './helpers/lab.js';

const lab: Lab = labUp(`pd${process.pid % 10000}`);
t.teardown(() => lab.down());

const doctor = (args: string[] = []) => lab.exec('rtr', [process.execPath, CLI, 'doctor', '--lan', 'br-lan', '--wan', 'wan0', ...args], { allowFail: true });
const wanLine = (out: string) => out.split('\n').find((l) => /WAN address:/.test(l)) ?? '';
const setWan = (cidr: string) => {
  lab.exec('rtr', ['ip', '-4', 'addr', 'flush', 'dev', 'wan0']);
  lab.exec('rtr', ['ip', 'addr', 'add', cidr, 'dev', 'wan0']);
};

/** A daemon on the memory backend (nothing in the kernel), with its stdout lines collected. */
function serve(extra: string[]): { child: ChildProcess; lines: string[]; dir: string } {
  const dir = stateDir();
  const child = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--state-dir', dir, '--backend', 'memory', '--no-upnp', '--no-announce', ...extra]);
  const lines: string[] = [];
  child.stdout?.on('data', (b: Buffer) => lines.push(...b.toString().split('\n').filter(Boolean)));
  return { child, lines, dir };
}

async function stop(child: ChildProcess): Promise<void> {
  child.kill('SIGTERM');
  if (child.exitCode === null) await once(child, 'exit');
}

t.test('--log-level warn: no info lines, the warnings still written', async (t) => {
  const d = serve(['--log-level', 'warn']);
  // "started" is an info line: the control socket answering says the start is over.
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && lab.exec('rtr', [process.execPath, CLI, 'status', '--state-dir', d.dir], { allowFail: true }).code !== 0) await new Promise((r) => setTimeout(r, 200));
  await stop(d.child);
  const parsed = d.lines.map((l) => JSON.parse(l) as { level: string; event: string });
  t.ok(parsed.some((l) => l.level === 'warn' && l.event === 'backend'), 'the memory backend\'s warning');
  t.same(parsed.filter((l) => l.level === 'info' || l.level === 'debug'), [], 'no info or debug line (started, signal, stopped)');
});

t.test('--log-format pretty: the readable line, not JSON; --metrics is taken', async (t) => {
  const d = serve(['--log-format', 'pretty', '--metrics', '127.0.0.1:9464']);
  const started = await waitForLine(d.child, (l) => /\bstarted\b/.test(l), 15_000);
  t.match(started, /^\d\d:\d\d:\d\d INFO  started backend=memory externalIPv4=198\.51\.100\.1 lan=\["br-lan"\] wan=\["wan0"\] ipv4Wan=wan0$/);
  await stop(d.child);
  t.ok(d.lines.length > 1, 'several lines');
  t.notOk(d.lines.some((l) => l.startsWith('{')), 'none of them JSON');
  t.ok(d.lines.some((l) => /^\d\d:\d\d:\d\d WARN  backend backend=memory /.test(l)), 'a warning, as a person reads it');
});

t.test('log flags with values they do not take: exit 2, one line', async (t) => {
  for (const [flag, value, says] of [
    ['--log-level', 'loud', "--log-level: 'loud' is not one of debug, info, warn, error"],
    ['--log-format', 'xml', "--log-format: 'xml' is not one of json, pretty"],
  ] as const) {
    const r = lab.exec('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--backend', 'memory', flag, value], { allowFail: true, timeoutMs: 60_000 });
    t.equal(r.code, 2, `${flag} ${value}: exit 2`);
    t.equal(r.stderr, `portcullis: ${says}\n`);
  }
});

t.test('doctor on the lab router with a public (documentation) WAN address: every check ok, exit 0', async (t) => {
  const r = doctor();
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.match(r.stdout, /^ok +nftables: /m);
  t.match(r.stdout, /^ok +forwarding: IPv4 and IPv6 forwarding are on$/m);
  t.match(r.stdout, /^ok +forward policy: inet lab_base forward drops by default and admits portcullis' mark$/m, 'the lab firewall\'s mark line is seen');
  t.match(r.stdout, /^ok +LAN br-lan: br-lan is up: 192\.168\.77\.1, /m);
  // With --upstream-pcp at its default (auto), a public WAN address is said to leave nothing to relay to.
  t.match(wanLine(r.stdout), /^ok +WAN address: 198\.51\.100\.1 is an address of the router's own; no ISP NAT in the way \(the WAN address is public\): --upstream-pcp auto has nothing to relay to, and IPv4 mappings are made here only$/);
  t.notMatch(r.stdout, /WARN|FAIL/);
});

t.test('doctor with a shared (CGN) and a private WAN address: WARN, NOT reachable, with the fix; still exit 0', async (t) => {
  t.teardown(() => setWan('198.51.100.1/24'));
  for (const [cidr, kind] of [
    ['100.64.1.1/24', /ISP's shared space \(100\.64\.0\.0\/10, RFC 6598\)/],
    ['192.168.50.1/24', /private address \(RFC 1918\)/],
    ['10.20.0.1/16', /private address \(RFC 1918\)/],
  ] as const) {
    setWan(cidr);
    const r = doctor();
    t.equal(r.code, 0, `${cidr}: a warning is not a failure`);
    const line = wanLine(r.stdout);
    t.match(line, new RegExp(`^WARN +WAN address: ${cidr.split('/')[0]?.replace(/\./g, '\\.')} `), cidr);
    t.match(line, kind);
    t.match(line, /IPv4 mappings made here are NOT reachable from the internet/);
    t.match(r.stdout, /^ +fix: ask the ISP for a public IPv4 address, or use IPv6/m);
  }
  setWan('10.20.0.1/16');
  const given = doctor(['--external-ip', '203.0.113.7']);
  t.match(wanLine(given.stdout), /^ok +WAN address: 203\.0\.113\.7 /, '--external-ip is what serve would use');
});

t.test('doctor: a failed check exits 1; its settings come from the config file and flags as serve\'s do', async (t) => {
  const r = doctor(['--lan', 'nosuch0']);
  t.equal(r.code, 1, 'exit 1');
  t.match(r.stdout, /^FAIL +LAN nosuch0: nosuch0 does not exist$/m);
  const embedded = doctor(['--nft-table', 'lab_base', '--nft-embed']);
  t.equal(embedded.code, 1, 'embedded into a table that does not jump to our chains');
  t.match(embedded.stdout, /^FAIL +embedded jumps: inet lab_base does not jump to portcullis_input/m);
  const bad = doctor(['--wan', 'br-lan']);
  t.equal(bad.code, 2, 'a setting serve would refuse: exit 2');
  t.match(bad.stderr, /cannot be both LAN and WAN/);
});
