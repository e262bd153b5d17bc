// The bench's flood row (`--only flood`): one device floods from 2 000 IPv6
// addresses while another maps ports, the daemon at its defaults.

import { readFileSync, statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { FloodResult, FloodSpec } from './flood.js';
import { FLOOD_GEN, work, inNs, inNsAsync, dropTable, loadFrom, rssKiB, pidOf, startPortcullis, stop, fmt, thousands, notes } from './lab.js';
import { percentile, type LoadResult } from './load.js';

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
export async function benchFlood(): Promise<void> {
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
