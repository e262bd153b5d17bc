// The fallback path of conntrack.ts: Debian's `conntrack` tool (package
// conntrack), a process per listing and per batch of deletions.
//
// One process takes up to a run's filters from a file (`conntrack -R FILE`,
// one `-D …` line each; conntrack-tools ≥ 1.4.6 — not its stdin: Node's
// stdio pipes are sockets, which `-R -` cannot open as /dev/stdin), in a
// private directory removed after the run: a process per filter cost the
// daemon ~2.5 ms of its main thread per new IPv4 mapping (forking a large
// process), a third of its time under load. A tool without -R gets one
// filter per run, as before. Each process is killed after its time.
//
// Each `-D` line is a dump of the whole conntrack table in the kernel and the
// tool (no kernel-side filter in conntrack-tools 1.4.7): ~70 ms of CPU per
// line at 20 000 flows. So a run first lists the flows of the families and
// protocols its filters name (`conntrack -L -f ipv4 -p udp`, one dump each, read line by
// line here and matched against the filters), and deletes only for the
// filters that some flow matches: a new mapping's endpoint rarely has a flow
// yet. A flow the listing missed began after the batch reached the kernel,
// so the kernel translates it already. A listing that fails falls back to
// deleting for every filter.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { familyOf, parseIp } from '../net/address.js';
import { protocolName } from '../net/ipproto.js';
import { selectorKey, type FlowPath, type FlowSelector } from './flow-path.js';

const RUN_TIMEOUT_MS = 2_000;
/** A listing's line longer than this is no flow of ours (a flow's line is ~200 characters). */
const MAX_LINE = 4_096;
const MS_PER_LINE = 20;

export class ToolPath implements FlowPath {
  readonly name = 'tool';
  /** The tool is not installed: nothing more to do, said once. */
  missing = false;
  /** The tool has no -R (older than conntrack-tools 1.4.6): one filter per run. */
  private oneByOne = false;
  /** Processes started (tests). */
  runs = 0;

  constructor(
    private readonly log: Logger,
    private readonly binary = 'conntrack',
  ) {}

  /** Lists, then deletes for the filters some flow matches. */
  async forget(selectors: readonly FlowSelector[]): Promise<boolean> {
    const matched = await this.withFlows(selectors);
    if (matched.length === 0) return true;
    const lines = matched.map(argsOf);
    if (!this.oneByOne && (await this.runFile(lines)) !== 'no -R') return true;
    this.oneByOne = true;
    for (const args of lines) if (!this.missing) await this.run(args);
    return true;
  }

  /**
   * The selectors some flow in the table matches, by one listing per family
   * and protocol; all of them when a listing fails (deleting for a filter that
   * matches nothing costs time, not correctness).
   */
  private async withFlows(selectors: readonly FlowSelector[]): Promise<FlowSelector[]> {
    const wanted = new Map(selectors.map((s) => [selectorKey(s.by, s.protocol, s.address, s.port), s]));
    const found = new Set<FlowSelector>();
    const listings = new Map(selectors.map((s) => [`${familyOf(s.address)} ${s.protocol}`, { family: familyOf(s.address), protocol: s.protocol }]));
    for (const { family, protocol } of listings.values()) {
      const name = protocolName(protocol);
      const listed = await this.list(['-L', '-f', family === 4 ? 'ipv4' : 'ipv6', '-p', name], (line) => {
        const flow = flowOf(line);
        if (!flow || flow.protocol !== name) return;
        // The tool writes IPv6 addresses as inet_ntop does; the selectors hold canonical text.
        const [source, replyTo, replyFrom] = [parseIp(flow.source), parseIp(flow.replyTo), parseIp(flow.replyFrom)];
        const keys = [
          ...(source ? [selectorKey('source', protocol, source, flow.sourcePort)] : []),
          ...(replyTo ? [selectorKey('translated-to', protocol, replyTo, flow.replyToPort)] : []),
          ...(replyFrom ? [selectorKey('destination', protocol, replyFrom, flow.replyFromPort)] : []),
        ];
        for (const key of keys) {
          const s = wanted.get(key);
          if (s) found.add(s);
        }
      });
      if (this.missing) return [];
      if (!listed) return [...selectors];
    }
    return selectors.filter((s) => found.has(s));
  }

  /** `conntrack -L …`, each line of its output handed to `onLine` as it comes; false if it could not list. */
  private list(args: string[], onLine: (line: string) => void): Promise<boolean> {
    this.runs++;
    return new Promise((resolve) => {
      const child = spawn(this.binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      let partial = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
      child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-1024)));
      child.stdout?.on('data', (d: Buffer) => {
        const lines = (partial + d.toString('latin1')).split('\n');
        partial = lines.pop() ?? '';
        if (partial.length > MAX_LINE) partial = '';
        for (const l of lines) if (l.length <= MAX_LINE) onLine(l);
      });
      child.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (err.code === 'ENOENT') this.noTool();
        else this.log.warn({ event: 'conntrack-failed', error: err.message });
        resolve(false);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (partial) onLine(partial);
        const ok = !signal && code === 0;
        if (!ok && !this.missing) this.log.warn({ event: 'conntrack-failed', args: args.join(' '), error: (signal ? `killed by ${signal}` : stderr.trim()).slice(0, 300) });
        resolve(ok);
      });
    });
  }

  private noTool(): void {
    this.missing = true;
    this.log.warn({ event: 'conntrack-missing', detail: 'install the Debian package conntrack: without it, flows already running keep their old translation after a mapping changes (new flows follow it)' });
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
        if (err.code === 'ENOENT') this.noTool();
        else this.log.warn({ event: 'conntrack-failed', error: err.message });
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
  const head = ['-D', '-f', familyOf(s.address) === 4 ? 'ipv4' : 'ipv6', '-p', protocolName(s.protocol)];
  switch (s.by) {
    case 'source':
      return [...head, '--orig-src', s.address, '--orig-port-src', String(s.port)];
    case 'translated-to':
      return [...head, '--reply-dst', s.address, '--reply-port-dst', String(s.port)];
    case 'destination':
      return [...head, '--reply-src', s.address, '--reply-port-src', String(s.port)];
  }
}

/**
 * One line of `conntrack -L` (default output): the protocol's name, then the
 * original tuple's src/dst/sport/dport and the reply tuple's, e.g.
 * `udp 17 29 src=A dst=B sport=P dport=Q [UNREPLIED] src=B dst=X sport=Q dport=R mark=0 use=1`.
 * The original source, the reply's destination (where the flow was
 * translated to) and the reply's source (the LAN endpoint an inbound flow
 * reaches) are what the filters select on.
 */
export function flowOf(line: string): { protocol: string; source: string; sourcePort: number; replyTo: string; replyToPort: number; replyFrom: string; replyFromPort: number } | undefined {
  // indexOf, not a split of every field: a listing may hold tens of thousands
  // of lines, read on the daemon's main thread.
  const src = valuesOf(line, ' src=');
  const dst = valuesOf(line, ' dst=');
  const sport = valuesOf(line, ' sport=');
  const dport = valuesOf(line, ' dport=');
  if (!src || !dst || !sport || !dport) return undefined;
  const text = line.trimStart();
  const space = text.indexOf(' ');
  return {
    protocol: space < 0 ? text : text.slice(0, space),
    source: src[0],
    sourcePort: Number(sport[0]),
    replyTo: dst[1],
    replyToPort: Number(dport[1]),
    replyFrom: src[1],
    replyFromPort: Number(sport[1]),
  };
}

/** The values of `key` (" src=") in a line, when it occurs exactly twice: the original tuple's and the reply's. */
function valuesOf(line: string, key: string): [string, string] | undefined {
  const values: string[] = [];
  for (let at = line.indexOf(key); at >= 0; at = line.indexOf(key, at + key.length)) {
    if (values.length === 2) return undefined;
    const from = at + key.length;
    const end = line.indexOf(' ', from);
    values.push(line.slice(from, end < 0 ? line.length : end));
  }
  return values.length === 2 ? [values[0]!, values[1]!] : undefined;
}
