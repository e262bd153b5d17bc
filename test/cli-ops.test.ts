// The admin's commands against a running daemon: `portcullis status`, `ls`
// and `rm` (the real CLI binary, over the real control socket) with the
// daemon in-process (memory backend), mappings made by `portcullis pcp map` over loopback, then the same
// commands once the daemon is gone. The remembering logger behind status is
// checked on its own at the end.

import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir, type NetworkInterfaceInfo } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { DEFAULTS, type Config } from '../src/config.js';
import { startDaemon, type Daemon } from '../src/daemon.js';
import { RecentEvents } from '../src/daemon/recent.js';
import type { MemoryFirewall } from '../src/firewall/memory.js';
import { mustParseIp } from '../src/net/address.js';
import { parsePolicyText } from '../src/policy/load.js';
import { controlRequest, controlSocketPath, type ControlRequest } from '../src/server/control-socket.js';
import type { Listing } from '../src/server/listing.js';
import { CLI } from './helpers/lab.js';
import { memoryLogger } from './helpers/memory-logger.js';

const nic = (address: string, cidr: string, internal: boolean): NetworkInterfaceInfo =>
  ({ address, cidr, internal, netmask: '', family: 'IPv4', mac: '02:00:00:00:00:01' }) as NetworkInterfaceInfo;
const interfaces = (): NodeJS.Dict<NetworkInterfaceInfo[]> => ({ lo: [nic('127.0.0.1', '127.0.0.1/8', true)], wan0: [nic('198.51.100.1', '198.51.100.1/24', false)] });

const STATE = mkdtempSync(join(tmpdir(), 'portcullis-ops-'));
const LEASES = join(STATE, 'dhcp.leases');
// 127.0.0.2 has a lease with a host name, 127.0.0.3 one without; the
// neighbour table knows 127.0.0.4 only; nobody knows 127.0.0.5.
writeFileSync(LEASES, `0 02:00:00:00:00:02 127.0.0.2 laptop *\n0 02:00:00:00:00:03 127.0.0.3 * *\n`);
const port = 23000 + (process.pid % 20000);
const cfg: Config = {
  ...DEFAULTS,
  stateDir: STATE,
  lan: ['lo'],
  wans: ['wan0'],
  backend: 'memory',
  port,
  announce: false,
  dhcpLeases: LEASES,
  upnp: { ...DEFAULTS.upnp, enabled: false },
};
const policy = parsePolicyText(
  `version: 1
rules:
  - name: anyone
    action: allow
    match: { internalPorts: 1024-65535 }
    limits: { requestsPerSecond: 0 }
static:
  - name: game
    forward: { protocol: udp, port: 3074, to: 127.0.0.6, toPort: 3075 }
  - name: nas-https
    pinhole: { to: "2001:db8::10", protocol: tcp, ports: 443 }
`,
  'test',
);
const log = memoryLogger();
let daemon: Daemon | undefined;

/** The CLI binary; asynchronous, so the in-process daemon can answer meanwhile. */
function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 60_000 }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }));
  });
}
/** An admin's command on this test's state directory. */
const cli = (args: string[]) => run([...args, '--state-dir', STATE]);

/** `portcullis pcp map` from `client` (any 127/8 address is this host's): the result. */
async function map(client: string, proto: 'udp' | 'tcp', internalPort: number): Promise<string | undefined> {
  const r = await run(['pcp', 'map', '--server', '127.0.0.1', '--server-port', String(port), '--bind', client, '--proto', proto, '--port', String(internalPort), '--lifetime', '600']);
  return r.stdout ? (JSON.parse(r.stdout) as { result: string }).result : undefined;
}

t.before(async () => {
  daemon = await startDaemon(cfg, log, {
    interfaces,
    policy,
    neighbours: async () => [{ address: mustParseIp('127.0.0.4'), interface: 'lo', lladdr: '02:00:00:00:00:04' }],
  });
});
t.teardown(() => daemon?.stop());

t.test('mappings made over PCP show up in ls with their IDs and devices', async (t) => {
  for (const [client, proto, p] of [['127.0.0.2', 'udp', 40000], ['127.0.0.2', 'tcp', 40001], ['127.0.0.3', 'udp', 40002], ['127.0.0.4', 'udp', 40003], ['127.0.0.5', 'udp', 40004]] as const) {
    t.equal(await map(client, proto, p), 'SUCCESS', `${client} ${p} granted`);
  }
  const r = await cli(['ls']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr, '', 'no note: the daemon answered');
  t.match(r.stdout, /^ID\s+DEVICE\s+PROTO\s+EXTERNAL → INTERNAL\s+ORIGIN\s+LEFT\s+DESCRIPTION$/m, 'the header');
  t.match(r.stdout, /^\d+\s+laptop\s+udp\s+198\.51\.100\.1:\d+ → 127\.0\.0\.2:40000\s+pcp\s+(9m[0-5]\ds|10m00s)$/m, 'named by its DHCP lease');
  t.match(r.stdout, /^\d+\s+laptop\s+tcp\s+198\.51\.100\.1:\d+ → 127\.0\.0\.2:40001\s+pcp/m, 'TCP too');
  t.match(r.stdout, /^\d+\s+02:00:00:00:00:03\s+udp\s+.* → 127\.0\.0\.3:40002\s+pcp/m, 'a lease without a name: its hardware address');
  t.match(r.stdout, /^\d+\s+02:00:00:00:00:04\s+udp\s+.* → 127\.0\.0\.4:40003\s+pcp/m, 'the neighbour table\'s link-layer address');
  t.match(r.stdout, /^\d+\s+-\s+udp\s+.* → 127\.0\.0\.5:40004\s+pcp/m, 'unknown: -');
  t.match(r.stdout, /^\d+\s+-\s+udp\s+198\.51\.100\.1:3074 → 127\.0\.0\.6:3075\s+static\s+static\s+static:game$/m, 'the static forward');
  t.match(r.stdout, /^static-nas-https\s+-\s+static\s+static\s+nas-https: /m, 'a static pinhole, by the id the admin API gives it');

  const json = await cli(['ls', '--json']);
  t.equal(json.code, 0, json.stderr);
  const doc = JSON.parse(json.stdout) as Listing;
  const ids = new Map(daemon?.service.mappings().map((m) => [`${m.internalAddress}:${m.internalPort}/${m.protocol}`, m.id]));
  t.equal(doc.mappings.length, 6, 'the same rows as JSON');
  t.match(doc.mappings.find((m) => m.internal === '127.0.0.2:40000'), { id: ids.get('127.0.0.2:40000/17'), device: 'laptop', protocol: 'udp', origin: 'pcp', external: /^198\.51\.100\.1:\d+$/ });
  t.notOk('device' in (doc.mappings.find((m) => m.internal === '127.0.0.5:40004') ?? {}), 'no device field when unknown');
});

t.test('status: version, uptime, epoch, counts, firewall, store, errors', async (t) => {
  const r = await cli(['status', '--json']);
  t.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as Record<string, unknown>;
  t.match(s, {
    running: true,
    version: /^\d+\.\d+\.\d+/,
    uptimeSeconds: Number,
    epochSeconds: Number,
    mappings: { total: 6, byOrigin: { pcp: 5, natpmp: 0, upnp: 0, static: 1 }, byFamily: { ipv4: 6, ipv6: 0 } },
    firewall: { backend: 'memory', guard: { status: 'in place' }, reconcileSeconds: 0 },
    store: { dir: STATE },
    errors: [],
  });
  t.ok((s.store as { bytes: number }).bytes > 0, 'the store has bytes');
  t.equal(s.mappings && (s.mappings as { total: number }).total, daemon?.service.count(), 'counts match the table');

  const human = await cli(['status']);
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /^portcullis \d+\.\d+\.\d+\S*: running for \d+s \(since \S+Z\), epoch \d+ s$/m);
  t.match(human.stdout, /^mappings: 6 \(pcp 5, natpmp 0, upnp 0, static 1; IPv4 6, IPv6 0\)$/m);
  t.match(human.stdout, /^firewall: memory backend; LAN guard in place since \S+$/m);
  t.match(human.stdout, /^  not checked \(this backend cannot be\)$/m);
  t.match(human.stdout, /^store: .*: \d+ bytes in \d+ files$/m);
  t.match(human.stdout, /^recent errors: none$/m);
});

t.test('rm: by ID, by client and port, by client; static forwards and nothing matched are errors', async (t) => {
  const fw = daemon?.firewall as MemoryFirewall;
  const held = (internalPort: number) => fw.list().some((e) => e.internalPort === internalPort);
  const idOf = (internalPort: number) => daemon?.service.mappings((m) => m.internalPort === internalPort)[0]?.id;
  const id3 = idOf(40002);
  t.ok(held(40002), 'the entry is in the firewall first');
  let r = await cli(['rm', String(id3)]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, new RegExp(`^removed ${id3}: pcp udp 198\\.51\\.100\\.1:\\d+ → 127\\.0\\.0\\.3:40002 \\(02:00:00:00:00:03, (9m[0-5]\\ds|10m00s) left\\)$`, 'm'));
  t.notOk(held(40002), 'gone from the firewall');
  t.equal(idOf(40002), undefined, 'and from the table');
  t.match(log.lines.filter((l) => l.event === 'mapping-removed'), [{ by: 'admin', internal: '127.0.0.3', internalPort: 40002 }], 'logged as the admin\'s removal');

  r = await cli(['rm', String(id3)]);
  t.equal(r.code, 1, 'the same ID again: exit 1');
  t.match(r.stderr, `portcullis: nothing removed: no mapping ${id3} (portcullis ls shows the mappings and their IDs)`);

  r = await cli(['rm', String(idOf(3075))]);
  t.equal(r.code, 1, 'a static forward: exit 1');
  t.match(r.stderr, /static forward 'game': it is the policy file's/);
  t.equal(daemon?.service.count((m) => m.origin === 'static'), 1, 'the forward stays');

  r = await cli(['rm', 'static-nas-https']);
  t.equal(r.code, 2, 'a static pinhole by its id: exit 2');
  t.match(r.stderr, /static-nas-https is the policy file's static opening 'nas-https': remove it from the file and run portcullis policy reload, or remove it on the admin page/);
  r = await cli(['rm', '../etc']);
  t.equal(r.code, 2);
  t.match(r.stderr, /'\.\.\/etc' is not a mapping ID/);

  r = await cli(['rm', '--client', '127.0.0.2', '--port', '40001']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout.trim().split('\n').length, 1, 'one removed');
  t.match(r.stdout, /^removed \d+: pcp tcp .* → 127\.0\.0\.2:40001 \(laptop/);
  t.ok(held(40000), 'the client\'s other mapping stays');

  r = await cli(['rm', '--client', '127.0.0.4']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^removed \d+: .*127\.0\.0\.4:40003/);
  t.notOk(held(40003));

  r = await cli(['rm', '--client', '127.0.0.9']);
  t.equal(r.code, 1);
  t.match(r.stderr, 'nothing removed: no mapping of 127.0.0.9');

  for (const bad of [['rm'], ['rm', 'x1'], ['rm', '1', '--client', '127.0.0.2'], ['rm', '--client', 'nowhere'], ['rm', '--port', '1']]) {
    const b = await cli(bad);
    t.equal(b.code, 2, `${bad.join(' ')}: a usage error, exit 2`);
  }
  t.equal(daemon?.service.count(), 3, 'what is left: 127.0.0.2:40000, 127.0.0.5:40004 and the forward');
});

t.test('remove requests the CLI would never send are refused by the daemon, nothing removed', async (t) => {
  const path = controlSocketPath(STATE);
  const before = daemon?.service.count();
  for (const [req, says] of [
    [{ op: 'remove' }, /an ID or a client address is needed/],
    [{ op: 'remove', id: -1 }, /an ID \(a whole number\) alone/],
    [{ op: 'remove', id: 1.5 }, /an ID \(a whole number\) alone/],
    [{ op: 'remove', id: '1' }, /an ID \(a whole number\) alone/],
    [{ op: 'remove', id: 1, client: '127.0.0.2' }, /an ID \(a whole number\) alone/],
    [{ op: 'remove', client: 'x'.repeat(3000) }, /'x{64}' is not an address/],
    [{ op: 'remove', client: 12 }, /'12' is not an address/],
    [{ op: 'remove', client: '127.0.0.2', port: 70000 }, /the port is a whole number from 1 to 65535/],
    [{ op: 'remove', client: '127.0.0.2', port: 0 }, /the port is a whole number from 1 to 65535/],
  ] as const) {
    const r = await controlRequest(path, req as unknown as ControlRequest);
    t.match(r, { ok: false, error: says }, JSON.stringify(req).slice(0, 80));
  }
  t.equal(daemon?.service.count(), before, 'nothing removed');
  // The asker's mistakes (these, and the rm of a gone ID above) are not the daemon's failures.
  t.same(log.lines.filter((l) => l.event === 'control-failed'), [], 'no control-failed warning for a refused request');
  t.ok(log.lines.filter((l) => l.event === 'control-refused' && l.op === 'remove').length >= 10, 'each refusal noted as control-refused');
});

t.test('the daemon gone: status says so (exit 3) with the store\'s counts, ls lists the store, rm fails plainly', async (t) => {
  await daemon?.stop();
  daemon = undefined;
  const r = await cli(['status']);
  t.equal(r.code, 3, 'exit 3');
  t.match(r.stdout, /^portcullis is not running: no daemon is listening at .*control\.sock/m);
  t.match(r.stdout, /^store: .*, last written \S+: mappings 2 \(pcp 2, natpmp 0, upnp 0, static 0; IPv4 2, IPv6 0\); \d+ bytes in \d+ files$/m, 'what the store holds (static forwards are the policy file\'s)');
  const json = JSON.parse((await cli(['status', '--json'])).stdout) as Record<string, unknown>;
  t.match(json, { running: false, reason: /no daemon is listening/, store: { dir: STATE, mappings: { total: 2 } } });

  const ls = await cli(['ls']);
  t.equal(ls.code, 0, ls.stderr);
  t.match(ls.stderr, /no daemon answers .*no IDs or devices without a daemon/);
  t.match(ls.stdout, /^-\s+-\s+udp\s+.* → 127\.0\.0\.2:40000\s+pcp/m);
  t.match(ls.stdout, /^-\s+-\s+udp\s+.* → 127\.0\.0\.5:40004\s+pcp/m);

  const rm = await cli(['rm', '1']);
  t.equal(rm.code, 3, 'rm: exit 3');
  t.match(rm.stderr, /^portcullis: nothing removed: no daemon is listening at /);

  const empty = mkdtempSync(join(tmpdir(), 'portcullis-ops-'));
  const none = await new Promise<{ code: number; stdout: string }>((resolve) =>
    execFile(process.execPath, [CLI, 'status', '--state-dir', empty], (err, stdout) => resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout })),
  );
  t.equal(none.code, 3);
  t.match(none.stdout, /^store: .* holds no store/m, 'no store: said so');
});

t.test('the remembering logger: lines pass through; errors, the last repair and the guard are kept, bounded', async (t) => {
  const inner = memoryLogger();
  let now = Date.parse('2030-01-01T00:00:00Z');
  const recent = new RecentEvents(inner, () => now);
  const log = recent.logger;
  t.equal(recent.guard(), undefined, 'nothing known at first');
  log.error({ event: 'lan-guard', status: 'MISSING', detail: 'no jump to portcullis_input' });
  t.match(recent.guard(), { status: 'MISSING', detail: 'no jump to portcullis_input', since: '2030-01-01T00:00:00.000Z' });
  now += 5000;
  log.warn({ event: 'nft-repaired', why: 'objects or elements missing', added: 3, removed: 1, recreated: true });
  log.warn({ event: 'lan-guard', status: 'in place', detail: 'ok' });
  t.match(recent.lastRepair(), { at: '2030-01-01T00:00:05.000Z', why: 'objects or elements missing', added: 3, removed: 1, recreated: true });
  t.match(recent.guard(), { status: 'in place' });
  for (let i = 0; i < 8; i++) log.error({ event: 'nft-reconcile-failed', error: `failure ${i} ${'x'.repeat(i === 7 ? 1000 : 0)}` });
  t.equal(recent.errors().length, 5, 'the last five errors');
  t.match(recent.errors()[0], { event: 'nft-reconcile-failed', detail: 'failure 3 ' });
  t.ok((recent.errors()[4]?.detail.length ?? 0) <= 301, 'a long detail is cut');
  log.info({ event: 'map' });
  log.debug({ event: 'd' });
  t.equal(inner.lines.length, 13, 'every line reached the inner logger');
  t.equal(recent.startedAt, Date.parse('2030-01-01T00:00:00Z'));
});
