// The store's record form (src/state/record-form.ts): a mapping written as a
// positional array reads back as the same record, whatever it holds; a
// version-1 store (object lines) still opens and is rewritten in the new
// form; a line whose CRC matches but whose shape does not is damage.

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import fc from 'fast-check';
import { mustParseIp } from '../src/net/address.js';
import { fromForm, recordForm } from '../src/state/record-form.js';
import { DurableStore, encodeLine, STORE_VERSION, type JournalRecord, type StoredMapping } from '../src/state/store.js';
import { EPOCH, storedMapping } from './helpers/stored.js';

const dir = () => mkdtempSync(join(tmpdir(), 'portcullis-form-'));
/** JSON's view of a record: what a line can carry (undefined fields are not written). */
const plain = (x: unknown): unknown => JSON.parse(JSON.stringify(x));
const viaLine = (r: JournalRecord): unknown => fromForm(JSON.parse(JSON.stringify(recordForm(r))));

const address = fc.oneof(
  fc.ipV4().map((a) => mustParseIp(a)),
  fc.ipV6().map((a) => mustParseIp(a)),
);
const port = fc.integer({ min: 0, max: 65_535 });
const stored: fc.Arbitrary<StoredMapping> = fc
  .record(
    {
      kind: fc.constantFrom('map' as const, 'peer' as const),
      family: fc.constantFrom(4 as const, 6 as const),
      internalAddress: address,
      protocol: fc.integer({ min: 0, max: 255 }),
      internalPort: port,
      externalAddress: fc.option(address, { nil: undefined }),
      externalPort: port,
      filters: fc.array(fc.tuple(address, fc.integer({ min: 0, max: 128 }), port), { maxLength: 3 }),
      remotePeer: fc.option(fc.tuple(address, port), { nil: undefined }),
      nonce: fc.option(fc.uint8Array({ minLength: 12, maxLength: 12 }).map((b) => Buffer.from(b).toString('hex')), { nil: undefined }),
      origin: fc.constantFrom('pcp' as const, 'natpmp' as const, 'upnp' as const, 'static' as const),
      owner: fc.option(address, { nil: undefined }),
      description: fc.string({ unit: 'binary' }),
      doorTag: fc.option(fc.string(), { nil: undefined }),
      lifetime: fc.nat(),
      clientPort: fc.option(port, { nil: undefined }),
      upstream: fc.option(fc.record({ address, port, nonce: fc.string(), lifetime: fc.nat(), expiresWall: fc.nat() }), { nil: undefined }),
      expiresWall: fc.nat(),
      expiresMono: fc.integer(),
      bootId: fc.uuid(),
      ownKey: fc.option(fc.string(), { nil: undefined }),
    },
    { requiredKeys: ['kind', 'family', 'internalAddress', 'protocol', 'internalPort', 'externalPort', 'filters', 'origin', 'description', 'lifetime', 'expiresWall', 'expiresMono', 'bootId'] },
  )
  .map(({ ownKey, externalAddress, owner, ...m }) => {
    const remote = m.remotePeer ? `|${m.remotePeer[0]}|${m.remotePeer[1]}` : '';
    return {
      ...m,
      // A pinhole's external address and owner are its internal one (written as 0); anything else in full.
      externalAddress: externalAddress ?? m.internalAddress,
      owner: owner ?? m.internalAddress,
      key: ownKey ?? `${m.kind}|${m.internalAddress}|${m.protocol}|${m.internalPort}${remote}`,
    } as StoredMapping;
  });

t.test('any mapping reads back as written, through a line', async (t) => {
  fc.assert(
    fc.property(stored, fc.nat(), (m, at) => {
      const r: JournalRecord = { op: 'put', at, m };
      t.same(plain(viaLine(r)), plain(r));
      return true;
    }),
    { numRuns: 1000 },
  );
  t.same(viaLine({ op: 'del', at: 5, key: 'map|192.0.2.1|6|80' }), { op: 'del', at: 5, key: 'map|192.0.2.1|6|80' }, 'a del line');
  const epoch: JournalRecord = { op: 'epoch', at: 7, epoch: EPOCH };
  t.same(viaLine(epoch), epoch, 'an epoch line stays an object');
});

t.test('a pinhole renewal writes less than half what version 1 did', async (t) => {
  const pinhole = storedMapping(40000, {
    key: 'map|2001:db8:77::1:1|17|40000',
    family: 6,
    internalAddress: mustParseIp('2001:db8:77::1:1'),
    externalAddress: mustParseIp('2001:db8:77::1:1'),
    owner: mustParseIp('2001:db8:77::1:1'),
    nonce: 'eee78d5a6fc2c7589e9d9080',
    clientPort: 5350,
    bootId: 'd2ad1bb1-76da-4450-88ca-18827f6cc750',
  });
  const r: JournalRecord = { op: 'put', at: EPOCH.wall, m: pinhole };
  const now = encodeLine(recordForm(r)).length;
  const before = encodeLine(r).length;
  t.ok(now < 200, `a line of ${now} bytes`);
  t.ok(now * 2 < before, `${now} bytes against version 1's ${before}`);
  t.notMatch(encodeLine(recordForm(r)), /2001:db8:77::1:1".*2001:db8:77::1:1/, 'the address once, not three times');
});

t.test('a shape the form does not have is not a record', async (t) => {
  const good = recordForm({ op: 'put', at: 1, m: storedMapping(40000) }) as [string, number, unknown[]];
  const bent = (i: number, v: unknown) => {
    const m = [...good[2]];
    m[i] = v;
    return ['put', 1, m];
  };
  t.ok(fromForm(plain(good)), 'as written');
  t.equal(fromForm(['put', 1, good[2].slice(0, 17)]), undefined, 'a field short');
  t.equal(fromForm(bent(1, 'pinhole')), undefined, 'an unknown kind');
  t.equal(fromForm(bent(2, 5)), undefined, 'family 5');
  t.equal(fromForm(bent(3, 17)), undefined, 'an address that is a number');
  t.equal(fromForm(bent(15, '1800003600000')), undefined, 'an expiry that is text');
  t.equal(fromForm(['put', '1', good[2]]), undefined, 'a time that is text');
  t.equal(fromForm(['del', 1, 7]), undefined, 'a key that is a number');
  t.equal(fromForm(['drop', 1, 'k']), undefined, 'an unknown op');
  t.equal(fromForm(null), undefined, 'null');
  t.equal(fromForm({ at: 1 }), undefined, 'an object without op');
});

t.test('a store version 1 wrote opens; its next snapshot is written in this version', async (t) => {
  const d = dir();
  const a = storedMapping(40000);
  const b = storedMapping(40001, { description: 'kept "as" is\n', nonce: '00112233445566778899aabb' });
  const c = storedMapping(40002);
  // Version 1's files, as an older daemon left them: object lines everywhere.
  const v1 = [
    encodeLine({ op: 'header', version: 1, at: EPOCH.wall, deviceUuid: 'uuid-1', epoch: EPOCH }),
    encodeLine({ op: 'put', at: EPOCH.wall, m: a }),
    encodeLine({ op: 'put', at: EPOCH.wall, m: b }),
    encodeLine({ op: 'end', count: 2 }),
  ];
  writeFileSync(join(d, 'snapshot'), v1.join(''));
  writeFileSync(join(d, 'journal'), encodeLine({ op: 'del', at: EPOCH.wall, key: a.key }));
  const { store, state } = await DurableStore.open(d, EPOCH.wall);
  t.equal(state.status, 'loaded', state.detail ?? '');
  t.same(plain(state.mappings), plain([b]), 'the snapshot and journal of version 1 read');
  // The upgraded daemon appends its own form after the old lines, and both read back.
  store.append([{ op: 'put', at: EPOCH.wall, m: c }]);
  await store.flush();
  await store.close();
  const again = await DurableStore.open(d, EPOCH.wall);
  t.same(plain(again.state.mappings), plain([b, c]), 'a journal of both forms');
  await again.store.compact(again.state.mappings, EPOCH, EPOCH.wall);
  await again.store.close();
  const snapshot = readFileSync(join(d, 'snapshot'), 'utf8').split('\n');
  t.match(snapshot[0], new RegExp(`"version":${STORE_VERSION}`), 'the new snapshot says version 2');
  t.equal(STORE_VERSION, 2);
  t.match(snapshot[1], /^[0-9a-f]{8} \["put",/, 'its mappings are arrays');
  const last = await DurableStore.open(d, EPOCH.wall);
  t.same(plain(last.state.mappings), plain([b, c]), 'and read back the same');
  t.equal(last.state.deviceUuid, 'uuid-1');
  await last.store.close();
});

t.test('a snapshot of a version this daemon does not know is damage, named', async (t) => {
  const d = dir();
  writeFileSync(join(d, 'snapshot'), encodeLine({ op: 'header', version: 3, at: EPOCH.wall, deviceUuid: 'u', epoch: EPOCH }) + encodeLine({ op: 'end', count: 0 }));
  const { store, state } = await DurableStore.open(d, EPOCH.wall);
  t.equal(state.status, 'corrupt');
  t.match(state.detail, /snapshot version 3, expected one of 1, 2/);
  await store.close();
});
