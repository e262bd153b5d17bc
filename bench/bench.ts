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
// `pcp_map_per_s=N light_p99_ms=N upnp_per_s=N recovery_ms=N rss_per_1000_kib=N upnp_cpu_ms=N`
// (recovery_ms: from spawning the restarted daemon until the kernel holds
// every mapping, counted; upnp_cpu_ms: the daemon's CPU, its own and its
// children's, per AddPortMapping in the UPnP row — steadier than the rate on
// a shared machine).
//
// Its pieces: lab.ts (the lab, the daemon under test, the loads, the
// kernel counted), restart.ts (the restart row), flood-row.ts (the flood
// row); the load generators run in the LAN namespace (load.ts,
// upnp-load.ts, flood.ts, first-answer.ts).
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

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { LAB, work, sh, inNs, dropTable, V6_CLIENTS, V4_CLIENTS, SEQ, SEQ_NAME, type PartialLoad, load, loadFrom, rssKiB, heapMiB, pidOf, cpuSeconds, metric, metricSum, metricsText, NFT_PATH, startPortcullis, stop, type Row, rows, fmt, record, nftPathOf, kernelMappings, storeWrittenBytes, snapshotFile, thousands, notes, lanClients, UPNP, upnpLoad } from './lab.js';
import type { LoadResult } from './load.js';
import { netCounter, type UpnpLoadResult } from './upnp-load.js';
import { measureRestart, SETTLE_MS, type Restart } from './restart.js';
import { benchFlood } from './flood-row.js';

/**
 * UPnP AddPortMapping over HTTP, the same shape for both servers: 64
 * requests in flight over the 200 client addresses on 8 devices (one or two
 * per address: portcullis serves 8 connections per source and a quarter of
 * its 128 slots per device), each a new UDP mapping for the asking address
 * itself; a row is 5 000 requests or 10 s, whichever ends first.
 */
const UPNP_LOAD_NAME = `UPnP AddPortMapping (HTTP, ${UPNP.concurrency} in flight)`;
/**
 * Mappings present for the second UPnP row, made over UPnP. miniupnpd's
 * cost per request grows with its table (~15 ms more per 1 000 mappings in
 * this lab), so the prefill stops after 150 s: 10 000 would take ~13 minutes.
 */
const UPNP_FILL = { count: 10_000, durationMs: 150_000 };

interface PcpResult {
  nftPath: string;
  rssPer1000KiB: number;
  rssMappings: number;
  /** V8's heap at the start and the end of that growth (used of committed, MiB): how much of it was garbage not yet collected. */
  rssHeapMiB: { from: { used: number; total: number }; to: { used: number; total: number } };
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
  // With each row, the CPU it took per request, the daemon's (with its children) and the
  // generator's: on two shared cores the rate is bounded by their sum, and the daemon's
  // alone says what one core of CPU buys at that cost (its main thread, libnftables' worker and the journal's syncs together).
  const row = (loadName: string, spec: PartialLoad) => {
    const at = thousands(present);
    const cpu0 = cpuSeconds(pidOf(d));
    const r = record('portcullis', loadName, at, load(spec));
    const cpu1 = cpuSeconds(pidOf(d));
    const daemonMs = ((cpu1.own - cpu0.own + cpu1.children - cpu0.children) / Math.max(1, r.requested)) * 1000;
    const clientMs = ((r.clientCpuSeconds ?? NaN) / Math.max(1, r.requested)) * 1000;
    notes.push(`portcullis: ${loadName} at ${at}: CPU ms per request: daemon ${fmt(daemonMs, 3)}, the load generator ${fmt(clientMs, 3)} (${r.requested} requests; one core of CPU at that cost: ~${fmt(1000 / daemonMs)}/s)`);
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
    const heap0 = heapMiB();
    const present0 = present;
    let rss1: number;
    let heap1: { used: number; total: number };
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
      heap1 = heapMiB();
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
      heap1 = heapMiB();
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
    return { nftPath, rssPer1000KiB: ((rss1 - rss0) / rssMappings) * 1000, rssMappings, rssHeapMiB: { from: heap0, to: heap1 }, renewalBytes, renewalBytesAmortized, renewalHow, restart, present };
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

/**
 * The UPnP rows for one server: AddPortMapping from 0 mappings, a prefill
 * over UPnP itself towards 10 000, the same load again. After each run the
 * kernel must hold every mapping answered with success (and at most the
 * unanswered ones more), or the row is flagged: the rate counts installed
 * mappings, not answers.
 */
function benchUpnp(server: string, installed: () => number, opts: { warmUp: boolean; fillConcurrency: number; quick?: boolean; pid?: number }): void {
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
    const cpu0 = opts.pid === undefined ? undefined : cpuSeconds(opts.pid);
    const m0 = opts.pid === undefined ? undefined : commitFigures();
    const r = upnpLoad({ startPort, ...size });
    const cpu1 = opts.pid === undefined ? undefined : cpuSeconds(opts.pid);
    const m1 = opts.pid === undefined ? undefined : commitFigures();
    record(server, loadName, existing, r);
    if (cpu0 && cpu1 && m0 && m1) {
      const per1000 = (s: number) => fmt((s / Math.max(1, r.requested)) * 1000, 2);
      const [own, children] = [cpu1.own - cpu0.own, cpu1.children - cpu0.children];
      const d = (k: keyof typeof m0) => m1[k] - m0[k];
      if (server === 'portcullis' && existing === '0') upnpCpuMs = ((own + children) / Math.max(1, r.requested)) * 1000;
      notes.push(
        `${server}: UPnP run at ${existing}: CPU s per 1 000 requests: daemon ${per1000(own)}, its children (conntrack, nft) ${per1000(children)}, the load generator ${per1000(r.clientCpuSeconds)} (${r.requested} requests); ` +
          `${d('commits')} firewall commits (${fmt(r.requested / d('commits'), 1)} requests each, ${fmt((d('commitSeconds') / d('commits')) * 1000, 1)} ms each with the journal), ${d('syncs')} journal syncs (${fmt((d('syncSeconds') / d('syncs')) * 1000, 1)} ms each)`,
      );
    }
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

/** The daemon's CPU ms (its own and its children's) per request in portcullis' UPnP row at 0 (the quick summary's upnp_cpu_ms). */
let upnpCpuMs = NaN;

/** The daemon's commit and journal-sync counts and summed seconds so far (its metrics). */
function commitFigures() {
  const text = metricsText();
  return {
    commits: metricSum('portcullis_nft_commits_total', text),
    commitSeconds: metric('portcullis_nft_commit_duration_seconds_sum', text),
    syncs: metric('portcullis_store_sync_duration_seconds_count', text),
    syncSeconds: metric('portcullis_store_sync_duration_seconds_sum', text),
  };
}

/** A fresh daemon (empty store, table deleted first) for the UPnP rows, WAN address 11.22.33.1. */
async function benchPortcullisUpnp(quick: boolean): Promise<void> {
  dropTable('portcullis');
  const d = await startPortcullis('portcullis-upnp');
  try {
    benchUpnp('portcullis', portcullisDnat4, { warmUp: true, fillConcurrency: UPNP.concurrency, quick, pid: pidOf(d) });
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

async function main(): Promise<void> {
  const only = sections(process.argv.slice(2));
  const quick = process.argv.includes('--quick');
  const t0 = performance.now();
  if (process.getuid?.() !== 0) throw new Error('the benchmark builds network namespaces: run it as root');
  // Said before minutes of portcullis rows, not after them.
  if (only.has('miniupnpd') && spawnSync('sh', ['-c', 'command -v miniupnpd']).status !== 0) {
    throw new Error('miniupnpd is not installed (apt-get install miniupnpd) and the side-by-side rows need it; `--only pcp,upnp` (or `--quick`) runs without it');
  }
  sh(['bash', LAB, 'up']);
  try {
    lanClients();
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
      if (b0 && bN) out.push(`portcullis creation rate at ${bN.existing} mappings / at ${b0.existing}: ${fmt((bN.r.rate / b0.r.rate) * 100)} % (target ≥ 90 % at 100 000, issue 16)`);
      const h = pcp.rssHeapMiB;
      out.push(
        `portcullis RSS per 1 000 mappings: ${fmt(pcp.rssPer1000KiB)} KiB (RSS growth over ${thousands(pcp.rssMappings)} mappings counted in the kernel; ` +
          `V8 heap ${fmt(h.from.used)} → ${fmt(h.to.used)} MiB used of ${fmt(h.from.total)} → ${fmt(h.to.total)}, collected garbage and not yet collected alike)`,
      );
      out.push(`durable store: ${fmt(pcp.renewalBytes)} bytes written per 1 000 renewals, by the store's own counter (portcullis_store_written_bytes_total: journal, snapshots, probes); ${pcp.renewalHow}`);
      const r = pcp.restart;
      out.push(
        `restart with ${thousands(r.before)} mappings counted in the kernel (${thousands(r.restored)} restored; table deleted first, as after a reboot): first client answered ${fmt(r.firstAnswerMs)} ms after the spawn (target ≤ 1 000 at 100 000), ` +
          `"started" at ${fmt(r.startedMs)} ms, kernel complete at ${fmt(r.kernelMs)} ms by the daemon's log (target ≤ 3 000 at 100 000), ${thousands(r.kernelCount)} counted there by ${fmt(r.countedMs)} ms (the restored and the client's new one); ` +
          `RSS then ${fmt(r.rssKiB / 1024, 1)} MiB (target ≤ 150 MB at 100 000; V8 heap ${fmt(r.heapMiB.used)} MiB used of ${fmt(r.heapMiB.total)}), its peak so far ${fmt(r.peakRssKiB / 1024, 1)} MiB, ` +
          `${SETTLE_MS / 1000} s later ${fmt(r.settled.rssKiB / 1024, 1)} MiB (heap ${fmt(r.settled.heapMiB.used)} of ${fmt(r.settled.heapMiB.total)}); the daemon's reinstall: ${JSON.stringify({ entries: r.reinstall.entries, batches: r.reinstall.batches, seconds: r.reinstall.seconds })}`,
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
        `restart: mappings=${pcp?.restart.before ?? NaN} first_answer_ms=${fmt(pcp?.restart.firstAnswerMs ?? NaN)} kernel_ms=${fmt(pcp?.restart.kernelMs ?? NaN)} rss_mib=${fmt((pcp?.restart.rssKiB ?? NaN) / 1024, 1)} peak_rss_mib=${fmt((pcp?.restart.peakRssKiB ?? NaN) / 1024, 1)} settled_rss_mib=${fmt((pcp?.restart.settled.rssKiB ?? NaN) / 1024, 1)}`,
        `pcp_map_per_s=${fmt(bulk.at(-1)?.r.rate ?? NaN)} light_p99_ms=${fmt(light?.r.p99ms ?? NaN, 1)} upnp_per_s=${fmt(upnpRow?.r.rate ?? NaN)} recovery_ms=${fmt(pcp?.restart.kernelMs ?? NaN)} rss_per_1000_kib=${fmt(pcp?.rssPer1000KiB ?? NaN)} upnp_cpu_ms=${fmt(upnpCpuMs, 2)}`,
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
