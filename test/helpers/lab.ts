// Drives scripts/lab.sh from tests: namespaces this test run made itself,
// named with a per-file prefix so test files can run side by side.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export const CLI = `${ROOT}dist/src/cli.js`;

/** lab.sh: lan, lan2, rtr, wan; lab-cgn.sh (double NAT): lan, cpe, isp, wan; lab-dslite.sh: lan, cpe, aftr, wan. */
export type Node = 'lan' | 'lan2' | 'rtr' | 'wan' | 'cpe' | 'isp' | 'aftr';

/** A fresh state directory for one daemon run. */
export function stateDir(): string {
  return mkdtempSync(join(tmpdir(), 'portcullis-state-'));
}

/**
 * A config (and its policy) for a load test: one client makes thousands of
 * mappings as fast as it can, which the shipped per-client quota and rate
 * limits would (rightly) stop. Returns the config file's path.
 */
export function loadTestConfig(maxMappingsPerClient: number): string {
  const dir = stateDir();
  const config = join(dir, 'config.json');
  const policy = join(dir, 'policy.json');
  writeFileSync(config, JSON.stringify({ policy, rateLimit: { perSecond: 100_000, burst: 100_000 } }));
  writeFileSync(policy, JSON.stringify({ version: 1, rules: [{ name: 'load', action: 'allow', match: { internalPorts: '1024-65535' }, limits: { maxMappingsPerClient, requestsPerSecond: 0 } }] }));
  return config;
}

export interface Lab {
  prefix: string;
  /** Runs a command in a namespace; returns its output (throws on non-zero exit unless allowed). */
  exec(node: Node, argv: string[], opts?: { allowFail?: boolean; timeoutMs?: number; input?: string }): { code: number; stdout: string; stderr: string };
  /** Starts a long-running process in a namespace. */
  spawn(node: Node, argv: string[]): ChildProcess;
  down(): void;
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error('lab tests need root and network namespaces (CI runs them as root): run `sudo npm test`');
  }
}

/** Builds the lab of `script` (scripts/lab.sh, or lab-cgn.sh for the double-NAT one). */
export function labUp(prefix: string, script = 'lab.sh'): Lab {
  const LAB = `${ROOT}scripts/${script}`;
  requireRoot();
  const env = { ...process.env, LAB_PREFIX: prefix };
  const up = spawnSync('bash', [LAB, 'up'], { env, encoding: 'utf8', timeout: 60_000 });
  if (up.status !== 0) throw new Error(`lab up failed: ${up.stderr}${up.stdout}`);
  const children: ChildProcess[] = [];
  return {
    prefix,
    exec(node, argv, opts = {}) {
      const r = spawnSync('ip', ['netns', 'exec', `${prefix}-${node}`, ...argv], {
        encoding: 'utf8',
        timeout: opts.timeoutMs ?? 30_000,
        input: opts.input,
      });
      const out = { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
      if (out.code !== 0 && !opts.allowFail) throw new Error(`${argv.join(' ')} in ${node} exited ${out.code}: ${out.stderr}${out.stdout}`);
      return out;
    },
    spawn(node, argv) {
      const c = spawn('ip', ['netns', 'exec', `${prefix}-${node}`, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(c);
      return c;
    },
    down() {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
      spawnSync('bash', [LAB, 'down'], { env, timeout: 30_000 });
    },
  };
}

/**
 * Stops a daemon and waits for it to be gone (its state directory unlocked,
 * its sockets closed), instead of guessing how long an exit takes on a busy
 * machine; a daemon still there after `timeoutMs` is killed, and that fails.
 */
export async function stopped(child: ChildProcess, timeoutMs = 20_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), timeoutMs)));
  const r = await Promise.race([gone, late]);
  clearTimeout(timer);
  if (r === 'late') {
    child.kill('SIGKILL');
    await gone;
    throw new Error(`the daemon (pid ${child.pid}) had not exited ${timeoutMs} ms after SIGTERM`);
  }
}

/** Collects a child's stdout lines and resolves when one matches. */
export function waitForLine(child: ChildProcess, match: (line: string) => boolean, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let errBuf = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for a line; stdout: ${buf.slice(-2000)} stderr: ${errBuf.slice(-2000)}`)), timeoutMs);
    child.stderr?.on('data', (d: Buffer) => (errBuf += d.toString()));
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      for (const line of buf.split('\n')) {
        if (match(line)) {
          clearTimeout(timer);
          resolve(line);
          return;
        }
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`process exited ${code} first; stdout: ${buf.slice(-2000)} stderr: ${errBuf.slice(-2000)}`));
    });
  });
}

export interface Heard {
  from: string;
  hex: string;
  /**
   * Date.now() when the listener received it, stamped in the listener (for
   * RFC 6887 §8.5 epoch checks). Not when the test process read the line:
   * a test blocked in a spawnSync reads late, and under load that was
   * seconds (an epoch that continued looked like one that fell behind).
   */
  at: number;
}

/** The epoch an announcement carries: PCP (RFC 6887 §7.2) or NAT-PMP (RFC 6886 §3.2). */
export function announcedEpoch(h: Heard): number {
  const b = Buffer.from(h.hex, 'hex');
  return b[0] === 0 ? b.readUInt32BE(4) : b.readUInt32BE(8);
}

/**
 * Listens on a LAN host for what the router multicasts to clients
 * (224.0.0.1 and ff02::1 are joined by every host; port 5350) for `ms`.
 * Resolves once the listener is bound.
 */
export async function listenForAnnouncements(lab: Lab, ms: number): Promise<{ heard: () => Heard[] }> {
  const script = `
const dgram = require('node:dgram');
let bound = 0;
for (const [type, addr] of [['udp4', '0.0.0.0'], ['udp6', '::']]) {
  const s = dgram.createSocket({ type, reuseAddr: true });
  s.on('message', (m, r) => console.log(JSON.stringify({ from: r.address, hex: m.toString('hex'), at: Date.now() })));
  s.bind(5350, addr, () => ++bound === 2 && console.log('ready'));
}
setTimeout(() => process.exit(0), ${ms});
`;
  const l = lab.spawn('lan', [process.execPath, '-e', script]);
  const heard: Heard[] = [];
  let buf = '';
  let ready = false;
  l.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const line of lines) if (line === 'ready') ready = true;
    else if (line) heard.push(JSON.parse(line) as Heard);
  });
  // Bound, not a fixed pause: starting node took longer than 300 ms under load.
  for (const end = Date.now() + 15_000; !ready && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
  return { heard: () => heard };
}

/** The port-control clients of the lab's LAN host ('lan'): real natpmpc and upnpc, and portcullis' own PCP client, toward `gateway`. */
export function lanClients(lab: Lab, gateway: string) {
  return {
    natpmpc(...args: string[]) {
      const r = lab.exec('lan', ['natpmpc', '-g', gateway, ...args], { allowFail: true, timeoutMs: 30_000 });
      return { ...r, all: r.stdout + r.stderr };
    },
    /** `portcullis pcp map` against the gateway: its JSON answer, or the error. */
    pcp(...args: string[]): Record<string, unknown> {
      const r = lab.exec('lan', [process.execPath, CLI, 'pcp', 'map', '--server', gateway, ...args], { allowFail: true, timeoutMs: 30_000 });
      return r.stdout ? (JSON.parse(r.stdout) as Record<string, unknown>) : { error: r.stderr };
    },
    upnpc(...args: string[]) {
      const r = lab.exec('lan', ['upnpc', ...args], { allowFail: true, timeoutMs: 30_000 });
      return { ...r, all: r.stdout + r.stderr };
    },
  };
}

/** A child's stdout as whole lines (a line split across two chunks is joined), collected as they come. */
export function logLines(child: ChildProcess): string[] {
  const lines: string[] = [];
  let partial = '';
  child.stdout?.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts.filter(Boolean));
  });
  return lines;
}

/** Whether a line matching `match` is among `lines` within `ms` (log lines may trail the answers a client saw). */
export async function logged(lines: readonly string[], match: (line: string) => boolean, ms = 3000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!lines.some(match)) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}
