// The bench's lab and the daemon under test (bench.ts, restart.ts,
// flood-row.ts share these): the namespaces (scripts/lab.sh) and the LAN
// host's client addresses and devices, the daemon's config, start and stop,
// the load generators run in the LAN namespace, the kernel's mappings
// counted, the daemon's metrics read, and the table rows and notes printed.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadResult, LoadSpec } from './load.js';
import type { UpnpLoadResult, UpnpLoadSpec } from './upnp-load.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const LAB = join(ROOT, 'scripts/lab.sh');
// BENCH_DAEMON_CLI: another build's dist/src/cli.js as the daemon under test (an A/B against an older tree).
export const CLI = process.env.BENCH_DAEMON_CLI ?? join(ROOT, 'dist/src/cli.js');
// BENCH_DAEMON_NODE_ARGS: node options for the daemon, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
export const DAEMON_NODE_ARGS = (process.env.BENCH_DAEMON_NODE_ARGS ?? '').split(' ').filter(Boolean);
export const LOAD = join(ROOT, 'dist/bench/load.js');
export const UPNP_LOAD = join(ROOT, 'dist/bench/upnp-load.js');
export const FLOOD_GEN = join(ROOT, 'dist/bench/flood.js');
export const FIRST_ANSWER = join(ROOT, 'dist/bench/first-answer.js');
export const P = process.env.LAB_PREFIX ?? 'bench';
export const env = { ...process.env, LAB_PREFIX: P };
export const work = mkdtempSync(join(tmpdir(), 'portcullis-bench-'));

export const sh = (args: string[], input?: string) => {
  const r = spawnSync(args[0] as string, args.slice(1), { encoding: 'utf8', input, env, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
};
export const inNs = (node: string, args: string[], input?: string) => sh(['ip', 'netns', 'exec', `${P}-${node}`, ...args], input);
/** inNs without blocking: for loads that run side by side. `onStderr` sees the child's stderr as it comes. */
export function inNsAsync(node: string, args: string[], onStderr?: (text: string) => void): Promise<string> {
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
export const dropTable = (name: string) => spawnSync('ip', ['netns', 'exec', `${P}-rtr`, 'nft', 'delete', 'table', 'inet', name], { env });

export const V6_CLIENTS = Array.from({ length: 256 }, (_, i) => `2001:db8:77::1:${(i + 1).toString(16)}`);
export const V4_CLIENTS = Array.from({ length: 200 }, (_, i) => `192.168.77.${i + 10}`);
/** The UPnP rows' load (bench.ts, ceilings.ts): AddPortMapping, 64 in flight from the IPv4 clients, 5 000 requests or 10 s. */
export const UPNP = { action: 'AddPortMapping' as const, server: '192.168.77.1', clients: V4_CLIENTS, concurrency: 64, count: 5_000, durationMs: 10_000, timeoutMs: 30_000 };

/** One UPnP load from the LAN host: the UPnP rows' spec with `spec` over it. */
export function upnpLoad(spec: Partial<UpnpLoadSpec> & Pick<UpnpLoadSpec, 'startPort'>): UpnpLoadResult {
  return JSON.parse(inNs('lan', [process.execPath, UPNP_LOAD, JSON.stringify({ ...UPNP, ...spec })])) as UpnpLoadResult;
}
/**
 * The LAN host's IPv4 client addresses are on this many devices — macvlan
 * interfaces over its eth0, each its own link-layer address (lanDevices) —
 * so the router's neighbour table, and the daemon's fairness, see several
 * devices as on a real LAN, not one device with 200 addresses (whose share
 * of the HTTP slots capped the UPnP rows). The IPv6 clients stay on eth0.
 */
export const DEVICES = 8;
/** The bench daemon's metrics, on the router's loopback: the store's own byte counter is read there. */
export const METRICS = '127.0.0.1:9464';

/**
 * The shape both servers get for the side-by-side rows: 4 clients, one
 * request outstanding each, RFC 6887's 3 s initial retransmission timeout.
 */
export const SEQ = { server: '192.168.77.1', clients: V4_CLIENTS.slice(0, 4), window: 1, timeoutMs: 3000, maxTries: 4 };
export const SEQ_NAME = '(4 clients × 1)';

export type PartialLoad = Partial<LoadSpec> & Pick<LoadSpec, 'clients' | 'count' | 'startPort' | 'server'>;
// RFC 6887 §8.1.1: a client's initial retransmission timeout is 3 s.
export const loadSpec = (spec: PartialLoad): LoadSpec => ({ protocol: 'pcp', port: 5351, window: 8, lifetime: 3600, timeoutMs: 3000, maxTries: 4, deadlineMs: 600_000, ...spec });

export function load(spec: PartialLoad): LoadResult {
  return JSON.parse(inNs('lan', [process.execPath, LOAD, JSON.stringify(loadSpec(spec))])) as LoadResult;
}

/** A load from another LAN host, `node`, without blocking. */
export async function loadFrom(node: string, spec: PartialLoad): Promise<LoadResult> {
  return JSON.parse(await inNsAsync(node, [process.execPath, LOAD, JSON.stringify(loadSpec(spec))])) as LoadResult;
}

export function rssKiB(pid: number): number {
  return statusKiB(pid, 'VmRSS');
}

/**
 * The highest RSS the process has had (VmHWM): a restart's peak comes while
 * the state is opened and the kernel refilled, not when the reinstall ends.
 */
export function peakRssKiB(pid: number): number {
  return statusKiB(pid, 'VmHWM');
}

function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** V8's heap in MiB, used of committed, from the daemon's metrics: beside an RSS, how much of it is heap and how much of that is garbage not yet collected. */
export function heapMiB(text = metricsText()): { used: number; total: number } {
  return { used: metric('nodejs_heap_size_used_bytes', text) / 1048576, total: metric('nodejs_heap_size_total_bytes', text) / 1048576 };
}

/** clock ticks per second of /proc's times (`getconf CLK_TCK`: 100 on Linux for x86 and arm). */
const CLK_TCK = 100;

/**
 * A process's CPU seconds so far, user + system: `own` its threads' (the
 * libuv pool's libnftables calls and fdatasyncs included), `children` the
 * children it has waited for (a `conntrack` or `nft` it ran) — /proc/PID/stat
 * fields 14–15 and 16–17. Less sensitive to a busy neighbour than a rate is.
 */
export function cpuSeconds(pid: number): { own: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may hold spaces: count from after it.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  // f[0] is field 3 (state): fields 14–17 are f[11]–f[14].
  return { own: ((f[11] ?? NaN) + (f[12] ?? NaN)) / CLK_TCK, children: ((f[13] ?? NaN) + (f[14] ?? NaN)) / CLK_TCK };
}

/** The pid of the process running inside `ip netns exec` (exec replaces ip). */
export const pidOf = (c: ChildProcess) => c.pid as number;

/**
 * How the daemon is configured. 'bench': a load generator is a few clients
 * asking as fast as they can, so the limits are lifted (throughput rows).
 * 'defaults': what a router runs out of the box — no policy file (the
 * built-in default policy), every limit at its default; only the state
 * directory is the bench's. The flood row runs this: the defaults must
 * protect one host from another.
 */
export type Settings = 'bench' | 'defaults';

/** `--nft-path X`: the daemon's nft.path; unset, its default. */
export const NFT_PATH = ((i) => (i < 0 ? undefined : process.argv[i + 1]))(process.argv.indexOf('--nft-path'));
export const nftSetting = NFT_PATH ? { nft: { path: NFT_PATH } } : {};

export function writeConfig(name: string, settings: Settings): string {
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

/**
 * The daemon's environment as packaging/systemd/portcullis.service gives it,
 * read from the unit's `Environment=` lines so the bench runs what is
 * shipped: glibc's malloc kept to two arenas (RSS after the restart at 35 200:
 * 308–309 MiB against 358 with the default) and V8's young generation kept
 * small (`--max-semi-space-size=4`: shorter scavenges, less RSS; both in
 * BENCHMARKS.md). A variable set by whoever runs the bench wins (an empty
 * one: the runtime's default).
 */
export const DAEMON_ENV = { ...unitEnvironment(), ...process.env };

function unitEnvironment(): Record<string, string> {
  const unit = readFileSync(join(ROOT, 'packaging/systemd/portcullis.service'), 'utf8');
  const env: Record<string, string> = {};
  // `Environment=NAME=value` or, for a value with spaces, `Environment="NAME=value"`.
  for (const m of unit.matchAll(/^Environment=("?)([A-Z_][A-Z0-9_]*)=(.*?)\1\s*$/gm)) env[m[2] as string] = (m[3] as string).trim();
  if (!env.MALLOC_ARENA_MAX) throw new Error('the unit sets no MALLOC_ARENA_MAX: the bench would not run what is shipped');
  return env;
}

/** The daemon in the router, not waited for. `name` keeps a run's config, state and log apart from another's. */
export function spawnPortcullis(name = 'portcullis', settings: Settings = 'bench'): ChildProcess {
  const cfg = writeConfig(name, settings);
  const out = openSync(join(work, `${name}.log`), 'w');
  const child = spawn('ip', ['netns', 'exec', `${P}-rtr`, process.execPath, ...DAEMON_NODE_ARGS, CLI, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--config', cfg], { stdio: ['ignore', out, out], env: DAEMON_ENV });
  closeSync(out);
  return child;
}

/** Resolves when the daemon's log says it started (up to two minutes). */
export async function started(name = 'portcullis'): Promise<void> {
  const logFile = join(work, `${name}.log`);
  for (let i = 0; i < 6000; i++) {
    if (readFileSync(logFile, 'utf8').includes('"event":"started"')) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`portcullis did not start: ${readFileSync(logFile, 'utf8')}`);
}

export async function startPortcullis(name = 'portcullis', settings: Settings = 'bench'): Promise<ChildProcess> {
  const child = spawnPortcullis(name, settings);
  await started(name);
  return child;
}

export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

export interface Row {
  server: string;
  load: string;
  existing: string;
  r: LoadResult;
}

export const rows: Row[] = [];
export const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '—');

export function record(server: string, loadName: string, existing: string, r: LoadResult): LoadResult {
  rows.push({ server, load: loadName, existing, r });
  process.stderr.write(`${server} ${loadName} @${existing}: ${fmt(r.rate)}/s p50 ${fmt(r.p50ms, 1)} ms p99 ${fmt(r.p99ms, 1)} ms (${r.succeeded} ok, ${r.failed} refused, ${r.lost} lost)\n`);
  return r;
}

/** Which path the daemon took to the kernel, from its nft-ready line. */
export function nftPathOf(logFile: string): string {
  const line = readFileSync(logFile, 'utf8').split('\n').find((l) => l.includes('"event":"nft-ready"'));
  return line ? String((JSON.parse(line) as { path?: string }).path) : 'unknown';
}

/** The daemon's per-mapping sets and maps: an IPv6 mapping is one pinholes6 element, an IPv4 one (PCP or NAT-PMP) one dnat4 element. */
export const MAPPING_SETS = [
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
export function kernelMappings(): number {
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
export function storeWrittenBytes(): number {
  return metric('portcullis_store_written_bytes_total');
}

/** The bench daemon's metrics, as text. */
export const metricsText = (): string => inNs('rtr', [process.execPath, '-e', `fetch('http://${METRICS}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`]);

/** One unlabelled sample of the bench daemon's metrics (NaN if it has none such). */
export function metric(name: string, text = metricsText()): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  // NaN from a daemon without the counter (an older build under BENCH_DAEMON_CLI).
  return m ? Number(m[1]) : NaN;
}

/** Every sample of a metric, whatever its labels, summed (0 if none). */
export function metricSum(name: string, text = metricsText()): number {
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(m[1]);
  return sum;
}

/** The snapshot file's inode and size: a compaction renames a new one over it. */
export function snapshotFile(dir: string): { ino: number; size: number } {
  const st = statSync(join(dir, 'snapshot'));
  return { ino: st.ino, size: st.size };
}


export const thousands = (n: number) => String(n).replace(/\B(?=(\d{3})+$)/g, ' ');
/** Lines printed under the table. */
export const notes: string[] = [];

/** The client addresses on the LAN host: IPv6 on its eth0, IPv4 on its devices (lanDevices). */
export function lanClients(): void {
  inNs('lan', ['ip', '-batch', '-'], V6_CLIENTS.map((a) => `addr add ${a}/64 dev eth0 nodad`).join('\n') + '\n');
  lanDevices();
}

/**
 * DEVICES macvlan interfaces over the LAN host's eth0 (bridge mode: each its
 * own link-layer address on the router's bridge), address i of V4_CLIENTS on
 * device i mod DEVICES, and a routing rule per address so that what it sends
 * leaves by its own device. ARP is answered only by the device holding the
 * address (arp_ignore 1), and the reverse-path filter is off in this
 * namespace (several interfaces share the subnet).
 */
export function lanDevices(): void {
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
