// `npm run bench` (as root): the daemon in the lab's router with the real
// nft backend, a load generator (bench/load.ts) on many LAN addresses, and
// the same load against Debian's miniupnpd in the same lab. Prints one table.
//
// Everything stays inside the namespaces this script creates. miniupnpd
// refuses private and documentation external addresses, so for its run the
// router's WAN side gets 11.22.33.1/24 — an address that exists only inside
// the lab's namespaces; no packet leaves them.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadResult, LoadSpec } from './load.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LAB = join(ROOT, 'scripts/lab.sh');
const CLI = join(ROOT, 'dist/src/cli.js');
const LOAD = join(ROOT, 'dist/bench/load.js');
const P = process.env.LAB_PREFIX ?? 'bench';
const env = { ...process.env, LAB_PREFIX: P };
const work = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));

const sh = (args: string[], input?: string) => {
  const r = spawnSync(args[0] as string, args.slice(1), { encoding: 'utf8', input, env, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
};
const inNs = (node: string, args: string[], input?: string) => sh(['ip', 'netns', 'exec', `${P}-${node}`, ...args], input);

const V6_CLIENTS = Array.from({ length: 256 }, (_, i) => `2001:db8:77::1:${(i + 1).toString(16)}`);
const V4_CLIENTS = Array.from({ length: 200 }, (_, i) => `192.168.77.${i + 10}`);

/**
 * The shape both servers get for the side-by-side rows: 4 clients, one
 * request outstanding each, RFC 6887's 3 s initial retransmission timeout.
 */
const SEQ = { server: '192.168.77.1', clients: V4_CLIENTS.slice(0, 4), window: 1, timeoutMs: 3000, maxTries: 4 };
const SEQ_NAME = '(4 clients × 1)';

function load(spec: Partial<LoadSpec> & Pick<LoadSpec, 'clients' | 'count' | 'startPort' | 'server'>): LoadResult {
  // RFC 6887 §8.1.1: a client's initial retransmission timeout is 3 s.
  const full: LoadSpec = { protocol: 'pcp', port: 5351, window: 8, lifetime: 3600, timeoutMs: 3000, maxTries: 4, deadlineMs: 600_000, ...spec };
  return JSON.parse(inNs('lan', [process.execPath, LOAD, JSON.stringify(full)])) as LoadResult;
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** The pid of the process running inside `ip netns exec` (exec replaces ip). */
const pidOf = (c: ChildProcess) => c.pid as number;

async function startPortcullis(): Promise<ChildProcess> {
  const cfg = join(work, 'portcullis.json');
  writeFileSync(
    cfg,
    JSON.stringify({
      announce: false,
      stateDir: join(work, 'state'),
      maxMappings: 1_000_000,
      policy: join(work, 'policy.json'),
      rateLimit: { perSecond: 1_000_000, burst: 1_000_000 },
    }),
  );
  // A load generator is a few clients asking as fast as they can.
  writeFileSync(
    join(work, 'policy.json'),
    JSON.stringify({ version: 1, rules: [{ name: 'bench', action: 'allow', match: { internalPorts: '1024-65535' }, limits: { maxMappingsPerClient: 1_000_000, requestsPerSecond: 0 } }] }),
  );
  const out = openSync(join(work, 'portcullis.log'), 'w');
  const child = spawn('ip', ['netns', 'exec', `${P}-rtr`, process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--config', cfg], { stdio: ['ignore', out, out] });
  closeSync(out);
  // Up to two minutes: a restart with 100 000+ mappings reinstalls them all first.
  for (let i = 0; i < 6000; i++) {
    if (readFileSync(join(work, 'portcullis.log'), 'utf8').includes('"event":"started"')) return child;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`portcullis did not start: ${readFileSync(join(work, 'portcullis.log'), 'utf8')}`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

interface Row {
  server: string;
  load: string;
  existing: string;
  r: LoadResult;
}

const rows: Row[] = [];
const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '—');

function record(server: string, loadName: string, existing: string, r: LoadResult): LoadResult {
  rows.push({ server, load: loadName, existing, r });
  process.stderr.write(`${server} ${loadName} @${existing}: ${fmt(r.rate)}/s p50 ${fmt(r.p50ms, 1)} ms p99 ${fmt(r.p99ms, 1)} ms (${r.succeeded} ok, ${r.failed} refused, ${r.lost} lost)\n`);
  return r;
}

async function benchPortcullis(): Promise<{ rssPer1000KiB: number; renewalBytes: number; recoveryMs: number; restored: number; kernelRepopulated: boolean }> {
  const d = await startPortcullis();
  try {
    const pid = pidOf(d);
    const rss0 = rssKiB(pid);
    record('portcullis', `PCP MAP IPv4 ${SEQ_NAME}`, '0', load({ ...SEQ, count: 500, startPort: 30_000 }));
    const s6 = '2001:db8:77::1';
    // Warm-up (JIT, buffers): 5 000 pinholes made and deleted again, so the
    // first measured run starts from 0 mappings on a warm daemon.
    load({ server: s6, clients: V6_CLIENTS, count: 5_000, startPort: 50_000 });
    load({ server: s6, clients: V6_CLIENTS, count: 5_000, startPort: 50_000, lifetime: 0 });
    // IPv6 pinholes: creation rate with 0, 10 000 and 100 000 mappings present.
    record('portcullis', 'PCP MAP IPv6', '0', load({ server: s6, clients: V6_CLIENTS, count: 10_000, startPort: 10_000 }));
    record('portcullis', 'PCP MAP IPv6', '10 000', load({ server: s6, clients: V6_CLIENTS, count: 10_000, startPort: 11_000 }));
    const fill = load({ server: s6, clients: V6_CLIENTS, count: 80_000, startPort: 12_000 });
    process.stderr.write(`prefill: ${fill.succeeded} more at ${fmt(fill.rate)}/s\n`);
    record('portcullis', 'PCP MAP IPv6', '100 000', load({ server: s6, clients: V6_CLIENTS, count: 10_000, startPort: 13_000 }));
    const rss1 = rssKiB(pid);
    const mappings = 110_500; // created between the two readings
    // IPv4 DNAT mappings (external port allocation on top) with 110 000 present.
    record('portcullis', 'PCP MAP IPv4', '110 000', load({ server: '192.168.77.1', clients: V4_CLIENTS, count: 10_000, startPort: 20_000 }));
    record('portcullis', 'NAT-PMP map', '120 000', load({ protocol: 'natpmp', server: '192.168.77.1', clients: V4_CLIENTS, count: 10_000, startPort: 21_000 }));
    record('portcullis', `PCP MAP IPv4 ${SEQ_NAME}`, '130 500', load({ ...SEQ, count: 500, startPort: 31_000 }));

    // Durable store: bytes appended for 1000 renewals (25 clients renew the
    // 40 mappings each made in the first phase).
    const journal = join(work, 'state', 'journal');
    const j0 = statSync(journal).size;
    const renew = load({ server: s6, clients: V6_CLIENTS.slice(0, 25), count: 1000, startPort: 10_000 });
    const renewalBytes = ((statSync(journal).size - j0) / renew.succeeded) * 1000;

    // Restart recovery with everything present: a clean stop, the daemon's
    // table deleted (as after a reboot), then store load, restore and kernel
    // reinstall until the daemon serves.
    await stop(d);
    inNs('rtr', ['nft', 'delete', 'table', 'inet', 'portcullis']);
    const t0 = performance.now();
    const again = await startPortcullis();
    const recoveryMs = performance.now() - t0;
    const state = JSON.parse(readFileSync(join(work, 'portcullis.log'), 'utf8').split('\n').find((l) => l.includes('"event":"state"')) ?? '{}') as { restored?: number };
    const kernel = inNs('rtr', ['nft', '-j', 'list', 'set', 'inet', 'portcullis', 'pinholes6']).split('"elem"').length > 1;
    await stop(again);
    return { rssPer1000KiB: ((rss1 - rss0) / mappings) * 1000, renewalBytes, recoveryMs, restored: state.restored ?? 0, kernelRepopulated: kernel };
  } finally {
    await stop(d);
  }
}

/** miniupnpd as Debian ships it, with the nftables layout its build expects. */
async function benchMiniupnpd(): Promise<void> {
  inNs('rtr', ['nft', 'delete', 'table', 'inet', 'portcullis']);
  inNs('rtr', ['ip', 'addr', 'flush', 'dev', 'wan0']);
  inNs('rtr', ['ip', 'addr', 'add', '11.22.33.1/24', 'dev', 'wan0']);
  inNs('rtr', ['nft', '-f', '-'], `table inet filter {
  chain forward {
    type filter hook forward priority 0; policy accept;
    jump miniupnpd
  }
  chain miniupnpd {
  }
}
table inet nat {
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
}
`);
  const conf = join(work, 'miniupnpd.conf');
  writeFileSync(
    conf,
    [
      'ext_ifname=wan0',
      'listening_ip=br-lan',
      'port=0',
      'enable_natpmp=yes',
      'enable_upnp=no',
      'secure_mode=yes',
      'system_uptime=yes',
      'min_lifetime=120',
      'max_lifetime=86400',
      'uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b',
      'upnp_table_name=filter',
      'upnp_nat_table_name=nat',
      'upnp_forward_chain=miniupnpd',
      'upnp_nat_chain=prerouting_miniupnpd',
      'upnp_nat_postrouting_chain=postrouting_miniupnpd',
      'allow 1024-65535 0.0.0.0/0 1024-65535',
      'deny 0-65535 0.0.0.0/0 0-65535',
      '',
    ].join('\n'),
  );
  const pidfile = join(work, 'miniupnpd.pid');
  // Daemonized: its -d debug mode logs every rule of every request.
  inNs('rtr', ['miniupnpd', '-f', conf, '-P', pidfile]);
  await new Promise((r) => setTimeout(r, 1000));
  const pid = Number(readFileSync(pidfile, 'utf8').trim());
  try {
    // Its cost grows with every mapping (one rule each, chains re-read per
    // request) and a queue of retransmissions would only measure the storm,
    // so it gets the few-clients shape and its sizes are capped.
    record('miniupnpd 2.3.1', `PCP MAP IPv4 ${SEQ_NAME}`, '0', load({ ...SEQ, count: 500, startPort: 20_000 }));
    const fill = load({ ...SEQ, count: 2500, startPort: 22_000, deadlineMs: 300_000 });
    process.stderr.write(`miniupnpd prefill: ${fill.succeeded} at ${fmt(fill.rate)}/s\n`);
    const n = 500 + fill.succeeded;
    record('miniupnpd 2.3.1', `PCP MAP IPv4 ${SEQ_NAME}`, `${n}`, load({ ...SEQ, count: 200, startPort: 25_000, deadlineMs: 300_000 }));
    record('miniupnpd 2.3.1', `NAT-PMP map ${SEQ_NAME}`, `${n + 200}`, load({ ...SEQ, protocol: 'natpmp', count: 200, startPort: 26_000, deadlineMs: 300_000 }));
  } finally {
    spawnSync('kill', [String(pid)]);
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark builds network namespaces: run it as root');
  sh(['bash', LAB, 'up']);
  try {
    // Client addresses on the LAN host, and routes back to them from the router.
    inNs('lan', ['ip', '-batch', '-'], [...V6_CLIENTS.map((a) => `addr add ${a}/64 dev eth0 nodad`), ...V4_CLIENTS.map((a) => `addr add ${a}/24 dev eth0`)].join('\n') + '\n');
    const { rssPer1000KiB, renewalBytes, recoveryMs, restored, kernelRepopulated } = await benchPortcullis();
    await benchMiniupnpd();

    const at = (server: string, loadName: string, existing: string) => rows.find((r) => r.server === server && r.load === loadName && r.existing === existing)?.r.rate ?? NaN;
    const out: string[] = [];
    out.push(`| server | load | mappings present | creations/s | p50 ms | p99 ms | ok | refused | lost | retransmissions |`);
    out.push(`|---|---|---:|---:|---:|---:|---:|---:|---:|---:|`);
    for (const { server, load: l, existing, r } of rows) {
      out.push(`| ${server} | ${l} | ${existing} | ${fmt(r.rate)} | ${fmt(r.p50ms, 1)} | ${fmt(r.p99ms, 1)} | ${r.succeeded} | ${r.failed} | ${r.lost} | ${r.retransmissions} |`);
    }
    out.push('');
    const r0 = at('portcullis', 'PCP MAP IPv6', '0');
    const r100k = at('portcullis', 'PCP MAP IPv6', '100 000');
    out.push(`portcullis creation rate at 100 000 mappings / at 0: ${fmt((r100k / r0) * 100)} % (target ≥ 80 %)`);
    out.push(`portcullis RSS per 1 000 mappings: ${fmt(rssPer1000KiB)} KiB`);
    out.push(`durable store: ${fmt(renewalBytes)} bytes written per 1 000 renewals`);
    out.push(`restart recovery with ${restored} mappings (store load + kernel reinstall, table deleted first): ${fmt(recoveryMs)} ms${kernelRepopulated ? '' : ' (kernel NOT repopulated!)'}`);
    const same = (server: string) => rows.filter((r) => r.server.startsWith(server) && r.load === `PCP MAP IPv4 ${SEQ_NAME}`);
    const [p0, pN] = [same('portcullis')[0], same('portcullis').at(-1)];
    const [m0, mN] = [same('miniupnpd')[0], same('miniupnpd').at(-1)];
    if (p0 && m0) out.push(`same load (${SEQ_NAME}), PCP MAP IPv4 at 0 mappings: portcullis / miniupnpd = ${fmt(p0.r.rate / m0.r.rate, 1)}×`);
    if (pN && mN) out.push(`same load, portcullis at ${pN.existing} mappings / miniupnpd at ${mN.existing}: ${fmt(pN.r.rate / mN.r.rate, 1)}×`);
    if (m0 && mN) out.push(`miniupnpd rate at ${mN.existing} mappings / at 0: ${fmt((mN.r.rate / m0.r.rate) * 100)} %`);
    process.stdout.write(out.join('\n') + '\n');
  } finally {
    sh(['bash', LAB, 'down']);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).message}\n`);
  process.exit(1);
});
