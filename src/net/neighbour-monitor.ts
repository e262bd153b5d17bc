// The neighbour table's changes as the kernel announces them: one long-lived
// `ip monitor neigh`, read line by line. It exists so that knowing which
// device an address is never forks a process on the request path: libuv
// forks on the event loop's thread, and forking a daemon holding hundreds of
// MB took 8–30 ms of that thread per read (a stall every 1.5 s under load,
// measured with bench/loop-probe.ts).
//
// The text form, not `-j`: iproute2 6.1 prints `monitor` as text whatever
// -j says. A line is `[Deleted |miss ]ADDR dev IF [lladdr MAC] [flags] STATE`.
//
// Bounds: a line longer than MAX_LINE_BYTES is dropped whole (and reported
// as lost: the table may now be wrong); anything `ip` says on stderr (it
// says "No buffer space available" when the kernel dropped messages it was
// too slow to read) is reported as lost too. The owner answers a loss with
// a full read; the process dying is the owner's to restart.

import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { parseIp } from './address.js';
import type { Neighbour } from './neighbour.js';

export const MONITOR_COMMAND: readonly string[] = ['ip', 'monitor', 'neigh'];
const MAX_LINE_BYTES = 512;
const UNRESOLVED = new Set(['FAILED', 'INCOMPLETE']);
/** How long, and how often, the start waits to see `ip` subscribed before saying it runs anyway. */
const SUBSCRIBE_WAIT_MS = 2000;
const SUBSCRIBE_POLL_MS = 5;

/**
 * Whether process `pid` holds a netlink socket bound to multicast groups,
 * i.e. the kernel now sends it the changes. The process having started is
 * not enough: `ip` opens and binds its socket some moments after exec, and a
 * change in between is announced to nobody (and a full read made in that
 * gap would not see it either). Read from /proc: the process's socket fds,
 * and its namespace's /proc/PID/net/netlink, whose Groups column is non-zero
 * once bound.
 */
export function subscribed(pid: number): boolean {
  try {
    const inodes = new Set<string>();
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      let link = '';
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (link.startsWith('socket:[')) inodes.add(link.slice(8, -1));
    }
    if (inodes.size === 0) return false;
    for (const row of readFileSync(`/proc/${pid}/net/netlink`, 'utf8').split('\n').slice(1)) {
      const f = row.trim().split(/\s+/);
      if (f.length >= 10 && /^[0-9a-f]+$/i.test(f[3] as string) && Number.parseInt(f[3] as string, 16) !== 0 && inodes.has(f[9] as string)) return true;
    }
  } catch {
    return false;
  }
  return false;
}

/** One announced change: an entry (re)learnt, or the kernel no longer knowing an address on an interface. */
export type NeighbourChange = { kind: 'learnt'; neighbour: Neighbour } | { kind: 'gone'; address: Neighbour['address']; interface: string };

/** Parses one line of `ip monitor neigh`; undefined for lines that say nothing about a device (a miss, a proxy entry, noise). */
export function parseMonitorLine(line: string): NeighbourChange | undefined {
  const words = line.trim().split(/\s+/);
  if (words[0] === '[NEIGH]') words.shift();
  if (words[0] === 'miss') return undefined;
  const deleted = words[0] === 'Deleted';
  if (deleted) words.shift();
  const address = words[0] !== undefined ? parseIp(words[0]) : undefined;
  const dev = words.indexOf('dev');
  const iface = dev > 0 ? words[dev + 1] : undefined;
  if (!address || !iface) return undefined;
  const ll = words.indexOf('lladdr');
  const lladdr = ll > 0 ? words[ll + 1]?.toLowerCase() : undefined;
  if (deleted || !lladdr || words.some((w) => UNRESOLVED.has(w))) return { kind: 'gone', address, interface: iface };
  return { kind: 'learnt', neighbour: { address, interface: iface, lladdr, updated: 0 } };
}

export interface MonitorEvents {
  /** The process is running and subscribed (or 2 s have passed without seeing it so): from here on a change is announced. */
  spawned(): void;
  change(c: NeighbourChange): void;
  /** Something may have been missed: the table needs a full read. */
  lost(why: string): void;
  /** The process ended (or never started); `error` says why when it could not run. */
  ended(error?: Error): void;
}

/** Starts `command` and reports its lines; returns the stop. */
export function monitorNeighbours(events: MonitorEvents, command: readonly string[] = MONITOR_COMMAND): () => void {
  let child: ChildProcess | undefined = spawn(command[0] as string, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let partial = '';
  let overlong = false;
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (overlong || line.length > MAX_LINE_BYTES) {
        overlong = false;
        events.lost('an overlong line');
        continue;
      }
      const c = parseMonitorLine(line);
      if (c) events.change(c);
    }
    if (partial.length > MAX_LINE_BYTES) {
      partial = '';
      overlong = true;
    }
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => events.lost(text.trim().slice(0, 200)));
  let ended = false;
  const end = (error?: Error) => {
    if (ended) return;
    ended = true;
    child = undefined;
    events.ended(error);
  };
  child.on('spawn', () => {
    const pid = child?.pid;
    const until = Date.now() + SUBSCRIBE_WAIT_MS;
    const check = () => {
      if (ended) return;
      if (pid === undefined || subscribed(pid) || Date.now() >= until) events.spawned();
      else setTimeout(check, SUBSCRIBE_POLL_MS).unref();
    };
    check();
  });
  child.on('error', (err) => end(err));
  child.on('close', () => end());
  return () => {
    ended = true;
    child?.kill('SIGKILL');
    child = undefined;
  };
}
