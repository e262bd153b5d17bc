// --metrics on a router: the daemon in the lab's router (real nftables),
// configured by file to serve metrics on its LAN address; natpmpc and our PCP
// client make IPv4 and IPv6 mappings from the LAN host, which scrapes them.
// The mappings gauge must agree with the kernel's own element counts; the
// WAN side cannot scrape; a WAN address for metrics stops the start.

import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { CLI, labUp, stateDir, waitForLine, type Lab } from './helpers/lab.js';
import { sample } from './helpers/prometheus-text.js';

const lab: Lab = labUp(`pm${process.pid % 10000}`);
t.teardown(() => lab.down());

const METRICS = 'http://192.168.77.1:9351/metrics';
let daemon: ChildProcess;

function configFile(extra: Record<string, unknown>): string {
  const dir = stateDir();
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ lan: ['br-lan'], wan: 'wan0', stateDir: join(dir, 'state'), ...extra }));
  return file;
}

/**
 * Mapping elements the kernel holds in one of our sets or maps: those with a
 * timeout (every client mapping has one; the backend's flush sentinel has none).
 */
function elements(kind: 'map' | 'set', name: string): number {
  const out = JSON.parse(lab.exec('rtr', ['nft', '-j', 'list', kind, 'inet', 'portcullis', name]).stdout) as { nftables: Record<string, { elem?: unknown[] }>[] };
  const elems = out.nftables.flatMap((o) => o[kind]?.elem ?? []);
  return elems.filter((e) => JSON.stringify(e).includes('"timeout":')).length;
}

const scrapeFromLan = () => lab.exec('lan', ['curl', '-sS', '--max-time', '5', METRICS]).stdout;
const pcp = (server: string, args: string[]) => JSON.parse(lab.exec('lan', [process.execPath, CLI, 'pcp', 'map', '--server', server, ...args]).stdout) as Record<string, unknown>;
const natpmpc = (...args: string[]) => lab.exec('lan', ['natpmpc', '-g', '192.168.77.1', ...args], { allowFail: true }).stdout;

t.before(async () => {
  daemon = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--config', configFile({ metrics: '192.168.77.1:9351', reconcileSeconds: 1 })]);
  await waitForLine(daemon, (l) => l.includes('"event":"started"'), 15_000);
});
t.teardown(() => void daemon.kill('SIGTERM'));

t.test('natpmpc and `portcullis pcp map` mappings, scraped from the LAN host, match the kernel', async (t) => {
  t.match(natpmpc('-a', '40001', '40001', 'udp', '600'), /Mapped public port 40001 protocol UDP/);
  t.match(natpmpc('-a', '40002', '40002', 'tcp', '600'), /Mapped public port 40002 protocol TCP/);
  t.match(pcp('192.168.77.1', ['--proto', 'udp', '--port', '40003', '--lifetime', '600']), { result: 'SUCCESS' });
  t.match(pcp('2001:db8:77::1', ['--proto', 'udp', '--port', '40010', '--lifetime', '600']), { result: 'SUCCESS' });
  t.match(pcp('2001:db8:77::1', ['--proto', 'tcp', '--port', '40011', '--lifetime', '600']), { result: 'SUCCESS' });

  const text = scrapeFromLan();
  const v4 = sample(text, 'portcullis_mappings', { family: '4' });
  const v6 = sample(text, 'portcullis_mappings', { family: '6' });
  t.equal(v4 + v6, 5, 'the gauge sums to the mappings made');
  t.equal(sample(text, 'portcullis_mappings', { protocol: 'natpmp', family: '4', l4proto: 'udp', origin: 'client' }), 1);
  t.equal(sample(text, 'portcullis_mappings', { protocol: 'pcp', family: '6', l4proto: 'tcp', origin: 'client' }), 1);
  t.equal(v4, elements('map', 'dnat4') + elements('map', 'dnat4_filtered'), 'IPv4: the kernel\'s DNAT map holds as many');
  t.equal(v6, elements('set', 'pinholes6') + elements('set', 'pinholes6_filtered'), 'IPv6: the kernel\'s pinhole set holds as many');
  t.equal(elements('map', 'dnat4'), 3);
  t.equal(elements('set', 'pinholes6'), 2);
  t.equal(sample(text, 'portcullis_requests_total', { protocol: 'natpmp', op: 'map-udp', result: 'SUCCESS' }), 1);
  t.equal(sample(text, 'portcullis_requests_total', { protocol: 'natpmp', op: 'map-tcp', result: 'SUCCESS' }), 1);
  t.equal(sample(text, 'portcullis_requests_total', { protocol: 'pcp', op: 'map', result: 'SUCCESS' }), 3);
  t.ok(sample(text, 'portcullis_nft_commits_total', { result: 'committed' }) >= 5, 'every grant went through a real nft commit');
  t.equal(sample(text, 'portcullis_nft_commits_total', { result: 'refused' }), 0);
  t.ok(sample(text, 'portcullis_store_sync_duration_seconds_count') >= 5, 'and a journal sync');
  t.notMatch(text, /192\.168\.77\.2|2001:db8:77::2/, 'the LAN host\'s address is no label');

  // natpmpc deletes one: the gauge, the kernel and the removals agree again.
  t.match(natpmpc('-a', '0', '40001', 'udp', '0'), /liftime 0/);
  const after = scrapeFromLan();
  t.equal(sample(after, 'portcullis_mapping_removals_total', { reason: 'client' }), 1);
  t.equal(sample(after, 'portcullis_mappings', { family: '4' }), elements('map', 'dnat4') + elements('map', 'dnat4_filtered'));
  t.equal(sample(after, 'portcullis_mappings'), 4);
});

t.test('a flush behind the daemon\'s back is repaired and counted; the gauge and the kernel agree again', async (t) => {
  const before = scrapeFromLan();
  t.equal(sample(before, 'portcullis_firewall_repairs_total'), 0);
  lab.exec('rtr', ['nft', 'flush map inet portcullis dnat4; flush set inet portcullis pinholes6']);
  const deadline = Date.now() + 10_000;
  let text = before;
  while (Date.now() < deadline && sample(text, 'portcullis_firewall_repairs_total') === 0) {
    await new Promise((r) => setTimeout(r, 250));
    text = scrapeFromLan();
  }
  t.equal(sample(text, 'portcullis_firewall_repairs_total'), 1, 'one repair');
  t.equal(sample(text, 'portcullis_mappings', { family: '4' }), elements('map', 'dnat4') + elements('map', 'dnat4_filtered'));
  t.equal(sample(text, 'portcullis_mappings', { family: '6' }), elements('set', 'pinholes6') + elements('set', 'pinholes6_filtered'));
  t.equal(sample(text, 'portcullis_epoch_resets_total'), 1, 'only the start without kept state');
});

t.test('the kernel keeps the metrics port to the LAN: a WAN host sending to the LAN address gets nothing', async (t) => {
  lab.exec('wan', ['ip', 'route', 'replace', '192.168.77.0/24', 'via', '198.51.100.1']);
  t.teardown(() => void lab.exec('wan', ['ip', 'route', 'del', '192.168.77.0/24'], { allowFail: true }));
  const r = lab.exec('wan', ['curl', '-sS', '--max-time', '2', METRICS], { allowFail: true });
  t.not(r.code, 0, 'no answer from the WAN side');
  t.notMatch(r.stdout, /portcullis_/);
  t.match(scrapeFromLan(), /portcullis_build_info/, 'the LAN host still scrapes');
});

t.test('a daemon configured to serve metrics on the WAN address refuses to start, with the reason', async (t) => {
  const r = lab.exec('rtr', [process.execPath, CLI, 'serve', '--config', configFile({ metrics: '198.51.100.1:9351', port: 5399, nft: { table: 'pcl_metrics' } }), '--no-upnp'], { allowFail: true, timeoutMs: 60_000 });
  t.equal(r.code, 2, 'exit code 2 (configuration)');
  t.match(r.stderr, /--metrics 198\.51\.100\.1:9351: 198\.51\.100\.1 is neither loopback nor a LAN address; metrics never face the WAN/);
  t.notMatch(lab.exec('rtr', ['nft', 'list', 'tables']).stdout, /pcl_metrics/, 'nothing was set up in the kernel');
  t.notMatch(lab.exec('rtr', ['ss', '-Hltn']).stdout, /198\.51\.100\.1:9351/, 'nothing listens there');
});
