// Start-up on a real router's terms: at boot the LAN interface has just come
// up and its addresses are still in duplicate address detection (issue 10
// item 12), and a second daemon started by mistake on the same state
// directory must change nothing (item 8). Real nftables in namespaces.

import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, labUp, stateDir, waitForLine, type Lab } from './helpers/lab.js';

const lab: Lab = labUp(`pb${process.pid % 10000}`);
t.teardown(() => lab.down());

t.test('a LAN address still in duplicate address detection does not stop the start; it is served once usable', async (t) => {
  // A fresh LAN interface with DAD on (the lab turns it off everywhere else):
  // three probes 5 s apart keep its addresses tentative for ~15 s, long enough
  // for the daemon to start and find them tentative on a loaded machine.
  lab.exec('rtr', ['ip', 'link', 'add', 'tl0', 'type', 'veth', 'peer', 'name', 'tl1']);
  lab.exec('rtr', ['sysctl', '-qw', 'net.ipv6.conf.tl0.accept_dad=1', 'net.ipv6.conf.tl0.dad_transmits=3', 'net.ipv6.conf.all.accept_dad=1', 'net.ipv6.neigh.tl0.retrans_time_ms=5000']);
  lab.exec('rtr', ['ip', 'link', 'set', 'tl1', 'up']);
  lab.exec('rtr', ['ip', 'addr', 'add', '192.168.88.1/24', 'dev', 'tl0']);
  lab.exec('rtr', ['ip', 'addr', 'add', '2001:db8:88::1/64', 'dev', 'tl0']);
  lab.exec('rtr', ['ip', 'link', 'set', 'tl0', 'up']);
  t.teardown(() => void lab.exec('rtr', ['ip', 'link', 'del', 'tl0'], { allowFail: true }));
  const tentative = lab.exec('rtr', ['ip', '-6', 'addr', 'show', 'dev', 'tl0']).stdout;
  t.match(tentative, /tentative/, 'the test starts while addresses are tentative');

  const d = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--lan', 'tl0', '--wan', 'wan0', '--state-dir', stateDir(), '--nft-table', 'pcl_dad']);
  t.teardown(() => {
    d.kill('SIGTERM');
    lab.exec('rtr', ['nft', 'delete', 'table', 'inet', 'pcl_dad'], { allowFail: true });
  });
  let out = '';
  d.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  await waitForLine(d, (l) => l.includes('"event":"started"'));
  t.match(out, /"event":"bind-deferred"/, 'the tentative address was put off, not fatal');
  // Served once DAD is over (~15 s; the address poll retries every 2 s).
  const ll = (JSON.parse(lab.exec('rtr', ['ip', '-j', '-6', 'addr', 'show', 'dev', 'tl0', 'scope', 'link']).stdout) as { addr_info: { local?: string }[] }[])[0]?.addr_info.find((i) => i.local)?.local;
  t.ok(ll, 'tl0 has a link-local address');
  const deadline = Date.now() + 45_000;
  let sockets = '';
  while (Date.now() < deadline) {
    sockets = lab.exec('rtr', ['ss', '-Hlun', 'sport', '= :5351']).stdout;
    if (sockets.includes(`${ll}]%tl0`) && sockets.includes('2001:db8:88::1')) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  t.match(sockets, `${ll}]%tl0`, 'the link-local address is bound once usable');
  t.match(sockets, '2001:db8:88::1', 'the global address too');
  t.equal(d.exitCode, null, 'the daemon is still running');
});

t.test('a second daemon on the same state directory exits with a clear error and changes nothing', async (t) => {
  const dir = stateDir();
  const first = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--state-dir', dir, '--no-upnp']);
  t.teardown(() => void first.kill('SIGTERM'));
  await waitForLine(first, (l) => l.includes('"event":"started"'));
  lab.exec('lan', [process.execPath, CLI, 'pcp', 'map', '--server', '2001:db8:77::1', '--proto', 'udp', '--port', '42000']);
  const files = () => Object.fromEntries(readdirSync(dir).filter((f) => f !== 'control.sock').map((f) => [f, readFileSync(join(dir, f)).toString('hex')]));
  const ruleset = () => lab.exec('rtr', ['nft', 'list', 'table', 'inet', 'portcullis']).stdout.replace(/expires \S+/g, '').replace(/counter packets \d+ bytes \d+/g, '');
  const before = { files: files(), ruleset: ruleset() };
  const second = lab.exec('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--state-dir', dir, '--port', '5399', '--no-upnp'], { allowFail: true, timeoutMs: 60_000 });
  t.equal(second.code, 2, 'exit code 2 (configuration)');
  t.match(second.stderr, new RegExp(`state directory ${dir}.*(in use|locked).*pid ${first.pid ?? ''}|state directory ${dir}.*(in use|locked)`, 's'), 'names the directory and why');
  t.same(files(), before.files, 'the state files are byte-identical');
  t.equal(ruleset(), before.ruleset, 'the nftables table is unchanged');
  // The first one still works and still writes to the live journal.
  const r = JSON.parse(lab.exec('lan', [process.execPath, CLI, 'pcp', 'map', '--server', '2001:db8:77::1', '--proto', 'udp', '--port', '42001']).stdout) as { result: string };
  t.equal(r.result, 'SUCCESS', 'the first daemon still serves');
});

t.test('a WAN interface not there yet (a softwire made after boot) does not stop the start: warned, its rules in place by name', async (t) => {
  const d = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--wan', 'late0', '--state-dir', stateDir(), '--no-upnp', '--nft-table', 'pcl_late']);
  t.teardown(() => void d.kill('SIGTERM'));
  const lines: string[] = [];
  d.stdout?.on('data', (b: Buffer) => lines.push(...b.toString().split('\n')));
  await waitForLine(d, (l) => l.includes('"event":"started"'));
  t.ok(lines.some((l) => l.includes('"event":"wan-missing"') && l.includes('"interface":"late0"')), 'the missing WAN is named in a warning');
  const rules = lab.exec('rtr', ['nft', 'list', 'table', 'inet', 'pcl_late']).stdout;
  t.match(rules, /iifname \{ "late0", "wan0" \}|iifname \{ "wan0", "late0" \}/, 'the WAN zone names it: traffic arriving on it is matched once it exists');
  const r = JSON.parse(lab.exec('lan', [process.execPath, CLI, 'pcp', 'map', '--server', '2001:db8:77::1', '--proto', 'udp', '--port', '42010']).stdout) as { result: string };
  t.equal(r.result, 'SUCCESS', 'and it serves');
});
