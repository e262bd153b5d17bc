// Forgetting flows in the real kernel, both ways (issue 16): the router of
// the lab masquerades; the LAN host sends UDP and opens TCP connections to
// the WAN host, which the router's conntrack table records. The flusher runs
// inside the router's namespace (its own process: a netlink socket belongs to
// the namespace it was opened in), once forced onto netlink and once onto the
// conntrack tool, with a 'source' selector for a UDP flow and a
// 'translated-to' one for a TCP flow; those two go, the flows beside them
// (same host, other ports) stay. And inbound (issue 13): the WAN host sends to
// the router's address (DNATed to the LAN host) and to the LAN host's IPv6
// address; a 'destination' selector for each makes those go, over either path.

import t from 'tap';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, labUp, logged, logLines, waitForLine, type Lab } from './helpers/lab.js';
import { until } from './helpers/wait.js';
import { flowOf, type FlowSelector } from '../src/firewall/conntrack.js';
import { mustParseIp, parseIp } from '../src/net/address.js';

const lab: Lab = labUp(`ct${process.pid % 10000}`);
t.teardown(() => lab.down());

const LAN = '192.168.77.2';
const WAN = '198.51.100.2';
const EXT = '198.51.100.1';
const LAN6 = '2001:db8:77::2';
const FLUSHER = fileURLToPath(new URL('../src/firewall/conntrack.js', import.meta.url));

t.before(() => {
  lab.exec('rtr', ['nft', '-f', '-'], { input: 'table ip ct16lab {\n  chain post {\n    type nat hook postrouting priority 100;\n    oifname "wan0" masquerade\n  }\n}\n' });
  lab.spawn('wan', ['socat', 'TCP-LISTEN:6000,reuseaddr,fork', 'EXEC:sleep 30']);
  // Inbound: ports 40300-40399 of the router DNATed to the LAN host, and let
  // through the lab's forward chain (its mark), both families: a dropped
  // packet's flow never enters the table.
  lab.exec('rtr', ['nft', '-f', '-'], {
    input: 'table ip ct13lab {\n  chain pre {\n    type nat hook prerouting priority -100;\n    iifname "wan0" udp dport 40300-40399 dnat to 192.168.77.2\n  }\n}\n' +
      'table inet ct13lab {\n  chain inbound {\n    type filter hook forward priority -10;\n    iifname "wan0" udp dport 40300-40399 meta mark set meta mark | 0x10000000\n  }\n}\n',
  });
});

/** The router's UDP flows of a family whose reply comes from the LAN host's port: the ones that reach it. */
const flowsTo = (family: 4 | 6, port: number) =>
  lab
    .exec('rtr', ['conntrack', '-L', '-f', family === 4 ? 'ipv4' : 'ipv6', '-p', 'udp'], { allowFail: true })
    .stdout.split('\n')
    .map(flowOf)
    .filter((f) => f !== undefined && parseIp(f.replyFrom) === (family === 4 ? LAN : LAN6) && f.replyFromPort === port);

/** The router's flows of a protocol from the LAN host's port, as `conntrack -L` tells them. */
const flowsFrom = (proto: 'udp' | 'tcp', port: number) =>
  lab
    .exec('rtr', ['conntrack', '-L', '-p', proto, '--orig-src', LAN, '--orig-port-src', String(port)], { allowFail: true })
    .stdout.split('\n')
    .map(flowOf)
    .filter((f) => f !== undefined);

/** A UDP flow and a TCP connection from ports base, base+1 (the ones to forget) and base+2, base+3 (to keep). */
async function makeFlows(base: number): Promise<void> {
  for (const p of [base, base + 2]) lab.exec('lan', ['socat', '-u', 'STDIN', `UDP:${WAN}:5000,sourceport=${p}`], { input: 'x' });
  for (const p of [base + 1, base + 3]) lab.spawn('lan', ['socat', `TCP:${WAN}:6000,sourceport=${p},reuseaddr`, 'EXEC:sleep 30']);
  const seen = await until(() => [base, base + 2].every((p) => flowsFrom('udp', p).length === 1) && [base + 1, base + 3].every((p) => flowsFrom('tcp', p).length === 1), 10_000, 100);
  if (!seen) throw new Error(`the router never showed the four flows: ${lab.exec('rtr', ['conntrack', '-L'], { allowFail: true }).stdout}`);
}

/** Runs a flusher in the router's namespace; returns its log lines and counters. */
function forget(via: 'netlink' | 'tool', selectors: FlowSelector[]): { lines: Record<string, unknown>[]; dumps: number; deleted: number; runs: number } {
  const script = `
    const { ConntrackFlusher } = await import(${JSON.stringify(FLUSHER)});
    const lines = [];
    const keep = (level) => (f) => lines.push({ level, ...f });
    const c = new ConntrackFlusher({ debug: keep('debug'), info: keep('info'), warn: keep('warn'), error: keep('error') }, { via: ${JSON.stringify(via)} });
    c.flush(${JSON.stringify(selectors)});
    await c.idle();
    console.log(JSON.stringify({ lines, dumps: c.netlink.dumps, deleted: c.netlink.deleted, runs: c.runs }));`;
  const r = lab.exec('rtr', [process.execPath, '--input-type=module', '-e', script]);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

for (const [via, base] of [['netlink', 40_000], ['tool', 40_100]] as const) {
  t.test(`${via}: the selected flows go, the ones beside them stay`, async (t) => {
    await makeFlows(base);
    const tcp = flowsFrom('tcp', base + 1)[0]!;
    t.equal(tcp.replyTo, EXT, 'the TCP flow was masqueraded to the router');
    const r = forget(via, [
      { by: 'source', protocol: 17, address: mustParseIp(LAN), port: base },
      { by: 'translated-to', protocol: 6, address: mustParseIp(EXT), port: tcp.replyToPort },
      // Nothing has these: nothing more goes.
      { by: 'source', protocol: 17, address: mustParseIp('192.168.77.3'), port: base + 2 },
      { by: 'translated-to', protocol: 17, address: mustParseIp(EXT), port: 9 },
    ]);
    t.same(r.lines.filter((l) => l.level === 'warn'), [], 'no failure');
    t.match(r.lines.filter((l) => l.event === 'conntrack-path'), [{ path: via }]);
    if (via === 'netlink') {
      t.equal(r.deleted, 2, 'two flows deleted over netlink');
      t.equal(r.dumps, 2, 'one dump per protocol');
      t.equal(r.runs, 0, 'no conntrack process');
    } else t.ok(r.runs >= 2, 'the tool listed and deleted');
    t.same(flowsFrom('udp', base), [], 'the UDP flow from the selected source is gone');
    t.same(flowsFrom('tcp', base + 1), [], 'the TCP flow translated to the selected port is gone');
    t.equal(flowsFrom('udp', base + 2).length, 1, 'the UDP flow from another port stays');
    t.equal(flowsFrom('tcp', base + 3).length, 1, 'the TCP flow from another port stays');
  });
}

for (const [via, base] of [['netlink', 40_300], ['tool', 40_350]] as const) {
  t.test(`${via}: 'destination' forgets the flows that reach a LAN endpoint, IPv4 after DNAT and IPv6`, async (t) => {
    // From fixed source ports, to ports base (to forget) and base+1 (to keep), both families.
    for (const p of [base, base + 1]) {
      lab.exec('wan', ['socat', '-u', 'STDIN', `UDP4:${EXT}:${p},sourceport=${p + 1000}`], { input: 'x' });
      lab.exec('wan', ['socat', '-u', 'STDIN', `UDP6:[${LAN6}]:${p},sourceport=${p + 1000}`], { input: 'x' });
    }
    const all = () => [4, 6].every((f) => [base, base + 1].every((p) => flowsTo(f as 4 | 6, p).length === 1));
    t.ok(await until(all, 10_000, 100), `the router shows the four inbound flows: ${lab.exec('rtr', ['conntrack', '-L'], { allowFail: true }).stdout}`);
    t.equal(flowsTo(4, base)[0]?.replyTo, '198.51.100.2', 'the IPv4 flow was DNATed: the LAN host answers the WAN host');
    const r = forget(via, [
      { by: 'destination', protocol: 17, address: mustParseIp(LAN), port: base },
      { by: 'destination', protocol: 17, address: mustParseIp(LAN6), port: base },
    ]);
    t.same(r.lines.filter((l) => l.level === 'warn'), [], 'no failure');
    if (via === 'netlink') {
      t.equal(r.deleted, 2, 'two flows deleted over netlink');
      t.equal(r.dumps, 2, 'one dump per family (the protocol and endpoint filtered in the kernel)');
    } else t.ok(r.runs >= 3, 'the tool listed each family and deleted');
    t.same(flowsTo(4, base), [], 'the IPv4 flow to the LAN endpoint is gone');
    t.same(flowsTo(6, base), [], 'the IPv6 flow to the LAN endpoint is gone');
    t.equal(flowsTo(4, base + 1).length, 1, 'the IPv4 flow to another port stays');
    t.equal(flowsTo(6, base + 1).length, 1, 'the IPv6 flow to another port stays');
  });
}

t.test('the daemon at its defaults forgets flows over netlink, and nft keeps its library path', async (t) => {
  // koffi takes its settings only before its first library: ctnetlink's libc
  // loaded first once sent libnftables to the process path.
  const state = mkdtempSync(join(tmpdir(), 'portcullis-state-'));
  t.teardown(() => rmSync(state, { recursive: true, force: true }));
  const daemon = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--state-dir', state, '--no-upnp']);
  const lines = logLines(daemon);
  await waitForLine(daemon, (l) => l.includes('"event":"started"'));
  t.ok(await logged(lines, (l) => l.includes('"event":"conntrack-path"')), 'the choice is logged at start');
  const events = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(events.filter((e) => e.event === 'conntrack-path'), [{ path: 'netlink' }]);
  t.match(events.filter((e) => e.event === 'nft-ready'), [{ path: 'library' }]);
  t.same(events.filter((e) => e.event === 'nft-path'), [], 'no fallback of the nft path');
  daemon.kill('SIGTERM');
});
