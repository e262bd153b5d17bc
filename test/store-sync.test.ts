// The journal is written synced (O_DSYNC): a record is as durable as an
// fdatasync would make it when its write returns, and no reply waits for a
// second trip (src/state/store.ts, JOURNAL_FLAGS). Read from the kernel's
// own account of the open file (/proc/self/fdinfo), not from our code.

import { mkdtempSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { DurableStore } from '../src/state/store.js';
import { EPOCH, storedMapping } from './helpers/stored.js';

/** The open flags of this process's descriptors for `path`. */
function flagsOf(path: string): number[] {
  const out: number[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== path) continue;
    const m = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    if (m) out.push(parseInt(m[1]!, 8));
  }
  return out;
}

t.test('the journal is open for synced writes, and its records come back', async (t) => {
  const d = mkdtempSync(join(tmpdir(), 'portcullis-sync-'));
  const { store } = await DurableStore.open(d, EPOCH.wall);
  await store.compact([], EPOCH, EPOCH.wall);
  store.append([{ op: 'put', at: EPOCH.wall, m: storedMapping(40000) }]);
  await store.flush();
  const flags = flagsOf(join(d, 'journal'));
  t.equal(flags.length, 1, 'one descriptor on the journal');
  t.ok((flags[0]! & constants.O_DSYNC) === constants.O_DSYNC, `O_DSYNC set (flags ${flags[0]?.toString(8)})`);
  await store.close();
  const again = await DurableStore.open(d, EPOCH.wall);
  t.equal(again.state.mappings.length, 1, 'the record written that way is read back');
  await again.store.close();
});
