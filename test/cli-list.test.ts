// `portcullis list` (the alias of `ls`) with no daemon answering: it reads the store read-only
// (no lock taken, nothing created, moved or cut) and prints what it holds,
// or says in one line why it cannot, exit code 1 and no stack trace.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { monotonicClock } from '../src/state/clock.js';
import { DurableStore, type JournalRecord } from '../src/state/store.js';
import { CLI } from './helpers/lab.js';
import { storedMapping } from './helpers/stored.js';

/** `uid`: run as that user, through setpriv, in an empty environment (tap's hooks in a node child would write into .tap/ as that user). */
const list = (dir: string, extra: string[] = [], uid?: number) => {
  const argv = [process.execPath, CLI, 'list', '--state-dir', dir, ...extra];
  const as = uid === undefined ? argv : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'env', '-i', ...argv];
  return spawnSync(as[0] as string, as.slice(1), { encoding: 'utf8', timeout: 60_000 });
};

/** Every file of a directory with its mode and a hash of its bytes: "changed nothing" is this, equal. */
function fingerprint(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir).sort()) {
    const st = statSync(join(dir, f));
    out[f] = `${st.mode.toString(8)} ${st.isFile() ? createHash('sha256').update(readFileSync(join(dir, f))).digest('hex') : 'dir'}`;
  }
  return out;
}

/** A state directory as a daemon leaves it: snapshot and journal, one live mapping and one expired. */
async function storeDir(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-list-'));
  const now = { wall: Date.now(), mono: monotonicClock.now(), bootId: monotonicClock.bootId() };
  const { store } = await DurableStore.open(dir, now.wall);
  await store.compact([], { ...now, wall: now.wall - 60_000, mono: now.mono - 60_000 }, now.wall);
  const live = storedMapping(40000, { externalPort: 40100, description: 'game server', lifetime: 600, expiresWall: now.wall + 600_000, expiresMono: now.mono + 600_000, bootId: now.bootId });
  const gone = storedMapping(40001, { description: 'expired one', lifetime: 120, expiresWall: now.wall - 1_000, expiresMono: now.mono - 1_000, bootId: now.bootId });
  store.append([live, gone].map((m): JournalRecord => ({ op: 'put', at: now.wall, m })));
  await store.flush();
  await store.close();
  return dir;
}

const oneLine = (t: Test, stderr: string, what: string) => {
  t.equal(stderr.trimEnd().split('\n').length, 1, `${what}: one line (${JSON.stringify(stderr.trimEnd())})`);
  t.notMatch(stderr, /\n\s+at /, `${what}: no stack trace`);
};

t.test('a directory with a store and no daemon: what the store holds, read without changing it', async (t) => {
  const dir = await storeDir();
  const before = fingerprint(dir);
  t.notOk(before.lock, 'the store was closed: no lock');
  const r = list(dir);
  t.equal(r.status, 0, `exit 0 (stderr: ${r.stderr})`);
  t.match(r.stdout, /^ID\s+DEVICE\s+PROTO\s+EXTERNAL → INTERNAL\s+ORIGIN\s+LEFT\s+DESCRIPTION$/m, 'the usual table');
  t.match(r.stdout, /^-\s+-\s+udp\s+198\.51\.100\.1:40100 → 192\.168\.77\.10:40000\s+pcp\s+(9m[0-5]\ds|10m00s)\s+game server$/m, 'the live mapping, with what it has left; no ID or device from a store');
  t.notMatch(r.stdout, /expired one|40001/, 'the expired one is left out');
  oneLine(t, r.stderr, 'the note');
  t.match(r.stderr, /no daemon answers .* listing its store as last written .*1 expired since left out; no IDs or devices without a daemon/);
  t.same(fingerprint(dir), before, 'no file created, changed or moved (no lock taken)');

  const json = list(dir, ['--json']);
  t.equal(json.status, 0);
  const doc = JSON.parse(json.stdout) as { mappings: { external: string; description: string; lifetime: number }[] };
  t.match(doc.mappings, [{ external: '198.51.100.1:40100', description: 'game server' }]);
  t.equal(doc.mappings.length, 1);
});

t.test('a directory whose lock another process holds is still listed (the lock is not taken)', async (t) => {
  const dir = await storeDir();
  const { store } = await DurableStore.open(dir, Date.now());
  const before = fingerprint(dir);
  const r = list(dir);
  t.equal(r.status, 0, `exit 0 (stderr: ${r.stderr})`);
  t.match(r.stdout, /game server/);
  t.same(fingerprint(dir), before, 'the holder’s lock and files untouched');
  await store.close();
});

t.test('an empty directory, a missing one, a damaged store: one line why, exit 1, nothing created', async (t) => {
  const empty = mkdtempSync(join(tmpdir(), 'portcullis-list-'));
  let r = list(empty);
  t.equal(r.status, 1, 'empty: exit 1');
  oneLine(t, r.stderr, 'empty');
  t.match(r.stderr, /holds no store/);
  t.same(readdirSync(empty), [], 'still empty');

  const missing = join(empty, 'nothing-here');
  r = list(missing);
  t.equal(r.status, 1, 'missing: exit 1');
  oneLine(t, r.stderr, 'missing');
  t.match(r.stderr, /nothing-here does not exist/);
  t.notOk(existsSync(missing), 'not created');

  const damaged = await storeDir();
  const journal = join(damaged, 'journal');
  const lines = readFileSync(journal, 'utf8').split('\n');
  lines[0] = (lines[0] ?? '').replace('"put"', '"pux"');
  writeFileSync(journal, lines.join('\n'));
  const before = fingerprint(damaged);
  r = list(damaged);
  t.equal(r.status, 1, 'damaged: exit 1');
  oneLine(t, r.stderr, 'damaged');
  t.match(r.stderr, /is damaged \(journal line 1 is damaged\)/);
  t.same(fingerprint(damaged), before, 'the damage is reported, not moved aside');
});

t.test('an unreadable directory: one line why, exit 1', async (t) => {
  const dir = await storeDir();
  let r;
  if (process.getuid?.() === 0) {
    // Root reads everything: ask as nobody, for whom the 0700 directory is closed.
    chmodSync(dir, 0o700);
    r = list(dir, [], 65534);
  } else {
    chmodSync(dir, 0o000);
    r = list(dir);
    chmodSync(dir, 0o700);
  }
  t.equal(r.status, 1, `exit 1 (stdout: ${r.stdout})`);
  oneLine(t, r.stderr, 'unreadable');
  t.match(r.stderr, /cannot be read \(EACCES: permission denied\)/);
});
