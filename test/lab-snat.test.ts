// Mappings both ways, with real traffic: what a mapped endpoint sends leaves
// from its external port (RFC 6886 §3.9, RFC 6887 §11, §12.3), masquerade
// keeps off ports mappings hold, LAN hosts reach each other through the
// external address (RFC 4787 REQ-9, RFC 5382 REQ-8), and live flows follow a
// mapping that changes. The WAN host reports the source it saw.

import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { CLI, labUp, stateDir, waitForLine, type Lab } from './helpers/lab.js';
import { sourceSeen } from './helpers/reach.js';
import { sleep, until } from './helpers/wait.js';

const lab: Lab = labUp(`sn${process.pid % 10000}`);
t.teardown(() => lab.down());

const EXT = '198.51.100.1';
const WAN = '198.51.100.2';
const STATE = stateDir();
const POLICY = join(STATE, 'policy.yaml');
writeFileSync(
  POLICY,
  `version: 1
rules:
  - name: everyone-high
    action: allow
    match: { internalPorts: 1024-65535 }
    limits: { requestsPerSecond: 0 }
static:
  - name: game
    forward: { protocol: udp, port: 3074, to: 192.168.77.2, toPort: 3075 }
  - name: web
    forward: { protocol: tcp, port: 3080, to: 192.168.77.2, toPort: 3081 }
`,
);
const logs: string[] = [];
let daemon: ChildProcess;

// A table of an older portcullis (no SNAT map, held set or postrouting chain): start must upgrade it.
lab.exec('rtr', ['nft', '-f', '-'], {
  input: `table inet portcullis {
  map dnat4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; flags timeout; }
  chain prerouting { type nat hook prerouting priority -105; policy accept; }
}
`,
});

t.before(async () => {
  daemon = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--min-lifetime', '1', '--state-dir', STATE, '--policy', POLICY, '--no-upnp']);
  daemon.stdout?.on('data', (b: Buffer) => logs.push(...b.toString().split('\n').filter(Boolean)));
  await waitForLine(daemon, (l) => l.includes('"event":"started"'));
});

const pcp = (node: 'lan' | 'lan2', args: string[]) => {
  // One nonce per host: renewals and deletes must carry the mapping's nonce.
  const nonce = node === 'lan' ? '0123456789abcdef01234567' : '76543210fedcba9876543210';
  const r = lab.exec(node, [process.execPath, CLI, 'pcp', 'map', '--server', '192.168.77.1', '--nonce', nonce, ...args], { allowFail: true });
  return r.stdout ? (JSON.parse(r.stdout) as Record<string, unknown>) : { error: r.stderr };
};
/** A mapping's external port (the test fails on a refusal). */
const mapPort = (node: 'lan' | 'lan2', proto: string, port: number, suggest: number, lifetime = 600) => {
  const r = pcp(node, ['--proto', proto, '--port', String(port), '--suggest', String(suggest), '--lifetime', String(lifetime)]);
  if (r.result !== 'SUCCESS') throw new Error(`mapping refused: ${JSON.stringify(r)}`);
  return Number(r.externalPort);
};
/**
 * Probes until the source seen is `want` (at most 10 s) and returns the
 * last seen: the daemon removes the flow's conntrack entry after it answers,
 * by a process of its own, which a loaded machine starts late. A flow the
 * daemon never cleared would keep its old source: each probe refreshes it.
 */
const eventually = async (probe: () => Promise<string | undefined>, want: string): Promise<string | undefined> => {
  let seen: string | undefined;
  await until(async () => (seen = await probe()) === want, 10_000, 500);
  return seen;
};

t.test('an older table gains the SNAT map, the held set and the postrouting chain', async (t) => {
  const listing = lab.exec('rtr', ['nft', 'list', 'table', 'inet', 'portcullis']).stdout;
  t.match(listing, /map snat4 \{/);
  t.match(listing, /set held4 \{/);
  t.match(listing, /chain postrouting \{\s+type nat hook postrouting priority srcnat - 5/);
});

for (const [proto, base] of [['udp', 41000], ['tcp', 41100]] as const) {
  t.test(`${proto}: a mapped port leaves as its external port, also when the internal port is another host's external port`, async (t) => {
    // lan2 holds external port `base`; lan's mapping of the same internal port must get another.
    t.equal(mapPort('lan2', proto, base, base), base, 'lan2 maps base → base');
    const e = mapPort('lan', proto, base, base);
    t.not(e, base, `lan's mapping got external port ${e}`);
    t.equal(await sourceSeen(lab, { proto, listen: 'wan', port: 9001, from: 'lan', to: WAN, fromPort: base }), `${EXT}:${e}`, 'lan leaves as its external port, not on lan2\'s');
    t.equal(await sourceSeen(lab, { proto, listen: 'wan', port: 9001, from: 'lan2', to: WAN, fromPort: base }), `${EXT}:${base}`, 'lan2 leaves as its own');
    // An unmapped flow from a port a mapping holds is masqueraded elsewhere.
    const squatter = await sourceSeen(lab, { proto, listen: 'wan', port: 9001, from: 'lan2', to: WAN, fromPort: e });
    t.match(squatter, new RegExp(`^${EXT.replace(/\./g, '\\.')}:\\d+$`), 'an unmapped flow from a held port still gets out');
    t.not(squatter, `${EXT}:${e}`, `but not as the held port ${e}`);
  });
}

/** A PCP PEER request (RFC 6887 §11.1, §12.1) from a LAN host; returns the assigned external port. */
function peer(node: 'lan' | 'lan2', self: string, proto: number, port: number, suggest: number, remote: string, remotePort: number): number {
  const v4mapped = (a: string) => Buffer.concat([Buffer.alloc(10), Buffer.from([0xff, 0xff]), Buffer.from(a.split('.').map(Number))]);
  const req = Buffer.alloc(80);
  req[0] = 2;
  req[1] = 2; // PEER
  req.writeUInt32BE(600, 4);
  v4mapped(self).copy(req, 8);
  Buffer.from('0123456789ab').copy(req, 24); // nonce
  req[36] = proto;
  req.writeUInt16BE(port, 40);
  req.writeUInt16BE(suggest, 42);
  v4mapped('0.0.0.0').copy(req, 44);
  req.writeUInt16BE(remotePort, 60);
  v4mapped(remote).copy(req, 64);
  const script = `
const s = require('node:dgram').createSocket('udp4');
s.on('message', (m) => { console.log(m.toString('hex')); process.exit(0); });
s.send(Buffer.from('${req.toString('hex')}', 'hex'), 5351, '192.168.77.1');
setTimeout(() => process.exit(1), 3000);
`;
  const res = Buffer.from(lab.exec(node, [process.execPath, '-e', script]).stdout.trim(), 'hex');
  if (res[1] !== 0x82 || res[3] !== 0) throw new Error(`PEER refused: ${res.toString('hex')}`);
  return res.readUInt16BE(42);
}

t.test('a PEER flow leaves with the port the PEER reply promised', async (t) => {
  const x = peer('lan', '192.168.77.2', 17, 41200, 41250, WAN, 9002);
  t.equal(x, 41250, 'PEER granted the suggested port');
  t.equal(await sourceSeen(lab, { proto: 'udp', listen: 'wan', port: 9002, from: 'lan', to: WAN, fromPort: 41200 }), `${EXT}:${x}`);
});

for (const [proto, base] of [['udp', 41000], ['tcp', 41100]] as const) {
  t.test(`${proto} hairpin: a LAN host reaches another's mapping through the external address, seen from its external address and port`, async (t) => {
    // From the first test: lan base → E, lan2 base → base.
    const e = mapPort('lan', proto, base, base);
    t.equal(await sourceSeen(lab, { proto, listen: 'lan', port: base, from: 'lan2', to: EXT, toPort: e, fromPort: base }), `${EXT}:${base}`, 'from lan2\'s mapped port: its external address and port');
    const other = await sourceSeen(lab, { proto, listen: 'lan', port: base, from: 'lan2', to: EXT, toPort: e, fromPort: base + 50 });
    t.match(other, new RegExp(`^${EXT.replace(/\./g, '\\.')}:\\d+$`), 'from an unmapped port: the external address');
  });
}

t.test('hairpin to a static forward, UDP and TCP', async (t) => {
  t.equal(await sourceSeen(lab, { proto: 'udp', listen: 'lan', port: 3075, from: 'lan2', to: EXT, toPort: 3074, fromPort: 41000 }), `${EXT}:41000`, 'UDP, from lan2\'s mapped port');
  t.equal(await sourceSeen(lab, { proto: 'tcp', listen: 'lan', port: 3081, from: 'lan2', to: EXT, toPort: 3080, fromPort: 41100 }), `${EXT}:41100`, 'TCP, from lan2\'s mapped port');
  const other = await sourceSeen(lab, { proto: 'udp', listen: 'lan', port: 3075, from: 'lan2', to: EXT, toPort: 3074, fromPort: 43000 });
  t.match(other, /^198\.51\.100\.1:\d+$/, 'from an unmapped port: the external address');
});

for (const proto of ['udp', 'tcp'] as const) {
  t.test(`${proto}: a flow from the internet to a mapping reaches the LAN host from the remote's own address, not the router's`, async (t) => {
    // Only a hairpinned flow is made to come from the external address; a
    // LAN host's FILTERs, and a proxy's behind an ISP's NAT, key on the remote.
    const port = proto === 'udp' ? 42300 : 42310;
    const e = mapPort('lan', proto, port, port + 500);
    t.equal(await sourceSeen(lab, { proto, listen: 'lan', port, from: 'wan', to: EXT, toPort: e, fromPort: 9100 }), `${WAN}:9100`);
  });
}

t.test('a static forward is bidirectional: its endpoint leaves as the forward\'s port', async (t) => {
  t.equal(await sourceSeen(lab, { proto: 'udp', listen: 'wan', port: 9003, from: 'lan', to: WAN, fromPort: 3075 }), `${EXT}:3074`);
});

t.test('deleting or expiring a mapping returns its endpoint to plain masquerade, live flows too', async (t) => {
  const probe = (fromPort: number) => sourceSeen(lab, { proto: 'udp', listen: 'wan', port: 9005, from: 'lan', to: WAN, fromPort });
  t.equal(mapPort('lan', 'udp', 42000, 42500), 42500);
  t.equal(await probe(42000), `${EXT}:42500`, 'mapped: leaves as 42500');
  t.match(pcp('lan', ['--proto', 'udp', '--port', '42000', '--lifetime', '0']), { result: 'SUCCESS' });
  // Same 5-tuple as before: only a removed conntrack entry lets it change.
  t.equal(await eventually(() => probe(42000), `${EXT}:42000`), `${EXT}:42000`, 'deleted: leaves as itself');

  // Long enough that starting the probe's processes on a loaded machine
  // (seconds) does not outlast it; then wait out what is left of it,
  // counted from the answer (the daemon started the lifetime before it).
  t.equal(mapPort('lan', 'udp', 42100, 42600, 10), 42600);
  const answeredAt = Date.now();
  t.equal(await probe(42100), `${EXT}:42600`, 'mapped for 10 s: leaves as 42600');
  await sleep(Math.max(0, answeredAt + 11_500 - Date.now()));
  t.equal(await eventually(() => probe(42100), `${EXT}:42100`), `${EXT}:42100`, 'expired: leaves as itself');
});

t.test('renumbering the WAN moves the SNAT entries too', async (t) => {
  const probe = () => sourceSeen(lab, { proto: 'udp', listen: 'wan', port: 9006, from: 'lan', to: WAN, fromPort: 42200 });
  t.equal(mapPort('lan', 'udp', 42200, 42700), 42700);
  t.equal(await probe(), `${EXT}:42700`, 'before');
  lab.exec('rtr', ['ip', 'addr', 'del', '198.51.100.1/24', 'dev', 'wan0']);
  lab.exec('rtr', ['ip', 'addr', 'add', '198.51.100.9/24', 'dev', 'wan0']);
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && !logs.some((l) => l.includes('"event":"external-address-moved"'))) await sleep(100);
  t.ok(logs.some((l) => l.includes('"event":"external-address-moved"')), 'the daemon moved its mappings');
  t.equal(await eventually(probe, '198.51.100.9:42700'), '198.51.100.9:42700', 'after: the new address, the same external port');
  const snat = lab.exec('rtr', ['nft', 'list', 'map', 'inet', 'portcullis', 'snat4']).stdout;
  t.notMatch(snat, /198\.51\.100\.1 \./, 'no SNAT element names the old address');
});

t.test('reconciliation restores a flushed SNAT map', async (t) => {
  lab.exec('rtr', ['nft', 'flush', 'map', 'inet', 'portcullis', 'snat4']);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && !/192\.168\.77\.2 \. udp \. 42200/.test(lab.exec('rtr', ['nft', 'list', 'map', 'inet', 'portcullis', 'snat4']).stdout)) await sleep(500);
  t.match(lab.exec('rtr', ['nft', 'list', 'map', 'inet', 'portcullis', 'snat4']).stdout, /192\.168\.77\.2 \. udp \. 42200 .*: 198\.51\.100\.9 \. 42700/);
  daemon.kill('SIGTERM');
});
