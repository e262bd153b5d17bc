// Crashes during compaction and mid-write. A rename is durable only once the
// directory is fsynced; until then a crash may keep any subset of the renames
// made since (POSIX orders none of them). The file system calls are traced,
// and before every rename and directory fsync the test takes every state a
// crash could leave on disk: each must load with every acknowledged record.

import fs, { cpSync, existsSync, fstatSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import t, { type Test } from 'tap';
import { DurableStore, type JournalRecord, type StoredMapping } from '../src/state/store.js';
import { EPOCH, storedMapping } from './helpers/stored.js';

const tmp = (what: string) => mkdtempSync(join(tmpdir(), `portcullis-${what}-`));

const mapping = (key: string): StoredMapping => storedMapping(40000, { key });
const put = (key: string): JournalRecord => ({ op: 'put', at: EPOCH.wall, m: mapping(key) });

interface Rename {
  from: string;
  to: string;
  /** What `to` held before (undefined: it did not exist). */
  before: Buffer | undefined;
}

/**
 * Records renames inside `dir` since its last fsync, and before each rename
 * and directory fsync saves every state a crash could leave (`images`).
 */
function traceCrashes(dir: string, images: string[]): () => void {
  const realRename = fs.renameSync;
  const realFsync = fs.fsyncSync;
  let unsynced: Rename[] = [];
  const snap = () => {
    // Every subset of the unsynced renames may be lost.
    for (let lost = 0; lost < 1 << unsynced.length; lost++) {
      const image = tmp('crash-image');
      for (const f of readdirSync(dir)) if (f !== 'lock') cpSync(join(dir, f), join(image, f));
      // Undo lost renames, newest first.
      for (let i = unsynced.length - 1; i >= 0; i--) {
        if (!(lost & (1 << i))) continue;
        const r = unsynced[i] as Rename;
        const moved = join(image, basename(r.to));
        if (existsSync(moved)) cpSync(moved, join(image, basename(r.from)));
        if (r.before) writeFileSync(moved, r.before);
        else rmSync(moved, { force: true });
      }
      images.push(image);
    }
  };
  fs.renameSync = (from: fs.PathLike, to: fs.PathLike) => {
    if (String(to).startsWith(dir)) {
      snap();
      unsynced.push({ from: String(from), to: String(to), before: existsSync(to) ? readFileSync(to) : undefined });
    }
    realRename(from, to);
  };
  fs.fsyncSync = (fd: number) => {
    if (fstatSync(fd).isDirectory()) {
      snap();
      realFsync(fd);
      unsynced = [];
      return;
    }
    realFsync(fd);
  };
  syncBuiltinESMExports();
  return () => {
    fs.renameSync = realRename;
    fs.fsyncSync = realFsync;
    syncBuiltinESMExports();
  };
}

async function keysIn(image: string): Promise<{ status: string; keys: string[] }> {
  const { store, state } = await DurableStore.open(image, EPOCH.wall);
  await store.close();
  return { status: state.status, keys: state.mappings.map((m) => m.key).sort() };
}

/** Compacts `store` to `keys`, closes it, and checks every crash state on the way holds exactly them; returns how many there were. */
async function compactThroughCrashes(t: Test, store: DurableStore, dir: string, keys: string[]): Promise<number> {
  const images: string[] = [];
  const untrace = traceCrashes(dir, images);
  try {
    await store.compact(keys.map(mapping), EPOCH, EPOCH.wall);
  } finally {
    untrace();
  }
  await store.close();
  for (const image of images) t.same(await keysIn(image), { status: 'loaded', keys }, `crash state ${basename(image)}: ${readdirSync(image).join(' ')}`);
  return images.length;
}

t.test('a crash at any point of a compaction loses no acknowledged record', async (t) => {
  const d = tmp('store-crash');
  const { store } = await DurableStore.open(d, EPOCH.wall);
  await store.compact([], EPOCH, EPOCH.wall);
  store.append([put('a'), put('b')]);
  await store.flush();
  const images = await compactThroughCrashes(t, store, d, ['a', 'b']);
  t.ok(images >= 4, `${images} crash states checked`);
});

t.test('a compaction that failed is finished by the next one, and appends in between are kept', async (t) => {
  const d = tmp('store-resume');
  const { store } = await DurableStore.open(d, EPOCH.wall);
  await store.compact([], EPOCH, EPOCH.wall);
  store.append([put('a')]);
  await store.flush();
  // The disk refuses the snapshot (ENOSPC): the journal has already been rotated.
  const realOpen = fsp.open;
  fsp.open = (async (path: fs.PathLike, ...rest: unknown[]) => {
    if (String(path).endsWith('snapshot.new')) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    return (realOpen as (...a: unknown[]) => Promise<fsp.FileHandle>)(path, ...rest);
  }) as typeof fsp.open;
  syncBuiltinESMExports();
  try {
    await t.rejects(store.compact([mapping('a')], EPOCH, EPOCH.wall), /ENOSPC/);
  } finally {
    fsp.open = realOpen;
    syncBuiltinESMExports();
  }
  store.append([put('b')]);
  await store.flush();
  await compactThroughCrashes(t, store, d, ['a', 'b']);
  t.same(await keysIn(d), { status: 'loaded', keys: ['a', 'b'] }, 'and after it completed');
  t.notOk(existsSync(join(d, 'journal.next')), 'one journal again');
});

t.test('a torn last line is cut off at open, so the next record does not glue onto it', async (t) => {
  const d = tmp('store-torn');
  const { store } = await DurableStore.open(d, EPOCH.wall);
  await store.compact([], EPOCH, EPOCH.wall);
  store.append([put('a')]);
  await store.flush();
  await store.close();
  // A crash cut this write short; its reply was never sent.
  appendFileSync(join(d, 'journal'), '0badc0de {"op":"put","at":1,"m":{"key":"torn"');
  const again = await DurableStore.open(d, EPOCH.wall);
  again.store.append([put('b')]);
  await again.store.flush();
  again.store.append([put('c')]);
  await again.store.flush();
  await again.store.close();
  t.same(await keysIn(d), { status: 'loaded', keys: ['a', 'b', 'c'] }, 'records after the torn one are kept, and the store is not corrupt');
});
