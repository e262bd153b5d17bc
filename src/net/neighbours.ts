// The kernel's neighbour table (`ip -j -s neigh show`): which link-layer
// address answers for each on-link IP address. It is the one proof that two
// IPv6 addresses belong to one device: an interface identifier proves
// nothing, since any LAN host can configure another's identifier under
// fe80:: or a ULA prefix.
//
// Two ways to keep it: polled (a read when the table is older than
// FRESH_MS, started by whoever asks), or followed (`follow`: one full read,
// then the kernel's announcements from `ip monitor neigh`, then a full read
// again every RESYNC_MS and whenever the monitor may have missed something).
// The daemon follows, so a request never waits on, nor stalls behind, a
// fork; while the monitor is not running (it died, or `ip monitor` is not
// usable) the table is polled as before, and the monitor is started again
// with a growing pause.
//
// Bounds: one `ip` run at a time, cut after READ_TIMEOUT_MS, at most
// MAX_OUTPUT_BYTES of output; a table younger than FRESH_MS is reused, so a
// burst of requests costs one read. A failed read is an empty table: nothing
// is proven, nobody is taken for someone else. A followed table holds at most
// MAX_ENTRIES entries (what a full read can return); announcements beyond
// that wait for the next full read.

import { execFile } from 'node:child_process';
import { parseIp, type IpAddress } from './address.js';
import { monitorNeighbours, MONITOR_COMMAND, type NeighbourChange } from './neighbour-monitor.js';
import type { Neighbour } from './neighbour.js';

export type { Neighbour };

/** Reads the whole table; injectable for tests. */
export type NeighbourReader = () => Promise<readonly Neighbour[]>;

const READ_TIMEOUT_MS = 1000;
/** ~100 bytes an entry: room for tens of thousands of neighbours. */
const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;
const FRESH_MS = 1500;
/** What MAX_OUTPUT_BYTES of `ip -j -s neigh show` holds at most. */
const MAX_ENTRIES = 40_000;
/** The followed table's safety net: read whole this often, whatever the monitor said. */
const RESYNC_MS = 60_000;
/** The monitor restarted after a pause that doubles from the first to the last. */
const RESTART_MS = [1_000, 60_000] as const;
/** Entries whose link-layer address is not (or no longer) known. */
const UNRESOLVED = new Set(['FAILED', 'INCOMPLETE']);

/** Parses `ip -j neigh show`; entries without a resolved link-layer address are left out. */
export function parseNeighbours(json: string): Neighbour[] {
  let rows: unknown;
  try {
    rows = JSON.parse(json);
  } catch {
    return [];
  }
  if (!Array.isArray(rows)) return [];
  const out: Neighbour[] = [];
  for (const row of rows as Record<string, unknown>[]) {
    const address = typeof row.dst === 'string' ? parseIp(row.dst) : undefined;
    const states = Array.isArray(row.state) ? (row.state as unknown[]) : [];
    if (!address || typeof row.dev !== 'string' || typeof row.lladdr !== 'string' || row.lladdr === '') continue;
    if (states.some((s) => typeof s === 'string' && UNRESOLVED.has(s))) continue;
    const n = { address, interface: row.dev, lladdr: row.lladdr.toLowerCase() };
    out.push(typeof row.updated === 'number' && Number.isFinite(row.updated) && row.updated >= 0 ? { ...n, updated: row.updated } : n);
  }
  return out;
}

export const readIpNeigh: NeighbourReader = () =>
  new Promise((resolve) => {
    execFile('ip', ['-j', '-s', 'neigh', 'show'], { timeout: READ_TIMEOUT_MS, maxBuffer: MAX_OUTPUT_BYTES, killSignal: 'SIGKILL' }, (err, stdout) => {
      resolve(err ? [] : parseNeighbours(stdout));
    });
  });

/** How a followed table is kept: the monitor's command and the full read (tests run both in a namespace). */
export interface FollowOptions {
  command?: readonly string[];
  /** Told when the monitor could not run or ended, and when it runs again. */
  onState?: (running: boolean, why?: string) => void;
}

export class Neighbours {
  private table = new Map<IpAddress, Neighbour[]>();
  /** `now()` of the entry's last change, for `updated` (seconds since). */
  private readonly changedAt = new WeakMap<Neighbour, number>();
  private readAt = -Infinity;
  private reading: Promise<void> | undefined;
  /** Set while following: the monitor is running and a full read has been merged with what it said. */
  private followed = false;
  /** Announcements that came while a full read was running: applied over its result. */
  private pending: NeighbourChange[] | undefined;
  /** A full read was asked for while one ran that may have started before the change: one more follows it. */
  private readAgain = false;
  private moved = 0;

  constructor(
    private readonly read: NeighbourReader = readIpNeigh,
    private readonly now: () => number = () => performance.now(),
    private readonly freshMs = FRESH_MS,
  ) {}

  /**
   * Both addresses are in the table, on the same interface, with the same
   * link-layer address: one device.
   */
  async sameDevice(a: IpAddress, b: IpAddress): Promise<boolean> {
    await this.refresh();
    const ofB = this.table.get(b) ?? [];
    return (this.table.get(a) ?? []).some((x) => ofB.some((y) => y.interface === x.interface && y.lladdr === x.lladdr));
  }

  /**
   * The device an address belongs to now ('interface/lladdr'), from the
   * table as last read, without waiting: a hot path (every request's rate
   * bucket) must not wait for `ip`. A stale polled table is read again in
   * the background, at most once per freshness period.
   */
  deviceOf(addr: IpAddress): string | undefined {
    if (!this.followed && this.now() - this.readAt >= this.freshMs) void this.refresh();
    const n = this.table.get(addr)?.[0];
    return n ? `${n.interface}/${n.lladdr}` : undefined;
  }

  /** Every entry of the table as last read (the admin's device list; `refresh` first for a current one). */
  entries(): Neighbour[] {
    const now = this.now();
    return [...this.table.values()].flat().map((n) => {
      const at = this.changedAt.get(n);
      return at === undefined ? n : { ...n, updated: Math.max(0, Math.round(now - at)) / 1000 };
    });
  }

  /**
   * A counter that moves when an entry comes, goes or names another
   * link-layer address (not on a mere state change): cheap to poll.
   */
  version(): number {
    return this.moved;
  }

  /** Reads the table again unless it is fresh or followed (a caller that can wait, before many deviceOf). */
  refresh(): Promise<void> {
    if (this.followed || this.now() - this.readAt < this.freshMs) return Promise.resolve();
    return this.readWhole();
  }

  /**
   * Follows the kernel's announcements instead of polling; returns the stop.
   * A table given its own reader (tests) is not followed unless `command` is
   * given too: the monitor would watch a kernel the reader does not read.
   */
  follow(options: FollowOptions = {}): () => void {
    if (this.read !== readIpNeigh && !options.command) return () => {};
    let stopMonitor: (() => void) | undefined;
    let restart: NodeJS.Timeout | undefined;
    let pause: number = RESTART_MS[0];
    let stopped = false;
    const resync = setInterval(() => void this.readWhole(true), RESYNC_MS);
    resync.unref();
    const start = () => {
      let [spawned, merged] = [false, false];
      // Followed once the monitor runs and a full read started after it was
      // merged: from then on nothing the kernel changes goes unseen.
      const ready = () => {
        if (!spawned || !merged || stopped || !stopMonitor) return;
        this.followed = true;
        pause = RESTART_MS[0];
        options.onState?.(true);
      };
      stopMonitor = monitorNeighbours(
        {
          spawned: () => {
            spawned = true;
            void this.readWhole(true).then(() => ((merged = true), ready()));
          },
          change: (c) => {
            if (this.pending) {
              if (this.pending.length < MAX_ENTRIES) this.pending.push(c);
            } else this.apply(c);
          },
          lost: () => void this.readWhole(true),
          ended: (error) => {
            this.followed = false;
            stopMonitor = undefined;
            if (stopped) return;
            options.onState?.(false, error?.message ?? 'ip monitor ended');
            restart = setTimeout(start, pause);
            restart.unref();
            pause = Math.min(pause * 2, RESTART_MS[1]);
          },
        },
        options.command ?? MONITOR_COMMAND,
      );
    };
    start();
    return () => {
      stopped = true;
      this.followed = false;
      clearInterval(resync);
      clearTimeout(restart);
      stopMonitor?.();
    };
  }

  /** One full read replacing the table; `collect` keeps the monitor's announcements meanwhile to apply after it. */
  private readWhole(collect = false): Promise<void> {
    if (collect) this.pending ??= [];
    if (this.reading) {
      this.readAgain ||= collect;
      return this.reading;
    }
    this.reading = this.read()
      .catch(() => [])
      .then((rows) => {
        const table = new Map<IpAddress, Neighbour[]>();
        const now = this.now();
        for (const n of rows.slice(0, MAX_ENTRIES)) {
          table.set(n.address, [...(table.get(n.address) ?? []), n]);
          if (n.updated !== undefined) this.changedAt.set(n, now - n.updated * 1000);
        }
        if (!sameDevices(this.table, table)) this.moved++;
        this.table = table;
        this.readAt = now;
        const pending = this.pending ?? [];
        this.pending = undefined;
        for (const c of pending) this.apply(c);
      })
      .finally(() => {
        this.reading = undefined;
        if (this.readAgain) {
          this.readAgain = false;
          void this.readWhole(true);
        }
      });
    return this.reading;
  }

  private apply(c: NeighbourChange): void {
    const address = c.kind === 'learnt' ? c.neighbour.address : c.address;
    const iface = c.kind === 'learnt' ? c.neighbour.interface : c.interface;
    const before = this.table.get(address) ?? [];
    const others = before.filter((n) => n.interface !== iface);
    const was = before.find((n) => n.interface === iface);
    if (c.kind === 'learnt') {
      if (others.length === 0 && !this.table.has(address) && this.table.size >= MAX_ENTRIES) return;
      if (was?.lladdr !== c.neighbour.lladdr) this.moved++;
      others.push(c.neighbour);
      this.changedAt.set(c.neighbour, this.now());
    } else if (was) this.moved++;
    if (others.length > 0) this.table.set(address, others);
    else this.table.delete(address);
  }
}

/** The same addresses on the same interfaces with the same link-layer addresses. */
function sameDevices(a: Map<IpAddress, Neighbour[]>, b: Map<IpAddress, Neighbour[]>): boolean {
  if (a.size !== b.size) return false;
  for (const [address, rows] of b) {
    const old = a.get(address);
    if (!old || old.length !== rows.length || rows.some((n) => !old.some((o) => o.interface === n.interface && o.lladdr === n.lladdr))) return false;
  }
  return true;
}
