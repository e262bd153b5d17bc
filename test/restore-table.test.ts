// What a restore's path into the table must keep meaning, however it is
// made cheaper: the counts of what a `filling` puts are right whenever they
// are read (during it, after a removal during it, for a third party's
// mapping, after a fill that threw), and a key restored twice keeps the
// first mapping and only its external port.

import t from 'tap';
import { makeMapping, type Mapping, type MappingTerms } from '../src/domain/mapping.js';
import { mustParseIp, type IpAddress } from '../src/net/address.js';
import { MappingTable } from '../src/state/table.js';
import { harness } from './helpers/harness.js';
import { storedMapping, EPOCH } from './helpers/stored.js';

const a = mustParseIp('2001:db8:77::10');
const b = mustParseIp('2001:db8:77::11');
const cpe = mustParseIp('2001:db8:77::99');
const TERMS: MappingTerms = { kind: 'map', family: 6, internalAddress: a, protocol: 17, internalPort: 1000, externalAddress: a, externalPort: 1000, filters: [], origin: 'pcp', client: a, description: '', lifetime: 60 };

/** The table's counts for `addr` (its host is itself: no hostOf given). */
function counts(table: MappingTable, addr: IpAddress, requester = addr) {
  return { client: table.countFor(addr), host: table.countForHost(addr), requester: table.countByRequester(requester), iface: table.countForInterface('br-lan'), interfaces: table.interfacesInUse };
}

const at = (addr: IpAddress, port: number, client = addr): Mapping => makeMapping({ ...TERMS, internalAddress: addr, externalAddress: addr, client, internalPort: port, externalPort: port }, port, 0);

t.test('the counts of what a filling puts are right when read during it, after a removal during it, and after it', async (t) => {
  const table = new MappingTable(() => 'br-lan', (addr) => addr);
  const seen: Record<string, unknown>[] = [];
  table.filling(() => {
    for (let p = 1; p <= 4; p++) table.put(at(a, p));
    seen.push(counts(table, a));
    for (let p = 5; p <= 6; p++) table.put(at(a, p));
    table.remove(`map|${a}|17|1`);
    for (let p = 1; p <= 3; p++) table.put(at(b, p));
    table.put(at(b, 4, cpe));
    seen.push(counts(table, a), counts(table, b, cpe));
    table.put(at(b, 5));
  });
  t.same(seen[0], { client: 4, host: 4, requester: 4, iface: 4, interfaces: 1 }, 'read during the filling');
  t.same(seen[1], { client: 5, host: 5, requester: 5, iface: 9, interfaces: 1 }, 'after a removal during it');
  t.same(seen[2], { client: 4, host: 4, requester: 1, iface: 9, interfaces: 1 }, 'a third party\'s mapping counts under its requester');
  t.same(counts(table, a), { client: 5, host: 5, requester: 5, iface: 10, interfaces: 1 }, 'after it');
  t.same(counts(table, b), { client: 5, host: 5, requester: 4, iface: 10, interfaces: 1 });
  t.equal(table.countByRequester(cpe), 1);
  for (let p = 2; p <= 6; p++) table.remove(`map|${a}|17|${p}`);
  for (let p = 1; p <= 5; p++) table.remove(`map|${b}|17|${p}`);
  t.same(counts(table, a), { client: 0, host: 0, requester: 0, iface: 0, interfaces: 0 }, 'every count back to nothing once all are removed');
  t.equal(table.countByRequester(cpe), 0);
});

t.test('a filling that throws leaves what it put counted', async (t) => {
  const table = new MappingTable(() => 'br-lan', (addr) => addr);
  t.throws(() =>
    table.filling(() => {
      table.put(at(a, 1));
      throw new Error('stop');
    }),
  );
  t.same(counts(table, a), { client: 1, host: 1, requester: 1, iface: 1, interfaces: 1 });
});

t.test('a key restored twice keeps the first mapping, and only the first holds an external port', async (t) => {
  const h = harness();
  const first = storedMapping(20_000);
  const again = storedMapping(20_000, { externalPort: 30_000, description: 'second' });
  t.same(h.service.restore([first, again], EPOCH.wall), { restored: 1, expired: 0 });
  t.equal(h.service.byKey(first.key)?.description, '', 'the first stays');
  t.equal(h.service.holderOf(17, 20_000)?.description, '', 'its port is held');
  t.notOk(h.service.holderOf(17, 30_000), 'the second one\'s port is not');
});
