// Live flows follow a changed mapping: NAT is decided on a flow's first
// packet and kept in its conntrack entry, so an endpoint already talking
// keeps its old source port after its mapping is created, moved or deleted
// until that entry goes. Deleting it makes the next packet a new flow, which
// the rules translate afresh (a TCP connection in progress is cut: its port
// changes under it).
//
// Debian's `conntrack` tool (package conntrack) does the deleting, one
// filter per run, off the reply path: the firewall queues the work after a
// batch committed and returns. The queue is bounded, one process runs at a
// time and each is killed after RUN_TIMEOUT_MS. Without the tool the
// mappings still work for new flows; that is logged once.

import { spawn } from 'node:child_process';
import type { Logger } from '../log.js';
import { protocolName } from '../net/ipproto.js';
import type { IpAddress } from '../net/address.js';

/** Flows to forget: by their original source, or by the external address and port they were translated to. */
export type FlowSelector =
  | { by: 'source'; protocol: number; address: IpAddress; port: number }
  | { by: 'translated-to'; protocol: number; address: IpAddress; port: number };

const RUN_TIMEOUT_MS = 2_000;
/** Beyond this the oldest requests are dropped (a flood of changes must not queue without end). */
const MAX_QUEUED = 4_096;

export class ConntrackFlusher {
  private readonly queue = new Map<string, FlowSelector>();
  private running: Promise<void> | undefined;
  private missing = false;
  runs = 0;

  constructor(
    private readonly log: Logger,
    private readonly binary = 'conntrack',
  ) {}

  /** Queues selectors; returns at once. */
  flush(selectors: readonly FlowSelector[]): void {
    if (this.missing) return;
    for (const s of selectors) {
      const k = argsOf(s).join(' ');
      this.queue.delete(k);
      this.queue.set(k, s);
    }
    while (this.queue.size > MAX_QUEUED) this.queue.delete(this.queue.keys().next().value!);
    if (!this.running && this.queue.size) {
      this.running = this.drain().finally(() => (this.running = undefined));
    }
  }

  /** Resolves when the queue is empty (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    while (this.queue.size && !this.missing) {
      const [k, s] = this.queue.entries().next().value!;
      this.queue.delete(k);
      await this.run(argsOf(s));
    }
    this.queue.clear();
  }

  private run(args: string[]): Promise<void> {
    this.runs++;
    return new Promise((resolve) => {
      const child = spawn(this.binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (err.code === 'ENOENT') {
          this.missing = true;
          this.log.warn({ event: 'conntrack-missing', detail: 'install the Debian package conntrack: without it, flows already running keep their old translation after a mapping changes (new flows follow it)' });
        } else this.log.warn({ event: 'conntrack-failed', error: err.message });
        resolve();
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        // Exit 1 with "0 flow entries" is the common case: nothing to delete.
        if (signal || (code !== 0 && !/0 flow entries/.test(stderr))) {
          this.log.warn({ event: 'conntrack-failed', args: args.join(' '), error: (signal ? `killed by ${signal}` : stderr.trim()).slice(0, 300) });
        }
        resolve();
      });
    });
  }
}

function argsOf(s: FlowSelector): string[] {
  const proto = protocolName(s.protocol);
  return s.by === 'source'
    ? ['-D', '-f', 'ipv4', '-p', proto, '--orig-src', s.address, '--orig-port-src', String(s.port)]
    : ['-D', '-f', 'ipv4', '-p', proto, '--reply-dst', s.address, '--reply-port-dst', String(s.port)];
}
