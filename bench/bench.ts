// `npm run bench` (as root): the daemon in the lab's router with the real
// nft backend, a load generator (bench/load.ts) on many LAN addresses, and
// the same load against Debian's miniupnpd in the same lab. Prints one table.
//
// `--only SECTION[,SECTION]` runs part of it: pcp (portcullis' PCP/NAT-PMP
// rows, store, recovery), flood (one device flooding from 2 000 IPv6
// addresses while another maps ports, the daemon at its defaults), upnp
// (portcullis' UPnP rows), miniupnpd. `--nft-path auto|library|process`
// sets the daemon's nft.path (how it reaches the kernel); the table's notes
// say which path ran.
//
// `--quick`: portcullis' rows only (pcp and upnp, smaller: light load 200
// requests, bulk IPv6 at 0 and at 20 000 present, one NAT-PMP row, one UPnP
// row of 2 000 at 64 in flight, the restart with everything present —
// ~35 000 mappings, not the full bench's 131 000), then a restart line and
// one summary line
// `pcp_map_per_s=N light_p99_ms=N upnp_per_s=N recovery_ms=N rss_per_1000_kib=N`
// (recovery_ms: from spawning the restarted daemon until the kernel holds
// every mapping, counted).
//
// After every PCP/NAT-PMP load the kernel's elements are counted; "mappings
// present" is that count, and a count that is not what the successes imply
// is noted as a MISMATCH (as the UPnP rows are checked).
//
// Everything stays inside the namespaces this script creates. miniupnpd
// refuses private and documentation external addresses, so for the UPnP rows
// (both servers) and miniupnpd's run the router's WAN side gets 11.22.33.1/24
// — an address that exists only inside the lab's namespaces; no packet
// leaves them.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FirstAnswer, FirstAnswerSpec } from './first-answer.js';
import type { FloodResult, FloodSpec } from './flood.js';
import { percentile, type LoadResult, type LoadSpec } from './load.js';
import { netCounter, type UpnpLoadResult, type UpnpLoadSpec } from './upnp-load.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LAB = join(ROOT, 'scripts/lab.sh');
// BENCH_DAEMON_CLI: another build's dist/src/cli.js as the daemon under test (an A/B against an older tree).
const CLI = process.env.BENCH_DAEMON_CLI ?? join(ROOT, 'dist/src/cli.js');
// BENCH_DAEMON_NODE_ARGS: node options for the daemon, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
const DAEMON_NODE_ARGS = (process.env.BENCH_DAEMON_NODE_ARGS ?? '').split(' ').filter(Boolean);
const LOAD = join(ROOT, 'dist/bench/load.js');
const UPNP_LOAD = join(ROOT, 'dist/bench/upnp-load.js');
const FLOOD_GEN = join(ROOT, 'dist/bench/flood.js');
const FIRST_ANSWER = join(ROOT, 'dist/bench/first-answer.js');
const P = process.env.LAB_PREFIX ?? 'bench';
const env = { ...process.env, LAB_PREFIX: P };
const work = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));

const sh = (args: string[], input?: string) => {
  const r = spawnSync(args[0] as string, args.slice(1), { encoding: 'utf8', input, env, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
};
const inNs = (node: string, args: string[], input?: string) => sh(['ip', 'netns', 'exec', `${P}-${node}`, ...args], input);
/** inNs without blocking: for loads that run side by side. `onStderr` sees the child's stderr as it comes. */
function inNsAsync(node: string, args: string[], onStderr?: (text: string) => void): Promise<string> {
  const child = spawn('ip', ['netns', 'exec', `${P}-${node}`, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let err = '';
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => {
    err += c.toString('utf8');
    onStderr?.(err);
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out).toString('utf8')) : reject(new Error(`${args.join(' ').slice(0, 200)} in ${node}: exit ${code}: ${err}`))));
  });
}
/** Deletes a table of the router's if it is there. */
const dropTable = (name: string) => spawnSync('ip', ['netns', 'exec', `${P}-rtr`, 'nft', 'delete', 'table', 'inet', name], { env });

const V6_CLIENTS = Array.from({ length: 256 }, (_, i) => `2001:db8:77::1:${(i + 1).toString(16)}`);
const V4_CLIENTS = Array.from({ length: 200 }, (_, i) => `192.168.77.${i + 10}`);
/**
 * The LAN host's IPv4 client addresses are on this many devices — macvlan
 * interfaces over its eth0, each its own link-layer address (lanDevices) —
 * so the router's neighbour table, and the daemon's fairness, see several
 * devices as on a real LAN, not one device with 200 addresses (whose share
 * of the HTTP slots capped the UPnP rows). The IPv6 clients stay on eth0.
 */
const DEVICES = 8;
/** The bench daemon's metrics, on the router's loopback: the store's own byte counter is read there. */
const METRICS = '127.0.0.1:9464';

/**
 * The shape both servers get for the side-by-side rows: 4 clients, one
 * request outstanding each, RFC 6887's 3 s initial retransmission timeout.
 */
const SEQ = { server: '192.168.77.1', clients: V4_CLIENTS.slice(0, 4), window: 1, timeoutMs: 3000, maxTries: 4 };
const SEQ_NAME = '(4 clients × 1)';

type PartialLoad = Partial<LoadSpec> & Pick<LoadSpec, 'clients' | 'count' | 'startPort' | 'server'>;
// RFC 6887 §8.1.1: a client's initial retransmission timeout is 3 s.
const loadSpec = (spec: PartialLoad): LoadSpec => ({ protocol: 'pcp', port: 5351, window: 8, lifetime: 3600, timeoutMs: 3000, maxTries: 4, deadlineMs: 600_000, ...spec });

function load(spec: PartialLoad): LoadResult {
  return JSON.parse(inNs('lan', [process.execPath, LOAD, JSON.stringify(loadSpec(spec))])) as LoadResult;
}

/** A load from another LAN host, `node`, without blocking. */
async function loadFrom(node: string, spec: PartialLoad): Promise<LoadResult> {
  return JSON.parse(await inNsAsync(node, [process.execPath, LOAD, JSON.stringify(loadSpec(spec))])) as LoadResult;
}

/**
 * UPnP AddPortMapping over HTTP, the same shape for both servers: 64
 * requests in flight over the 200 client addresses on 8 devices (one or two
 * per address: portcullis serves 8 connections per source and a quarter of
 * its 128 slots per device), each a new UDP mapping for the asking address
 * itself; a row is 5 000 requests or 10 s, whichever ends first.
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

/**
 * How the daemon is configured. 'bench': a load generator is a few clients
 * asking as fast as they can, so the limits are lifted (throughput rows).
 * 'defaults': what a router runs out of the box — no policy file (the
 * built-in default policy), every limit at its default; only the state
 * directory is the bench's. The flood row runs this: the defaults must
 * protect one host from another.
 */
type Settings = 'bench' | 'defaults';

/** `--nft-path X`: the daemon's nft.path; unset, its default. */
const NFT_PATH = ((i) => (i < 0 ? undefined : process.argv[i + 1]))(process.argv.indexOf('--nft-path'));
const nftSetting = NFT_PATH ? { nft: { path: NFT_PATH } } : {};

function writeConfig(name: string, settings: Settings): string {
  const cfg = join(work, `${name}.json`);
  const stateDir = join(work, name === 'portcullis' ? 'state' : `${name}-state`);
  if (settings === 'defaults') {
    writeFileSync(cfg, JSON.stringify({ stateDir, ...nftSetting }));
    return cfg;
  }
  writeFileSync(cfg, JSON.stringify({ announce: false, stateDir, ...nftSetting, metrics: METRICS, maxMappings: 1_000_000, policy: join(work, 'policy.json'), rateLimit: { perSecond: 1_000_000, burst: 1_000_000 },
    // The load generator is one device with many addresses: no kernel per-device limit either.
    deviceRateLimit: { perSecond: 0, burst: 1 } }));
  writeFileSync(
    join(work, 'policy.json'),
    JSON.stringify({ version: 1, rules: [{ name: 'bench', action: 'allow', match: { internalPorts: '1024-65535' }, limits: { maxMappingsPerClient: 1_000_000, requestsPerSecond: 0 } }] }),
  );
  return cfg;
}

/** The daemon in the router, not waited for. `name` keeps a run's config, state and log apart from another's. */
function spawnPortcullis(name = 'portcullis', settings: Settings = 'bench'): ChildProcess {
  const cfg = writeConfig(name, settings);
  const out = openSync(join(work, `${name}.log`), 'w');
  const child = spawn('ip', ['netns', 'exec', `${P}-rtr`, process.execPath, ...DAEMON_NODE_ARGS, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--config', cfg], { stdio: ['ignore', out, out] });
  closeSync(out);
  return child;
}

/** Resolves when the daemon's log says it started (up to two minutes). */
async function started(name = 'portcullis'): Promise<void> {
  const logFile = join(work, `${name}.log`);
  for (let i = 0; i < 6000; i++) {
    if (readFileSync(logFile, 'utf8').includes('"event":"started"')) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`portcullis did not start: ${readFileSync(logFile, 'utf8')}`);
}

async function startPortcullis(name = 'portcullis', settings: Settings = 'bench'): Promise<ChildProcess> {
  const child = spawnPortcullis(name, settings);
  await started(name);
  return child;
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

/** Which path the daemon took to the kernel, from its nft-ready line. */
function nftPathOf(logFile: string): string {
  const line = readFileSync(logFile, 'utf8').split('\n').find((l) => l.includes('"event":"nft-ready"'));
  return line ? String((JSON.parse(line) as { path?: string }).path) : 'unknown';
}

/** The daemon's per-mapping sets and maps: an IPv6 mapping is one pinholes6 element, an IPv4 one (PCP or NAT-PMP) one dnat4 element. */
const MAPPING_SETS = [
  ['set', 'pinholes6'],
  ['set', 'pinholes6_filtered'],
  ['map', 'dnat4'],
  ['map', 'dnat4_filtered'],
] as const;

/**
 * The mappings portcullis has in the kernel, counted: the elements of its
 * per-mapping sets and maps that carry a timeout (the sentinel and the
 * 0.0.0.0 placeholder have none; every mapping's element has one).
 */
function kernelMappings(): number {
  let n = 0;
  for (const [kind, name] of MAPPING_SETS) {
    const out = JSON.parse(inNs('rtr', ['nft', '-j', 'list', kind, 'inet', 'portcullis', name])) as { nftables: Record<string, { elem?: unknown[] } | undefined>[] };
    for (const o of out.nftables) {
      for (const e of (o.set ?? o.map)?.elem ?? []) {
        const key = (Array.isArray(e) ? e[0] : e) as { elem?: { timeout?: number } } | undefined;
        if (key?.elem?.timeout !== undefined) n++;
      }
    }
  }
  return n;
}

/**
 * What the daemon's durable store has written so far — journal records,
 * compaction snapshots, disk probes — by its own count
 * (portcullis_store_written_bytes_total on the daemon's metrics).
 */
function storeWrittenBytes(): number {
  return metric('portcullis_store_written_bytes_total');
}

/** One unlabelled sample of the bench daemon's metrics (NaN if it has none such). */
function metric(name: string): number {
  const text = inNs('rtr', [process.execPath, '-e', `fetch('http://${METRICS}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`]);
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  // NaN from a daemon without the counter (an older build under BENCH_DAEMON_CLI).
  return m ? Number(m[1]) : NaN;
}

/** The snapshot file's inode and size: a compaction renames a new one over it. */
function snapshotFile(dir: string): { ino: number; size: number } {
  const st = statSync(join(dir, 'snapshot'));
  return { ino: st.ino, size: st.size };
}

interface PcpResult {
  nftPath: string;
  rssPer1000KiB: number;
  rssMappings: number;
  /** Bytes the store wrote (its own counter: appends, and any compaction) per 1 000 renewals. */
  renewalBytes: number;
  /** The same with the compaction the store's rule makes due, amortized. */
  renewalBytesAmortized: number;
  renewalHow: string;
  restart: Restart;
  present: number;
}

/**
 * Portcullis' PCP/NAT-PMP rows. After every load the kernel's elements are
 * counted (`kernelMappings`) and must be what the load's successes imply:
 * what was there plus the mappings made (or less the ones deleted), and at
 * most the requests given up on more (a lost answer's request may have been
 * carried out). The "mappings present" column is that count before the row.
 */
async function benchPortcullis(quick: boolean): Promise<PcpResult> {
  const d = await startPortcullis();
  let present = 0;
  let checked = 0;
  const check = (r: LoadResult, what: string, kind: 'make' | 'delete' | 'renew') => {
    const have = kernelMappings();
    const expect = kind === 'make' ? present + r.succeeded : kind === 'delete' ? present - r.succeeded : present;
    const [low, high] = kind === 'make' ? [expect, expect + r.lost] : kind === 'delete' ? [expect - r.lost, expect] : [expect, expect];
    checked++;
    if (have < low || have > high) notes.push(`portcullis: ${thousands(have)} mappings in the kernel after ${what}, ${thousands(expect)} expected from its ${r.succeeded} successes — MISMATCH`);
    else if (have !== expect) notes.push(`portcullis: ${Math.abs(have - expect)} requests given up on were carried out anyway (seen after ${what})`);
    process.stderr.write(`kernel after ${what}: ${have} mappings (expected ${expect})\n`);
    present = have;
  };
  /** One measured row: the load, its table row labelled with the counted mappings present, the kernel check. */
  const row = (loadName: string, spec: PartialLoad) => {
    const at = thousands(present);
    const r = record('portcullis', loadName, at, load(spec));
    check(r, `${loadName} at ${at}`, 'make');
    return r;
  };
  try {
    const nftPath = nftPathOf(join(work, 'portcullis.log'));
    process.stderr.write(`portcullis nft path: ${nftPath}\n`);
    const pid = pidOf(d);
    present = kernelMappings();
    const s6 = '2001:db8:77::1';
    // Warm-up (JIT, buffers): pinholes made and deleted again, so the first
    // measured run starts from 0 mappings on a warm daemon.
    const warm = quick ? 2_000 : 5_000;
    check(load({ server: s6, clients: V6_CLIENTS, count: warm, startPort: 50_000 }), 'the warm-up', 'make');
    check(load({ server: s6, clients: V6_CLIENTS, count: warm, startPort: 50_000, lifetime: 0 }), 'the warm-up deletions', 'delete');
    // RSS per mapping: from the warm daemon (the warm-up's growth is not the mappings').
    const rss0 = rssKiB(pid);
    const present0 = present;
    let rss1: number;
    let rssMappings: number;
    if (quick) {
      // IPv6 pinholes: creation rate at 0 and at 20 000 present.
      row('PCP MAP IPv6', { server: s6, clients: V6_CLIENTS, count: 10_000, startPort: 10_000 });
      const fill = load({ server: s6, clients: V6_CLIENTS, count: 10_000, startPort: 12_000 });
      check(fill, 'the prefill', 'make');
      process.stderr.write(`prefill: ${fill.succeeded} more at ${fmt(fill.rate)}/s\n`);
      row('PCP MAP IPv6', { server: s6, clients: V6_CLIENTS, count: 10_000, startPort: 13_000 });
      row('NAT-PMP map', { protocol: 'natpmp', server: '192.168.77.1', clients: V4_CLIENTS, count: 5_000, startPort: 21_000 });
      rss1 = rssKiB(pid);
      rssMappings = present - present0;
      row(`PCP MAP IPv4 ${SEQ_NAME}`, { ...SEQ, count: 200, startPort: 31_000 });
    } else {
      row(`PCP MAP IPv4 ${SEQ_NAME}`, { ...SEQ, count: 500, startPort: 30_000 });
      // IPv6 pinholes: creation rate with 0, 10 000 and 100 000 mappings present.
      row('PCP MAP IPv6', { server: s6, clients: V6_CLIENTS, count: 10_000, startPort: 10_000 });
      row('PCP MAP IPv6', { server: s6, clients: V6_CLIENTS, count: 10_000, startPort: 11_000 });
      const fill = load({ server: s6, clients: V6_CLIENTS, count: 80_000, startPort: 12_000 });
      check(fill, 'the prefill', 'make');
      process.stderr.write(`prefill: ${fill.succeeded} more at ${fmt(fill.rate)}/s\n`);
      row('PCP MAP IPv6', { server: s6, clients: V6_CLIENTS, count: 10_000, startPort: 13_000 });
      rss1 = rssKiB(pid);
      rssMappings = present - present0;
      // IPv4 DNAT mappings (external port allocation on top).
      row('PCP MAP IPv4', { server: '192.168.77.1', clients: V4_CLIENTS, count: 10_000, startPort: 20_000 });
      row('NAT-PMP map', { protocol: 'natpmp', server: '192.168.77.1', clients: V4_CLIENTS, count: 10_000, startPort: 21_000 });
      row(`PCP MAP IPv4 ${SEQ_NAME}`, { ...SEQ, count: 500, startPort: 31_000 });
    }

    // Durable store: bytes written for 1000 renewals (25 clients renew the 40
    // mappings each made by the first IPv6 row), by the store's own counter.
    const stateDir = join(work, 'state');
    const [bytes0, snap0] = [storeWrittenBytes(), snapshotFile(stateDir)];
    const renew = await loadFrom('lan', { server: s6, clients: V6_CLIENTS.slice(0, 25), count: 1000, startPort: 10_000 });
    const [bytes1, snap1] = [storeWrittenBytes(), snapshotFile(stateDir)];
    check(renew, 'the 1 000 renewals', 'renew');
    const renewalBytes = ((bytes1 - bytes0) / renew.succeeded) * 1000;
    const compacted = snap1.ino !== snap0.ino;
    // The store compacts when its journal outgrows max(4 MiB, 2 × snapshot)
    // (src/state/store.ts): each journal byte then carries snapshot/threshold
    // bytes of the next snapshot.
    const threshold = Math.max(4 << 20, 2 * snap1.size);
    const renewalBytesAmortized = compacted ? renewalBytes : renewalBytes * (1 + snap1.size / threshold);
    const renewalHow = compacted
      ? 'a compaction happened during the renewals and is in the figure'
      : `no compaction fell in the renewals; with the next one amortized (snapshot ${thousands(snap1.size)} bytes written once per ${thousands(threshold)} journal bytes, the store's rule; computed, not measured): ${fmt(renewalBytesAmortized)}`;

    await stop(d);
    const restart = await measureRestart(present);
    notes.push(`portcullis: the kernel's mappings (elements with a timeout in pinholes6, pinholes6_filtered, dnat4, dnat4_filtered) counted after each of ${checked} PCP/NAT-PMP loads and during the restart`);
    return { nftPath, rssPer1000KiB: ((rss1 - rss0) / rssMappings) * 1000, rssMappings, renewalBytes, renewalBytesAmortized, renewalHow, restart, present };
  } finally {
    await stop(d);
  }
}

interface Restart {
  /** Mappings counted in the kernel before the stop. */
  before: number;
  /** What the daemon's "state" line says it restored. */
  restored: number;
  /** From spawning the daemon: the first success a client heard… */
  firstAnswerMs: number;
  /** …the time on its "started" line… */
  startedMs: number;
  /** …the time on its nft-reinstalled line (the kernel complete, by its account)… */
  kernelMs: number;
  /** …and the end of the count that confirmed it (an upper bound, counted). */
  countedMs: number;
  kernelCount: number;
  /** The daemon's RSS once the kernel was complete… */
  rssKiB: number;
  /** …and V8's heap then (MiB, from its metrics). */
  heapMiB: { used: number; total: number };
  /** The daemon's nft-reinstalled line. */
  reinstall: Record<string, unknown>;
}

/**
 * Restart with everything present: a clean stop (done by the caller), the
 * daemon's table deleted as after a reboot, then a new daemon. From the
 * moment it is spawned: the first success a client hears (a PCP MAP for a
 * new port, asked every 10 ms from before the start), the daemon's
 * "started" and nft-reinstalled lines (their log times, same machine
 * clock), and a count of the kernel's mappings as soon as the latter
 * appears: every mapping before and the client's new one must be there, or
 * the row says MISMATCH. Then the daemon's RSS.
 */
async function measureRestart(before: number): Promise<Restart> {
  dropTable('portcullis');
  let asking: () => void = () => undefined;
  const ready = new Promise<void>((r) => (asking = r));
  const spec: FirstAnswerSpec = { server: '2001:db8:77::1', client: V6_CLIENTS[0] as string, internalPort: 60_000, intervalMs: 10, deadlineMs: 120_000 };
  const probe = inNsAsync('lan', [process.execPath, FIRST_ANSWER, JSON.stringify(spec)], (err) => err.includes('asking') && asking()).then(
    (out) => JSON.parse(out) as FirstAnswer,
    (err: unknown) => {
      notes.push(`portcullis restart: no client was answered (${(err as Error).message.slice(0, 200)})`);
      return undefined;
    },
  );
  await Promise.race([ready, probe]);
  const t0 = Date.now();
  const d = spawnPortcullis();
  try {
    const logFile = join(work, 'portcullis.log');
    const line = (event: string) => {
      const l = readFileSync(logFile, 'utf8').split('\n').find((x) => x.includes(`"event":"${event}"`));
      return l ? (JSON.parse(l) as Record<string, unknown>) : undefined;
    };
    // A build from before the reinstall in batches (an older tree under
    // BENCH_DAEMON_CLI) logs no nft-reinstalled: it completed its kernel
    // before "started".
    const batched = readFileSync(join(dirname(CLI), 'daemon/firewall.js'), 'utf8').includes('nft-reinstalled');
    const cue = batched ? 'nft-reinstalled' : 'started';
    let reinstall: Record<string, unknown> | undefined;
    for (let i = 0; i < 12_000 && !(reinstall = line(cue)); i++) await new Promise((r) => setTimeout(r, 10));
    if (reinstall && !batched) reinstall = { ...reinstall, entries: 'before "started" (an older daemon)' };
    if (!reinstall) throw new Error(`no ${cue} line within 120 s: ${readFileSync(logFile, 'utf8').slice(-2000)}`);
    const rss = rssKiB(pidOf(d));
    // Where the RSS is: V8's heap (used of total), and the rest (native: libnftables, buffers, code).
    const heap = { used: metric('nodejs_heap_size_used_bytes') / 1048576, total: metric('nodejs_heap_size_total_bytes') / 1048576 };
    const answer = await probe;
    const want = before + (answer ? 1 : 0);
    const kernelCount = kernelMappings();
    const countedMs = Date.now() - t0;
    if (kernelCount !== want) notes.push(`portcullis: ${thousands(kernelCount)} mappings in the kernel when the restart's reinstall said it was done, ${thousands(want)} expected — MISMATCH`);
    const at = (l: Record<string, unknown> | undefined) => (l ? Date.parse(String(l.time)) - t0 : NaN);
    return {
      before,
      restored: Number(line('state')?.restored ?? NaN),
      firstAnswerMs: answer ? answer.answeredWall - t0 : NaN,
      startedMs: at(line('started')),
      kernelMs: at(reinstall),
      countedMs,
      kernelCount,
      rssKiB: rss,
      heapMiB: heap,
      reinstall,
    };
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
 * The flooding device: 2 000 addresses of the LAN's /64 on the LAN host's
 * one interface (one link-layer address), PCP MAPs and SSDP searches at
 * 20 000 datagrams/s offered for 20 s, every address asking at the same
 * modest rate (7.5 MAPs and 2.5 searches a second).
 */
const FLOOD_ADDRESSES = Array.from({ length: 2_000 }, (_, i) => `2001:db8:77::f:${i.toString(16)}`);
const FLOOD: Omit<FloodSpec, 'addresses'> = { device: 'eth0', server: '2001:db8:77::1', rate: 20_000, count: 400_000, durationMs: 20_000, drainMs: 6_000, ssdpEvery: 4, startPort: 2_000, lifetime: 3600 };
/**
 * The victim: another device (lan2), one IPv6 and one IPv4 stream side by
 * side, each mapping a new port every 250 ms, one request at a time, RFC 6887
 * retransmissions. The default policy allows a host (a device: both streams
 * together) 128 mappings and 10 requests/s: 2 × 60 mappings at 8 requests/s
 * stay inside, so whatever is refused is the flood's doing. They are deleted
 * between the run alone and the run under flood.
 */
const VICTIM = { streams: [{ client: '2001:db8:77::3', server: '2001:db8:77::1' }, { client: '192.168.77.3', server: '192.168.77.1' }], count: 60, spacingMs: 250 };
/** The victim starts this long after the flood, and stops before it does. */
const VICTIM_DELAY_MS = 2_000;
const VICTIM_DEADLINE_MS = FLOOD.durationMs - VICTIM_DELAY_MS - 1_000;
const P99_TARGET_MS = 50;

const victim = (startPort: number, lifetime = 3600) =>
  Promise.all(VICTIM.streams.map((s) => loadFrom('lan2', { server: s.server, clients: [s.client], count: VICTIM.count, startPort, window: 1, spacingMs: VICTIM.spacingMs, lifetime, keepLatencies: true, deadlineMs: VICTIM_DEADLINE_MS })));

/** Elements of the kernel's pinholes6 set per destination address. */
function pinholes6ByAddress(): Map<string, number> {
  type Key = { concat?: unknown[]; elem?: { val?: { concat?: unknown[] } } };
  const out = JSON.parse(inNs('rtr', ['nft', '-j', 'list', 'set', 'inet', 'portcullis', 'pinholes6'])) as { nftables: { set?: { elem?: Key[] } }[] };
  const by = new Map<string, number>();
  for (const k of out.nftables.flatMap((o) => o.set?.elem ?? [])) {
    const addr = String((k.elem?.val?.concat ?? k.concat)?.[0]);
    by.set(addr, (by.get(addr) ?? 0) + 1);
  }
  return by;
}

/**
 * The router's UDP sockets by local address and port: bytes waiting in the
 * receive queue (not yet read by the daemon), and datagrams the kernel
 * dropped because that queue was full (`ss`'s skmem d) — what never reached
 * the daemon, whatever its fairness.
 */
function routerSockets(): Map<string, { queued: number; drops: number }> {
  const socks = new Map<string, { queued: number; drops: number }>();
  let local: { queued: number; drops: number } | undefined;
  for (const line of inNs('rtr', ['ss', '-uanm']).split('\n')) {
    const sock = /^\S+\s+(\d+)\s+\d+\s+(\S+)/.exec(line);
    if (sock?.[2]) {
      local = socks.get(sock[2]) ?? { queued: 0, drops: 0 };
      local.queued += Number(sock[1]);
      socks.set(sock[2], local);
    }
    const d = /skmem:\(.*\bd(\d+)\)/.exec(line);
    if (d && local) local.drops += Number(d[1]);
  }
  return socks;
}

/** The machine's CPU time so far (all cores, USER_HZ ticks): busy and the softirq part of it. */
function machineCpu(): { busy: number; softirq: number; total: number } {
  const [, user, nice, system, idle, iowait, irq, softirq, steal] = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).map(Number) as number[];
  const busy = [user, nice, system, irq, softirq, steal].reduce((a: number, b) => a + (b ?? 0), 0);
  return { busy, softirq: softirq ?? NaN, total: busy + (idle ?? 0) + (iowait ?? 0) };
}

/** CPU seconds a process has used (utime + stime; USER_HZ = 100 on Linux). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface LogSummary {
  lines: number;
  bytes: number;
  /** Lines by event, most first. */
  events: [string, number][];
  /** Refusals' details, the flood's own addresses written as one, most first. */
  details: [string, number][];
  /** Lines naming `client` (a request of it that reached the daemon). */
  fromClient: number;
}

const byCount = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
const bump = (m: Map<string, number>, key: string) => m.set(key, (m.get(key) ?? 0) + 1);

/** The daemon's log lines from byte `from` on. */
function logSummary(file: string, from: number, client: string): LogSummary {
  const text = readFileSync(file).subarray(from).toString('utf8');
  const events = new Map<string, number>();
  const details = new Map<string, number>();
  let lines = 0;
  let fromClient = 0;
  for (const line of text.split('\n')) {
    if (!line) continue;
    lines++;
    bump(events, /"event":"([^"]*)"/.exec(line)?.[1] ?? '(other)');
    const detail = /"detail":"([^"]*)"/.exec(line)?.[1];
    if (detail) bump(details, detail.replace(/2001:db8:77::f:[0-9a-f]+/g, '<a flood address>'));
    if (line.includes(`"client":"${client}"`)) fromClient++;
  }
  return { lines, bytes: Buffer.byteLength(text), events: byCount(events), details: byCount(details), fromClient };
}

const victimLine = (r: LoadResult) =>
  `${r.succeeded} ok, ${r.failed} refused${r.failed ? ` (PCP codes ${JSON.stringify(r.codes)})` : ''}, ${r.lost} lost` +
  `${r.unsent ? ` (${r.lost - r.unsent} sent and never answered, ${r.unsent} never sent: the deadline came while it waited)` : ''}, ${r.retransmissions} retransmissions, p50 ${fmt(r.p50ms, 1)} ms p99 ${fmt(r.p99ms, 1)} ms`;

/**
 * One device floods from 2 000 IPv6 addresses while another maps ports, the
 * daemon at its defaults. The victim runs alone first (baseline), deletes
 * its mappings, then runs again under the flood; the row is met when every
 * victim request succeeds under the flood and its p99 grows by less than
 * 50 ms. The router's neighbour entries for the flood's addresses are made
 * static: the kernel's neighbour table is shared by every namespace on the
 * machine (gc_thresh3, 1 024 by default), and overflowing it would measure
 * the kernel and disturb other labs, not portcullis.
 */
async function benchFlood(): Promise<void> {
  dropTable('portcullis');
  const mac = inNs('lan', ['cat', '/sys/class/net/eth0/address']).trim();
  inNs('lan', ['ip', '-batch', '-'], FLOOD_ADDRESSES.map((a) => `addr add ${a}/64 dev eth0 nodad`).join('\n') + '\n');
  inNs('rtr', ['ip', '-batch', '-'], FLOOD_ADDRESSES.map((a) => `neigh replace ${a} lladdr ${mac} dev br-lan nud permanent`).join('\n') + '\n');
  const name = 'portcullis-flood';
  const logFile = join(work, `${name}.log`);
  const d = await startPortcullis(name, 'defaults');
  try {
    const pid = pidOf(d);
    // A daemon that died under the flood is reported, not read.
    const ifAlive = (read: (pid: number) => number) => (d.exitCode === null ? read(pid) : NaN);
    const rss0 = rssKiB(pid);
    const alone = await victim(40_000);
    const cleared = await victim(40_000, 0);
    const undeleted = VICTIM.count * VICTIM.streams.length - cleared.reduce((n, r) => n + r.succeeded, 0);
    if (undeleted) notes.push(`flood: ${undeleted} of the victim's baseline mappings were not deleted before the flood (${cleared.map((r) => JSON.stringify(r.codes)).join(' ')})`);
    const rss1 = ifAlive(rssKiB);
    const log0 = statSync(logFile).size;
    const drops0 = routerSockets();
    const cpu0 = ifAlive(cpuSeconds);
    const machine0 = machineCpu();
    const t0 = performance.now();

    let started: () => void = () => undefined;
    const flooding = new Promise<void>((r) => (started = r));
    const floodRun = inNsAsync('lan', [process.execPath, FLOOD_GEN, JSON.stringify({ ...FLOOD, addresses: FLOOD_ADDRESSES })], (err) => {
      if (err.includes('flooding')) started();
    });
    await Promise.race([flooding, floodRun]);
    await new Promise((r) => setTimeout(r, VICTIM_DELAY_MS));
    // How far behind the daemon reads its PCP sockets while the victim asks.
    const queued = new Map<string, number[]>();
    const sampler = setInterval(() => {
      for (const [sock, { queued: q }] of routerSockets()) if (sock.endsWith(':5351')) queued.set(sock, [...(queued.get(sock) ?? []), q]);
    }, 250);
    const under = await victim(41_000).finally(() => clearInterval(sampler));
    const f = JSON.parse(await floodRun) as FloodResult;
    const daemonCpu = (ifAlive(cpuSeconds) - cpu0) / ((performance.now() - t0) / 1000);
    const machine = machineCpu();
    const [busy, softirq] = [(machine.busy - machine0.busy) / (machine.total - machine0.total), (machine.softirq - machine0.softirq) / (machine.total - machine0.total)];
    const drops = [...routerSockets()].map(([sock, { drops: n }]) => [sock, n - (drops0.get(sock)?.drops ?? 0)] as const).filter(([, n]) => n > 0);
    const rss2 = ifAlive(rssKiB);
    const log = logSummary(logFile, log0, VICTIM.streams[0]?.client ?? '');
    const alive = d.exitCode === null;
    const holes = pinholes6ByAddress();
    // Garbage or kept? The RSS again once the daemon has had a quiet while.
    await new Promise((r) => setTimeout(r, 10_000));
    const rss3 = ifAlive(rssKiB);
    const floodHeld = FLOOD_ADDRESSES.reduce((n, a) => n + (holes.get(a) ?? 0), 0);
    const victimHeld = holes.get(VICTIM.streams[0]?.client ?? '') ?? 0;

    const merged = (rs: LoadResult[]) => rs.flatMap((r) => r.latenciesMs ?? []).sort((a, b) => a - b);
    const [p99Alone, p99Under] = [percentile(merged(alone), 99), percentile(merged(under), 99)];
    const [p50Alone, p50Under] = [percentile(merged(alone), 50), percentile(merged(under), 50)];
    const asked = VICTIM.count * VICTIM.streams.length;
    const ok = under.reduce((n, r) => n + r.succeeded, 0);
    const refused = under.reduce((n, r) => n + r.failed, 0);
    const lost = under.reduce((n, r) => n + r.lost, 0);
    const growth = p99Under - p99Alone;
    const met = ok === asked && growth < P99_TARGET_MS;
    notes.push(
      `flood (${thousands(FLOOD_ADDRESSES.length)} IPv6 addresses, one device): victim ${ok}/${asked} ok${refused ? `, ${refused} refused` : ''}${lost ? `, ${lost} lost` : ''}, ` +
        `p99 ${fmt(p99Alone, 1)} → ${fmt(p99Under, 1)} ms (${growth >= 0 ? '+' : ''}${fmt(growth, 1)} ms, target < ${P99_TARGET_MS} ms); ` +
        `flood offered ${thousands(Math.round(f.offeredRate))}/s, answered ${thousands(Math.round(f.pcpAnsweredRate))}/s; flooding device holds ${thousands(floodHeld)} mappings — ${met ? 'MET' : 'NOT MET'}`,
    );
    VICTIM.streams.forEach((s, i) => {
      const [a, u] = [alone[i], under[i]];
      if (a && u) notes.push(`flood: victim ${s.client} (window 1, every ${VICTIM.spacingMs} ms): alone ${victimLine(a)}; under flood ${victimLine(u)}`);
    });
    notes.push(`flood: victim p50 ${fmt(p50Alone, 1)} → ${fmt(p50Under, 1)} ms; the victim's IPv6 address holds ${victimHeld} pinholes in the kernel (${under[0]?.succeeded ?? 0} granted under flood)`);
    notes.push(
      `flood: sent ${thousands(f.sent.pcp)} PCP MAPs, ${thousands(f.sent.ssdpMulticast)} multicast and ${thousands(f.sent.ssdpUnicast)} unicast M-SEARCHes (ssdp:all, MX 5) in ${fmt(f.seconds, 1)} s = ${thousands(Math.round(f.offeredRate))}/s of ${thousands(FLOOD.rate)}/s asked` +
        `${Object.keys(f.sendErrors).length ? ` (send errors ${JSON.stringify(f.sendErrors)})` : ''}; PCP answers ${thousands(f.pcpAnswers)} (by result code ${JSON.stringify(f.pcpCodes)}), ` +
        `SSDP answers ${thousands(f.ssdpAnswers)} datagrams (${thousands(f.ssdpAnswerBytes)} bytes); ` +
        `the router's kernel dropped on full receive buffers: ${drops.map(([sock, n]) => `${sock} ${thousands(n)}`).join(', ') || 'nothing'}`,
    );
    const queue = [...queued].map(([sock, q]) => {
      const sorted = q.sort((a, b) => a - b);
      return `${sock} median ${fmt(percentile(sorted, 50) / 1024, 1)} KiB, max ${fmt((sorted.at(-1) ?? NaN) / 1024, 1)} KiB`;
    });
    const rmemMax = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8'));
    notes.push(
      `flood: bytes waiting unread in the router's PCP sockets, sampled every 250 ms while the victim asked: ${queue.join('; ')} ` +
        `(a socket's receive buffer is capped by net.core.rmem_max, ${thousands(rmemMax)} on this machine; Linux's default is 212 992)`,
    );
    notes.push(`flood: CPU over the flood (its sending window and drain): daemon ${fmt(daemonCpu * 100)} % of a core, flood generator ${fmt((f.cpuSeconds / (f.seconds + FLOOD.drainMs / 1000)) * 100)} %, on ${availableParallelism()} cores shared with the victim and the kernel; the machine was ${fmt(busy * 100)} % busy (${fmt(softirq * 100)} % in softirq), other sessions' work included`);
    notes.push(
      `flood: daemon RSS ${fmt(rss0 / 1024, 1)} MiB at start, ${fmt(rss1 / 1024, 1)} after the victim alone, ${fmt(rss2 / 1024, 1)} after the flood, ${fmt(rss3 / 1024, 1)} 10 s later; ${alive ? 'still running' : `EXITED (code ${d.exitCode})`}; ` +
        `log during the flood: ${thousands(log.lines)} lines, ${thousands(log.bytes)} bytes (${log.events.slice(0, 5).map(([e, n]) => `${e} ${n}`).join(', ')})`,
    );
    notes.push(`flood: refusals by reason (daemon log): ${log.details.slice(0, 6).map(([d, n]) => `"${d}" ${thousands(n)}`).join('; ') || 'none'}; log lines about the victim's IPv6 address during the flood: ${log.fromClient}`);
  } finally {
    await stop(d);
    dropTable('portcullis');
    inNs('rtr', ['ip', '-batch', '-'], FLOOD_ADDRESSES.map((a) => `neigh del ${a} dev br-lan`).join('\n') + '\n');
    inNs('lan', ['ip', '-batch', '-'], FLOOD_ADDRESSES.map((a) => `addr del ${a}/64 dev eth0`).join('\n') + '\n');
  }
}

/**
 * The UPnP rows for one server: AddPortMapping from 0 mappings, a prefill
 * over UPnP itself towards 10 000, the same load again. After each run the
 * kernel must hold every mapping answered with success (and at most the
 * unanswered ones more), or the row is flagged: the rate counts installed
 * mappings, not answers.
 */
function benchUpnp(server: string, installed: () => number, opts: { warmUp: boolean; fillConcurrency: number; quick?: boolean }): void {
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
  // --quick: one row of 2 000 requests (or 5 s), no prefill; 64 in flight as in the full bench.
  const size = opts.quick ? { count: 2_000, durationMs: 5_000 } : {};
  const loadName = UPNP_LOAD_NAME;
  const measure = (startPort: number) => {
    const existing = thousands(present);
    const d0 = listenDrops();
    const r = upnpLoad({ startPort, ...size });
    record(server, loadName, existing, r);
    if (r.failed) notes.push(`${server}: UPnP run at ${existing}: ${r.failed} failed, by code ${JSON.stringify(r.codes)}`);
    const dropped = listenDrops() - d0;
    if (dropped) notes.push(`${server}: ${dropped} connection attempts dropped on a full accept queue during the UPnP run at ${existing} (the clients resent their SYNs)`);
    check(r, `the UPnP run at ${existing}`);
    return r;
  };
  if (opts.warmUp) {
    // As for PCP: 2 000 mappings made and deleted again, so the run at 0
    // starts from 0 mappings on a warm daemon.
    const warm = opts.quick ? 500 : 2_000;
    const made = upnpLoad({ ...size, count: warm, startPort: 50_000 });
    const gone = upnpLoad({ ...size, action: 'DeletePortMapping', count: warm, startPort: 50_000 });
    present = installed();
    // Refused adds and deletes leave the warm-up incomplete; only a kernel
    // count that differs from what the answers said is a mismatch.
    const verdict = present === made.succeeded - gone.succeeded ? 'incomplete, the kernel agrees' : 'MISMATCH with the kernel';
    if (made.succeeded !== warm || gone.succeeded !== warm || present !== 0)
      notes.push(`${server}: UPnP warm-up: ${made.succeeded} made, ${gone.succeeded} deleted, ${present} left — ${verdict} (failures by code: made ${JSON.stringify(made.codes)}, deleted ${JSON.stringify(gone.codes)})`);
  }
  const at0 = measure(10_000);
  process.stderr.write(`${server} UPnP control URL: http://${UPNP.server}:${at0.target.port}${at0.target.controlPath} (${at0.target.serviceType})\n`);
  if (opts.quick) return;
  const fill = upnpLoad({ ...UPNP_FILL, count: UPNP_FILL.count - present, concurrency: opts.fillConcurrency, startPort: 20_000 });
  process.stderr.write(`${server} UPnP prefill: ${fill.succeeded} more at ${fmt(fill.rate)}/s (${fill.failed} faults, ${fill.lost} lost)\n`);
  check(fill, 'the UPnP prefill');
  const capped = present < UPNP_FILL.count ? ` (its prefill over UPnP, ${opts.fillConcurrency} in flight, ${fmt(fill.rate)}/s on average, stopped after ${UPNP_FILL.durationMs / 1000} s at ${thousands(present)})` : '';
  const filled = thousands(present);
  const atN = measure(40_000);
  notes.push(`${server}: UPnP AddPortMapping/s at ${filled} mappings / at 0: ${fmt((atN.rate / at0.rate) * 100)} %${capped}`);
}

/** A fresh daemon (empty store, table deleted first) for the UPnP rows, WAN address 11.22.33.1. */
async function benchPortcullisUpnp(quick: boolean): Promise<void> {
  dropTable('portcullis');
  const d = await startPortcullis('portcullis-upnp');
  try {
    benchUpnp('portcullis', portcullisDnat4, { warmUp: true, fillConcurrency: UPNP.concurrency, quick });
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

const SECTIONS = ['pcp', 'flood', 'upnp', 'miniupnpd'] as const;
type Section = (typeof SECTIONS)[number];

/** The sections `--only a,b` names, or all of them. */
function sections(argv: readonly string[]): Set<Section> {
  // --quick: portcullis' PCP/NAT-PMP and UPnP rows, smaller.
  if (argv.includes('--quick')) return new Set(['pcp', 'upnp']);
  const i = argv.indexOf('--only');
  if (i < 0) return new Set(SECTIONS);
  const names = (argv[i + 1] ?? '').split(',').filter(Boolean);
  const unknown = names.filter((n) => !(SECTIONS as readonly string[]).includes(n));
  if (names.length === 0 || unknown.length) throw new Error(`--only takes sections among ${SECTIONS.join(', ')} (comma-separated)${unknown.length ? `; not one: ${unknown.join(', ')}` : ''}`);
  return new Set(names as Section[]);
}

/**
 * DEVICES macvlan interfaces over the LAN host's eth0 (bridge mode: each its
 * own link-layer address on the router's bridge), address i of V4_CLIENTS on
 * device i mod DEVICES, and a routing rule per address so that what it sends
 * leaves by its own device. ARP is answered only by the device holding the
 * address (arp_ignore 1), and the reverse-path filter is off in this
 * namespace (several interfaces share the subnet).
 */
function lanDevices(): void {
  inNs('lan', ['sysctl', '-qw', 'net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0']);
  const cmds: string[] = [];
  for (let k = 0; k < DEVICES; k++) {
    cmds.push(`link add dev${k} link eth0 type macvlan mode bridge`, `link set dev${k} up`);
    cmds.push(`route add 192.168.77.0/24 dev dev${k} table ${100 + k}`, `route add default via 192.168.77.1 dev dev${k} table ${100 + k}`);
  }
  V4_CLIENTS.forEach((a, i) => {
    const k = i % DEVICES;
    cmds.push(`addr add ${a}/24 dev dev${k} noprefixroute`, `rule add from ${a} table ${100 + k}`);
  });
  inNs('lan', ['ip', '-batch', '-'], cmds.join('\n') + '\n');
}

async function main(): Promise<void> {
  const only = sections(process.argv.slice(2));
  const quick = process.argv.includes('--quick');
  const t0 = performance.now();
  if (process.getuid?.() !== 0) throw new Error('the benchmark builds network namespaces: run it as root');
  sh(['bash', LAB, 'up']);
  try {
    // Client addresses on the LAN host: IPv6 on its eth0, IPv4 on its devices.
    inNs('lan', ['ip', '-batch', '-'], V6_CLIENTS.map((a) => `addr add ${a}/64 dev eth0 nodad`).join('\n') + '\n');
    lanDevices();
    const pcp = only.has('pcp') ? await benchPortcullis(quick) : undefined;
    if (only.has('flood')) await benchFlood();
    // From here on the WAN address is one miniupnpd accepts (and a UPnP
    // control point calls "connected"): both servers' UPnP rows, then miniupnpd.
    inNs('rtr', ['ip', 'addr', 'flush', 'dev', 'wan0']);
    inNs('rtr', ['ip', 'addr', 'add', '11.22.33.1/24', 'dev', 'wan0']);
    if (only.has('upnp')) await benchPortcullisUpnp(quick);
    if (only.has('miniupnpd')) await benchMiniupnpd();

    const out: string[] = [];
    if (rows.length) {
      out.push(`| server | load | mappings present | creations/s | p50 ms | p99 ms | ok | refused | lost | retransmissions |`);
      out.push(`|---|---|---:|---:|---:|---:|---:|---:|---:|---:|`);
      for (const { server, load: l, existing, r } of rows) {
        out.push(`| ${server} | ${l} | ${existing} | ${fmt(r.rate)} | ${fmt(r.p50ms, 1)} | ${fmt(r.p99ms, 1)} | ${r.succeeded} | ${r.failed} | ${r.lost} | ${r.retransmissions} |`);
      }
      out.push('');
    }
    const bulk = rows.filter((r) => r.server === 'portcullis' && r.load === 'PCP MAP IPv6');
    if (pcp) {
      const [b0, bN] = [bulk[0], bulk.at(-1)];
      out.push(`portcullis nft path (nft.path ${NFT_PATH ?? 'default'}): ${pcp.nftPath}`);
      if (b0 && bN) out.push(`portcullis creation rate at ${bN.existing} mappings / at ${b0.existing}: ${fmt((bN.r.rate / b0.r.rate) * 100)} % (target ≥ 80 % at 100 000)`);
      out.push(`portcullis RSS per 1 000 mappings: ${fmt(pcp.rssPer1000KiB)} KiB (RSS growth over ${thousands(pcp.rssMappings)} mappings counted in the kernel)`);
      out.push(`durable store: ${fmt(pcp.renewalBytes)} bytes written per 1 000 renewals, by the store's own counter (portcullis_store_written_bytes_total: journal, snapshots, probes); ${pcp.renewalHow}`);
      const r = pcp.restart;
      out.push(
        `restart with ${thousands(r.before)} mappings counted in the kernel (${thousands(r.restored)} restored; table deleted first, as after a reboot): first client answered ${fmt(r.firstAnswerMs)} ms after the spawn (target ≤ 1 000 at 100 000), ` +
          `"started" at ${fmt(r.startedMs)} ms, kernel complete at ${fmt(r.kernelMs)} ms by the daemon's log (target ≤ 3 000 at 100 000), ${thousands(r.kernelCount)} counted there by ${fmt(r.countedMs)} ms (the restored and the client's new one); ` +
          `RSS then ${fmt(r.rssKiB / 1024, 1)} MiB (target ≤ 150 MB at 100 000; V8 heap ${fmt(r.heapMiB.used)} MiB used of ${fmt(r.heapMiB.total)}); the daemon's reinstall: ${JSON.stringify({ entries: r.reinstall.entries, batches: r.reinstall.batches, seconds: r.reinstall.seconds })}`,
      );
    }
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
    if (quick) {
      const light = rows.find((r) => r.server === 'portcullis' && r.load === `PCP MAP IPv4 ${SEQ_NAME}`);
      const upnpRow = rows.find((r) => r.server === 'portcullis' && r.load.startsWith('UPnP AddPortMapping'));
      out.push(`quick run: ${fmt((performance.now() - t0) / 1000, 1)} s, lab included`);
      out.push(
        `restart: mappings=${pcp?.restart.before ?? NaN} first_answer_ms=${fmt(pcp?.restart.firstAnswerMs ?? NaN)} kernel_ms=${fmt(pcp?.restart.kernelMs ?? NaN)} rss_mib=${fmt((pcp?.restart.rssKiB ?? NaN) / 1024, 1)}`,
        `pcp_map_per_s=${fmt(bulk.at(-1)?.r.rate ?? NaN)} light_p99_ms=${fmt(light?.r.p99ms ?? NaN, 1)} upnp_per_s=${fmt(upnpRow?.r.rate ?? NaN)} recovery_ms=${fmt(pcp?.restart.kernelMs ?? NaN)} rss_per_1000_kib=${fmt(pcp?.rssPer1000KiB ?? NaN)}`,
      );
    }
    process.stdout.write(out.join('\n') + '\n');
  } finally {
    sh(['bash', LAB, 'down']);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).message}\n`);
  process.exit(1);
});
