// The admin API (--admin): the whole daemon in-process on loopback (memory
// backend, real sockets), spoken to over real HTTP. Mappings are made by real
// PCP and NAT-PMP datagrams; the neighbour table and a DHCP lease file say
// who is which device. What must hold: nobody without a credential gets
// anything, failed credentials are rate-limited, a session cookie is
// HttpOnly and SameSite=Strict and changes need its CSRF token, hostile
// paths and bodies get a clear error, and the listing, removal, devices and
// the live event stream tell the truth.

import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { request, type IncomingMessage } from 'node:http';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { hostname, tmpdir, type NetworkInterfaceInfo } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, DEFAULTS, type Config } from '../src/config.js';
import { startDaemon, type Daemon } from '../src/daemon.js';
import type { MemoryFirewall } from '../src/firewall/memory.js';
import { mustParseIp } from '../src/net/address.js';
import { parsePolicyText } from '../src/policy/load.js';
import { decodeNatPmpResponse, encodeNatPmpMapRequest } from '../src/protocols/natpmp/codec.js';
import { decodePcpResponse, encodePcpRequest } from '../src/protocols/pcp/codec.js';
import { checkPassword, hashPassword, parsePasswordHash } from '../src/server/admin/auth.js';
import { adminHostNames, parseAdminListen } from '../src/server/admin/listen.js';
import { LOGIN_RATE, MAX_BODY_BYTES, ROUTES } from '../src/server/admin/server.js';
import type { DeviceView, MappingOpening, Opening } from '../src/server/admin/views.js';
import { memoryLogger } from './helpers/memory-logger.js';
import { until } from './helpers/wait.js';
import { parse as parseYaml } from 'yaml';

const nic = (address: string, cidr: string, internal: boolean, family: 'IPv4' | 'IPv6' = 'IPv4'): NetworkInterfaceInfo =>
  ({ address, cidr, internal, netmask: '', family, mac: '02:00:00:00:00:01', ...(family === 'IPv6' ? { scopeid: 0 } : {}) }) as NetworkInterfaceInfo;
const interfaces = (): NodeJS.Dict<NetworkInterfaceInfo[]> => ({
  lo: [nic('127.0.0.1', '127.0.0.1/8', true), nic('::1', '::1/128', true, 'IPv6')],
  wan0: [nic('198.51.100.1', '198.51.100.1/24', false)],
});

/** A TCP and a UDP port nothing uses now: bound to port 0, noted, let go. */
async function freePorts(): Promise<{ tcp: number; udp: number }> {
  const tcp = createServer().listen(0, '127.0.0.1');
  const udp = createSocket('udp4').bind(0, '127.0.0.1');
  await Promise.all([once(tcp, 'listening'), once(udp, 'listening')]);
  const ports = { tcp: (tcp.address() as AddressInfo).port, udp: udp.address().port };
  tcp.close();
  udp.close();
  return ports;
}

const STATE = mkdtempSync(join(tmpdir(), 'portcullis-admin-'));
const LEASES = join(STATE, 'dhcp.leases');
// 127.0.0.9 is device :09 in the neighbour table: an ended lease of someone else there, and another's live one, name nobody.
writeFileSync(LEASES, '0 02:00:00:00:00:02 127.0.0.2 laptop *\n1000 02:00:00:00:00:99 127.0.0.9 phone *\n0 02:00:00:00:00:98 127.0.0.9 tablet *\n');
const PASSWORD = 'correct horse battery staple';
// Anyone may map a high port; one static forward and one static pinhole.
const policy = parsePolicyText(
  [
    'version: 1',
    'rules: [{ name: lan, action: allow, match: { internalPorts: 1024-65535 }, limits: { requestsPerSecond: 0 } }]',
    'static:',
    '  - { name: game, forward: { protocol: udp, port: 3074, to: 127.0.0.6, toPort: 3075 } }',
    '  - { name: web, pinhole: { to: "::1/128", protocol: tcp, ports: 443 } }',
  ].join('\n'),
  'test',
);
const log = memoryLogger();
let cfg: Config;
let daemon: Daemon;
let port: number;
let token: string;

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  text: string;
  json: Record<string, unknown>;
}

/** One HTTP request to the admin port; `from` picks the loopback source address. */
function http(method: string, path: string, opts: { headers?: Record<string, string>; body?: string | Buffer; from?: string; chunked?: boolean } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.body !== undefined && !opts.chunked) headers['Content-Length'] = String(Buffer.byteLength(opts.body));
    const req = request({ host: '127.0.0.1', port, path, method, headers, localAddress: opts.from, agent: false }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        let json: Record<string, unknown> = {};
        try {
          json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
        } catch {
          json = { unparsed: text };
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    if (opts.chunked && opts.body !== undefined) {
      req.write(opts.body.slice(0, 1000));
      req.end(opts.body.slice(1000));
    } else req.end(opts.body);
  });
}
const bearer = (tok = token) => ({ Authorization: `Bearer ${tok}` });
const json = (o: unknown) => ({ headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(o) });

async function login(from = '127.0.0.1'): Promise<{ cookie: string; csrf: string; setCookie: string }> {
  const r = await http('POST', '/api/login', { ...json({ token }), from });
  if (r.status !== 200) throw new Error(`login: ${r.status} ${r.text}`);
  const setCookie = (r.headers['set-cookie'] ?? [])[0] ?? '';
  return { cookie: setCookie.split(';')[0] as string, csrf: r.json.csrf as string, setCookie };
}

/** One datagram from `source` to the daemon's PCP/NAT-PMP port, and its answer (2 s at most). */
async function ask(source: string, msg: Buffer): Promise<Buffer> {
  const s = createSocket('udp4').bind(0, source);
  try {
    await once(s, 'listening');
    s.send(msg, cfg.port, '127.0.0.1');
    const [answer] = (await once(s, 'message', { signal: AbortSignal.timeout(2000) })) as [Buffer];
    return answer;
  } finally {
    s.close();
  }
}
/** A PCP MAP from `client` (a 127/8 address of this host) for UDP `internalPort`. */
async function pcpMap(client: string, internalPort: number): Promise<void> {
  const msg = encodePcpRequest({ opcode: 1, lifetime: 600, clientAddress: mustParseIp(client), map: { nonce: Buffer.alloc(12, 7), protocol: 17, internalPort, externalPort: 0, externalAddress: mustParseIp('::') } });
  const r = decodePcpResponse(await ask(client, msg));
  if (!r.ok || r.msg.result !== 0) throw new Error(`PCP map refused: ${JSON.stringify(r)}`);
}

t.before(async () => {
  const free = await freePorts();
  port = free.tcp;
  cfg = {
    ...DEFAULTS,
    stateDir: STATE,
    lan: ['lo'],
    wans: ['wan0'],
    backend: 'memory',
    port: free.udp,
    announce: false,
    dhcpLeases: LEASES,
    upnp: { ...DEFAULTS.upnp, enabled: false },
    // A cheap scrypt cost keeps the test quick; the default is 16384.
    admin: { listen: `127.0.0.1:${port}`, passwordHash: await hashPassword(PASSWORD, { N: 1024, r: 8, p: 1 }), hostNames: ['router.example.net'] },
  };
  daemon = await startDaemon(cfg, log, {
    interfaces,
    policy,
    neighbours: async () => [
      { address: mustParseIp('127.0.0.4'), interface: 'lo', lladdr: '02:00:00:00:00:04' },
      { address: mustParseIp('::1'), interface: 'lo', lladdr: '02:00:00:00:00:04' },
      { address: mustParseIp('127.0.0.9'), interface: 'lo', lladdr: '02:00:00:00:00:09' },
      { address: mustParseIp('198.51.100.254'), interface: 'wan0', lladdr: '02:00:00:00:00:fe' },
    ],
  });
  token = readFileSync(join(STATE, 'admin.token'), 'utf8').trim();
});
t.teardown(() => daemon?.stop());

t.test('the token file: made at first start, 0600, 64 hex digits, never logged', async (t) => {
  t.match(token, /^[0-9a-f]{64}$/);
  t.equal(statSync(join(STATE, 'admin.token')).mode & 0o777, 0o600);
  t.ok(log.lines.some((l) => l.event === 'admin-listening' && l.port === port && l.address === '127.0.0.1'), 'admin-listening logged');
  t.notOk(JSON.stringify(log.lines).includes(token), 'the token is in no log line');
});

t.test('without a credential: 401 with a clear JSON error, for every resource', async (t) => {
  for (const [method, path] of [['GET', '/api/openings'], ['GET', '/api/devices'], ['GET', '/api/events'], ['GET', '/api/session'], ['DELETE', '/api/openings/1'], ['POST', '/api/logout']]) {
    const r = await http(method as string, path as string);
    t.equal(r.status, 401, `${method} ${path}`);
    t.match(r.json, { error: /not logged in/ });
    t.equal(r.headers['content-type'], 'application/json; charset=utf-8');
  }
  t.equal((await http('GET', '/api/openings', { headers: { Cookie: 'portcullis_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' } })).status, 401, 'a made-up session');
});

t.test('a bearer token reads; a wrong one is 401, and after repeated failures 429 even for the right one', async (t) => {
  const ok = await http('GET', '/api/openings', { headers: bearer() });
  t.equal(ok.status, 200);
  t.match(ok.json, { openings: Array, truncated: false });
  for (let i = 0; i < LOGIN_RATE.burst; i++) {
    const r = await http('GET', '/api/openings', { headers: bearer('0'.repeat(64)), from: '127.0.0.2' });
    t.equal(r.status, 401, `failure ${i + 1}: 401`);
  }
  const blocked = await http('GET', '/api/openings', { headers: bearer('0'.repeat(64)), from: '127.0.0.2' });
  t.equal(blocked.status, 429, 'rate-limited');
  t.match(blocked.json, { error: /too many failed logins/ });
  t.ok(Number(blocked.headers['retry-after']) > 0, 'Retry-After said');
  t.equal((await http('GET', '/api/openings', { headers: bearer() })).status, 200, 'another source is not affected');
  t.equal((await http('GET', '/api/openings', { headers: { Authorization: 'Basic Zm9vOmJhcg==' } })).status, 401, 'not a bearer token: 401');
});

t.test('login attempts are rate-limited: ten wrong tokens, then even the right one waits', async (t) => {
  for (let i = 0; i < LOGIN_RATE.burst; i++) t.equal((await http('POST', '/api/login', { ...json({ token: 'f'.repeat(64) }), from: '127.0.0.3' })).status, 401);
  const r = await http('POST', '/api/login', { ...json({ token }), from: '127.0.0.3' });
  t.equal(r.status, 429);
  t.notOk(r.headers['set-cookie'], 'no cookie');
  t.ok(log.lines.some((l) => l.event === 'admin-login-failed' && l.source === '127.0.0.3'), 'failures logged with the source');
});

t.test('good logins cost nothing: more in a row than the burst all succeed; failures from there still end in 429', async (t) => {
  for (let i = 0; i < LOGIN_RATE.burst + 2; i++) t.equal((await http('POST', '/api/login', { ...json({ token }), from: '127.0.0.13' })).status, 200, `good login ${i + 1}`);
  for (let i = 0; i < LOGIN_RATE.burst; i++) t.equal((await http('POST', '/api/login', { ...json({ token: 'e'.repeat(64) }), from: '127.0.0.13' })).status, 401, `failure ${i + 1}`);
  t.equal((await http('POST', '/api/login', { ...json({ token: 'e'.repeat(64) }), from: '127.0.0.13' })).status, 429, 'then 429');
});

t.test('login with the token: an HttpOnly, SameSite=Strict cookie and a CSRF token; logout ends it', async (t) => {
  const s = await login();
  t.match(s.setCookie, /^portcullis_session=[A-Za-z0-9_-]{43}; /);
  t.match(s.setCookie, /; HttpOnly/);
  t.match(s.setCookie, /; SameSite=Strict/);
  t.match(s.setCookie, /; Path=\//);
  t.match(s.csrf, /^[A-Za-z0-9_-]{43}$/);
  const sess = await http('GET', '/api/session', { headers: { Cookie: s.cookie } });
  t.same(sess.json, { auth: 'session', csrf: s.csrf }, 'the page gets its CSRF token back after a reload');
  t.equal((await http('GET', '/api/openings', { headers: { Cookie: s.cookie } })).status, 200, 'the cookie reads');
  t.equal((await http('POST', '/api/logout', { headers: { Cookie: s.cookie } })).status, 403, 'logout is a change: CSRF needed');
  const out = await http('POST', '/api/logout', { headers: { Cookie: s.cookie, 'X-CSRF-Token': s.csrf } });
  t.equal(out.status, 204);
  t.match((out.headers['set-cookie'] ?? [])[0], /Max-Age=0/, 'the cookie is cleared');
  t.equal((await http('GET', '/api/openings', { headers: { Cookie: s.cookie } })).status, 401, 'the session is gone');
});

t.test('login with the password (admin.passwordHash); a wrong one is 401; odd bodies are 400/415', async (t) => {
  const r = await http('POST', '/api/login', { ...json({ password: PASSWORD }), from: '127.0.0.7' });
  t.equal(r.status, 200);
  t.match((r.headers['set-cookie'] ?? [])[0], /HttpOnly; SameSite=Strict/);
  t.match(await http('POST', '/api/login', { ...json({ password: 'guess' }), from: '127.0.0.7' }), { status: 401, json: { error: 'wrong password' } });
  t.match(await http('POST', '/api/login', { ...json({ token, password: PASSWORD }), from: '127.0.0.7' }), { status: 400, json: { error: /one of them/ } });
  t.match(await http('POST', '/api/login', { headers: { 'Content-Type': 'application/json' }, body: '{not json', from: '127.0.0.7' }), { status: 400, json: { error: /not JSON/ } });
  t.match(await http('POST', '/api/login', { headers: { 'Content-Type': 'text/plain' }, body: JSON.stringify({ token }), from: '127.0.0.7' }), { status: 415, json: { error: /application\/json/ } });
  t.match(await http('GET', '/api/login'), { status: 405, headers: { allow: 'POST' } });
  t.match(await http('POST', '/api/login', { ...json({ token, remember: true }), from: '127.0.0.7' }), { status: 400, json: { error: /unknown field "remember"/ } }, 'a field the schema does not allow: named, not ignored');
  t.match(await http('POST', '/api/login', { ...json([token]), from: '127.0.0.7' }), { status: 400, json: { error: /send \{"token"/ } }, 'not an object');
});

t.test('changes with a cookie need the session\'s X-CSRF-Token and a matching Origin; a bearer token needs neither CSRF nor cookie', async (t) => {
  await pcpMap('127.0.0.4', 42001);
  const id = String(daemon.service.mappings((m) => m.internalPort === 42001)[0]?.id);
  const s = await login();
  const del = (headers: Record<string, string>) => http('DELETE', `/api/openings/${id}`, { headers });
  t.match(await del({ Cookie: s.cookie }), { status: 403, json: { error: /X-CSRF-Token/ } }, 'no CSRF header');
  t.match(await del({ Cookie: s.cookie, 'X-CSRF-Token': 'x'.repeat(43) }), { status: 403 }, 'a wrong one');
  const other = await login();
  t.match(await del({ Cookie: s.cookie, 'X-CSRF-Token': other.csrf }), { status: 403 }, 'another session\'s');
  t.match(await del({ Cookie: s.cookie, 'X-CSRF-Token': s.csrf, Origin: 'http://evil.example' }), { status: 403, json: { error: /cross-origin/ } }, 'a foreign Origin');
  t.equal(daemon.service.count((m) => m.internalPort === 42001), 1, 'nothing was removed');
  const ok = await del({ Cookie: s.cookie, 'X-CSRF-Token': s.csrf, Origin: `http://127.0.0.1:${port}` });
  t.equal(ok.status, 200, 'the right token and this Origin');
  await pcpMap('127.0.0.4', 42002);
  const id2 = String(daemon.service.mappings((m) => m.internalPort === 42002)[0]?.id);
  t.equal((await http('DELETE', `/api/openings/${id2}`, { headers: bearer() })).status, 200, 'bearer: no CSRF token needed');
});

t.test('openings: a real PCP and NAT-PMP mapping with ids and devices, the statics; DELETE removes from service and firewall', async (t) => {
  await pcpMap('127.0.0.4', 41001);
  t.match(decodeNatPmpResponse(await ask('127.0.0.1', encodeNatPmpMapRequest(2, 41002, 41002, 600))), { ok: true, msg: { result: 0 } });
  const r = await http('GET', '/api/openings', { headers: bearer() });
  t.equal(r.status, 200);
  const openings = r.json.openings as Opening[];
  const pcp = openings.find((o): o is MappingOpening => o.kind === 'map' && o.internal.port === 41001);
  t.match(pcp, { id: /^\d+$/, origin: 'pcp', protocol: 'udp', family: 4, device: '02:00:00:00:00:04', internal: { address: '127.0.0.4', port: 41001 }, external: { address: '198.51.100.1', port: Number }, client: '127.0.0.4', secondsLeft: Number, packets: null });
  t.ok(pcp && pcp.secondsLeft !== null && pcp.secondsLeft > 590 && pcp.secondsLeft <= 600, 'time left');
  t.match(openings.find((o) => o.kind === 'map' && o.internal.port === 41002), { origin: 'natpmp', protocol: 'tcp', device: '127.0.0.1' });
  t.match(openings.find((o) => o.kind === 'static-forward'), { name: 'game', origin: 'static', secondsLeft: null, internal: { address: '127.0.0.6', port: 3075 }, external: { port: 3074 } });
  t.match(openings.find((o) => o.kind === 'static-pinhole'), { id: 'static-web', name: 'web', protocols: ['tcp'], ports: [{ min: 443, max: 443 }], to: '::1', devices: ['02:00:00:00:00:04'] });
  t.equal(openings.filter((o) => o.kind !== 'static-pinhole').length, daemon.service.count(), 'every live mapping is listed');

  const fw = daemon.firewall as MemoryFirewall;
  t.ok(fw.list().some((e) => e.internalPort === 41001), 'in the firewall first');
  const one = await http('GET', `/api/openings/${pcp?.id}`, { headers: bearer() });
  t.match(one, { status: 200, json: { id: pcp?.id, internal: { port: 41001 } } }, 'one opening by its id');
  const del = await http('DELETE', `/api/openings/${pcp?.id}`, { headers: bearer() });
  t.match(del, { status: 200, json: { removed: { id: pcp?.id } } });
  t.equal(daemon.service.count((m) => m.internalPort === 41001), 0, 'gone from the service');
  t.notOk(fw.list().some((e) => e.internalPort === 41001), 'gone from the firewall');
  t.ok(log.lines.some((l) => l.event === 'mapping-removed' && l.by === 'admin' && l.internalPort === 41001), 'logged as the admin\'s removal');
  t.match(await http('DELETE', `/api/openings/${pcp?.id}`, { headers: bearer() }), { status: 404, json: { error: /no opening/ } }, 'twice: 404');

  const forward = openings.find((o) => o.kind === 'static-forward');
  t.match(await http('DELETE', `/api/openings/${forward?.id}`, { headers: bearer() }), { status: 409, json: { error: /static opening 'game' of the policy file: remove it with DELETE \/api\/statics\/game/ } });
  t.match(await http('DELETE', '/api/openings/static-web', { headers: bearer() }), { status: 409, json: { error: /static opening 'web'.*DELETE \/api\/statics\/web/ } });
  t.equal(daemon.service.count((m) => m.origin === 'static'), 1, 'the static forward stays');
});

t.test('devices: one link-layer address with all its addresses, named by its lease; devices with nothing open; no WAN neighbour', async (t) => {
  await pcpMap('127.0.0.2', 43001);
  const r = await http('GET', '/api/devices', { headers: bearer() });
  t.equal(r.status, 200);
  const devices = r.json.devices as DeviceView[];
  const byId = new Map(devices.map((d) => [d.id, d]));
  const four = byId.get('02:00:00:00:00:04');
  t.match(four, { lladdr: '02:00:00:00:00:04', interfaces: ['lo'] });
  t.same([...(four?.addresses ?? [])].sort(), ['127.0.0.4', '::1'], 'both addresses of the device');
  t.ok(four?.openings.includes('static-web'), 'the static pinhole that applies to it');
  t.match(byId.get('02:00:00:00:00:09'), { addresses: ['127.0.0.9'], openings: [] }, 'nothing open, listed');
  t.equal(byId.get('02:00:00:00:00:09')?.name, null, 'not named from an ended lease, nor from a live one of another hardware address');
  t.notOk(byId.has('02:00:00:00:00:99') || byId.has('02:00:00:00:00:98'), 'nor are those leases devices at an address another holds');
  const laptop = byId.get('02:00:00:00:00:02');
  t.match(laptop, { name: 'laptop', addresses: ['127.0.0.2'] }, 'named by its DHCP lease');
  t.same(laptop?.openings, [String(daemon.service.mappings((m) => m.internalPort === 43001)[0]?.id)], 'its opening by id');
  t.notOk(byId.has('02:00:00:00:00:fe'), 'a WAN neighbour is no device of the LAN');
  t.match(byId.get('127.0.0.6'), { lladdr: null, addresses: ['127.0.0.6'] }, 'an address nothing knows is its own device');
});

t.test('events: a stream that hears of a new mapping without asking again', async (t) => {
  const events: string[] = [];
  const ended = new Promise<void>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/api/events', headers: bearer(), agent: false }, (res) => {
      t.equal(res.statusCode, 200);
      t.match(res.headers['content-type'], /^text\/event-stream/);
      res.on('data', (d: Buffer) => {
        events.push(d.toString());
        if (events.join('').includes('event: openings')) {
          req.destroy();
          resolve();
        }
      });
    });
    req.on('error', (err) => (err.message.includes('aborted') ? resolve() : reject(err)));
    req.end();
  });
  await until(() => events.join('').includes('event: hello'), 10_000);
  t.match(events.join(''), /event: hello\ndata: \{"changes":\d+\}/, 'the hello');
  await pcpMap('127.0.0.4', 44001);
  await Promise.race([ended, new Promise((_, reject) => setTimeout(() => reject(new Error(`no event; heard: ${events.join('')}`)), 10_000))]);
  t.match(events.join(''), /event: openings\ndata: \{"changes":\d+\}/);
});

t.test('hostile input: oversized bodies 413, path tricks and bad ids 400, unknown 404, statics without a policy file 409 — each with a JSON error', async (t) => {
  const big = JSON.stringify({ token: 'a'.repeat(MAX_BODY_BYTES) });
  t.match(await http('POST', '/api/login', { headers: { 'Content-Type': 'application/json' }, body: big, from: '127.0.0.8' }), { status: 413, json: { error: /at most 4096 bytes/ } }, 'Content-Length over the limit');
  t.match(await http('POST', '/api/login', { headers: { 'Content-Type': 'application/json' }, body: big, from: '127.0.0.8', chunked: true }), { status: 413, json: { error: /at most/ } }, 'chunked, over the limit as it streams');
  const h = { headers: bearer() };
  for (const path of ['/api/openings/../x', '/api/openings/%2e%2e/x', '/api/%2e%2e/openings', '/api/./openings', '//api/openings', '/api/openings/', '/api/openings\\..\\x']) {
    t.match(await http('GET', path, h), { status: 400, json: { error: /segments|percent-encoding|backslash/ } }, path);
  }
  for (const id of ['abc', '-1', '1e3', '0x10', '9'.repeat(16), 'static-', 'static-..']) {
    const r = await http('DELETE', `/api/openings/${id}`, h);
    t.equal(r.status, 400, `id ${id}`);
    t.match(r.json, { error: /(opening id is a whole number|segments)/ });
  }
  t.match(await http('DELETE', '/api/openings/987654', h), { status: 404, json: { error: /no opening 987654/ } });
  t.match(await http('DELETE', '/api/openings/static-../x', h), { status: 404, json: { error: /no such resource/ } });
  t.match(await http('GET', '/api/openings/1/x', h), { status: 404, json: { error: /no such resource/ } });
  t.match(await http('GET', '/api/nothing', h), { status: 404 });
  t.match(await http('GET', '/index.html', h), { status: 404, json: { error: /under \/api/ } });
  t.match(await http('PUT', '/api/openings', h), { status: 405, headers: { allow: 'GET' } });
  t.match(await http('POST', '/api/statics', { headers: { ...bearer(), 'Content-Type': 'application/json' }, body: '{}' }), { status: 400, json: { error: /device: expected/ } });
  const noFile = await http('POST', '/api/statics', { ...json({ device: '52:54:00:12:34:56', protocol: 'tcp', port: 443 }), headers: { ...bearer(), 'Content-Type': 'application/json' } });
  t.match(noFile, { status: 409, json: { error: /built-in default policy \(no --policy file\).*start it with --policy FILE/ } }, 'no policy file: said, nothing done');
  t.match(await http('DELETE', '/api/statics/web', h), { status: 409, json: { error: /no --policy file/ } });
  t.match(await http('GET', `/api/openings?${'x'.repeat(2000)}`, h), { status: 414 });
  const huge = await http('GET', '/api/openings', { headers: { ...bearer(), 'X-Filler': 'y'.repeat(16 * 1024) } });
  t.equal(huge.status, 431, 'headers over the limit');
  t.match(huge, { headers: { 'content-type': 'application/json; charset=utf-8' }, json: { error: /headers are larger than 8192 bytes/ } }, 'said in JSON as every other error');
  // Not HTTP at all: the parser's 400, in JSON too, and the connection closed.
  const raw = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.12' });
  let heard = '';
  raw.on('data', (d: Buffer) => (heard += d.toString()));
  raw.write('NOT HTTP\r\n\r\n');
  t.ok(await until(() => raw.readableEnded || raw.destroyed, 10_000), 'closed after the answer');
  raw.destroy();
  t.match(heard, /^HTTP\/1\.1 400 Bad Request\r\n[^]*Content-Type: application\/json; charset=utf-8\r\n[^]*\r\n\r\n\{"error":"not a well-formed HTTP\/1\.1 request"\}$/, 'a malformed request: 400 with a JSON error');
});

t.test('a Host that is not this router (DNS rebinding): 403 for the API and the page alike; its own addresses and localhost pass', async (t) => {
  // This machine's own name as the daemon derives it (its first label); a
  // machine called localhost, or one with an odd name, has none of its own.
  const own = hostname().toLowerCase().split('.')[0] ?? '';
  const hasOwn = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(own) && own !== 'localhost';
  for (const host of ['evil.example', `evil.example:${port}`, `not-${own}.lan`, `${own}.lan.evil.example`, `router.example.net.evil.example`, `${own}.rebind.example`, '198.51.100.1', `127.0.0.1.nip.io:${port}`, '[::1']) {
    const r = await http('GET', '/api/openings', { headers: { ...bearer(), Host: host } });
    t.match(r, { status: 403, json: { error: /Host header names neither this router's address, its host name nor localhost.*add the name you use to admin\.hostNames/ } }, `Host: ${host}`);
  }
  t.equal((await http('GET', '/', { headers: { Host: 'evil.example' } })).status, 403, 'the page too');
  t.equal((await http('POST', '/api/login', { ...json({ token }), headers: { 'Content-Type': 'application/json', Host: 'evil.example' } })).status, 403, 'and the login');
  // The router's own name, alone or under a suffix nobody can register on the internet, and the config's names.
  const names = [...(hasOwn ? [own, `${own}.lan`, `${own.toUpperCase()}.LAN:${port}`, `${own}.local`, `${own}.home.arpa.`] : []), 'router.example.net', `Router.Example.Net:${port}`];
  for (const host of [`127.0.0.1:${port}`, 'localhost:8080', 'localhost', `[::1]:${port}`, '127.0.0.1', ...names]) {
    t.equal((await http('GET', '/api/openings', { headers: { ...bearer(), Host: host } })).status, 200, `Host: ${host}`);
  }
});

t.test('the host names the page may be opened at', async (t) => {
  t.same(adminHostNames('OpenWrt', []), ['openwrt', 'openwrt.lan', 'openwrt.local', 'openwrt.home.arpa'], 'the router\'s own name, lower-cased, alone and under the local-only suffixes');
  t.same(adminHostNames('gw', ['Router.Example.Net', 'gw.lan']), ['gw', 'gw.lan', 'gw.local', 'gw.home.arpa', 'router.example.net'], 'and the config\'s, once each');
  t.same(adminHostNames('localhost', []), [], 'a machine called localhost adds nothing');
  t.same(adminHostNames('bad_name!', ['x.example']), ['x.example'], 'nor does a name that is not a host name');
  t.same(adminHostNames('GW.Example.Net.', []), ['gw.example.net', 'gw', 'gw.lan', 'gw.local', 'gw.home.arpa'], 'a full name: itself, and its first label as a short name');
  t.same(adminHostNames('localhost.localdomain', []), [], 'localhost by any full name adds nothing');
});

t.test('--admin refuses the WAN, a wildcard and a malformed address before anything starts', async (t) => {
  const lan = ['192.168.1.1', '2001:db8::1'];
  t.match(parseAdminListen('192.168.1.1:8080', lan), { address: '192.168.1.1', port: 8080, loopback: false });
  t.match(parseAdminListen('[::1]:8080', lan), { loopback: true });
  t.throws(() => parseAdminListen('0.0.0.0:8080', lan), /listens on every address, the WAN's too/);
  t.throws(() => parseAdminListen('[::]:8080', lan), /listens on every address/);
  t.throws(() => parseAdminListen('198.51.100.1:8080', lan), /not one of the LAN's addresses; the admin page never faces the WAN/);
  t.throws(() => parseAdminListen('192.168.1.1', lan), /expected ADDR:PORT/);
  t.throws(() => parseAdminListen('192.168.1.1:0', lan), /expected ADDR:PORT/);

  const { tcp: wanPort, udp: pcpPort } = await freePorts();
  const state = mkdtempSync(join(tmpdir(), 'portcullis-admin-wan-'));
  const bad = { ...cfg, stateDir: state, port: pcpPort, admin: { listen: `198.51.100.1:${wanPort}` } };
  await t.rejects(startDaemon(bad, memoryLogger(), { interfaces, policy }), new ConfigError(`--admin "198.51.100.1:${wanPort}": 198.51.100.1 is not one of the LAN's addresses; the admin page never faces the WAN (192.168.1.1:8080, or 127.0.0.1:8080 behind an SSH tunnel)`));
  await t.rejects(startDaemon({ ...bad, admin: { listen: `0.0.0.0:${wanPort}` } }, memoryLogger(), { interfaces, policy }), { message: /listens on every address/ });
  await t.rejects(startDaemon({ ...bad, admin: { listen: `127.0.0.1:${wanPort}`, passwordHash: 'plain' } }, memoryLogger(), { interfaces, policy }), /admin.passwordHash: not in the expected format/);
});

t.test('password hashes: made and checked; a hash asking too much memory is refused', async (t) => {
  const h = await hashPassword('pw', { N: 1024, r: 8, p: 1 });
  t.match(h, /^scrypt\$1024\$8\$1\$/);
  t.equal(await checkPassword('pw', parsePasswordHash(h)), true);
  t.equal(await checkPassword('pW', parsePasswordHash(h)), false);
  t.throws(() => parsePasswordHash(h.replace('$1024$', '$1048576$')), /not usable/);
  t.throws(() => parsePasswordHash(h.replace('$1024$', '$1000$')), /not usable/);
});

t.test('docs/admin-api.yaml names exactly the server\'s route table, and the server answers each route by it', async (t) => {
  const doc = parseYaml(readFileSync(new URL('../../docs/admin-api.yaml', import.meta.url), 'utf8')) as { openapi: string; paths: Record<string, Record<string, unknown>> };
  t.equal(doc.openapi, '3.1.0');
  const methods = ['get', 'post', 'put', 'patch', 'delete'];
  const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).filter((m) => methods.includes(m)).map((m) => `${m.toUpperCase()} ${path}`));
  const served = Object.entries(ROUTES).flatMap(([path, ms]) => ms.map((m) => `${m} ${path}`));
  t.same(documented.filter((r) => !served.includes(r)), [], 'every documented route is in the table');
  t.same(served.filter((r) => !documented.includes(r)), [], 'every route of the table is documented');
  for (const [path, allowed] of Object.entries(ROUTES)) {
    const concrete = path.replace('{id}', 'static-web').replace('{name}', 'web');
    for (const method of allowed) {
      if (path === '/api/events' || path === '/api/logout') continue;
      const r = await http(method, concrete, { headers: { ...bearer(), 'Content-Type': 'application/json' }, body: method === 'POST' ? '{}' : undefined, from: '127.0.0.10' });
      t.not(r.status, 405, `${method} ${path} is answered`);
      t.notMatch(r.json, { error: /no such resource/ }, `${method} ${path} is routed`);
    }
    const other = ['GET', 'POST', 'PUT', 'DELETE'].find((m) => !(allowed as readonly string[]).includes(m)) as string;
    t.match(await http(other, concrete, { headers: bearer(), from: '127.0.0.10' }), { status: 405, headers: { allow: allowed.join(', ') } }, `${other} ${path}: 405, Allow from the table`);
  }
});

t.test('a sender that never finishes its headers is cut off within seconds (slow-loris)', async (t) => {
  const started = Date.now();
  const sock = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.11' });
  sock.on('data', () => undefined);
  sock.write(`GET /api/openings HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: `);
  const closed = await new Promise<boolean>((resolve) => {
    sock.once('close', () => resolve(true));
    setTimeout(() => resolve(false), 20_000);
  });
  sock.destroy();
  t.ok(closed, 'closed');
  // The headers timeout is 5 s; this bound only catches a hang, a loaded machine may run late.
  t.ok(Date.now() - started < 15_000, `within 15 s (${Date.now() - started} ms)`);
});
