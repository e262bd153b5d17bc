// --metrics: the whole daemon in-process on loopback (memory backend, real
// sockets) with Prometheus text at /metrics, scraped over HTTP while PCP,
// NAT-PMP and UPnP clients make and end mappings. Also the listen-address
// rule (loopback or the LAN's own, never the WAN) and the start-up warning
// about a WAN address behind another NAT.

import { createSocket, type Socket } from 'node:dgram';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir, type NetworkInterfaceInfo } from 'node:os';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, DEFAULTS, type Config } from '../src/config.js';
import { startDaemon, type Daemon } from '../src/daemon.js';
import { memoryLogger } from './helpers/memory-logger.js';
import { sample } from './helpers/prometheus-text.js';
import { until } from './helpers/wait.js';
import { mustParseIp } from '../src/net/address.js';
import { classifyWanIPv4 } from '../src/net/wan-address.js';
import { decodeNatPmpResponse, encodeNatPmpMapRequest } from '../src/protocols/natpmp/codec.js';
import { decodePcpResponse, encodePcpRequest } from '../src/protocols/pcp/codec.js';
import { parseMetricsListen } from '../src/server/metrics-listen.js';

let wanAddress = '198.51.100.1';
const interfaces = (): NodeJS.Dict<NetworkInterfaceInfo[]> => ({
  lo: [
    { address: '127.0.0.1', netmask: '255.255.255.255', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/32' },
    { address: '::1', netmask: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', family: 'IPv6', mac: '00:00:00:00:00:00', internal: true, cidr: '::1/128', scopeid: 0 },
  ],
  wan0: [{ address: wanAddress, netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: `${wanAddress}/24` }],
});

/** A port nothing uses now (TCP or UDP on loopback). */
async function freePort(kind: 'tcp' | 'udp'): Promise<number> {
  if (kind === 'udp') {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    const { port } = s.address();
    await new Promise<void>((r) => s.close(() => r()));
    return port;
  }
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const { port } = srv.address() as AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

function get(port: number, path: string, host = '127.0.0.1', headers: Record<string, string> = {}, method = 'GET', body?: string): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, method, headers }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const log = memoryLogger();
let cfg: Config;
let daemon: Daemon;
let metricsPort: number;
const scrape = async () => {
  const r = await get(metricsPort, '/metrics');
  if (r.status !== 200) throw new Error(`scrape: ${r.status}`);
  return r.body;
};

t.before(async () => {
  metricsPort = await freePort('tcp');
  cfg = {
    ...DEFAULTS,
    stateDir: mkdtempSync(join(tmpdir(), 'portcullis-metrics-')),
    lan: ['lo'],
    wans: ['wan0'],
    backend: 'memory',
    port: await freePort('udp'),
    announce: false,
    lifetime: { min: 1, max: 86400 },
    upnp: { ...DEFAULTS.upnp, enabled: true, httpPort: await freePort('tcp'), ssdpPort: await freePort('udp') },
    metrics: `127.0.0.1:${metricsPort}`,
  };
  daemon = await startDaemon(cfg, log, { interfaces });
});
t.teardown(async () => {
  await daemon.stop();
});

async function client(server: string): Promise<Socket> {
  const s = createSocket(server.includes(':') ? 'udp6' : 'udp4');
  await new Promise<void>((r) => s.bind(0, undefined, () => r()));
  await new Promise<void>((r) => s.connect(cfg.port, server, () => r()));
  return s;
}
function ask(s: Socket, msg: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no reply')), 10_000);
    s.once('message', (m) => {
      clearTimeout(timer);
      resolve(m);
    });
    s.send(msg);
  });
}
const nonce = Buffer.from('00112233445566778899aabb', 'hex');
const pcpMap = (clientAddress: string, internalPort: number, lifetime: number) =>
  encodePcpRequest({ opcode: 1, lifetime, clientAddress: mustParseIp(clientAddress), map: { nonce, protocol: 17, internalPort, externalPort: 0, externalAddress: mustParseIp('::') } });

t.test('a scrape before any request: the registry, the build, zeroed counters, one epoch start (fresh state)', async (t) => {
  const text = await scrape();
  t.equal(sample(text, 'portcullis_build_info'), 1);
  t.equal(sample(text, 'portcullis_mapping_removals_total', { reason: 'client' }), 0);
  t.equal(sample(text, 'portcullis_epoch_resets_total'), 1, 'a start without kept state starts the epoch');
  t.match(text, /process_cpu_user_seconds_total/, 'default process metrics');
  t.equal(sample(text, 'portcullis_mappings'), 0);
  t.ok(log.lines.some((l) => l.event === 'metrics-listening' && l.port === metricsPort));
});

t.test('only GET /metrics: 404 for another path, 405 for another method', async (t) => {
  t.equal((await get(metricsPort, '/')).status, 404);
  t.equal((await get(metricsPort, '/metrics/../x')).status, 404);
  t.equal((await get(metricsPort, '/metrics', '127.0.0.1', {}, 'POST', 'x')).status, 405);
});

t.test('PCP and NAT-PMP maps over UDP move the request counters, the gauge and the commits', async (t) => {
  const before = await scrape();
  const s4 = await client('127.0.0.1');
  const s6 = await client('::1');
  t.teardown(() => {
    s4.close();
    s6.close();
  });
  t.match(decodePcpResponse(await ask(s4, pcpMap('127.0.0.1', 41001, 600))), { ok: true, msg: { result: 0 } });
  t.match(decodePcpResponse(await ask(s6, pcpMap('::1', 41002, 600))), { ok: true, msg: { result: 0 } });
  t.match(decodeNatPmpResponse(await ask(s4, encodeNatPmpMapRequest(2, 41003, 41003, 600))), { ok: true, msg: { result: 0 } });
  t.match(decodeNatPmpResponse(await ask(s4, Buffer.from([0, 0]))), { ok: true, msg: { result: 0 } });
  const text = await scrape();
  t.equal(sample(text, 'portcullis_requests_total', { protocol: 'pcp', op: 'map', result: 'SUCCESS' }), 2);
  t.equal(sample(text, 'portcullis_requests_total', { protocol: 'natpmp', op: 'map-tcp', result: 'SUCCESS' }), 1);
  t.equal(sample(text, 'portcullis_requests_total', { protocol: 'natpmp', op: 'external-address', result: 'SUCCESS' }), 1);
  t.equal(sample(text, 'portcullis_request_duration_seconds_count', { protocol: 'pcp' }), 2);
  t.equal(sample(text, 'portcullis_mappings'), 3, 'the gauge sums to the live mappings');
  t.equal(sample(text, 'portcullis_mappings'), daemon.service.count());
  t.equal(sample(text, 'portcullis_mappings', { protocol: 'pcp', family: '6', l4proto: 'udp', origin: 'client' }), 1);
  t.equal(sample(text, 'portcullis_mappings', { protocol: 'natpmp', family: '4', l4proto: 'tcp' }), 1);
  t.equal(sample(text, 'portcullis_nft_commits_total', { result: 'committed' }) - sample(before, 'portcullis_nft_commits_total', { result: 'committed' }), 3, 'one batch per grant (sent one at a time)');
  t.equal(sample(text, 'portcullis_nft_commit_duration_seconds_count') - sample(before, 'portcullis_nft_commit_duration_seconds_count'), 3);
  t.ok(sample(text, 'portcullis_store_sync_duration_seconds_count') - sample(before, 'portcullis_store_sync_duration_seconds_count') >= 3, 'each grant synced the journal');
  t.notMatch(text, /127\.0\.0\.1|::1/, 'no client address in any label');
});

t.test('a client removal counts reason="client"; a lifetime that runs out counts reason="expired"', async (t) => {
  const s4 = await client('127.0.0.1');
  t.teardown(() => s4.close());
  const before = await scrape();
  t.match(decodePcpResponse(await ask(s4, pcpMap('127.0.0.1', 41001, 0))), { ok: true, msg: { result: 0, lifetime: 0 } });
  let text = await scrape();
  t.equal(sample(text, 'portcullis_mapping_removals_total', { reason: 'client' }) - sample(before, 'portcullis_mapping_removals_total', { reason: 'client' }), 1);
  t.equal(sample(text, 'portcullis_mappings'), daemon.service.count());

  const t0 = Date.now();
  t.match(decodePcpResponse(await ask(s4, pcpMap('127.0.0.1', 41004, 3))), { ok: true, msg: { result: 0, lifetime: 3 } });
  const early = await scrape();
  // The mapping cannot have expired if this scrape ended within 2.5 s of the ask; a later one proves nothing.
  if (Date.now() - t0 < 2500) t.equal(sample(early, 'portcullis_mapping_removals_total', { reason: 'expired' }), 0, 'none expired before');
  else t.comment('the scrape came too late to show "0 before" (a loaded machine)');
  await until(async () => sample((text = await scrape()), 'portcullis_mapping_removals_total', { reason: 'expired' }) === 1, 10_000, 250);
  t.equal(sample(text, 'portcullis_mapping_removals_total', { reason: 'expired' }), 1);
  t.equal(daemon.service.mappingOf(mustParseIp('127.0.0.1'), 17, 41004), undefined, 'gone from the table');
  t.equal(sample(text, 'portcullis_mappings'), daemon.service.count());
});

t.test('UPnP: the description and a SOAP action counted by their own names, an unknown path as http 404', async (t) => {
  const http = cfg.upnp.httpPort;
  t.equal((await get(http, '/nothing-here', '127.0.0.1', { Host: `127.0.0.1:${http}` })).status, 404);
  // LOCATION as a control point learns it: from SSDP.
  const s = createSocket('udp4');
  t.teardown(() => s.close());
  const location = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no SSDP reply')), 10_000);
    s.on('message', (m) => {
      const l = /^LOCATION: *(\S+)/im.exec(m.toString())?.[1];
      if (!l) return;
      clearTimeout(timer);
      resolve(l);
    });
    s.send(`M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: upnp:rootdevice\r\n\r\n`, cfg.upnp.ssdpPort, '127.0.0.1');
  });
  const url = new URL(location);
  const desc = await get(http, url.pathname, '127.0.0.1', { Host: url.host });
  t.equal(desc.status, 200);
  const type = 'urn:schemas-upnp-org:service:WANIPConnection:2';
  const control = new RegExp(`<serviceType>${type}</serviceType>[\\s\\S]*?<controlURL>([^<]+)</controlURL>`).exec(desc.body)?.[1] as string;
  t.ok(control, 'a control URL');
  const envelope = `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:GetExternalIPAddress xmlns:u="${type}"/></s:Body></s:Envelope>`;
  const soapHeaders = { Host: url.host, 'Content-Type': 'text/xml; charset="utf-8"' };
  const r = await get(http, control, '127.0.0.1', { ...soapHeaders, SOAPACTION: `"${type}#GetExternalIPAddress"` }, 'POST', envelope);
  t.equal(r.status, 200);
  const bogus = await get(http, control, '127.0.0.1', { ...soapHeaders, SOAPACTION: `"${type}#NoSuchAction"` }, 'POST', envelope.replace(/GetExternalIPAddress/g, 'NoSuchAction'));
  t.equal(bogus.status, 500);
  const text = await scrape();
  t.equal(sample(text, 'portcullis_requests_total', { protocol: 'upnp', op: 'http', result: '404' }), 1);
  t.equal(sample(text, 'portcullis_requests_total', { protocol: 'upnp', op: 'description', result: '200' }), 1);
  t.equal(sample(text, 'portcullis_requests_total', { protocol: 'upnp', op: 'GetExternalIPAddress', result: 'ok' }), 1);
  t.equal(sample(text, 'portcullis_requests_total', { protocol: 'upnp', op: 'control', result: '401' }), 1, 'an unknown action is not a label of its own');
  t.notMatch(text, /NoSuchAction/);
});

t.test('the admin\'s removal counts reason="admin"; metrics on [::1]; the listener stops with the daemon', async (t) => {
  const port = await freePort('tcp');
  const l = memoryLogger();
  const d = await startDaemon({ ...cfg, stateDir: mkdtempSync(join(tmpdir(), 'portcullis-metrics-')), port: await freePort('udp'), upnp: { ...cfg.upnp, enabled: false }, metrics: `[::1]:${port}` }, l, { interfaces });
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await d.stop();
  });
  await d.service.map({ via: 'pcp', client: mustParseIp('::1'), internalAddress: mustParseIp('::1'), protocol: 17, internalPort: 41100, suggestedExternalPort: 0, lifetime: 600, filters: [], nonce });
  const removed = await d.service.removeAsAdmin(() => true);
  t.equal(removed.removed.length, 1);
  const text = (await get(port, '/metrics', '::1')).body;
  t.equal(sample(text, 'portcullis_mapping_removals_total', { reason: 'admin' }), 1);
  t.equal(sample(text, 'portcullis_mappings'), 0);
  await d.stop();
  stopped = true;
  await t.rejects(get(port, '/metrics', '::1'), 'the listener stops with the daemon');
});

t.test('--metrics takes loopback or a LAN address, and refuses the WAN, a wildcard and garbage', async (t) => {
  const lan = ['192.168.77.1', '2001:db8:77::1'];
  t.match(parseMetricsListen('127.0.0.1:9351', lan), { ok: true, address: '127.0.0.1', port: 9351, loopback: true });
  t.match(parseMetricsListen('[::1]:9351', lan), { ok: true, address: '::1', port: 9351, loopback: true });
  t.match(parseMetricsListen('192.168.77.1:9351', lan), { ok: true, address: '192.168.77.1', loopback: false });
  t.match(parseMetricsListen('[2001:db8:77::1]:9100', lan), { ok: true, address: '2001:db8:77::1', port: 9100 });
  t.match(parseMetricsListen('0.0.0.0:9351', lan), { ok: false, error: /every address, the WAN's too/ });
  t.match(parseMetricsListen('[::]:9351', lan), { ok: false, error: /every address/ });
  t.match(parseMetricsListen('198.51.100.1:9351', lan), { ok: false, error: /198\.51\.100\.1 is neither loopback nor a LAN address; metrics never face the WAN/ });
  for (const junk of ['', 'localhost:9351', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:70000', '::1:9351', '[::1]', '300.1.1.1:9351', 'x'.repeat(5000)]) {
    t.match(parseMetricsListen(junk, lan), { ok: false, error: /expected ADDR:PORT/ }, JSON.stringify(junk.slice(0, 20)));
  }
  t.ok((parseMetricsListen('x'.repeat(5000), lan) as { error: string }).error.length < 200, 'the error quotes a bounded piece of the input');
});

t.test('a daemon told to serve metrics on the WAN address does not start', async (t) => {
  const l = memoryLogger();
  const bad = { ...cfg, stateDir: mkdtempSync(join(tmpdir(), 'portcullis-metrics-')), port: await freePort('udp'), upnp: { ...cfg.upnp, enabled: false } };
  const wan = await startDaemon({ ...bad, metrics: '198.51.100.1:9351' }, l, { interfaces }).catch((e: unknown) => e);
  t.type(wan, ConfigError);
  t.equal((wan as Error).message, '--metrics 198.51.100.1:9351: 198.51.100.1 is neither loopback nor a LAN address; metrics never face the WAN (127.0.0.1:9351 is the usual choice)');
  const wildcard = await startDaemon({ ...bad, metrics: '0.0.0.0:9351' }, l, { interfaces }).catch((e: unknown) => e);
  t.type(wildcard, ConfigError);
  t.notOk(l.lines.some((x) => x.event === 'started'));
});

t.test('a WAN address behind another NAT is said at start and when the external address changes to one', async (t) => {
  t.notOk(log.lines.some((l) => l.event === 'wan-address'), 'a public address is not warned about');
  wanAddress = '10.0.0.2';
  t.teardown(() => (wanAddress = '198.51.100.1'));
  const l = memoryLogger();
  const d = await startDaemon({ ...cfg, stateDir: mkdtempSync(join(tmpdir(), 'portcullis-metrics-')), port: await freePort('udp'), upnp: { ...cfg.upnp, enabled: false }, metrics: undefined }, l, { interfaces });
  t.teardown(() => d.stop());
  const said = l.lines.filter((x) => x.event === 'wan-address');
  t.equal(said.length, 1, 'once at start');
  t.match(said[0], { level: 'warn', kind: 'private', detail: classifyWanIPv4(mustParseIp('10.0.0.2')).detail });
  wanAddress = '100.64.1.2';
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && l.lines.filter((x) => x.event === 'wan-address').length < 2) await new Promise((r) => setTimeout(r, 100));
  t.match(l.lines.filter((x) => x.event === 'wan-address')[1], { kind: 'shared', address: '100.64.1.2', detail: classifyWanIPv4(mustParseIp('100.64.1.2')).detail });
});
