// Device openings from the admin API, in the lab: real nftables, real traffic
// from the WAN host. The LAN host is opened by its link-layer address; the
// policy file on disk says so with its comments kept; the opening follows
// the host to a new IPv6 address as the router's neighbour table learns it,
// closes the address once it leaves the table, and goes entirely (kernel and
// file) with DELETE.

import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { CLI, labUp, stateDir, waitForLine, type Lab } from './helpers/lab.js';
import { reaches } from './helpers/reach.js';

const lab: Lab = labUp(`pst${process.pid % 10000}`);
t.teardown(() => lab.down());

const ADMIN = 'http://192.168.77.1:9352';
const DIR = stateDir();
const STATE = join(DIR, 'state');
const POLICY = join(DIR, 'policy.yaml');
// Comments, odd spacing and a flow mapping: all must survive the edits.
const ORIGINAL = `# The lab's policy. The admin page edits only the static list below.
version: 1

rules:
  - name: everyone-high      # any LAN host, its own high ports
    action: allow
    match: { internalPorts: 1024-65535 }

static:
  # lan2's game server: an address forward, untouched by device openings.
  - name: game
    forward: { protocol: udp, port: 3074, to: 192.168.77.3 }
`;
writeFileSync(POLICY, ORIGINAL);
writeFileSync(join(DIR, 'config.json'), JSON.stringify({ lan: ['br-lan'], wan: 'wan0', stateDir: STATE, policy: POLICY, admin: { listen: '192.168.77.1:9352' } }));
let daemon: ChildProcess;
let token = '';
const lines: string[] = [];

const MAC = (JSON.parse(lab.exec('lan', ['ip', '-j', 'link', 'show', 'eth0']).stdout) as { address: string }[])[0]?.address ?? '';

/** curl from the LAN host with the token: the status and the parsed body. */
function api(method: string, path: string, body?: unknown): { status: number; json: Record<string, unknown> } {
  const args = ['curl', '-sS', '--max-time', '10', '-X', method, '-w', '\n%{http_code}', '-H', `Authorization: Bearer ${token}`];
  if (body !== undefined) args.push('-H', 'Content-Type: application/json', '--data-binary', JSON.stringify(body));
  const r = lab.exec('lan', [...args, `${ADMIN}${path}`], { allowFail: true });
  const at = r.stdout.lastIndexOf('\n');
  const text = r.stdout.slice(0, Math.max(0, at));
  return { status: Number(r.stdout.slice(at + 1)), json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

const staticFwd = () => lab.exec('rtr', ['nft', '-a', 'list', 'chain', 'inet', 'portcullis', 'static_fwd']).stdout;
const staticPre = () => lab.exec('rtr', ['nft', 'list', 'chain', 'inet', 'portcullis', 'static_pre']).stdout;
/**
 * The router learns an address of the LAN host: the host connects from it
 * to a closed port of the router, whose reset needs the neighbour entry.
 */
const seen = (from: string) => {
  const to = from.includes(':') ? '2001:db8:77::1' : '192.168.77.1';
  const js = `const c = require('node:net').connect({ host: '${to}', port: 9, localAddress: '${from}' }); c.on('error', () => process.exit(0)); setTimeout(() => process.exit(0), 1000);`;
  lab.exec('lan', [process.execPath, '-e', js], { allowFail: true });
};

async function until(what: string, ok: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

t.before(async () => {
  daemon = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--config', join(DIR, 'config.json'), '--no-upnp']);
  daemon.stdout?.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
  await waitForLine(daemon, (l) => l.includes('"event":"started"'), 15_000);
  token = readFileSync(join(STATE, 'admin.token'), 'utf8').trim();
  seen('2001:db8:77::2');
  seen('192.168.77.2');
});
t.teardown(() => void daemon?.kill('SIGTERM'));

let name = '';

t.test('POST a device opening: IPv6 to its address and IPv4 forwarded to it arrive; the file has it, comments kept', async (t) => {
  t.match(MAC, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 8443, to: '2001:db8:77::2' }), 'closed before');
  t.equal(api('POST', '/api/statics', { device: MAC, protocol: 'tcp', port: 8443 }).status, 201, 'created');
  const list = api('GET', '/api/openings');
  const opening = (list.json.openings as Record<string, unknown>[]).find((o) => o.kind === 'static-device');
  t.match(opening, { origin: 'static', device: MAC, protocols: ['tcp'], ports: [{ min: 8443, max: 8443 }], ipv4: '192.168.77.2' });
  t.ok((opening?.ipv6 as string[]).includes('2001:db8:77::2'), 'its IPv6 address is open');
  name = String(opening?.static);
  t.match(name, /^device-[0-9a-f]{12}-tcp-8443$/, 'a readable generated name');
  t.ok(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 8443, to: '2001:db8:77::2' }), 'IPv6 from the WAN arrives');
  t.ok(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 8443, to: '198.51.100.1' }), 'IPv4 to the WAN address is forwarded to it');
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan2', port: 8443, to: '2001:db8:77::3' }), 'another host stays closed');
  const text = readFileSync(POLICY, 'utf8');
  t.ok(text.startsWith(ORIGINAL), 'everything that was there is there, byte for byte');
  t.match(text.slice(ORIGINAL.length), new RegExp(`^  - name: ${name}\\n    device:\\n      mac: "${MAC}"\\n      protocol: tcp\\n      ports: 8443\\n$`), 'the new entry, at the list\'s indentation');
  t.equal(readFileSync(`${POLICY}.bak`, 'utf8'), ORIGINAL, 'the backup is the file as it was');
  const dup = api('POST', '/api/statics', { device: MAC, protocol: 'tcp', port: 9000, name });
  t.match(dup, { status: 409, json: { error: /already/ } }, 'a name in use: 409');
  t.match(api('POST', '/api/statics', { device: MAC, protocol: 'udp', port: 3074 }), { status: 409, json: { error: /udp\/3074 is already forwarded/ } }, 'a port another forward holds: 409, with the loader\'s words');
  t.equal(readFileSync(POLICY, 'utf8'), text, 'refused edits wrote nothing');
});

t.test('the opening follows the device: a new address opens once the router sees it, and closes when it leaves', async (t) => {
  const handle = () => new RegExp(`2001:db8:77::2 .*"static ${name} \\w+" # handle (\\d+)`).exec(staticFwd())?.[1];
  const before = handle();
  t.ok(before, 'the rule for its first address');
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 8443, to: '2001:db8:77::99' }), 'the new address is closed before the host has it');
  lab.exec('lan', ['ip', 'addr', 'add', '2001:db8:77::99/64', 'dev', 'eth0', 'nodad']);
  seen('2001:db8:77::99');
  await until('::99 opened', () => staticFwd().includes('2001:db8:77::99'));
  t.ok(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 8443, to: '2001:db8:77::99' }), 'traffic to the new address arrives');
  t.ok(lines.some((l) => l.includes('"event":"device-openings-moved"') && l.includes('2001:db8:77::99')), 'the move is logged');
  t.equal(handle(), before, 'the unchanged address\'s rule was not touched (same handle)');

  lab.exec('lan', ['ip', 'addr', 'del', '2001:db8:77::99/64', 'dev', 'eth0']);
  lab.exec('rtr', ['ip', 'neigh', 'del', '2001:db8:77::99', 'dev', 'br-lan']);
  await until('::99 closed', () => !staticFwd().includes('2001:db8:77::99'));
  // The host takes the address back without telling the router: nothing opens it but the table.
  lab.exec('lan', ['ip', 'addr', 'add', '2001:db8:77::99/64', 'dev', 'eth0', 'nodad']);
  t.notOk(staticFwd().includes('2001:db8:77::99'), 'not in the kernel any more');
  const o = api('GET', `/api/openings/static-${name}`);
  t.notOk((o.json.ipv6 as string[]).includes('2001:db8:77::99'), 'nor in the listing');
  t.equal(handle(), before, 'the first address\'s rule still untouched');
  lab.exec('lan', ['ip', 'addr', 'del', '2001:db8:77::99/64', 'dev', 'eth0']);
});

t.test('an EUI-64 address adds the identifier\'s mask: a new prefix reaches the device before the router has seen it there', async (t) => {
  const b = MAC.split(':').map((h) => parseInt(h, 16));
  const iid = [((b[0] as number) ^ 2) * 256 + (b[1] as number), (b[2] as number) * 256 + 0xff, 0xfe00 + (b[3] as number), (b[4] as number) * 256 + (b[5] as number)].map((n) => n.toString(16));
  const eui = `2001:db8:77:0:${iid.join(':')}`;
  lab.exec('lan', ['ip', 'addr', 'add', `${eui}/64`, 'dev', 'eth0', 'nodad']);
  seen(eui);
  await until('the mask', () => staticFwd().includes(`ip6 daddr & ::ffff:ffff:ffff:ffff == ::${iid.join(':')}`));
  t.pass('the identifier\'s mask is in the kernel');
  // Renumbered: a second prefix on the LAN, which the host takes up silently.
  const renumbered = `2001:db8:78::${iid.join(':')}`;
  lab.exec('rtr', ['ip', '-6', 'route', 'add', '2001:db8:78::/64', 'dev', 'br-lan']);
  lab.exec('wan', ['ip', '-6', 'route', 'add', '2001:db8:78::/64', 'via', '2001:db8:ff::1']);
  lab.exec('lan', ['ip', 'addr', 'del', `${eui}/64`, 'dev', 'eth0']);
  lab.exec('lan', ['ip', 'addr', 'add', `${renumbered}/64`, 'dev', 'eth0', 'nodad']);
  t.notMatch(staticFwd(), /2001:db8:78:/, 'the router has no rule for the new address itself');
  t.ok(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 8443, to: renumbered }), 'traffic to the new prefix arrives through the mask');
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 8444, to: renumbered }), 'other ports stay closed');
  lab.exec('lan', ['ip', 'addr', 'del', `${renumbered}/64`, 'dev', 'eth0']);
});

t.test('the WAN side gets no answer from the statics route, even routed to the LAN address', async (t) => {
  lab.exec('wan', ['ip', 'route', 'replace', '192.168.77.0/24', 'via', '198.51.100.1']);
  t.teardown(() => void lab.exec('wan', ['ip', 'route', 'del', '192.168.77.0/24'], { allowFail: true }));
  const body = JSON.stringify({ device: MAC, protocol: 'tcp', port: 2222 });
  const r = lab.exec('wan', ['curl', '-sS', '--max-time', '3', '-X', 'POST', '-H', `Authorization: Bearer ${token}`, '-H', 'Content-Type: application/json', '--data-binary', body, '-w', '%{http_code}', `${ADMIN}/api/statics`], { allowFail: true });
  t.not(r.code, 0, 'no connection at all');
  t.equal(r.stdout.trim(), '000', 'not even an error status');
  t.notMatch(readFileSync(POLICY, 'utf8'), /2222/, 'nothing written');
});

t.test('DELETE /api/statics/{name}: the traffic stops and the file is as it was', async (t) => {
  t.equal(api('DELETE', `/api/statics/${name}`).status, 204);
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 8443, to: '2001:db8:77::2' }), 'IPv6 closed');
  t.notOk(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 8443, to: '198.51.100.1' }), 'IPv4 forward gone');
  t.notMatch(staticFwd(), new RegExp(name), 'no rule left');
  t.notMatch(staticPre(), /8443/, 'no forward left');
  t.equal(readFileSync(POLICY, 'utf8'), ORIGINAL, 'the file is byte for byte what it was');
  t.equal(api('DELETE', `/api/statics/${name}`).status, 404, 'twice: 404');
  t.match(staticPre(), /udp dport 3074/, 'the address forward stayed throughout');
});
