// The durable store: a crash-safe record of every mapping, the epoch start
// and the device UUID, in the state directory.
//
//   snapshot   header line, one `put` line per live mapping, an `end` line
//   journal    `put` / `del` / `epoch` lines appended since the snapshot
//   lock       who holds the directory (lock.ts): one daemon per directory
//
// What a record holds, and a mapping as one, is records.ts; this file is the
// files: how records reach the disk and come back.
//
// Every line is `CRC32 JSON`. The journal is appended once per commit batch
// and synced (O_DSYNC) before any reply of that batch leaves; a renewal costs one
// line, never a rewrite (routers write to flash). A write that fails (a full
// disk) is cut back to the journal's last good length at once, its records
// are dropped and its callers told, so the file never holds a fragment that
// the next line would be glued to. When the journal outgrows the snapshot it
// is folded into a new snapshot (see `rewrite` for the order that survives a
// crash). A torn last journal line is a write the crash interrupted — its
// reply was never sent — and is cut off at open; any other damage means the
// state cannot be trusted: the files are moved aside (kept, not deleted) and
// the daemon starts a new epoch.
//
// Why our own journal rather than an embedded database: the records are small
// and independent, the access pattern is "append, and read everything once at
// start", and the native databases on npm (SQLite, LMDB bindings) fetch
// prebuilt binaries at install or rewrite whole pages per renewal.
//
// Just over 500 lines on purpose: open, append, compact and the crash order
// between them are one protocol over the same files, read together.

import { closeSync, constants, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { basename, join } from 'node:path';
import { crc32 } from 'node:zlib';
import { lockStateDir, type StateLock } from './lock.js';
import { isStored, keptForm, keptRemainingMs, type EpochStart, type JournalRecord, type Kept, type StoredMapping } from './records.js';
import type { Mapping } from '../domain/mapping.js';
import { fromForm, recordForm } from './record-form.js';
import { sharedStrings } from './shared-strings.js';
import { NO_TELEMETRY, type Telemetry } from '../telemetry.js';

export { StateLockedError } from './lock.js';
// The record formats live in records.ts; who opens the store finds them here too.
export { epochStartMono, remainingMs, type EpochStart, type JournalRecord, type StoredMapping } from './records.js';

/** Version 2: mappings as positional arrays (record-form.ts). Version 1's snapshots still open. */
export const STORE_VERSION = 2;
const READS_VERSIONS: readonly number[] = [1, 2];

type SnapshotLine =
  | { op: 'header'; version: number; at: number; deviceUuid: string; epoch: EpochStart }
  | { op: 'put'; at: number; m: StoredMapping }
  | { op: 'end'; count: number };

export interface LoadedState {
  status: 'fresh' | 'loaded' | 'corrupt';
  detail?: string;
  /** Where damaged files were moved. */
  movedAside?: string;
  deviceUuid: string;
  epoch?: EpochStart;
  mappings: StoredMapping[];
  /** Wall time of the newest record: a wall clock behind it after a reboot is not to be trusted. */
  lastWriteWall: number;
}

export function encodeLine(obj: unknown): string {
  const json = JSON.stringify(obj);
  return `${crc32(json).toString(16).padStart(8, '0')} ${json}\n`;
}

/**
 * The record of the line at bytes[start, end) (no newline), or undefined if
 * it is damaged. The line is not made a string: the CRC is taken over the
 * bytes (not over a string zlib must encode to UTF-8 again) and only the
 * JSON is decoded: a restart at 131 000 mappings opens its store faster.
 */
export function decodeLineAt(bytes: Buffer, start: number, end: number): unknown {
  if (end - start < 9 || bytes[start + 8] !== 0x20) return undefined;
  // Compared as a number: the line's eight lowercase hex digits (as
  // encodeLine writes them) read back, not the CRC made into text per line.
  let written = 0;
  for (let i = 0; i < 8; i++) {
    const c = bytes[start + i] as number;
    const digit = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1;
    if (digit < 0) return undefined;
    written = written * 16 + digit;
  }
  if (crc32(bytes.subarray(start + 9, end)) !== written) return undefined;
  try {
    return JSON.parse(bytes.toString('utf8', start + 9, end)) as unknown;
  } catch {
    return undefined;
  }
}

interface PendingRecord {
  line: string;
  record: JournalRecord;
}

/** The outcome of one journal write, shared by the records it carries. */
interface Ticket {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
}

function newTicket(): Ticket {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Whoever flushed these records hears the outcome; nobody listening is not a crash.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Journal writes go to an explicit offset, the last good length, not through
 * O_APPEND: where the next record lands then never depends on what a failed
 * write or a cut-back left behind. (With O_APPEND, the full-disk test once saw
 * a record land past a probe's cut-off page; the cause was not pinned down.)
 * O_DSYNC: a write returns once its bytes are as durable as an fdatasync
 * would make them, so a batch's record costs one trip to libuv's pool on the
 * reply's path, not two (the write, then the fdatasync): p99 0.6–0.8 ms
 * against 1.0–2.2 for 200-byte appends on this VM's disk, idle.
 */
const JOURNAL_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_DSYNC;

async function writeAt(file: FileHandle, buf: Buffer, position: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    const { bytesWritten } = await file.write(buf, done, buf.length - done, position + done);
    done += bytesWritten;
  }
}

/** Bytes written to probe whether the journal can grow again: one page, so it needs a fresh block. */
const PROBE_BYTES = 4096;

/** The clocks a background compaction judges expiry by. */
export interface StoreNow {
  mono: number;
  wall: number;
  bootId: string;
}

export class DurableStore {
  private journal: FileHandle | undefined;
  private pending: PendingRecord[] = [];
  /** The write the records in `pending` will go out with. */
  private ticket = newTicket();
  /** The ticket of the latest append: `flush` reports on it. */
  private lastAppend: Ticket | undefined;
  /** Bytes of the current journal file that hold complete, synced records: a failed write is cut back to this. */
  private journalBytes = 0;
  /** A write failed part-way and its bytes may still be in the file. */
  private dirty = false;
  private snapshotBytes = 0;
  /** Appends go to `journal.next`: a compaction rotated and has not finished yet. */
  private rotated = false;
  /**
   * What the files hold, record by record (the snapshot, then every journal
   * record that was written and synced): a background snapshot is taken from
   * this, never from the table, whose changes may still be in flight. Each
   * is the mapping its last record was made from (records.ts, Kept).
   */
  private committed = new Map<string, Kept>();
  private committedEpoch: EpochStart | undefined;
  /** Byte length of the valid records of each journal file, found by `read`. */
  private readonly validBytes = new Map<string, number>();
  private lock: StateLock | undefined;
  /** The newest record's wall time when the files were read: judges an earlier boot's records (remainingMs). */
  private loadedWall = 0;
  private compaction: Promise<void> | undefined;
  /** Why the last journal write failed; cleared when one succeeds again. */
  failure: Error | undefined;
  /**
   * Bytes written to the state directory since open: journal records,
   * snapshots (compaction included) and disk probes — what the benchmark's
   * bytes-per-renewal figure reads, through `telemetry.storeWritten`.
   */
  bytesWritten = 0;
  /** Told how long each journal write and fdatasync took, and every byte written. */
  telemetry: Telemetry = NO_TELEMETRY;
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

  /**
   * Locks the state directory (StateLockedError if another daemon holds it),
   * then opens the store and reads what it holds. The lock comes before any
   * file is read, moved or truncated, and is held until `close`.
   */
  static async open(dir: string, wallNow: number): Promise<{ store: DurableStore; state: LoadedState }> {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const lock = lockStateDir(dir);
    try {
      const store = new DurableStore(dir);
      store.lock = lock;
      // Filled by the read with what the files hold, by key: it becomes
      // `committed` as it is, not a second map built from the list.
      const byKey = new Map<string, StoredMapping>();
      let state = store.read(byKey);
      if (state.status === 'corrupt') {
        const aside = join(dir, `corrupt-${new Date(wallNow).toISOString().replace(/[:.]/g, '-')}`);
        mkdirSync(aside, { recursive: true });
        for (const f of ['snapshot', 'journal', 'journal.next']) if (existsSync(join(dir, f))) renameSync(join(dir, f), join(aside, f));
        state = { ...state, movedAside: aside, mappings: [], epoch: undefined };
        store.validBytes.clear();
      }
      store.deviceUuid = state.deviceUuid;
      store.loadedWall = state.lastWriteWall;
      store.committedEpoch = state.epoch;
      if (state.status === 'loaded') store.committed = byKey;
      // Appends continue in the newest journal: `journal.next` if a
      // compaction was interrupted (the next one finishes it). Its torn tail,
      // a write a crash cut short and never acknowledged, is cut off first, or
      // the next record would be glued to it and damage a good line.
      store.rotated = existsSync(store.nextJournalPath);
      const current = store.rotated ? store.nextJournalPath : store.journalPath;
      store.journal = await open(current, JOURNAL_FLAGS, 0o600);
      store.journalBytes = store.validBytes.get(current) ?? 0;
      if ((await store.journal.stat()).size > store.journalBytes) {
        await store.journal.truncate(store.journalBytes);
        await store.journal.datasync();
      }
      // The journal's name (new, or after moving damage aside) must outlive a crash before any record in it is acknowledged.
      syncDir(dir);
      return { store, state };
    } catch (err) {
      lock.release();
      throw err;
    }
  }

  /**
   * What a state directory holds, for a reader beside the daemon (`portcullis
   * list` when none answers): the lock is not taken, and nothing is created,
   * moved aside or cut off — damage is reported, not repaired. A daemon
   * writing meanwhile may leave a torn last line, which reads as not there
   * yet. Throws the file system's error (ENOENT, ENOTDIR, EACCES) when the
   * directory itself cannot be read, rather than calling it empty.
   */
  static inspect(dir: string): LoadedState {
    readdirSync(dir);
    return new DurableStore(dir).read(new Map());
  }

  /** `live` is filled with the mappings found, by key; only a 'loaded' state leaves it meaning anything. */
  private read(live: Map<string, StoredMapping>): LoadedState {
    const fresh: LoadedState = { status: 'fresh', deviceUuid: randomUUID(), mappings: [], lastWriteWall: 0 };
    if (!existsSync(this.snapshotPath)) {
      for (const path of [this.journalPath, this.nextJournalPath]) {
        if (existsSync(path) && readFileSync(path).length > 0) return { ...fresh, status: 'corrupt', detail: 'journal without a snapshot' };
      }
      return fresh;
    }
    // Line by line from the bytes, not one string split into an array: at
    // 131 000 mappings the snapshot is ~58 MB, and the whole text, its lines
    // and their parsed records at once were the start's largest garbage.
    const bytes = readFileSync(this.snapshotPath);
    this.snapshotBytes = bytes.length;
    const bad = (detail: string): LoadedState => ({ ...fresh, status: 'corrupt', detail });
    const shared = sharedStrings();
    let header: SnapshotLine | undefined;
    let end: SnapshotLine | undefined;
    let damaged = false;
    for (let start = 0, n = 0; start < bytes.length; n++) {
      let nl = bytes.indexOf(0x0a, start);
      if (nl < 0) nl = bytes.length;
      const p = fromForm(decodeLineAt(bytes, start, nl)) as SnapshotLine | undefined;
      start = nl + 1;
      if (n === 0) header = p;
      end = p;
      if (!p) damaged = true;
      else if (p.op === 'put') live.set(p.m.key, shared(p.m));
    }
    if (bytes.at(-1) !== 0x0a || !header || header.op !== 'header' || !end || end.op !== 'end') return bad('snapshot is truncated or damaged');
    if (!READS_VERSIONS.includes(header.version)) return bad(`snapshot version ${header.version}, expected one of ${READS_VERSIONS.join(', ')}`);
    if (damaged) return bad('snapshot has a damaged line');
    if (live.size !== end.count) return bad(`snapshot holds ${live.size} mappings, its end line says ${end.count}`);
    let epoch = header.epoch;
    let lastWriteWall = header.at;

    // `journal` then `journal.next` (a compaction in progress rotated to it).
    // Replaying a journal the snapshot already contains is harmless: the
    // last record of each key is the one the snapshot holds.
    for (const path of [this.journalPath, this.nextJournalPath]) {
      if (!existsSync(path)) continue;
      const bytes = readFileSync(path);
      let valid = 0;
      // The bytes after the last newline are an unfinished write: ignored.
      for (let start = 0, n = 1; ; n++) {
        const nl = bytes.indexOf(0x0a, start);
        if (nl < 0) break;
        const r = fromForm(decodeLineAt(bytes, start, nl)) as JournalRecord | undefined;
        if (!r) {
          // A damaged final line may also be a torn write that happened to
          // end in a newline; damage before valid records is not.
          if (bytes.indexOf(0x0a, nl + 1) < 0) break;
          return bad(`${basename(path)} line ${n} is damaged`);
        }
        lastWriteWall = Math.max(lastWriteWall, r.at);
        if (r.op === 'put') live.set(r.m.key, shared(r.m));
        else if (r.op === 'del') live.delete(r.key);
        else epoch = r.epoch;
        start = valid = nl + 1;
      }
      this.validBytes.set(path, valid);
    }
    return { status: 'loaded', deviceUuid: header.deviceUuid, epoch, mappings: [...live.values()], lastWriteWall };
  }

  /** Queues records; they reach the disk with the next `flush`. */
  append(records: readonly JournalRecord[]): void {
    if (records.length === 0) return;
    for (const record of records) this.pending.push({ line: encodeLine(recordForm(record)), record });
    this.lastAppend = this.ticket;
  }

  private flushing: Promise<void> = Promise.resolve();

  /**
   * Writes what was appended, synced (O_DSYNC). Flushes run one after another;
   * one that starts while another syncs takes everything appended meanwhile,
   * so batches arriving during a sync share the next one. Settles with the
   * write that carries the latest append: it rejects if that write failed,
   * and then its records are gone for good (their callers were told), never
   * carried into a later write.
   */
  flush(): Promise<void> {
    const ticket = this.lastAppend;
    this.lastAppend = undefined;
    const run = this.serial(() => this.writePending());
    return ticket ? ticket.promise : run;
  }

  private async writePending(): Promise<void> {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    const ticket = this.ticket;
    this.pending = [];
    this.ticket = newTicket();
    try {
      if (!this.journal) throw new Error('the store is closed');
      await this.cutBack(this.journal);
      const chunk = Buffer.from(batch.map((p) => p.line).join(''));
      this.dirty = true;
      const started = performance.now();
      // Synced as it is written (O_DSYNC, JOURNAL_FLAGS).
      await writeAt(this.journal, chunk, this.journalBytes);
      this.telemetry.storeSync((performance.now() - started) / 1000);
      this.dirty = false;
      this.journalBytes += chunk.length;
      this.wrote(chunk.length);
    } catch (err) {
      this.failure = err as Error;
      // A partial write (a full disk) is cut off now, so that the next
      // record starts on a line of its own.
      if (this.journal) await this.cutBack(this.journal).catch(() => undefined);
      ticket.reject(err as Error);
      return;
    }
    this.failure = undefined;
    for (const p of batch) this.commit(p.record);
    ticket.resolve();
  }

  /** Truncates the journal back to its last good length if a write left bytes past it. */
  private async cutBack(journal: FileHandle): Promise<void> {
    if (!this.dirty) return;
    await journal.truncate(this.journalBytes);
    this.dirty = false;
  }

  /**
   * After a failed write: whether the journal can take records again. Writes
   * and syncs a page of zeros at its end and cuts it off again (a crash in
   * between leaves a torn tail, which `open` cuts off). Costs nothing while
   * writes succeed.
   */
  async writable(): Promise<boolean> {
    if (!this.failure) return true;
    await this.serial(async () => {
      const journal = this.journal;
      if (!this.failure || !journal) return;
      try {
        await this.cutBack(journal);
        this.dirty = true;
        await writeAt(journal, Buffer.alloc(PROBE_BYTES), this.journalBytes);
        this.wrote(PROBE_BYTES);
        await journal.datasync();
        await journal.truncate(this.journalBytes);
        await journal.datasync();
        this.dirty = false;
        this.failure = undefined;
      } catch (err) {
        this.failure = err as Error;
        await this.cutBack(journal).catch(() => undefined);
      }
    });
    return this.failure === undefined;
  }

  /** A record is on disk: the state a restart would load now includes it. */
  private commit(r: JournalRecord): void {
    if (r.op === 'put') this.committed.set(r.m.key, r.mapping ?? r.m);
    else if (r.op === 'del') this.committed.delete(r.key);
    else this.committedEpoch = r.epoch;
  }

  /** The journal has grown past the snapshot it amends: time to fold it in. */
  wantsCompaction(): boolean {
    return !this.compaction && this.journalBytes > Math.max(4 << 20, 2 * this.snapshotBytes);
  }

  /**
   * Writes a new snapshot of `live` at once (start-up, --flush-on-exit): the
   * caller guarantees nothing else runs meanwhile, and `live` becomes what
   * the store holds.
   */
  async compact(live: readonly StoredMapping[], epoch: EpochStart, wallNow: number): Promise<void> {
    await this.rewrite(() => {
      this.committed.clear();
      for (const m of live) this.committed.set(m.key, m);
      this.committedEpoch = epoch;
      return { live, epoch };
    }, wallNow, false);
  }

  /** `compact` of the table's mappings, by their keys: kept as they are, written on the clocks of `now`. */
  async compactFrom(live: readonly (readonly [string, Mapping])[], epoch: EpochStart, now: StoreNow): Promise<void> {
    await this.rewrite(() => {
      this.committed.clear();
      for (const [key, m] of live) this.committed.set(key, m);
      this.committedEpoch = epoch;
      return { live: live.map(([, m]) => m), epoch };
    }, now.wall, false, now);
  }

  /**
   * A restore made `m` from the record `from` read at open: the store keeps
   * `m` in its place, unless a later record of the key came in meanwhile.
   */
  adopt(key: string, from: StoredMapping, m: Mapping): void {
    if (this.committed.get(key) === from) this.committed.set(key, m);
  }

  /**
   * The same while the daemon serves, of what the files hold (not of the
   * table: a change still in flight may yet fail), less what expired on this
   * boot; does nothing if one is already running.
   */
  compactInBackground(now: StoreNow): Promise<void> {
    if (this.compaction) return this.compaction;
    const take = () => {
      // The rule a restart restores by (records.ts): records of an earlier
      // boot that ran out while the router was down go too, now that the
      // start no longer rewrites the snapshot when the state loaded.
      const live = [...this.committed.values()].filter((m) => keptRemainingMs(m, now, this.loadedWall) > 0);
      return { live, epoch: this.committedEpoch };
    };
    this.compaction = this.rewrite(take, now.wall, true, now).finally(() => (this.compaction = undefined));
    return this.compaction;
  }

  /**
   * Compaction, in an order that a crash at any point loses no record:
   *
   *   1. rotate: what is appended so far goes to `journal`; `live` is read;
   *      appends continue in a new `journal.next`, whose name is synced
   *      before any record in it is acknowledged;
   *   2. the snapshot of `live` is written beside the old one and synced;
   *   3. it is renamed over `snapshot`, and the directory synced;
   *   4. only then `journal.next` is renamed over `journal` (and synced).
   *
   * A crash before 3 is durable leaves the old snapshot with `journal` and
   * `journal.next`; after it, the new snapshot with both (replaying `journal`
   * again is harmless: each key ends as its last record says); after 4, the
   * new snapshot and one journal. Renaming `journal.next` before the new
   * snapshot is durable would lose the old journal's records. A change that
   * lands while the snapshot is written is in `journal.next`, replayed after
   * it. If a step fails, appends stay in `journal.next` and the next
   * compaction starts at step 2. `gently`: small slices with a timer between
   * them, so requests (latency-bound) always get the event loop first.
   * Mappings kept as the table's (Kept) are written on the clocks of `now`,
   * one slice at a time: no second copy of them all at once.
   */
  private async rewrite(take: () => { live: readonly Kept[]; epoch: EpochStart | undefined }, wallNow: number, gently: boolean, now?: StoreNow): Promise<void> {
    let taken: { live: readonly Kept[]; epoch: EpochStart | undefined } = { live: [], epoch: undefined };
    const form = (k: Kept): StoredMapping => {
      if (isStored(k)) return k;
      if (!now) throw new Error('store: a mapping kept without the clocks to write it by');
      return keptForm(k, now);
    };
    await this.serial(async () => {
      await this.writePending();
      taken = take();
      if (this.rotated || !taken.epoch) return;
      const next = await open(this.nextJournalPath, JOURNAL_FLAGS | constants.O_EXCL, 0o600);
      try {
        syncDir(this.dir);
      } catch (err) {
        await next.close();
        rmSync(this.nextJournalPath, { force: true });
        throw err;
      }
      await this.journal?.close();
      this.journal = next;
      this.rotated = true;
      this.journalBytes = 0;
      this.dirty = false;
    });
    const { live, epoch } = taken;
    if (!epoch) return;
    const tmp = `${this.snapshotPath}.new`;
    const out = await open(tmp, 'w', 0o600);
    let bytes = 0;
    try {
      const write = async (text: string) => {
        const buf = Buffer.from(text);
        await out.write(buf);
        bytes += buf.length;
      };
      await write(encodeLine({ op: 'header', version: STORE_VERSION, at: wallNow, deviceUuid: this.deviceUuid, epoch } satisfies SnapshotLine));
      const slice = gently ? 256 : 8192;
      for (let i = 0; i < live.length; i += slice) {
        await write(live.slice(i, i + slice).map((k) => encodeLine(recordForm({ op: 'put', at: wallNow, m: form(k) }))).join(''));
        if (gently) await new Promise<void>((r) => setTimeout(r, 2));
      }
      await write(encodeLine({ op: 'end', count: live.length } satisfies SnapshotLine));
      await out.sync();
    } catch (err) {
      await out.close();
      rmSync(tmp, { force: true });
      throw err;
    }
    await out.close();
    renameSync(tmp, this.snapshotPath);
    syncDir(this.dir);
    this.snapshotBytes = bytes;
    this.wrote(bytes);
    await this.serial(async () => {
      renameSync(this.nextJournalPath, this.journalPath);
      syncDir(this.dir);
      this.rotated = false;
    });
  }

  private wrote(bytes: number): void {
    this.bytesWritten += bytes;
    this.telemetry.storeWritten(bytes);
  }

  /** Runs `fn` in the flush order (no write interleaves with it). */
  private serial(fn: () => Promise<void>): Promise<void> {
    const run = this.flushing.then(fn);
    this.flushing = run.catch(() => undefined);
    return run;
  }

  /** Writes what is pending, closes the journal and lets go of the state directory. */
  async close(): Promise<void> {
    await this.compaction?.catch(() => undefined);
    await this.flush().catch(() => undefined);
    await this.serial(async () => {
      await this.journal?.close();
      this.journal = undefined;
    });
    this.lock?.release();
    this.lock = undefined;
  }
}
