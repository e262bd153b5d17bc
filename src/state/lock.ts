// One daemon per state directory. Two daemons on one directory would each
// compact and replace the other's journal, and one would keep appending to a
// file the other had unlinked: the lock is taken before anything in the
// directory is read or written, and held until the store closes.
//
// Why a pid file and not a kernel lock: Node has no flock/fcntl binding, and
// the native modules that add one fetch prebuilt binaries at install (see
// store.ts). An abstract Unix socket is released by the kernel, but it lives
// in a network namespace, and two daemons in two namespaces (the lab's
// layout) would each get their own.
//
// Staleness is decided without guessing: the file names the holder's pid, the
// start time of that process (field 22 of /proc/<pid>/stat, in clock ticks
// since boot) and the boot it ran in. The holder is alive only if the boot is
// this one and a process with that pid exists *and started at that time*: a
// pid reused by another program after a crash does not keep the lock. Limit:
// both daemons must see one pid namespace (the /proc they read is their own).
//
// Creation is atomic and complete: the file is written under a private name
// and hard-linked to `lock` (link fails if `lock` exists), so no reader ever
// sees a half-written lock. A stale lock is renamed aside and checked to be
// the very file (inode) judged stale before it is removed; a lock that
// replaced it in between is put back.

import { fstatSync, linkSync, openSync, readFileSync, closeSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Another live process holds the state directory. */
export class StateLockedError extends Error {
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(`state directory ${dir} is in use by another portcullis (pid ${pid}); stop it, or give this one another --state-dir`);
    this.name = 'StateLockedError';
  }
}

interface Holder {
  pid: number;
  /** Start time of the process, clock ticks since boot. */
  start: string;
  bootId: string;
}

export interface StateLock {
  readonly path: string;
  /** Removes the lock if it is still ours. */
  release(): void;
}

const LOCK_FILE = 'lock';

function bootId(): string {
  return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
}

/** Field 22 of /proc/<pid>/stat; undefined if there is no such process. */
function startTime(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces or ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19];
}

function isAlive(h: Holder): boolean {
  return Number.isInteger(h.pid) && h.pid > 0 && h.bootId === bootId() && startTime(h.pid) === h.start;
}

/** The current lock file's holder and inode; undefined if there is none. */
function readLock(path: string): { holder: Holder | undefined; ino: number } | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const ino = fstatSync(fd).ino;
    let holder: Holder | undefined;
    try {
      const h = JSON.parse(readFileSync(fd, 'utf8')) as Partial<Holder>;
      if (typeof h.pid === 'number' && typeof h.start === 'string' && typeof h.bootId === 'string') holder = h as Holder;
    } catch {
      // Not a lock this program wrote (link() publishes only complete files): no holder.
    }
    return { holder, ino };
  } finally {
    closeSync(fd);
  }
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

/**
 * Takes the lock on `dir` (which must exist) or throws StateLockedError
 * naming the live holder. A failed attempt leaves the directory as it was.
 */
export function lockStateDir(dir: string): StateLock {
  const path = join(dir, LOCK_FILE);
  const me: Holder = { pid: process.pid, start: startTime(process.pid) ?? '', bootId: bootId() };
  for (let attempt = 0; attempt < 5; attempt++) {
    const held = readLock(path);
    if (held) {
      if (held.holder && isAlive(held.holder)) throw new StateLockedError(dir, held.holder.pid);
      const aside = join(dir, `${LOCK_FILE}.stale-${process.pid}`);
      try {
        renameSync(path, aside);
      } catch (err) {
        if (errno(err) === 'ENOENT') continue;
        throw err;
      }
      if (statSync(aside).ino !== held.ino) {
        // Another starter replaced the stale lock between our read and the
        // rename: what we moved is its live lock. Put it back and judge again.
        try {
          linkSync(aside, path);
        } catch (err) {
          throw new Error(`state directory ${dir}: three processes raced for ${path}; the lock of one is left at ${aside} (${(err as Error).message})`);
        }
        unlinkSync(aside);
        continue;
      }
      unlinkSync(aside);
    }
    const mine = join(dir, `${LOCK_FILE}.new-${process.pid}`);
    writeFileSync(mine, `${JSON.stringify(me)}\n`, { mode: 0o600 });
    try {
      linkSync(mine, path);
    } catch (err) {
      if (errno(err) === 'EEXIST') continue;
      throw err;
    } finally {
      unlinkSync(mine);
    }
    const ino = statSync(path).ino;
    return {
      path,
      release() {
        const now = readLock(path);
        if (now?.ino === ino) unlinkSync(path);
      },
    };
  }
  throw new Error(`state directory ${dir}: could not take its lock (other processes keep replacing ${path})`);
}
