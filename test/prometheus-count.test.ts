// The live-mapping gauge (src/server/prometheus.ts): counted by origin,
// family and transport in one pass without a labels object per mapping, and
// labelled exactly as before: every combination its own sample, static
// openings apart, a protocol with no name by its number.

import t from 'tap';
import { makeMapping, type Mapping, type Origin } from '../src/domain/mapping.js';
import { mustParseIp } from '../src/net/address.js';
import { Prometheus, countedByKind } from '../src/server/prometheus.js';
import { sample } from './helpers/prometheus-text.js';

let id = 0;
function mapping(origin: Origin, family: 4 | 6, protocol: number): Mapping {
  const address = mustParseIp(family === 4 ? '192.168.77.10' : '2001:db8:77::10');
  return makeMapping(
    { kind: 'map', family, internalAddress: address, protocol, internalPort: 1000 + id, externalAddress: address, externalPort: 1000 + id, filters: [], origin, client: address, description: '', lifetime: 60 },
    ++id,
    0,
  );
}

const many = (n: number, ...args: Parameters<typeof mapping>) => Array.from({ length: n }, () => mapping(...args));

t.test('every origin, family and transport counted apart, and summed to the table', async (t) => {
  const live = [
    ...many(3, 'pcp', 6, 17),
    ...many(2, 'pcp', 4, 6),
    ...many(4, 'natpmp', 4, 17),
    ...many(1, 'upnp', 4, 6),
    ...many(2, 'upnp', 6, 17),
    ...many(1, 'static', 6, 0),
    ...many(1, 'pcp', 6, 132),
  ];
  const p = new Prometheus('test');
  p.countMappings(() => live);
  const text = await p.registry.metrics();
  t.equal(sample(text, 'portcullis_mappings'), live.length, 'the samples sum to the live mappings');
  t.equal(sample(text, 'portcullis_mappings', { protocol: 'pcp', family: '6', l4proto: 'udp', origin: 'client' }), 3);
  t.equal(sample(text, 'portcullis_mappings', { protocol: 'pcp', family: '4', l4proto: 'tcp', origin: 'client' }), 2);
  t.equal(sample(text, 'portcullis_mappings', { protocol: 'natpmp', family: '4', l4proto: 'udp', origin: 'client' }), 4);
  t.equal(sample(text, 'portcullis_mappings', { protocol: 'upnp', family: '4', l4proto: 'tcp', origin: 'client' }), 1);
  t.equal(sample(text, 'portcullis_mappings', { protocol: 'upnp', family: '6', l4proto: 'udp', origin: 'client' }), 2);
  t.equal(sample(text, 'portcullis_mappings', { protocol: 'static', family: '6', l4proto: 'all', origin: 'static' }), 1);
  t.equal(sample(text, 'portcullis_mappings', { protocol: 'pcp', family: '6', l4proto: '132', origin: 'client' }), 1, 'a protocol with no name by its number');
  t.equal(sample(text, 'portcullis_mappings', { origin: 'static' }), 1, 'only the static opening is static');
  t.equal((text.match(/^portcullis_mappings\{/gm) ?? []).length, 7, 'one sample a combination');

  // Mappings gone: the next scrape forgets their combinations.
  live.splice(0, live.length, ...many(2, 'natpmp', 4, 6));
  const after = await p.registry.metrics();
  t.equal(sample(after, 'portcullis_mappings'), 2);
  t.equal((after.match(/^portcullis_mappings\{/gm) ?? []).length, 1, 'no sample left for what is gone');
});

t.test('the count takes any iterable, read once', async (t) => {
  let reads = 0;
  function* table(): Generator<Mapping> {
    reads++;
    yield* many(5, 'upnp', 4, 17);
  }
  const counts = countedByKind(table());
  t.equal(reads, 1);
  t.same([...counts.values()], [5]);
});
