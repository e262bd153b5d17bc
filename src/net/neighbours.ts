// The kernel's neighbour table (`ip -j -s neigh show`): which link-layer
// address answers for each on-link IP address. It is the one proof that two
// IPv6 addresses belong to one device: an interface identifier proves
// nothing, since any LAN host can configure another's identifier under
// fe80:: or a ULA prefix.
//
// Bounds: one `ip` run at a time, cut after READ_TIMEOUT_MS, at most
// MAX_OUTPUT_BYTES of output; a table younger than FRESH_MS is reused, so a
// burst of requests costs one read. A failed read is an empty table: nothing
// is proven, nobody is taken for someone else.

import { execFile } from 'node:child_process';
import { parseIp, type IpAddress } from './address.js';

export interface Neighbour {
  readonly address: IpAddress;
  readonly interface: string;
  /** Link-layer address, lowercase. */
  readonly lladdr: string;
  /** Seconds since the kernel last changed the entry (`ip -s`), when it said. */
  readonly updated?: number;
}

/** Reads the whole table; injectable for tests. */
export type NeighbourReader = () => Promise<readonly Neighbour[]>;

const READ_TIMEOUT_MS = 1000;
/** ~100 bytes an entry: room for tens of thousands of neighbours. */
const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;
const FRESH_MS = 1500;
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

const readIpNeigh: NeighbourReader = () =>
  new Promise((resolve) => {
    execFile('ip', ['-j', '-s', 'neigh', 'show'], { timeout: READ_TIMEOUT_MS, maxBuffer: MAX_OUTPUT_BYTES, killSignal: 'SIGKILL' }, (err, stdout) => {
      resolve(err ? [] : parseNeighbours(stdout));
    });
  });

export class Neighbours {
  private table = new Map<IpAddress, Neighbour[]>();
  private readAt = -Infinity;
  private reading: Promise<void> | undefined;

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
   * bucket) must not wait for `ip`. A stale table is read again in the
   * background, at most once per freshness period.
   */
  deviceOf(addr: IpAddress): string | undefined {
    if (this.now() - this.readAt >= this.freshMs) void this.refresh();
    const n = this.table.get(addr)?.[0];
    return n ? `${n.interface}/${n.lladdr}` : undefined;
  }

  /** Every entry of the table as last read (the admin's device list; `refresh` first for a current one). */
  entries(): Neighbour[] {
    return [...this.table.values()].flat();
  }

  /** Reads the table again unless it is fresh (a caller that can wait, before many deviceOf). */
  refresh(): Promise<void> {
    if (this.now() - this.readAt < this.freshMs) return Promise.resolve();
    this.reading ??= this.read()
      .catch(() => [])
      .then((rows) => {
        const table = new Map<IpAddress, Neighbour[]>();
        for (const n of rows) table.set(n.address, [...(table.get(n.address) ?? []), n]);
        this.table = table;
        this.readAt = this.now();
      })
      .finally(() => (this.reading = undefined));
    return this.reading;
  }
}
