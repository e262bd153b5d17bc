// What a restart's restore does per mapping, made cheaper without changing
// what it means: the stored key is taken only when it is the mapping's own
// (hasKey), each address's host and interface are asked once per restore
// (MappingTable.filling) and as usual after it, the expiry timer is armed
// once the restore ends, and the first reconcile's deferred entries are
// paired with their keys whatever order the backend returns them in.

import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { syncFirewall } from '../src/daemon/firewall.js';
import { hasKey, keyOf, makeMapping, type MappingTerms } from '../src/domain/mapping.js';
import { entryKey, type DesiredEntry, type FirewallBackend, type Reconciled, type ReconcileOptions } from '../src/firewall/backend.js';
import { mustParseIp, type IpAddress } from '../src/net/address.js';
import { entryOf } from '../src/service/firewall-entries.js';
import { MappingTable } from '../src/state/table.js';
import { NO_TELEMETRY } from '../src/telemetry.js';
import { harness } from './helpers/harness.js';
import { memoryLogger } from './helpers/memory-logger.js';
import { storedMapping, EPOCH } from './helpers/stored.js';

const v6 = mustParseIp('2001:db8:77::10');
const TERMS: MappingTerms = { kind: 'map', family: 6, internalAddress: v6, protocol: 17, internalPort: 1000, externalAddress: v6, externalPort: 1000, filters: [], origin: 'pcp', client: v6, description: '', lifetime: 60 };

t.test('hasKey is keyOf(m) === key, for MAP and PEER, and refuses near misses', async (t) => {
  const variants: MappingTerms[] = [
    TERMS,
    { ...TERMS, protocol: 6 },
    { ...TERMS, internalPort: 100 },
    { ...TERMS, internalPort: 10_000 },
    { ...TERMS, internalAddress: mustParseIp('2001:db8:77::1') },
    { ...TERMS, kind: 'peer', remotePeer: { address: mustParseIp('2001:db8::9'), port: 80 } },
    { ...TERMS, kind: 'peer', remotePeer: { address: mustParseIp('2001:db8::9'), port: 8080 } },
  ];
  const mappings = variants.map((v) => makeMapping(v, 1, 0));
  for (const a of mappings) for (const b of mappings) t.equal(hasKey(a, keyOf(b)), keyOf(a) === keyOf(b), `${keyOf(a)} against ${keyOf(b)}`);
  const m = mappings[0]!;
  for (const near of [`${keyOf(m)}|`, keyOf(m).slice(0, -1), `${keyOf(m)}0`, keyOf(m).replace('map|', 'peer|'), '', 'map']) t.notOk(hasKey(m, near), `not '${near}'`);
});

t.test('a stored record whose key is not its mapping\'s is restored under the mapping\'s own key', async (t) => {
  const h = harness();
  const wrong = storedMapping(20_000, { key: 'map|192.168.77.10|17|20001' });
  t.same(h.service.restore([wrong], EPOCH.wall), { restored: 1, expired: 0 });
  t.ok(h.service.byKey('map|192.168.77.10|17|20000'), 'found by its own key');
  t.notOk(h.service.byKey('map|192.168.77.10|17|20001'), 'not by the stored one');
});

t.test('a restore arms the expiry: a mapping restored with little left ends on time', async (t) => {
  const h = harness();
  const soon = storedMapping(20_000, { expiresMono: EPOCH.mono + 20, expiresWall: EPOCH.wall + 20 });
  t.same(h.service.restore([soon, storedMapping(20_001)], EPOCH.wall), { restored: 2, expired: 0 });
  h.clock.advance(1_000);
  // The timer is real: it fires ~25 ms after the restore and finds the clock past the expiry.
  await sleep(200);
  t.notOk(h.service.byKey(soon.key), 'the one due is gone');
  t.ok(h.service.byKey(storedMapping(20_001).key), 'the other stays');
  h.service.stop();
});

t.test('a restore asks each address\'s host and interface once; later puts ask again', async (t) => {
  const asked = { host: [] as string[], iface: [] as string[] };
  let hostName = 'one';
  const table = new MappingTable(
    (a) => (asked.iface.push(a), 'br-lan'),
    (a) => (asked.host.push(a), hostName),
  );
  const a = mustParseIp('2001:db8:77::10');
  const b = mustParseIp('2001:db8:77::11');
  const at = (addr: IpAddress, port: number) => makeMapping({ ...TERMS, internalAddress: addr, client: addr, internalPort: port, externalPort: port, externalAddress: addr }, port, 0);
  table.filling(() => {
    for (let p = 1; p <= 5; p++) table.put(at(a, p));
    for (let p = 1; p <= 3; p++) table.put(at(b, p));
  });
  t.same(asked.host, [a, b], 'hosts: once per address');
  t.same(asked.iface, [a, b], 'interfaces: once per address');
  t.equal(table.countForHost(a, 'one'), 8);
  hostName = 'two';
  table.put(at(a, 6));
  t.same(asked.host, [a, b, a], 'after the restore, a put asks again');
  t.equal(table.countForHost(a, 'two'), 1, 'and counts under the answer of now');
});

t.test('deferred entries come back whatever order the backend returns them in', async (t) => {
  const h = harness();
  const stored = Array.from({ length: 50 }, (_, i) => storedMapping(20_000 + i));
  h.service.restore(stored, EPOCH.wall);
  const fw: FirewallBackend = {
    name: 'test',
    start: () => h.firewall.start(),
    stop: () => h.firewall.stop(),
    setStatics: (s) => h.firewall.setStatics(s),
    apply: (batch) => h.firewall.apply(batch),
    intact: async () => true,
    // A backend that hands the deferred entries back last first.
    reconcile: async (desired: readonly DesiredEntry[], opts?: ReconcileOptions): Promise<Reconciled> => ({ added: 0, removed: 0, recreated: false, ...(opts?.defer ? { deferred: desired.map((d) => d.entry).reverse() } : {}) }),
  };
  const reinstall = await syncFirewall(h.service, fw, NO_TELEMETRY, memoryLogger());
  t.equal(reinstall.entries, 50);
  await reinstall.run(() => false);
  const inKernel = new Set(h.firewall.list().map(entryKey));
  t.equal(inKernel.size, 50);
  t.ok(h.service.mappings().every((m) => inKernel.has(entryKey(entryOf(m)))), 'every restored mapping is in the kernel');
});
