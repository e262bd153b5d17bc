// Talking to nftables: the interface every path to the kernel implements, and
// the process path — `nft -j -f FILE` with one JSON document per batch, one
// process per batch; the kernel applies a batch as one transaction. The
// in-process path is libnftables.ts; choose.ts picks between them.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type NftCommand = Record<string, unknown>;

export interface NftResult {
  ok: boolean;
  stdout: string;
  stderr: string;
  /** The binary could not be started at all (ENOENT, EACCES). */
  spawnError?: string;
}

export interface NftRunner {
  /** Which path reaches the kernel: in-process libnftables or an `nft` process per call. */
  readonly kind?: 'library' | 'process';
  /** Runs one atomic batch. */
  batch(commands: readonly NftCommand[]): Promise<NftResult>;
  /** Runs one atomic batch written in nft's own language. */
  script(text: string): Promise<NftResult>;
  /** Runs `nft -j <args…>` (listing) and parses its JSON. */
  list(args: readonly string[]): Promise<ListResult>;
}

export type ListResult = { ok: true; items: Record<string, unknown>[] } | { ok: false; error: string };

/** Bounds every nft call: a wedged netlink socket must not wedge the daemon. */
const NFT_TIMEOUT_MS = 30_000;

function run(binary: string, args: readonly string[]): Promise<NftResult> {
  return new Promise((resolve) => {
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), NFT_TIMEOUT_MS);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ ok: false, stdout, stderr, spawnError: `${err.code ?? ''} ${err.message}`.trim() });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ ok: code === 0, stdout, stderr: signal ? `${stderr}killed by ${signal} after ${NFT_TIMEOUT_MS} ms` : stderr });
    });
  });
}

export function nftRunner(binary = 'nft'): NftRunner {
  // nft opens "/dev/stdin" for `-f -`, which fails on the socket Node gives a
  // child as stdin (ENXIO); a batch file in a private directory always works.
  let dir: string | undefined;
  let seq = 0;
  const viaFile = async (body: string, json: boolean): Promise<NftResult> => {
    if (!dir) {
      const made = mkdtempSync(join(tmpdir(), 'portcullis-nft-'));
      dir = made;
      process.once('exit', () => rmSync(made, { recursive: true, force: true }));
    }
    const file = join(dir, `batch-${process.pid}-${seq++}.${json ? 'json' : 'nft'}`);
    writeFileSync(file, body, { mode: 0o600 });
    try {
      return await run(binary, json ? ['-j', '-f', file] : ['-f', file]);
    } finally {
      rmSync(file, { force: true });
    }
  };
  return {
    kind: 'process',
    batch: (commands) => viaFile(JSON.stringify({ nftables: commands }), true),
    script: (text) => viaFile(text, false),
    async list(args) {
      const r = await run(binary, ['-j', ...args]);
      if (!r.ok) return { ok: false, error: r.spawnError ?? r.stderr.trim() };
      return parseListing(r.stdout);
    },
  };
}

/** nft's JSON listing (`{"nftables": [...]}`; nothing at all for an empty one) as its items. */
export function parseListing(text: string): ListResult {
  try {
    const doc = JSON.parse(text || '{"nftables":[]}') as { nftables: Record<string, unknown>[] };
    return { ok: true, items: doc.nftables };
  } catch (err) {
    return { ok: false, error: `unparseable nft output: ${(err as Error).message}` };
  }
}
