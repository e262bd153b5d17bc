// Live flows follow a changed mapping: NAT is decided on a flow's first
// packet and kept in its conntrack entry, so an endpoint already talking
// keeps its old source port after its mapping is created, moved or deleted
// until that entry goes. Deleting it makes the next packet a new flow, which
// the rules translate afresh (a TCP connection in progress is cut: its port
// changes under it).
//
// Debian's `conntrack` tool (package conntrack) does the deleting, off the
// reply path: the firewall queues the work after a batch committed and
// returns. One process takes up to LINES_PER_RUN filters from a file
// (`conntrack -R FILE`, one `-D …` line each; conntrack-tools ≥ 1.4.6 —
// not its stdin: Node's stdio pipes are sockets, which `-R -` cannot
// open as /dev/stdin), in a private directory removed after the run: a
// process per filter cost the daemon ~2.5 ms of its main thread per new
// IPv4 mapping (forking a large process), a third of its time under load.
// A tool without -R gets one filter per run, as before. The queue is
// bounded, one process runs at a time and each is killed after its time.
// Without the tool the mappings still work for new flows; that is logged
// once.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { protocolName } from '../net/ipproto.js';
import type { IpAddress } from '../net/address.js';

/** Flows to forget: by their original source, or by the external address and port they were translated to. */
export type FlowSelector =
  | { by: 'source'; protocol: number; address: IpAddress; port: number }
  | { by: 'translated-to'; protocol: number; address: IpAddress; port: number };

const RUN_TIMEOUT_MS = 2_000;
/** Filters one process is given at most; its time grows with them (each line walks the table). */
const LINES_PER_RUN = 256;
const MS_PER_LINE = 20;
/** Beyond this the oldest requests are dropped (a flood of changes must not queue without end). */
const MAX_QUEUED = 4_096;

export class ConntrackFlusher {
  private readonly queue = new Map<string, FlowSelector>();
  private running: Promise<void> | undefined;
  private missing = false;
  /** The tool has no -R (older than conntrack-tools 1.4.6): one filter per run. */
  private oneByOne = false;
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
      const lines: string[][] = [];
      for (const [k, s] of this.queue) {
        if (lines.length >= LINES_PER_RUN) break;
        this.queue.delete(k);
        lines.push(argsOf(s));
      }
      if (!this.oneByOne && (await this.runFile(lines)) !== 'no -R') continue;
      this.oneByOne = true;
      for (const args of lines) if (!this.missing) await this.run(args);
    }
    this.queue.clear();
  }

  /** One process for many filters: `conntrack -R FILE`. */
  private async runFile(lines: readonly string[][]): Promise<'done' | 'no -R'> {
    let dir: string | undefined;
    try {
      dir = mkdtempSync(join(tmpdir(), 'portcullis-conntrack-'));
      const file = join(dir, 'filters');
      writeFileSync(file, lines.map((l) => l.join(' ') + '\n').join(''), { mode: 0o600 });
      return await this.run(['-R', file], lines.length);
    } catch (err) {
      this.log.warn({ event: 'conntrack-failed', error: (err as Error).message });
      return 'done';
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }

  /** One conntrack process; `lines`: how many filters its file holds (with -R). */
  private run(args: string[], lines?: number): Promise<'done' | 'no -R'> {
    this.runs++;
    return new Promise((resolve) => {
      const child = spawn(this.binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS + (lines ?? 0) * MS_PER_LINE);
      child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (err.code === 'ENOENT') {
          this.missing = true;
          this.log.warn({ event: 'conntrack-missing', detail: 'install the Debian package conntrack: without it, flows already running keep their old translation after a mapping changes (new flows follow it)' });
        } else this.log.warn({ event: 'conntrack-failed', error: err.message });
        resolve('done');
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (lines && !signal && code !== 0 && /invalid option|unrecognized option|unknown option/i.test(stderr)) {
          resolve('no -R');
          return;
        }
        // Exit 1 with "0 flow entries" is the common case: nothing to delete.
        if (signal || (code !== 0 && !/0 flow entries/.test(stderr))) {
          this.log.warn({ event: 'conntrack-failed', args: args.join(' '), lines, error: (signal ? `killed by ${signal}` : stderr.trim()).slice(0, 300) });
        }
        resolve('done');
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
