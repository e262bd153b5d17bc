// One daemon per state directory: a second open — in this process or
// another — fails naming the directory and the holder, and changes nothing
// there; a lock left by a process that died does not keep the directory.

import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { DurableStore, StateLockedError, type StoredMapping } from '../src/state/store.js';
import { EPOCH, storedMapping } from './helpers/stored.js';

const STORE_JS = resolve(fileURLToPath(import.meta.url), '../../src/state/store.js');

const mapping = (key: string): StoredMapping => storedMapping(40000, { key });

/** Every file of the directory, with its bytes and inode. */
function contents(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir).sort()) out[f] = `${statSync(join(dir, f)).ino}:${readFileSync(join(dir, f)).toString('base64')}`;
  return out;
}

/** A store with a snapshot and a journal that holds a record. */
async function busyStore(): Promise<{ dir: string; store: DurableStore }> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-lock-'));
  const { store } = await DurableStore.open(dir, EPOCH.wall);
  await store.compact([mapping('a')], EPOCH, EPOCH.wall);
  store.append([{ op: 'put', at: EPOCH.wall, m: mapping('b') }]);
  await store.flush();
  return { dir, store };
}

const openIn = (dir: string) => `import { DurableStore } from ${JSON.stringify(STORE_JS)};
try {
  const { store, state } = await DurableStore.open(${JSON.stringify(dir)}, ${EPOCH.wall});
  console.log('opened', state.status, state.mappings.length);
  if (process.argv.includes('--hang')) setInterval(() => {}, 1000);
  else await store.close();
} catch (err) {
  console.error(err.message);
  process.exit(3);
}`;

t.test('a second open fails with StateLockedError naming the directory and holder, and changes nothing', async (t) => {
  const { dir, store } = await busyStore();
  const before = contents(dir);
  const err = await DurableStore.open(dir, EPOCH.wall).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof StateLockedError, 'StateLockedError');
  t.match((err as Error).message, dir, 'names the directory');
  t.match((err as Error).message, `pid ${process.pid}`, 'and the holding pid');
  t.equal((err as StateLockedError).pid, process.pid);
  t.same(contents(dir), before, 'every file byte-identical, none added or removed');
  // The first instance still works, and records to the file a reopen reads.
  store.append([{ op: 'put', at: EPOCH.wall, m: mapping('c') }]);
  await store.flush();
  await store.close();
  const { store: again, state } = await DurableStore.open(dir, EPOCH.wall);
  t.same(state.mappings.map((m) => m.key).sort(), ['a', 'b', 'c'], 'after close the directory opens, with everything');
  await again.close();
});

t.test('a second daemon process exits with a clear error and leaves the directory alone', async (t) => {
  const { dir, store } = await busyStore();
  const before = contents(dir);
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', openIn(dir)], { encoding: 'utf8' });
  t.equal(r.status, 3, 'it exits');
  t.match(r.stderr, `state directory ${dir} is in use by another portcullis (pid ${process.pid})`);
  t.same(contents(dir), before, 'nothing changed');
  await store.close();
});

t.test('a lock left by a killed process does not keep the directory', async (t) => {
  const { dir, store } = await busyStore();
  await store.close();
  const child = spawn(process.execPath, ['--input-type=module', '-e', openIn(dir), '--', '--hang'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res) => child.stdout.once('data', () => res()));
  await t.rejects(DurableStore.open(dir, EPOCH.wall), StateLockedError, 'held while it lives');
  child.kill('SIGKILL');
  await new Promise((res) => child.once('exit', res));
  const { store: again, state } = await DurableStore.open(dir, EPOCH.wall);
  t.equal(state.status, 'loaded');
  t.equal(state.mappings.length, 2);
  await again.close();
});

t.test('a lock naming a live pid that started at another time (pid reused) is stale', async (t) => {
  const { dir, store } = await busyStore();
  await store.close();
  const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  writeFileSync(join(dir, 'lock'), JSON.stringify({ pid: process.pid, start: '1', bootId: boot }));
  const { store: again } = await DurableStore.open(dir, EPOCH.wall);
  t.pass('opened');
  await again.close();
  writeFileSync(join(dir, 'lock'), JSON.stringify({ pid: 1, start: '0', bootId: 'another boot' }));
  const { store: third } = await DurableStore.open(dir, EPOCH.wall);
  t.pass('a lock from another boot is stale too');
  await third.close();
  t.notOk(readdirSync(dir).some((f) => f.startsWith('lock')), 'close removes the lock');
});
