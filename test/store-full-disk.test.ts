// A full disk under the durable store (a small tmpfs as the state directory),
// with the real store, service and the memory firewall: nothing acknowledged is
// lost, nothing is granted (or left in the kernel) that could not be recorded,
// and service resumes when space comes back. Also: the commit queue tells a
// firewall refusal from a record the journal could not take.

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MemoryFirewall } from '../src/firewall/memory.js';
import { mustParseIp } from '../src/net/address.js';
import { CommitQueue } from '../src/service/commit-queue.js';
import type { MapRequest } from '../src/domain/requests.js';
import { ManualClock } from './helpers/manual-clock.js';
import { DurableStore, type JournalRecord } from '../src/state/store.js';
import { harness } from './helpers/harness.js';

const A = mustParseIp('192.168.77.10');
const req = (port: number, lifetime = 600): MapRequest => ({
  via: 'pcp',
  client: A,
  internalAddress: A,
  protocol: 17,
  internalPort: port,
  suggestedExternalPort: port,
  lifetime,
  nonce: Buffer.alloc(12, 7),
  // A long description makes each record span a good part of a page.
  description: 'x'.repeat(120),
});

/** Fills the file system holding `path` until a write fails with ENOSPC. */
function fill(path: string): void {
  for (const size of [1 << 20, 4096, 512, 64, 1]) {
    for (;;) {
      try {
        writeFileSync(path, Buffer.alloc(size), { flag: 'a' });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        break;
      }
    }
  }
}

t.test('a full disk: acknowledged mappings survive, unrecordable ones are refused and leave the kernel, space back means service back', async (t) => {
  const mnt = mkdtempSync(join(tmpdir(), 'portcullis-fulldisk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128k,mode=0700', 'tmpfs', mnt]);
  let store: DurableStore | undefined;
  t.teardown(async () => {
    await store?.close().catch(() => undefined);
    execFileSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  });
  const dir = join(mnt, 'state');
  mkdirSync(dir);
  const h = harness();
  store = (await DurableStore.open(dir, h.clock.wall())).store;
  await store.compact([], h.epoch.start(), h.clock.wall());
  h.service.attachStore(store);

  const acknowledged: number[] = [];
  for (let port = 41000; port < 41005; port++) {
    const r = await h.service.map(req(port));
    t.ok(r.ok, `port ${port} granted before the disk fills`);
    acknowledged.push(port);
  }

  fill(join(mnt, 'filler'));
  // The journal's last page may still have room for a record or two: those
  // are acknowledged like any other. Then the disk refuses.
  let refused: number | undefined;
  for (let port = 42000; port < 42100 && refused === undefined; port++) {
    const r = await h.service.map(req(port));
    if (r.ok) acknowledged.push(port);
    else {
      t.match(r, { ok: false, refusal: 'NO_RESOURCES' }, `port ${port}: refused with the resource error`);
      refused = port;
    }
  }
  t.ok(refused, 'a request on the full disk is refused');
  const inKernel = (port: number) => h.firewall.list().some((e) => e.externalPort === port);
  t.notOk(inKernel(refused as number), 'the firewall does not keep the refused mapping');
  t.notOk(h.service.byKey(`map|${A}|17|${refused}`), 'nor does the table');
  t.ok(h.log.lines.some((l) => l.event === 'store-write-failed' && l.level === 'error'), 'logged loudly');

  const again = await h.service.map(req(42500));
  t.match(again, { ok: false, refusal: 'NO_RESOURCES' }, 'still refused while the disk is full');
  t.notOk(inKernel(42500), 'and not in the kernel');
  const renewal = await h.service.map(req(41000, 900));
  t.match(renewal, { ok: false, refusal: 'NO_RESOURCES' }, 'a renewal cannot be recorded either');
  t.ok(inKernel(41000), 'the mapping it renews stays as recorded');
  for (const port of acknowledged) t.ok(inKernel(port), `acknowledged ${port} still open`);

  rmSync(join(mnt, 'filler'));
  const later: number[] = [];
  for (const port of [43000, 43001, 43002]) {
    const r = await h.service.map(req(port));
    t.ok(r.ok, `port ${port} granted once space is back`);
    later.push(port);
  }
  t.ok(h.log.lines.some((l) => l.event === 'store-writable-again'), 'recovery logged');

  await store.close();
  store = undefined;
  const reopened = await DurableStore.open(dir, h.clock.wall());
  store = reopened.store;
  t.equal(reopened.state.status, 'loaded', `the store loads, not corrupt (${reopened.state.detail ?? ''})`);
  const ports = reopened.state.mappings.map((m) => m.internalPort).sort();
  t.same(ports, [...acknowledged, ...later].sort(), 'exactly the acknowledged mappings: nothing lost, nothing refused');
  t.equal(reopened.state.mappings.find((m) => m.internalPort === 41000)?.lifetime, 600, 'the refused renewal left the recorded lifetime');
});

t.test('the commit queue tells a firewall refusal from an unrecorded change, and undoes the latter', async (t) => {
  const clock = new ManualClock();
  const firewall = new MemoryFirewall(clock);
  const queue = new CommitQueue(firewall);
  let failWrites = false;
  const written: JournalRecord[] = [];
  let pending: readonly JournalRecord[] = [];
  queue.journal = {
    append: (records) => (pending = [...pending, ...records]),
    flush: async () => {
      const mine = pending;
      pending = [];
      if (failWrites) throw new Error('ENOSPC: no space left on device');
      written.push(...mine);
    },
  };
  const entry = { family: 4 as const, protocol: 17, externalAddress: mustParseIp('198.51.100.1'), externalPort: 45000, internalAddress: A, internalPort: 45000, filters: [] };
  const record: JournalRecord = { op: 'del', at: 0, key: 'k' };
  let undone = 0;
  const undo = async (apply: (c: readonly { op: 'remove'; entry: typeof entry }[]) => Promise<boolean>) => {
    undone++;
    await apply([{ op: 'remove', entry }]);
  };

  firewall.failBatches = 1;
  t.same(await queue.commit([{ op: 'put', entry, timeoutSeconds: 60 }], [record], undo), { result: 'refused' }, 'the kernel refused');
  t.equal(undone, 0, 'nothing took, nothing to undo');

  failWrites = true;
  const out = await queue.commit([{ op: 'put', entry, timeoutSeconds: 60 }], [record], undo);
  t.match(out, { result: 'unrecorded', error: /ENOSPC/ }, 'the kernel took it, the journal did not');
  t.equal(undone, 1, 'undone');
  t.same(firewall.list(), [], 'the kernel is back as recorded');

  failWrites = false;
  t.same(await queue.commit([{ op: 'put', entry, timeoutSeconds: 60 }], [record], undo), { result: 'committed' });
  t.equal(firewall.list().length, 1);
  t.same(written, [record], 'only the committed record was written');
});
