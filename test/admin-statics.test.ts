// POST /api/statics and DELETE /api/statics/{name}: the whole daemon
// in-process (memory backend) with a real policy file, spoken to over real
// HTTP. What must hold: nobody without a credential or a CSRF token changes
// anything; every field of a hostile body gets a 400 that names it; a clash
// is 409 and an unknown name 404; a success changes the file (backup kept),
// the service and the firewall, and the listings show the device opening on
// its device; concurrent edits all land; a read-only or broken file is
// refused with nothing written; the opening follows the neighbour table.

import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir, type NetworkInterfaceInfo } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { DEFAULTS, type Config } from '../src/config.js';
import { startDaemon, type Daemon } from '../src/daemon.js';
import type { MemoryFirewall } from '../src/firewall/memory.js';
import { mustParseIp } from '../src/net/address.js';
import type { Neighbour } from '../src/net/neighbours.js';
import { loadPolicyFile } from '../src/policy/load.js';
import type { DeviceStaticOpening, DeviceView, Opening } from '../src/server/admin/views.js';
import { eventStream } from './helpers/event-stream.js';
import { memoryLogger } from './helpers/memory-logger.js';
import { until } from './helpers/wait.js';

const MAC = '02:00:00:00:00:04';
const DIR = mkdtempSync(join(tmpdir(), 'portcullis-statics-'));
const POLICY = join(DIR, 'policy.yaml');
const ORIGINAL = `# Edited by the tests through the admin API.
version: 1
rules:
  - { name: lan, action: allow, match: { internalPorts: 1024-65535 } }   # anyone
static:
  # An address pinhole the device's address matches.
  - name: web
    pinhole: { to: "2001:db8::4/128", protocol: tcp, ports: 443 }
`;
writeFileSync(POLICY, ORIGINAL);
writeFileSync(join(DIR, 'dhcp.leases'), `0 ${MAC} 192.0.2.4 nas *\n`);
/** The neighbour table the daemon reads: tests move the device's addresses. */
let table: Neighbour[] = [
  { address: mustParseIp('2001:db8::4'), interface: 'lo', lladdr: MAC },
  { address: mustParseIp('fe80::4'), interface: 'lo', lladdr: MAC },
  { address: mustParseIp('192.0.2.4'), interface: 'lo', lladdr: MAC },
  { address: mustParseIp('2001:db8:ff::9'), interface: 'wan0', lladdr: MAC },
];
const nic = (address: string, cidr: string, internal: boolean): NetworkInterfaceInfo => ({ address, cidr, internal, netmask: '', family: 'IPv4', mac: '02:00:00:00:00:01' }) as NetworkInterfaceInfo;
const interfaces = (): NodeJS.Dict<NetworkInterfaceInfo[]> => ({ lo: [nic('127.0.0.1', '127.0.0.1/8', true)], wan0: [nic('198.51.100.1', '198.51.100.1/24', false)] });

let daemon: Daemon;
let port: number;
let token: string;

interface Answer {
  status: number;
  json: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
}
function http(method: string, path: string, body?: unknown, headers: Record<string, string> = { Authorization: `Bearer ${token}` }): Promise<Answer> {
  const text = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const h = { ...headers, ...(text !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(text)) } : {}) };
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers: h, agent: false }, (res) => {
      let got = '';
      res.on('data', (d: Buffer) => (got += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: got ? (JSON.parse(got) as Record<string, unknown>) : {}, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(text);
  });
}
const open = (body: Record<string, unknown>) => http('POST', '/api/statics', body);
const policyText = () => readFileSync(POLICY, 'utf8');
const statics = () => (daemon.firewall as MemoryFirewall).statics;

t.before(async () => {
  const tcp = createServer().listen(0, '127.0.0.1');
  const udp = createSocket('udp4').bind(0, '127.0.0.1');
  await Promise.all([once(tcp, 'listening'), once(udp, 'listening')]);
  port = (tcp.address() as AddressInfo).port;
  const udpPort = udp.address().port;
  tcp.close();
  udp.close();
  const cfg: Config = {
    ...DEFAULTS,
    stateDir: join(DIR, 'state'),
    lan: ['lo'],
    wans: ['wan0'],
    backend: 'memory',
    port: udpPort,
    announce: false,
    policy: POLICY,
    dhcpLeases: join(DIR, 'dhcp.leases'),
    upnp: { ...DEFAULTS.upnp, enabled: false },
    admin: { listen: `127.0.0.1:${port}` },
  };
  daemon = await startDaemon(cfg, memoryLogger(), { interfaces, neighbours: async () => table });
  token = readFileSync(join(DIR, 'state', 'admin.token'), 'utf8').trim();
});
t.teardown(() => daemon?.stop());

t.test('no credential: 401; a session without its CSRF token or from another origin: 403; nothing written', async (t) => {
  const body = { device: MAC, protocol: 'tcp', port: 8080 };
  t.match(await http('POST', '/api/statics', body, {}), { status: 401, json: { error: /not logged in/ } });
  t.match(await http('DELETE', '/api/statics/web', undefined, {}), { status: 401 });
  t.match(await http('POST', '/api/statics', body, { Authorization: `Bearer ${'0'.repeat(64)}` }), { status: 401, json: { error: /wrong bearer token/ } });
  const login = await http('POST', '/api/login', { token }, {});
  const cookie = String((login.headers['set-cookie'] as string[])[0]).split(';')[0] as string;
  t.match(await http('POST', '/api/statics', body, { Cookie: cookie }), { status: 403, json: { error: /X-CSRF-Token/ } });
  t.match(await http('DELETE', '/api/statics/web', undefined, { Cookie: cookie, 'X-CSRF-Token': 'x'.repeat(43) }), { status: 403 });
  t.match(await http('POST', '/api/statics', body, { Cookie: cookie, 'X-CSRF-Token': login.json.csrf as string, Origin: 'http://evil.example' }), { status: 403, json: { error: /cross-origin/ } });
  t.equal(policyText(), ORIGINAL, 'the file is untouched');
});

t.test('hostile bodies: each field refused with a 400 that names it; oversized 413', async (t) => {
  const ok = { device: MAC, protocol: 'tcp', port: 8080 };
  const cases: [unknown, RegExp][] = [
    ['not json', /not JSON/],
    [[1, 2], /JSON object/],
    [{ ...ok, device: '02:00:00:00:00' }, /^device: expected/],
    [{ ...ok, device: '02-00-00-00-00-04' }, /^device: expected/],
    [{ ...ok, device: '01:00:5e:00:00:01' }, /^device: a group \(multicast\)/],
    [{ ...ok, device: 42 }, /^device: expected/],
    [{ ...ok, protocol: 'sctp' }, /^protocol: expected "tcp" or "udp"/],
    [{ ...ok, port: 0 }, /^port: expected a whole number from 1 to 65535/],
    [{ ...ok, port: 65536 }, /^port:/],
    [{ ...ok, port: '443' }, /^port:/],
    [{ ...ok, port: 44.5 }, /^port:/],
    [{ device: MAC, protocol: 'tcp' }, /exactly one of port/],
    [{ ...ok, ports: '1-2' }, /exactly one of port/],
    [{ device: MAC, protocol: 'tcp', ports: '9000-8000' }, /^ports: expected a range/],
    [{ device: MAC, protocol: 'tcp', ports: '1000-2000' }, /^ports: at most 64 ports/],
    [{ ...ok, description: 'x'.repeat(501) }, /^description: expected text of at most 500/],
    [{ ...ok, description: 'two\nlines' }, /^description:/],
    [{ ...ok, name: '../etc' }, /^name: expected letters/],
    [{ ...ok, name: 'a'.repeat(64) }, /^name:/],
    [{ ...ok, admin: true }, /^unknown field "admin"/],
  ];
  for (const [body, error] of cases) t.match(await http('POST', '/api/statics', body), { status: 400, json: { error } }, JSON.stringify(body).slice(0, 60));
  t.match(await http('POST', '/api/statics', { ...ok, description: 'y'.repeat(5000) }), { status: 413, json: { error: /at most 4096 bytes/ } });
  t.match(await http('DELETE', '/api/statics/-web'), { status: 400, json: { error: /static opening's name/ } });
  t.match(await http('DELETE', '/api/statics/web/x'), { status: 404, json: { error: /no such resource/ } });
  t.match(await http('DELETE', '/api/statics/%2e%2e'), { status: 400 });
  t.match(await http('PUT', '/api/statics'), { status: 405, headers: { allow: 'POST' } });
  t.match(await http('DELETE', '/api/statics'), { status: 405 });
  t.match(await http('DELETE', '/api/statics/nothing-here'), { status: 404, json: { error: /no static opening named "nothing-here"/ } });
  t.equal(policyText(), ORIGINAL, 'the file is untouched');
});

let name = '';

t.test('201: the device opening is in the file, the service, the firewall and both listings', async (t) => {
  const r = await open({ device: MAC.toUpperCase(), protocol: 'tcp', port: 8443, description: 'HTTPS to the NAS' });
  t.equal(r.status, 201, JSON.stringify(r.json));
  const [o] = r.json.openings as DeviceStaticOpening[];
  t.match(o, { id: 'static-nas-tcp-8443', kind: 'static-device', origin: 'static', static: 'nas-tcp-8443', device: MAC, description: 'HTTPS to the NAS', protocols: ['tcp'], ports: [{ min: 8443, max: 8443 }], ipv6: ['2001:db8::4'], ipv4: '192.0.2.4' });
  name = o?.static ?? '';
  t.match(policyText(), new RegExp(`^${ORIGINAL.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}  - name: nas-tcp-8443\\n    description: HTTPS to the NAS\\n    device:\\n      mac: "${MAC}"\\n`), 'appended, the rest byte for byte, named after its DHCP lease');
  t.equal(readFileSync(`${POLICY}.bak`, 'utf8'), ORIGINAL, 'the backup');
  t.match(daemon.service.mappings((m) => m.origin === 'static'), [{ internalAddress: '192.0.2.4', internalPort: 8443, externalPort: 8443, description: `static:${name}` }], 'the IPv4 forward in the service');
  t.match(statics().filter((s) => s.kind === 'pinhole' && s.device === MAC).map((s) => (s.kind === 'pinhole' ? s.to.text : '')), ['2001:db8::4'], 'the pinhole in the firewall; not the link-local or WAN address');

  const list = (await http('GET', '/api/openings')).json.openings as Opening[];
  t.equal(list.filter((x) => 'static' in x && x.static === name).length, 1, 'one opening: its forward is not listed apart');
  const forward = daemon.service.mappings((m) => m.description === `static:${name}`)[0];
  t.match(await http('GET', `/api/openings/${forward?.id}`), { status: 404, json: { error: /no opening/ } }, 'nor answered apart by its id');
  t.match(await http('DELETE', `/api/openings/${forward?.id}`), { status: 404 }, 'nor removed by it');
  const devices = (await http('GET', '/api/devices')).json.devices as DeviceView[];
  t.match(devices.find((d) => d.id === MAC), { lladdr: MAC, name: 'nas', openings: [`static-${name}`, 'static-web'], statics: [name, 'web'] }, 'the device opening and the address pinhole that matches it');
  t.match(await http('DELETE', `/api/openings/static-${name}`), { status: 409, json: { error: new RegExp(`DELETE /api/statics/${name}`) } }, 'the openings route points at the statics route');
});

t.test('409 on a name or a port in use; generated names stay unique; concurrent edits all land', async (t) => {
  const before = policyText();
  t.match(await open({ device: MAC, protocol: 'udp', port: 9999, name }), { status: 409, json: { error: /already in/ } });
  t.match(await open({ device: '02:00:00:00:00:05', protocol: 'tcp', port: 8443 }), { status: 409, json: { error: /tcp\/8443 is already forwarded/ } });
  t.equal(policyText(), before, 'nothing written');
  const many = await Promise.all([9001, 9002, 9003, 9004, 9005].map((p) => open({ device: '02:00:00:00:00:05', protocol: 'udp', ports: `${p}-${p}` })));
  t.same(many.map((r) => r.status), [201, 201, 201, 201, 201]);
  const names = loadPolicyFile(POLICY).statics.map((s) => s.name);
  t.same(names.slice(2).sort(), ['device-020000000005-udp-9001', 'device-020000000005-udp-9002', 'device-020000000005-udp-9003', 'device-020000000005-udp-9004', 'device-020000000005-udp-9005']);
  t.equal(new Set(names).size, names.length, 'distinct names');
  const again = await open({ device: MAC, protocol: 'udp', port: 8443 });
  t.match(again, { status: 201, json: { openings: [{ static: 'nas-udp-8443' }] } });
  t.equal((await open({ device: MAC, protocol: 'udp', ports: '7000-7001', description: 'again' })).status, 201);
  for (const p of [9001, 9002, 9003, 9004, 9005]) t.equal((await http('DELETE', `/api/statics/device-020000000005-udp-${p}`)).status, 204);
  t.equal((await http('DELETE', '/api/statics/nas-udp-8443')).status, 204);
  t.equal((await http('DELETE', '/api/statics/nas-udp-7000-7001')).status, 204);
});

t.test('the opening follows the neighbour table', async (t) => {
  table = [...table, { address: mustParseIp('2001:db8::44'), interface: 'lo', lladdr: MAC }];
  const deadline = Date.now() + 20_000;
  let o: DeviceStaticOpening | undefined;
  while (Date.now() < deadline) {
    o = (await http('GET', `/api/openings/static-${name}`)).json as unknown as DeviceStaticOpening;
    if (o.ipv6.includes('2001:db8::44')) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  t.same(o?.ipv6, ['2001:db8::4', '2001:db8::44'], 'the new address opened');
  t.ok(statics().some((s) => s.kind === 'pinhole' && s.to.text === '2001:db8::44'), 'in the firewall');
  table = table.filter((n) => n.address !== '2001:db8::44');
  const gone = Date.now() + 20_000;
  while (Date.now() < gone && statics().some((s) => s.kind === 'pinhole' && s.to.text === '2001:db8::44')) await new Promise((r) => setTimeout(r, 250));
  t.notOk(statics().some((s) => s.kind === 'pinhole' && s.to.text === '2001:db8::44'), 'gone with the neighbour entry');
});

t.test('live events: a hand edit reloaded, and a device coming to the LAN, each raise one though no mapping changed', async (t) => {
  const events = await eventStream(port, { Authorization: `Bearer ${token}` });
  t.teardown(() => events.close());
  const before = policyText();
  const mappings = daemon.service.changes();
  const heard = events.openings();
  writeFileSync(POLICY, before.replace('static:\n', 'static:\n  - { name: by-hand, pinhole: { to: "2001:db8::10/128", protocol: udp, ports: 5353 } }\n'));
  await daemon.reloadPolicy();
  // The page's fallback reload is 30 s away: the event comes within a poll or two.
  t.ok(await until(() => events.openings() > heard, 10_000), `an event after the reload (heard: ${events.text()})`);
  t.equal(daemon.service.changes(), mappings, 'no mapping changed: the event is the policy\'s');
  const reloaded = events.openings();
  writeFileSync(POLICY, before);
  await daemon.reloadPolicy();
  t.ok(await until(() => events.openings() > reloaded, 10_000), 'and one after it was undone');

  const settled = events.openings();
  table = [...table, { address: mustParseIp('2001:db8::77'), interface: 'lo', lladdr: '02:00:00:00:00:77' }];
  t.ok(await until(() => events.openings() > settled, 15_000), 'an event when a new device is in the neighbour table');
  t.equal(daemon.service.changes(), mappings, 'still no mapping changed');
  table = table.filter((n) => n.address !== '2001:db8::77');
});

t.test('an edit from the page while the file holds hand edits not yet reloaded: 409, said, nothing written or put in force', async (t) => {
  const before = policyText();
  const handEdited = before.replace('static:\n', 'static:\n  - { name: unreloaded, pinhole: { to: "2001:db8::11/128", protocol: udp, ports: 5354 } }\n');
  writeFileSync(POLICY, handEdited);
  const refused = /the policy file .* has changed on disk since it was loaded; reload it first \(portcullis policy reload\) or undo the change/;
  t.match(await open({ device: MAC, protocol: 'udp', port: 5002 }), { status: 409, json: { error: refused } });
  t.match(await http('DELETE', `/api/statics/${name}`), { status: 409, json: { error: refused } }, 'a removal too');
  t.equal(policyText(), handEdited, 'the file as the admin left it');
  t.notOk(daemon.policy().statics.some((s) => s.name === 'unreloaded'), 'the hand edit is not in force');
  t.notOk(statics().some((s) => s.name === 'unreloaded'), 'nor in the firewall');
  await daemon.reloadPolicy();
  t.match(await open({ device: MAC, protocol: 'udp', port: 5002 }), { status: 201, json: { openings: [{ static: 'nas-udp-5002' }] } }, 'reloaded: the edit goes through');
  t.equal((await http('DELETE', '/api/statics/nas-udp-5002')).status, 204);
  t.equal((await http('DELETE', '/api/statics/unreloaded')).status, 204);
  t.equal(policyText(), before);
});

t.test('a read-only file or one broken by hand: refused, said clearly, nothing written', async (t) => {
  const before = policyText();
  chmodSync(POLICY, 0o444);
  t.match(await open({ device: MAC, protocol: 'udp', port: 5000 }), { status: 403, json: { error: /is read-only: nothing was changed/ } });
  t.match(await http('DELETE', `/api/statics/${name}`), { status: 403 });
  chmodSync(POLICY, 0o644);
  t.equal(policyText(), before);
  writeFileSync(POLICY, `${before}  - name: [broken\n`);
  t.match(await open({ device: MAC, protocol: 'udp', port: 5000 }), { status: 409, json: { error: /does not parse now.*fix it by hand/ } });
  writeFileSync(POLICY, before);
});

t.test('the firewall refuses the edited policy: 500, and the previous file is put back and in force', async (t) => {
  const fw = daemon.firewall as MemoryFirewall;
  const before = policyText();
  const inForce = fw.statics;
  const real = fw.setStatics.bind(fw);
  let refused = 0;
  fw.setStatics = async (s) => {
    if (s.some((x) => x.name === 'refused-by-kernel')) {
      refused++;
      throw new Error('the kernel said no');
    }
    return real(s);
  };
  t.teardown(() => void (fw.setStatics = real));
  const r = await open({ device: MAC, protocol: 'udp', port: 5001, name: 'refused-by-kernel' });
  t.match(r, { status: 500, json: { error: /could not be put in force \(the kernel said no\); the previous file was put back/ } });
  t.equal(refused, 1);
  t.equal(policyText(), before, 'the file as it was');
  t.same(fw.statics, inForce, 'the firewall as it was');
  t.notOk(daemon.policy().statics.some((s) => s.name === 'refused-by-kernel'), 'the policy in force as it was');
  t.equal(daemon.service.count((m) => m.externalPort === 5001), 0, 'and the service holds no forward of it');
});

t.test('204: removed from the file, the service and the firewall; any kind of static opening', async (t) => {
  t.equal((await http('DELETE', `/api/statics/${name}`)).status, 204);
  t.notMatch(policyText(), /nas-tcp-8443/);
  t.equal(daemon.service.count((m) => m.origin === 'static'), 0, 'the forward left the service');
  t.notOk(statics().some((s) => s.name === name), 'and the firewall');
  t.equal((await http('DELETE', `/api/statics/${name}`)).status, 404, 'twice: 404');
  t.equal((await http('DELETE', '/api/statics/web')).status, 204, 'an address pinhole too');
  t.equal(policyText(), ORIGINAL.replace(/static:\n[^]*$/, 'static: []\n'), 'the rest of the file as it was');
  t.same(statics(), []);
});
