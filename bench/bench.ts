// `npm run bench` (as root): the daemon in the lab's router with the real
// nft backend, a load generator (bench/load.ts) on many LAN addresses, and
// the same load against Debian's miniupnpd in the same lab. Prints one table.
//
// Everything stays inside the namespaces this script creates. miniupnpd
// refuses private and documentation external addresses, so for the UPnP rows
// (both servers) and miniupnpd's run the router's WAN side gets 11.22.33.1/24
// — an address that exists only inside the lab's namespaces; no packet
// leaves them.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadResult, LoadSpec } from './load.js';
import { netCounter, type UpnpLoadResult, type UpnpLoadSpec } from './upnp-load.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LAB = join(ROOT, 'scripts/lab.sh');
const CLI = join(ROOT, 'dist/src/cli.js');
const LOAD = join(ROOT, 'dist/bench/load.js');
const UPNP_LOAD = join(ROOT, 'dist/bench/upnp-load.js');
const P = process.env.LAB_PREFIX ?? 'bench';
const env = { ...process.env, LAB_PREFIX: P };
const work = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));

const sh = (args: string[], input?: string) => {
  const r = spawnSync(args[0] as string, args.slice(1), { encoding: 'utf8', input, env, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
};
const inNs = (node: string, args: string[], input?: string) => sh(['ip', 'netns', 'exec', `${P}-${node}`, ...args], input);
/** Deletes a table of the router's if it is there. */
const dropTable = (name: string) => spawnSync('ip', ['netns', 'exec', `${P}-rtr`, 'nft', 'delete', 'table', 'inet', name], { env });

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

/**
 * UPnP AddPortMapping over HTTP, the same shape for both servers: 64
 * requests in flight over the 200 client addresses (one or two per address:
 * portcullis serves 8 connections per source), each a new UDP mapping for
 * the asking address itself; a row is 5 000 requests or 10 s, whichever
 * ends first.
 */
const UPNP = { action: 'AddPortMapping' as const, server: '192.168.77.1', clients: V4_CLIENTS, concurrency: 64, count: 5_000, durationMs: 10_000, timeoutMs: 30_000 };
const UPNP_LOAD_NAME = `UPnP AddPortMapping (HTTP, ${UPNP.concurrency} in flight)`;
/**
 * Mappings present for the second UPnP row, made over UPnP. miniupnpd's
 * cost per request grows with its table (~15 ms more per 1 000 mappings in
 * this lab), so the prefill stops after 150 s: 10 000 would take ~13 minutes.
 */
const UPNP_FILL = { count: 10_000, durationMs: 150_000 };

function upnpLoad(spec: Partial<UpnpLoadSpec> & Pick<UpnpLoadSpec, 'startPort'>): UpnpLoadResult {
  return JSON.parse(inNs('lan', [process.execPath, UPNP_LOAD, JSON.stringify({ ...UPNP, ...spec })])) as UpnpLoadResult;
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** The pid of the process running inside `ip netns exec` (exec replaces ip). */
const pidOf = (c: ChildProcess) => c.pid as number;

/** `name` keeps a run's config, state and log apart from another's. */
async function startPortcullis(name = 'portcullis'): Promise<ChildProcess> {
  const cfg = join(work, `${name}.json`);
  const logFile = join(work, `${name}.log`);
  writeFileSync(
    cfg,
    JSON.stringify({
      announce: false,
      stateDir: join(work, name === 'portcullis' ? 'state' : `${name}-state`),
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
  const out = openSync(logFile, 'w');
  const child = spawn('ip', ['netns', 'exec', `${P}-rtr`, process.execPath, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--config', cfg], { stdio: ['ignore', out, out] });
  closeSync(out);
  // Up to two minutes: a restart with 100 000+ mappings reinstalls them all first.
  for (let i = 0; i < 6000; i++) {
    if (readFileSync(logFile, 'utf8').includes('"event":"started"')) return child;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`portcullis did not start: ${readFileSync(logFile, 'utf8')}`);
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

/** The mappings portcullis has in the kernel: IPv4 DNAT map elements (but the map's 0.0.0.0 placeholder). */
function portcullisDnat4(): number {
  type Key = { concat?: unknown[]; elem?: { val?: { concat?: unknown[] } } };
  const out = JSON.parse(inNs('rtr', ['nft', '-j', 'list', 'map', 'inet', 'portcullis', 'dnat4'])) as { nftables: { map?: { elem?: [Key, unknown][] } }[] };
  const elems = out.nftables.flatMap((o) => o.map?.elem ?? []);
  return elems.filter(([k]) => (k.elem?.val?.concat ?? k.concat)?.[0] !== '0.0.0.0').length;
}

/** The mappings miniupnpd has in the kernel: one DNAT rule each. */
const miniupnpdRules = () => (JSON.parse(inNs('rtr', ['nft', '-j', 'list', 'chain', 'inet', 'nat', 'prerouting_miniupnpd'])) as { nftables: { rule?: unknown }[] }).nftables.filter((o) => o.rule).length;

const thousands = (n: number) => String(n).replace(/\B(?=(\d{3})+$)/g, ' ');
/** Lines printed under the table. */
const notes: string[] = [];

/**
 * The UPnP rows for one server: AddPortMapping from 0 mappings, a prefill
 * over UPnP itself towards 10 000, the same load again. After each run the
 * kernel must hold every mapping answered with success (and at most the
 * unanswered ones more), or the row is flagged: the rate counts installed
 * mappings, not answers.
 */
function benchUpnp(server: string, installed: () => number, opts: { warmUp: boolean; fillConcurrency: number }): void {
  let present = 0;
  // Requests given up on (no answer in timeoutMs) that the server may still
  // carry out later: miniupnpd accepts a queued connection long after.
  let unanswered = 0;
  const check = (r: UpnpLoadResult, what: string) => {
    const have = installed();
    const low = present + r.succeeded;
    unanswered += r.lost;
    if (have < low || have > low + unanswered) notes.push(`${server}: ${have} mappings in the kernel after ${what}, ${low} expected — MISMATCH`);
    else if (have > low) notes.push(`${server}: ${have - low} requests given up on after ${UPNP.timeoutMs / 1000} s were carried out anyway (seen after ${what})`);
    unanswered -= Math.max(0, have - low);
    present = have;
  };
  // SYNs the router dropped because the server's accept queue was full.
  const listenDrops = () => netCounter(inNs('rtr', ['cat', '/proc/net/netstat']), 'TcpExt', 'ListenDrops');
  const measure = (startPort: number) => {
    const existing = thousands(present);
    const d0 = listenDrops();
    const r = upnpLoad({ startPort });
    record(server, UPNP_LOAD_NAME, existing, r);
    const dropped = listenDrops() - d0;
    if (dropped) notes.push(`${server}: ${dropped} connection attempts dropped on a full accept queue during the UPnP run at ${existing} (the clients resent their SYNs)`);
    check(r, `the UPnP run at ${existing}`);
    return r;
  };
  if (opts.warmUp) {
    // As for PCP: 2 000 mappings made and deleted again, so the run at 0
    // starts from 0 mappings on a warm daemon.
    const made = upnpLoad({ count: 2_000, startPort: 50_000 });
    const gone = upnpLoad({ action: 'DeletePortMapping', count: 2_000, startPort: 50_000 });
    if (made.succeeded !== 2_000 || gone.succeeded !== 2_000 || installed() !== 0) notes.push(`${server}: UPnP warm-up: ${made.succeeded} made, ${gone.succeeded} deleted, ${installed()} left — MISMATCH`);
  }
  const at0 = measure(10_000);
  process.stderr.write(`${server} UPnP control URL: http://${UPNP.server}:${at0.target.port}${at0.target.controlPath} (${at0.target.serviceType})\n`);
  const fill = upnpLoad({ ...UPNP_FILL, count: UPNP_FILL.count - present, concurrency: opts.fillConcurrency, startPort: 20_000 });
  process.stderr.write(`${server} UPnP prefill: ${fill.succeeded} more at ${fmt(fill.rate)}/s (${fill.failed} faults, ${fill.lost} lost)\n`);
  check(fill, 'the UPnP prefill');
  const capped = present < UPNP_FILL.count ? ` (its prefill over UPnP, ${opts.fillConcurrency} in flight, ${fmt(fill.rate)}/s on average, stopped after ${UPNP_FILL.durationMs / 1000} s at ${thousands(present)})` : '';
  const filled = thousands(present);
  const atN = measure(40_000);
  notes.push(`${server}: UPnP AddPortMapping/s at ${filled} mappings / at 0: ${fmt((atN.rate / at0.rate) * 100)} %${capped}`);
}

/** A fresh daemon (empty store, table deleted first) for the UPnP rows, WAN address 11.22.33.1. */
async function benchPortcullisUpnp(): Promise<void> {
  dropTable('portcullis');
  const d = await startPortcullis('portcullis-upnp');
  try {
    benchUpnp('portcullis', portcullisDnat4, { warmUp: true, fillConcurrency: UPNP.concurrency });
  } finally {
    await stop(d);
  }
}

/** The chains Debian's miniupnpd-nftables expects (its own tables, made empty). */
function miniupnpdTables(): void {
  for (const table of ['filter', 'nat']) dropTable(table);
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
}

/** miniupnpd as Debian ships it, daemonized (its -d debug mode logs every rule of every request); returns a stop function. */
async function startMiniupnpd(protocols: 'natpmp' | 'upnp'): Promise<() => Promise<void>> {
  miniupnpdTables();
  const conf = join(work, `miniupnpd-${protocols}.conf`);
  writeFileSync(
    conf,
    [
      'ext_ifname=wan0',
      'listening_ip=br-lan',
      // UPnP's HTTP on portcullis' port; the load generator finds it over SSDP either way.
      `port=${protocols === 'upnp' ? 5000 : 0}`,
      `enable_natpmp=${protocols === 'natpmp' ? 'yes' : 'no'}`,
      `enable_upnp=${protocols === 'upnp' ? 'yes' : 'no'}`,
      // A client maps only its own address (what portcullis' default does).
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
  const pidfile = join(work, `miniupnpd-${protocols}.pid`);
  inNs('rtr', ['miniupnpd', '-f', conf, '-P', pidfile]);
  await new Promise((r) => setTimeout(r, 1000));
  const pid = Number(readFileSync(pidfile, 'utf8').trim());
  return async () => {
    spawnSync('kill', [String(pid)]);
    for (let i = 0; i < 500 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 20));
  };
}

async function benchMiniupnpd(): Promise<void> {
  dropTable('portcullis');
  let stopIt = await startMiniupnpd('natpmp');
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
    await stopIt();
    // UPnP: a fresh instance with empty chains.
    stopIt = await startMiniupnpd('upnp');
    // Prefilled 4 in flight: under its listen backlog of 5, so no request is
    // lost to a dropped SYN (64 in flight lost some and made fewer).
    benchUpnp('miniupnpd 2.3.1', miniupnpdRules, { warmUp: false, fillConcurrency: 4 });
  } finally {
    await stopIt();
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark builds network namespaces: run it as root');
  sh(['bash', LAB, 'up']);
  try {
    // Client addresses on the LAN host, and routes back to them from the router.
    inNs('lan', ['ip', '-batch', '-'], [...V6_CLIENTS.map((a) => `addr add ${a}/64 dev eth0 nodad`), ...V4_CLIENTS.map((a) => `addr add ${a}/24 dev eth0`)].join('\n') + '\n');
    const { rssPer1000KiB, renewalBytes, recoveryMs, restored, kernelRepopulated } = await benchPortcullis();
    // From here on the WAN address is one miniupnpd accepts (and a UPnP
    // control point calls "connected"): both servers' UPnP rows, then miniupnpd.
    inNs('rtr', ['ip', 'addr', 'flush', 'dev', 'wan0']);
    inNs('rtr', ['ip', 'addr', 'add', '11.22.33.1/24', 'dev', 'wan0']);
    await benchPortcullisUpnp();
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
    const upnp = (server: string) => rows.filter((r) => r.server.startsWith(server) && r.load === UPNP_LOAD_NAME);
    const [u0, uN] = [upnp('portcullis')[0], upnp('portcullis').at(-1)];
    const [v0, vN] = [upnp('miniupnpd')[0], upnp('miniupnpd').at(-1)];
    const side = (p: Row, m: Row) => `portcullis ${fmt(p.r.rate)} | miniupnpd ${fmt(m.r.rate)} = ${fmt(p.r.rate / m.r.rate, 1)}× (p50 ${fmt(p.r.p50ms, 1)} | ${fmt(m.r.p50ms, 1)} ms)`;
    if (u0 && v0) out.push(`UPnP AddPortMapping/s, ${UPNP.concurrency} in flight, at 0 mappings: ${side(u0, v0)}`);
    if (uN && vN) out.push(`UPnP AddPortMapping/s, portcullis at ${uN.existing} mappings, miniupnpd at ${vN.existing}: ${side(uN, vN)}`);
    out.push(...notes);
    process.stdout.write(out.join('\n') + '\n');
  } finally {
    sh(['bash', LAB, 'down']);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).message}\n`);
  process.exit(1);
});
