// The store's line format (src/state/store.ts): `CRC32-hex SP JSON NL`. A
// line is read from the file's bytes where it lies; whatever a record holds
// (any JSON, any Unicode) comes back as written, and any one byte changed
// makes the line damaged, never a different record.

import t from 'tap';
import fc from 'fast-check';
import { decodeLineAt, encodeLine } from '../src/state/store.js';

const record = fc.record({ op: fc.constantFrom('put', 'del', 'epoch'), at: fc.integer(), key: fc.string({ unit: 'binary' }), m: fc.jsonValue() });

t.test('a line reads back as written, wherever it lies in the bytes', async (t) => {
  fc.assert(
    fc.property(record, fc.string(), (r, before) => {
      const line = encodeLine(r);
      const bytes = Buffer.from(`${before}\n${line}`);
      const start = Buffer.byteLength(`${before}\n`);
      const nl = bytes.indexOf(0x0a, start);
      const got = decodeLineAt(bytes, start, nl);
      t.same(got, JSON.parse(JSON.stringify(r)));
      return nl === bytes.length - 1;
    }),
    { numRuns: 500 },
  );
});

t.test('any one byte changed: damaged', async (t) => {
  fc.assert(
    fc.property(record, fc.nat(), fc.integer({ min: 1, max: 255 }), (r, at, flip) => {
      const bytes = Buffer.from(encodeLine(r));
      const end = bytes.length - 1;
      bytes[at % end] = (bytes[at % end] as number) ^ flip;
      return decodeLineAt(bytes, 0, end) === undefined;
    }),
    { numRuns: 2000 },
  );
  t.equal(decodeLineAt(Buffer.from('0123456 {}'), 0, 10), undefined, 'a short prefix');
  t.equal(decodeLineAt(Buffer.from('deadbeef'), 0, 8), undefined, 'no JSON at all');
  // A record whose CRC has hex letters: written lowercase, read only so.
  const line = [...Array(100).keys()].map((i) => encodeLine({ op: 'x', i })).find((l) => /[a-f]/.test(l.slice(0, 8))) as string;
  const upper = Buffer.from(line.slice(0, 8).toUpperCase() + line.slice(8));
  t.same(decodeLineAt(Buffer.from(line), 0, line.length - 1), JSON.parse(line.slice(9)), 'as written: read');
  t.equal(decodeLineAt(upper, 0, upper.length - 1), undefined, 'the same CRC in capitals: damaged');
});
