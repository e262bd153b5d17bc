// Pinhole UniqueIDs survive a restart with their pinholes: a client that
// renews or deletes by ID after the router restarted is not told 704. The
// service (memory firewall, hand-moved clock) journals to a real durable
// store; a second service restores from it, as the daemon does at start.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { mustParseIp, type IpAddress } from '../src/net/address.js';
import { IgdControl, type ActionResult, type IgdEnvironment } from '../src/protocols/upnp/igd.js';
import { DurableStore, epochStartMono } from '../src/state/store.js';
import { harness, type Harness } from './helpers/harness.js';

const A6 = mustParseIp('2001:db8:77::10');
const B6 = mustParseIp('2001:db8:77::11');

const ENV: IgdEnvironment = {
  uptime: () => 1,
  linkUp: () => true,
  wanCounters: () => ({ txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, speedMbps: 1000 }),
  outboundTimeout: () => 180,
  sameHost: () => false,
};

function door(h: Harness, idSpace?: number) {
  const igd = new IgdControl(h.service, ENV, idSpace);
  const call = (client: IpAddress, action: string, args: Record<string, string | number>): Promise<ActionResult> =>
    igd.handle({ serviceName: 'WANIPv6FirewallControl', serviceVersion: 1, action, args: new Map(Object.entries(args).map(([k, v]) => [k, String(v)])), client });
  const addPinhole = async (client: IpAddress, port: number): Promise<string> => {
    const r = await call(client, 'AddPinhole', { RemoteHost: '', RemotePort: 0, InternalClient: client, InternalPort: port, Protocol: 17, LeaseTime: 600 });
    if (!r.ok) throw new Error(`AddPinhole ${port}: ${r.error.code} ${r.detail}`);
    return Object.fromEntries(r.out).UniqueID as string;
  };
  return { call, addPinhole };
}

const code = (r: ActionResult): number | 'ok' => (r.ok ? 'ok' : r.error.code);

/** A daemon's life on a state directory: an service that journals to it. */
async function running(dir: string, after?: Harness): Promise<{ h: Harness; close: () => Promise<void> }> {
  const h = harness();
  // Same boot, a little later than the service before it.
  if (after) h.clock.advance(after.clock.now() - h.clock.now() + 5_000);
  const { store, state } = await DurableStore.open(dir, h.clock.wall());
  if (state.epoch) h.epoch.restore(epochStartMono(state.epoch, { mono: h.clock.now(), wall: h.clock.wall(), bootId: h.clock.bootId() }, state.lastWriteWall));
  h.service.restore(state.mappings, state.lastWriteWall);
  await store.compact([], h.epoch.start(), h.clock.wall());
  h.service.attachStore(store);
  await h.service.compactStore();
  return { h, close: () => store.close() };
}

t.test('UpdatePinhole and DeletePinhole by the UniqueID given before a restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-pinhole-ids-'));
  const first = await running(dir);
  const before = door(first.h);
  const idA = await before.addPinhole(A6, 41000);
  const idB = await before.addPinhole(A6, 41001);
  t.not(idA, idB);
  await first.close();

  const second = await running(dir, first.h);
  t.equal(second.h.service.count(), 2, 'both pinholes restored');
  const after = door(second.h);
  t.equal(code(await after.call(A6, 'UpdatePinhole', { UniqueID: idA, NewLeaseTime: 900 })), 'ok', `UpdatePinhole ${idA} after the restart`);
  const renewed = second.h.service.byKey(`map|${A6}|17|41000`);
  t.equal(renewed && second.h.service.remaining(renewed), 900, 'renewed to 900 s');
  t.equal(code(await after.call(B6, 'DeletePinhole', { UniqueID: idB })), 606, 'still not another host’s to delete');
  t.equal(code(await after.call(A6, 'DeletePinhole', { UniqueID: idB })), 'ok', `DeletePinhole ${idB} after the restart`);
  t.notOk(second.h.service.byKey(`map|${A6}|17|41001`), 'gone from the table');
  t.equal(code(await after.call(A6, 'DeletePinhole', { UniqueID: idB })), 704, 'deleted: 704 now');
  t.equal(await after.addPinhole(A6, 41000), idA, 'AddPinhole of the restored pinhole answers its own id');
  await second.close();

  // And once more: the renewal kept the id in the store too.
  const third = await running(dir, second.h);
  t.equal(code(await door(third.h).call(A6, 'DeletePinhole', { UniqueID: idA })), 'ok', `DeletePinhole ${idA} after a second restart (renewed in between)`);
  await third.close();
});

t.test('ids stay unique after a restore: a new pinhole never gets a restored one’s id', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-pinhole-ids-'));
  const first = await running(dir);
  const before = door(first.h, 4);
  const restored = [await before.addPinhole(A6, 42000), await before.addPinhole(A6, 42001)];
  await first.close();

  const second = await running(dir, first.h);
  const after = door(second.h, 4);
  const fresh = [await after.addPinhole(B6, 42002), await after.addPinhole(B6, 42003)];
  t.same(fresh.filter((id) => restored.includes(id)), [], `new ids ${fresh.join(', ')} differ from the restored ${restored.join(', ')}`);
  t.equal(code(await after.call(B6, 'AddPinhole', { RemoteHost: '', RemotePort: 0, InternalClient: B6, InternalPort: 42004, Protocol: 17, LeaseTime: 600 })), 701, 'the four ids of the space are all held: 701');
  for (const [i, id] of restored.entries()) {
    t.equal(code(await after.call(A6, 'UpdatePinhole', { UniqueID: id, NewLeaseTime: 700 })), 'ok', `restored id ${id} still names port ${42000 + i}`);
  }
  t.equal(code(await after.call(B6, 'UpdatePinhole', { UniqueID: fresh[0] as string, NewLeaseTime: 700 })), 'ok');
  await second.close();
});
