// The admin's side door: a Unix socket in the state directory (mode 0600, so
// root only) for `portcullis policy reload`, `status`, `ls` and `rm`. One JSON
// line in, one JSON line out, one request per connection, handled once:
// whatever follows the first line is read and dropped. Bounded like
// everything else: bytes per connection, deadline, connections at once.

import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log.js';

const CONTROL_SOCKET = 'control.sock';
const MAX_LINE = 4096;
const DEADLINE_MS = 30_000;
const MAX_CONNECTIONS = 8;

/**
 * `remove`: the admin removes by ID, or a client's mappings (on one internal
 * port); the fields are checked by the handler, which names what is wrong.
 */

/** A request the daemon understood and turned down (a bad ID, nothing matched): the asker's error, not the daemon's. */
export class ControlRefusal extends Error {}

export type ControlRequest = { op: 'reload' } | { op: 'list' } | { op: 'policy' } | { op: 'status' } | { op: 'remove'; id?: number; client?: string; port?: number };
const OPS: readonly string[] = ['reload', 'list', 'policy', 'status', 'remove'] satisfies ControlRequest['op'][];
export type ControlReply = { ok: true; result: unknown } | { ok: false; error: string };
export type ControlHandler = (req: ControlRequest) => Promise<unknown>;

export function controlSocketPath(stateDir: string): string {
  return join(stateDir, CONTROL_SOCKET);
}

export class ControlServer {
  private server: Server | undefined;

  constructor(
    private readonly path: string,
    private readonly handle: ControlHandler,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    // A socket file left by a daemon that died is in the way, and is removed.
    // The daemon opens this only while it holds the state directory's lock
    // (DurableStore.open); whoever else starts one, a socket that still
    // answers belongs to a live daemon and is left alone.
    if (await answers(this.path)) throw new Error(`${this.path}: another daemon is listening on it`);
    rmSync(this.path, { force: true });
    const server = createServer((sock) => this.serve(sock));
    server.maxConnections = MAX_CONNECTIONS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => resolve());
    });
    chmodSync(this.path, 0o600);
    this.server = server;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    rmSync(this.path, { force: true });
  }

  private serve(sock: Socket): void {
    const chunks: Buffer[] = [];
    let received = 0;
    /** Set once the request line is complete: later chunks never start another. */
    let taken = false;
    let replied = false;
    const reply = (r: ControlReply) => {
      if (replied) return;
      replied = true;
      sock.end(JSON.stringify(r) + '\n');
    };
    // An absolute deadline, not an idle one: a client trickling a byte at a time would keep an idle timer fresh.
    const deadline = setTimeout(() => sock.destroy(), DEADLINE_MS);
    sock.once('close', () => clearTimeout(deadline));
    sock.on('error', () => undefined);
    sock.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (taken) {
        // Read and dropped; a peer that goes on and on is cut off.
        if (received > MAX_LINE * 2) sock.destroy();
        return;
      }
      chunks.push(chunk);
      const buf = Buffer.concat(chunks);
      const nl = buf.indexOf(0x0a);
      if (nl < 0 ? buf.length > MAX_LINE : nl > MAX_LINE) {
        taken = true;
        return reply({ ok: false, error: 'request too long' });
      }
      if (nl < 0) return;
      taken = true;
      chunks.length = 0;
      let req: ControlRequest;
      try {
        req = JSON.parse(buf.subarray(0, nl).toString('utf8')) as ControlRequest;
      } catch {
        return reply({ ok: false, error: 'not JSON' });
      }
      if (!req || typeof req !== 'object' || !OPS.includes((req as { op?: string }).op ?? '')) return reply({ ok: false, error: 'unknown op' });
      this.handle(req).then(
        (result) => reply({ ok: true, result }),
        (err: unknown) => {
          // The asker's mistake is answered and noted; only the daemon's own failure warns.
          if (err instanceof ControlRefusal) this.log.info({ event: 'control-refused', op: req.op, error: err.message });
          else this.log.warn({ event: 'control-failed', op: req.op, error: (err as Error).message });
          reply({ ok: false, error: (err as Error).message });
        },
      );
    });
  }
}

/** Whether something accepts connections on the socket at `path` now. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** The CLI's end: one request, one reply. */
export function controlRequest(path: string, req: ControlRequest, timeoutMs = DEADLINE_MS): Promise<ControlReply> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer from the daemon at ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (d: Buffer) => (buf += d.toString('utf8')));
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new Error(err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? `no daemon is listening at ${path} (is portcullis running with this --state-dir?)` : err.message));
    });
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as ControlReply);
      } catch {
        reject(new Error(`unreadable answer from the daemon: ${buf.slice(0, 200)}`));
      }
    });
  });
}
