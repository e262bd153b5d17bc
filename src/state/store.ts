// The durable store: a crash-safe record of every mapping, the epoch origin
// and the device UUID, in the state directory.
//
//   snapshot   header line, one `put` line per live mapping, an `end` line
//   journal    `put` / `del` / `epoch` lines appended since the snapshot
//
// Every line is `CRC32 JSON`. The journal is appended once per commit batch
// and fdatasync'ed before any reply of that batch leaves; a renewal costs one
// line, never a rewrite (routers write to flash). When the journal outgrows
// the snapshot it is folded into a new snapshot (written aside, fsync'ed,
// renamed). A torn last journal line is a write the crash interrupted — its
// reply was never sent — and is ignored; any other damage means the state
// cannot be trusted: the files are moved aside (kept, not deleted) and the
// daemon starts a new epoch.
//
// Why our own journal rather than an embedded database: the records are small
// and independent, the access pattern is "append, and read everything once at
// start", and the native databases on npm (SQLite, LMDB bindings) fetch
// prebuilt binaries at install or rewrite whole pages per renewal.

import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { IpAddress } from '../net/address.js';
import { keyOf, type Mapping, type Origin } from '../service/types.js';

export const STORE_VERSION = 1;

/** A mapping as stored: absolute expiry on both clocks, and the boot the monotonic one belongs to. */
export interface StoredMapping {
  key: string;
  kind: 'map' | 'peer';
  family: 4 | 6;
  internalAddress: IpAddress;
  protocol: number;
  internalPort: number;
  externalAddress: IpAddress;
  externalPort: number;
  filters: [IpAddress, number, number][];
  remotePeer?: [IpAddress, number];
  nonce?: string;
  origin: Origin;
  owner: IpAddress;
  description: string;
  lifetime: number;
  /** Where the last request came from (PCP mapping updates go there, RFC 6887 §14.2). */
  clientPort?: number;
  expiresWall: number;
  expiresMono: number;
  bootId: string;
}

export interface EpochOrigin {
  wall: number;
  mono: number;
  bootId: string;
}

export type JournalRecord =
  | { op: 'put'; at: number; m: StoredMapping }
  | { op: 'del'; at: number; key: string }
  | { op: 'epoch'; at: number; epoch: EpochOrigin };

type SnapshotLine =
  | { op: 'header'; version: number; at: number; deviceUuid: string; epoch: EpochOrigin }
  | { op: 'put'; at: number; m: StoredMapping }
  | { op: 'end'; count: number };

export interface LoadedState {
  status: 'fresh' | 'loaded' | 'corrupt';
  detail?: string;
  /** Where damaged files were moved. */
  movedAside?: string;
  deviceUuid: string;
  epoch?: EpochOrigin;
  mappings: StoredMapping[];
  /** Wall time of the newest record: a wall clock behind it after a reboot is not to be trusted. */
  lastWriteWall: number;
}

export function encodeLine(obj: unknown): string {
  const json = JSON.stringify(obj);
  return `${crc32(json).toString(16).padStart(8, '0')} ${json}\n`;
}

export function decodeLine(line: string): unknown {
  const sp = line.indexOf(' ');
  if (sp !== 8) return undefined;
  const json = line.slice(9);
  if (crc32(json).toString(16).padStart(8, '0') !== line.slice(0, 8)) return undefined;
  try {
    return JSON.parse(json) as unknown;
  } catch {
    return undefined;
  }
}

export class DurableStore {
  private journal: FileHandle | undefined;
  private pending: string[] = [];
  private journalBytes = 0;
  private snapshotBytes = 0;
  /** Bytes written to disk since open (for the benchmark's write-amplification figure). */
  bytesWritten = 0;
  deviceUuid = '';

  private constructor(readonly dir: string) {}

  private get snapshotPath(): string {
    return join(this.dir, 'snapshot');
  }
  private get journalPath(): string {
    return join(this.dir, 'journal');
  }
  private get nextJournalPath(): string {
    return join(this.dir, 'journal.next');
  }

  /** Opens (creating) the store and reads what it holds. */
  static async open(dir: string, wallNow: number): Promise<{ store: DurableStore; state: LoadedState }> {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const store = new DurableStore(dir);
    let state = store.read();
    if (state.status === 'corrupt') {
      const aside = join(dir, `corrupt-${new Date(wallNow).toISOString().replace(/[:.]/g, '-')}`);
      mkdirSync(aside, { recursive: true });
      for (const f of ['snapshot', 'journal']) if (existsSync(join(dir, f))) renameSync(join(dir, f), join(aside, f));
      state = { ...state, movedAside: aside, mappings: [], epoch: undefined };
    }
    store.deviceUuid = state.deviceUuid;
    store.journal = await open(store.journalPath, 'a');
    return { store, state };
  }

  private read(): LoadedState {
    const fresh: LoadedState = { status: 'fresh', deviceUuid: randomUUID(), mappings: [], lastWriteWall: 0 };
    if (!existsSync(this.snapshotPath)) {
      if (existsSync(this.journalPath) && readFileSync(this.journalPath).length > 0) {
        return { ...fresh, status: 'corrupt', detail: 'journal without a snapshot' };
      }
      return fresh;
    }
    const snapText = readFileSync(this.snapshotPath, 'utf8');
    this.snapshotBytes = snapText.length;
    const lines = snapText.split('\n');
    const parsed = lines.slice(0, -1).map(decodeLine) as (SnapshotLine | undefined)[];
    const header = parsed[0];
    const end = parsed.at(-1);
    const bad = (detail: string): LoadedState => ({ ...fresh, status: 'corrupt', detail });
    if (lines.at(-1) !== '' || !header || header.op !== 'header' || !end || end.op !== 'end') return bad('snapshot is truncated or damaged');
    if (header.version !== STORE_VERSION) return bad(`snapshot version ${header.version}, expected ${STORE_VERSION}`);
    if (parsed.some((p) => p === undefined)) return bad('snapshot has a damaged line');
    const live = new Map<string, StoredMapping>();
    for (const p of parsed) if (p?.op === 'put') live.set(p.m.key, p.m);
    if (live.size !== end.count) return bad(`snapshot holds ${live.size} mappings, its end line says ${end.count}`);
    let epoch = header.epoch;
    let lastWriteWall = header.at;

    // `journal` then `journal.next` (a compaction in progress rotated to it).
    // Replaying a journal the snapshot already contains is harmless: the
    // last record of each key is the one the snapshot holds.
    for (const path of [this.journalPath, this.nextJournalPath]) {
      if (!existsSync(path)) continue;
      const text = readFileSync(path, 'utf8');
      this.journalBytes = text.length;
      const jl = text.split('\n');
      // The text after the last newline is an unfinished write: ignored.
      const complete = jl.slice(0, -1);
      for (const [i, line] of complete.entries()) {
        const r = decodeLine(line) as JournalRecord | undefined;
        if (!r) {
          // A damaged final line may also be a torn write that happened to
          // end in a newline; damage before valid records is not.
          if (i === complete.length - 1) break;
          return bad(`journal line ${i + 1} is damaged`);
        }
        lastWriteWall = Math.max(lastWriteWall, r.at);
        if (r.op === 'put') live.set(r.m.key, r.m);
        else if (r.op === 'del') live.delete(r.key);
        else epoch = r.epoch;
      }
    }
    if (existsSync(this.nextJournalPath)) {
      // Finish the interrupted compaction's last step: one journal again.
      renameSync(this.nextJournalPath, this.journalPath);
    }
    return { status: 'loaded', deviceUuid: header.deviceUuid, epoch, mappings: [...live.values()], lastWriteWall };
  }

  /** Queues records; they reach the disk with the next `flush`. */
  append(records: readonly JournalRecord[]): void {
    for (const r of records) this.pending.push(encodeLine(r));
  }

  private flushing: Promise<void> = Promise.resolve();

  /**
   * Writes and fdatasyncs what was appended. Flushes run one after another;
   * one that starts while another syncs takes everything appended meanwhile,
   * so batches arriving during a sync share the next one.
   */
  flush(): Promise<void> {
    return this.serial(() => this.writePending());
  }

  private async writePending(): Promise<void> {
    if (this.pending.length === 0 || !this.journal) return;
    const chunk = this.pending.join('');
    this.pending = [];
    await this.journal.appendFile(chunk);
    await this.journal.datasync();
    this.journalBytes += chunk.length;
    this.bytesWritten += chunk.length;
  }

  /** The journal has grown past the snapshot it amends: time to fold it in. */
  wantsCompaction(): boolean {
    return !this.compacting && this.journalBytes > Math.max(4 << 20, 2 * this.snapshotBytes);
  }

  /**
   * Writes a new snapshot of `live` at once (start-up, --flush-on-exit): the
   * caller guarantees nothing else runs meanwhile.
   */
  async compact(live: readonly StoredMapping[], epoch: EpochOrigin, wallNow: number): Promise<void> {
    await this.rewrite(live.map((m) => () => m), epoch, wallNow, false);
  }

  private compacting = false;

  /** The same, while the daemon serves (see `rewrite`); does nothing if one is already running. */
  async compactInBackground(live: readonly (() => StoredMapping)[], epoch: EpochOrigin, wallNow: number): Promise<void> {
    if (this.compacting) return;
    this.compacting = true;
    try {
      await this.rewrite(live, epoch, wallNow, true);
    } finally {
      this.compacting = false;
    }
  }

  /**
   * Compaction: the journal is rotated (appends continue in `journal.next`),
   * the snapshot is written beside the old one, synced and renamed into
   * place, and `journal.next` becomes the journal. `live` is read at
   * rotation; a mapping that changes while the snapshot is written is also
   * in `journal.next`, which is replayed after the snapshot, so the result
   * is exact either way and a crash at any step loses nothing. `gently`:
   * small slices with a timer between them, so requests (latency-bound)
   * always get the event loop first.
   */
  private async rewrite(live: readonly (() => StoredMapping)[], epoch: EpochOrigin, wallNow: number, gently: boolean): Promise<void> {
    await this.serial(async () => {
      // Anything not yet written was appended after `live` was read, or is
      // already reflected in it: either way it belongs after the snapshot.
      await this.journal?.close();
      this.journal = await open(this.nextJournalPath, 'w');
      this.journalBytes = 0;
      await this.writePending();
    });
    const tmp = `${this.snapshotPath}.new`;
    const out = await open(tmp, 'w', 0o600);
    let bytes = 0;
    const write = async (text: string) => {
      await out.write(text);
      bytes += text.length;
    };
    await write(encodeLine({ op: 'header', version: STORE_VERSION, at: wallNow, deviceUuid: this.deviceUuid, epoch } satisfies SnapshotLine));
    const slice = gently ? 256 : 8192;
    for (let i = 0; i < live.length; i += slice) {
      await write(live.slice(i, i + slice).map((get) => encodeLine({ op: 'put', at: wallNow, m: get() } satisfies SnapshotLine)).join(''));
      if (gently) await new Promise<void>((r) => setTimeout(r, 2));
    }
    await write(encodeLine({ op: 'end', count: live.length } satisfies SnapshotLine));
    await out.sync();
    await out.close();
    await this.serial(async () => {
      renameSync(tmp, this.snapshotPath);
      renameSync(this.nextJournalPath, this.journalPath);
      const dirFd = openSync(this.dir, 'r');
      fsyncSync(dirFd);
      closeSync(dirFd);
    });
    this.snapshotBytes = bytes;
    this.bytesWritten += bytes;
  }

  /** Runs `fn` in the flush order (no write interleaves with it). */
  private serial(fn: () => Promise<void>): Promise<void> {
    const run = this.flushing.then(fn);
    this.flushing = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.journal?.close();
    this.journal = undefined;
  }
}

export function toStored(m: Mapping, wallNow: number, monoNow: number, bootId: string): StoredMapping {
  return {
    key: keyOf(m),
    kind: m.kind,
    family: m.family,
    internalAddress: m.internalAddress,
    protocol: m.protocol,
    internalPort: m.internalPort,
    externalAddress: m.externalAddress,
    externalPort: m.externalPort,
    filters: m.filters.map((f) => [f.prefix.address, f.prefix.length, f.port]),
    remotePeer: m.remotePeer ? [m.remotePeer.address, m.remotePeer.port] : undefined,
    nonce: m.nonce?.toString('hex'),
    origin: m.origin,
    owner: m.owner,
    description: m.description,
    lifetime: m.lifetime,
    clientPort: m.clientPort,
    expiresWall: wallNow + (m.expiresAt - monoNow),
    expiresMono: m.expiresAt,
    bootId,
  };
}

/**
 * Milliseconds a stored mapping has left now. Same boot: the monotonic clock
 * is exact whatever the wall clock did. After a reboot only the wall clock
 * carries over; if it is behind the newest record (no RTC yet, or stepped
 * back) it cannot be trusted, and the mapping keeps what it had left when
 * last written, counted from now — never more than its granted lifetime.
 */
export function remainingMs(s: StoredMapping, now: { mono: number; wall: number; bootId: string }, lastWriteWall: number): number {
  if (s.bootId === now.bootId) return s.expiresMono - now.mono;
  if (now.wall >= lastWriteWall) return s.expiresWall - now.wall;
  return Math.min(s.lifetime * 1000, s.expiresWall - lastWriteWall);
}

/** The epoch origin on this boot's monotonic clock, by the same rules. */
export function epochOriginMono(e: EpochOrigin, now: { mono: number; wall: number; bootId: string }, lastWriteWall: number): number {
  if (e.bootId === now.bootId) return e.mono;
  const elapsed = now.wall >= lastWriteWall ? now.wall - e.wall : lastWriteWall - e.wall;
  return now.mono - Math.max(0, elapsed);
}
