// Live flows follow a changed mapping: NAT is decided on a flow's first
// packet and kept in its conntrack entry, so an endpoint already talking
// keeps its old source port after its mapping is created, moved or deleted
// until that entry goes. Deleting it makes the next packet a new flow, which
// the rules translate afresh (a TCP connection in progress is cut: its port
// changes under it).
//
// The deleting happens off the reply path: the firewall queues selectors after
// a batch committed and returns. Runs take up to SELECTORS_PER_RUN of them,
// one run at a time; while changes keep coming a run waits as long as the
// last took (GATHER_MS–MAX_GATHER_MS), so selectors gather and the work stays
// a bounded share of a core whatever the table's size. The queue is bounded.
//
// Two paths do a run's work:
// - netlink (conntrack-netlink.ts): ctnetlink from the daemon itself, a dump
//   the kernel filters, deletions by exact tuple. The default where the
//   kernel takes a NETLINK_NETFILTER socket and filters dumps (Linux ≥ 5.8).
// - tool (conntrack-tool.ts): the `conntrack` tool, a listing per protocol and
//   a process for the deletions. Where netlink cannot be had, and for good
//   after a netlink run fails (that run's selectors are given to it).
// Which one is used is logged once (`conntrack-path`). Without either, the
// mappings still work for new flows; that is logged once too.

import type { Logger } from '../log.js';
import { Ctnetlink, openNetlinkSocket, type NetlinkSocket } from './ctnetlink.js';
import { NetlinkPath } from './conntrack-netlink.js';
import { ToolPath } from './conntrack-tool.js';
import { selectorKey, type FlowPath, type FlowSelector } from './flow-path.js';

export { flowOf } from './conntrack-tool.js';
export type { FlowPath, FlowSelector };

export interface ConntrackOptions {
  /** 'auto' (the default): netlink when it works here, else the tool. The others force one (tests). */
  via?: 'auto' | 'netlink' | 'tool';
  /** The tool's path (tests give a stand-in). */
  binary?: string;
  /** Opens the netlink socket (tests give a fake kernel). */
  openSocket?: () => Promise<NetlinkSocket>;
}

/** The least pause between two runs while changes keep coming, and the most. */
const GATHER_MS = 100;
const MAX_GATHER_MS = 1_000;
/** Selectors one run takes at most; a run's time grows with them. */
const SELECTORS_PER_RUN = 256;
/** Beyond this the oldest requests are dropped (a flood of changes must not queue without end). */
const MAX_QUEUED = 4_096;
/** How long after ending flows they are looked for once more (end()). */
const AGAIN_MS = 1_000;

export class ConntrackFlusher {
  private readonly queue = new Map<string, FlowSelector>();
  /** Selectors end() looks for once more, and the timer that will. */
  private readonly again = new Map<string, FlowSelector>();
  private againTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  readonly tool: ToolPath;
  readonly netlink: NetlinkPath;
  private chosen: Promise<FlowPath> | undefined;
  /** How long the last run took, ms. */
  private lastRunMs = 0;

  constructor(
    private readonly log: Logger,
    private readonly options: ConntrackOptions = {},
  ) {
    this.tool = new ToolPath(log, options.binary);
    this.netlink = new NetlinkPath(new Ctnetlink(options.openSocket ?? openNetlinkSocket), log);
  }

  /** Processes the tool path started (tests). */
  get runs(): number {
    return this.tool.runs;
  }

  /** Chooses the path now (at the firewall's start) rather than at the first flush; never throws. */
  prepare(): Promise<FlowPath> {
    this.chosen ??= this.choose();
    return this.chosen;
  }

  /** Queues selectors; returns at once. */
  flush(selectors: readonly FlowSelector[]): void {
    if (this.tool.missing) return;
    for (const s of selectors) {
      const k = selectorKey(s.by, s.protocol, s.address, s.port);
      this.queue.delete(k);
      this.queue.set(k, s);
    }
    while (this.queue.size > MAX_QUEUED) this.queue.delete(this.queue.keys().next().value!);
    if (!this.running && this.queue.size) {
      this.running = this.drain().finally(() => (this.running = undefined));
    }
  }

  /**
   * Ends flows for good: queues the selectors now, and once more AGAIN_MS
   * later. A TCP endpoint's delayed ACK that leaves just after its flow was
   * deleted is a new outbound flow, which the kernel picks up mid-stream
   * (nf_conntrack_tcp_loose, on by default) and whose replies — the remote's
   * segments — the forward chain accepts as established: the connection
   * would carry on. The second pass deletes that one (its original source is
   * the endpoint); the remote's next segments are then new inbound flows
   * that no entry admits, and the endpoint, hearing nothing, sends nothing.
   * One timer, bounded like the queue.
   */
  end(selectors: readonly FlowSelector[]): void {
    this.flush(selectors);
    if (this.tool.missing || selectors.length === 0) return;
    for (const s of selectors) this.again.set(selectorKey(s.by, s.protocol, s.address, s.port), s);
    while (this.again.size > MAX_QUEUED) this.again.delete(this.again.keys().next().value!);
    this.againTimer ??= setTimeout(() => {
      this.againTimer = undefined;
      const due = [...this.again.values()];
      this.again.clear();
      this.flush(due);
    }, AGAIN_MS);
    this.againTimer.unref();
  }

  /** Resolves when the queue is empty (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async choose(): Promise<FlowPath> {
    const via = this.options.via ?? 'auto';
    if (via === 'tool') return this.use(this.tool);
    let reason: string | undefined;
    try {
      reason = await this.netlink.probe();
    } catch (err) {
      reason = (err as Error).message;
    }
    if (reason === undefined) return this.use(this.netlink);
    if (via === 'netlink') {
      // Forced (tests): no fallback, the failure is what the test sees.
      this.log.warn({ event: 'conntrack-failed', path: 'netlink', error: reason });
      return this.use(this.netlink);
    }
    return this.use(this.tool, reason);
  }

  private use(path: FlowPath, reason?: string): FlowPath {
    this.log.info({ event: 'conntrack-path', path: path.name, ...(reason ? { detail: `netlink not used: ${reason}` } : {}) });
    return path;
  }

  private async drain(): Promise<void> {
    let first = true;
    while (this.queue.size && !this.tool.missing) {
      if (!first) await new Promise((r) => setTimeout(r, Math.min(MAX_GATHER_MS, Math.max(GATHER_MS, this.lastRunMs))));
      first = false;
      const started = performance.now();
      await this.runOnce();
      this.lastRunMs = performance.now() - started;
    }
    this.queue.clear();
  }

  private async runOnce(): Promise<void> {
    const selectors: FlowSelector[] = [];
    for (const [k, s] of this.queue) {
      if (selectors.length >= SELECTORS_PER_RUN) break;
      this.queue.delete(k);
      selectors.push(s);
    }
    const path = await this.prepare();
    if ((await forgetting(path, selectors, this.log)) || path === this.tool || this.options.via === 'netlink') return;
    // The netlink path failed (logged): the tool from now on, starting with this run's selectors.
    this.chosen = Promise.resolve(this.use(this.tool, 'a netlink run failed'));
    await forgetting(this.tool, selectors, this.log);
  }
}

/** A path's run that cannot reject: a bug in one (a throw) is a failed run, logged, never a crashed daemon. */
async function forgetting(path: FlowPath, selectors: readonly FlowSelector[], log: Logger): Promise<boolean> {
  try {
    return await path.forget(selectors);
  } catch (err) {
    log.warn({ event: 'conntrack-failed', path: path.name, error: (err as Error).message });
    return false;
  }
}
