// RFC 7291's PCP server options (src/net/pcp-server-option.ts), from byte
// vectors written out by hand from the RFC's formats: option 86 (one
// instance a server, 16-octet addresses) and option 158 (a list of lists,
// joined across instances per RFC 3396).

import t from 'tap';
import fc from 'fast-check';
import { resolveRuns, resolveSeed } from './helpers/fuzz.js';
import {
  decodeV4PcpServers,
  decodeV6PcpServers,
  MAX_OPTION_OCTETS,
  MAX_SERVERS,
} from '../src/net/pcp-server-option.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
/** 2001:db8::1 and 2001:db8::2, and ::ffff:192.0.2.1 (IPv4-mapped). */
const V6_1 = '20010db8 00000000 00000000 00000001';
const V6_2 = '20010db8 00000000 00000000 00000002';
const MAPPED = '00000000 00000000 0000ffff c0000201';

t.test('option 86: one instance is one server, its addresses in order; IPv4-mapped is IPv4', async (t) => {
  const r = decodeV6PcpServers([hex(V6_1 + MAPPED)]);
  t.same(r, { ok: true, servers: [{ addresses: ['2001:db8::1', '192.0.2.1'] }], discarded: [] });
});

t.test('option 86: several instances are several servers, in the order sent', async (t) => {
  const r = decodeV6PcpServers([hex(V6_2), hex(V6_1)]);
  t.same(r.ok && r.servers, [{ addresses: ['2001:db8::2'] }, { addresses: ['2001:db8::1'] }]);
});

t.test('option 86: a length that is not a multiple of 16, or none, is refused, naming the instance', async (t) => {
  const short = decodeV6PcpServers([hex(V6_1), hex(V6_2).subarray(0, 15)]);
  t.same(short, { ok: false, detail: 'OPTION_V6_PCP_SERVER instance 2: option-length 15 is not a multiple of 16' });
  const empty = decodeV6PcpServers([Buffer.alloc(0)]);
  t.equal(empty.ok, false);
  t.match(!empty.ok && empty.detail, /instance 1: empty/);
  const long = decodeV6PcpServers([hex(V6_1 + V6_2 + '00')]);
  t.match(!long.ok && long.detail, /option-length 33 is not a multiple of 16/);
});

t.test('option 86: multicast and loopback are discarded (RFC 7291 §3.3), and said; a server with nothing left goes', async (t) => {
  const mcast = 'ff020000 00000000 00000000 00000001';
  const loop6 = '00000000 00000000 00000000 00000001';
  const loop4 = '00000000 00000000 0000ffff 7f000001';
  const r = decodeV6PcpServers([hex(mcast + loop6), hex(loop4 + V6_1)]);
  t.same(r, {
    ok: true,
    servers: [{ addresses: ['2001:db8::1'] }],
    discarded: [
      { address: 'ff02::1', why: 'multicast' },
      { address: '::1', why: 'loopback' },
      { address: '127.0.0.1', why: 'loopback' },
    ],
  });
});

t.test('option 86: counts are bounded: instances, addresses per server, octets', async (t) => {
  const many = decodeV6PcpServers(Array.from({ length: MAX_SERVERS + 1 }, () => hex(V6_1)));
  t.match(!many.ok && many.detail, /9 instances, more than the 8 servers taken/);
  const wide = decodeV6PcpServers([hex(V6_1.repeat(9))]);
  t.match(!wide.ok && wide.detail, /instance 1: 9 addresses, more than the 8 taken for one server/);
  t.equal(decodeV6PcpServers([]).ok, true, 'no instance: no server, not an error');
});

t.test('option 158: one list, two servers, addresses in order', async (t) => {
  // List-Length 8: 198.51.100.1, 198.51.100.2 | List-Length 4: 203.0.113.9
  const r = decodeV4PcpServers([hex('08 c6336401 c6336402 04 cb007109')]);
  t.same(r, { ok: true, servers: [{ addresses: ['198.51.100.1', '198.51.100.2'] }, { addresses: ['203.0.113.9'] }], discarded: [] });
});

t.test('option 158: instances are joined before decoding (RFC 3396), even mid-address and mid-list', async (t) => {
  const whole = hex('08 c6336401 c6336402 04 cb007109');
  const split = [whole.subarray(0, 3), whole.subarray(3, 10), whole.subarray(10)];
  t.same(decodeV4PcpServers(split), decodeV4PcpServers([whole]));
  t.same(decodeV4PcpServers(split).ok && (decodeV4PcpServers(split) as { servers: unknown }).servers, [
    { addresses: ['198.51.100.1', '198.51.100.2'] },
    { addresses: ['203.0.113.9'] },
  ]);
  // The first instance alone is a list cut short: refused, not half-used.
  const cut = decodeV4PcpServers([whole.subarray(0, 7)]);
  t.same(cut, { ok: false, detail: 'OPTION_V4_PCP_SERVER list 1 (at octet 0): List-Length 8 runs past the option\'s end (6 octets left)' });
});

t.test('option 158: malformed lists are refused, naming the list and why', async (t) => {
  const cases: [string, RegExp][] = [
    ['08 c6336401 c6336402 06 cb007109 0000', /list 2 \(at octet 9\): List-Length 6 is not a multiple of 4/],
    ['04 c6336401 00', /list 2 \(at octet 5\): List-Length 0/],
    ['04 c6336401 08 cb007109', /list 2 \(at octet 5\): List-Length 8 runs past the option's end \(4 octets left\)/],
    ['04 c63364', /4 octets, shorter than the least 5/],
    ['00 00000000', /list 1 \(at octet 0\): List-Length 0/],
  ];
  for (const [bytes, why] of cases) {
    const r = decodeV4PcpServers([hex(bytes)]);
    t.equal(r.ok, false, bytes);
    t.match(!r.ok && r.detail, why, bytes);
  }
});

t.test('option 158: multicast, loopback, 0.0.0.0 and broadcast are discarded; an empty option is no server', async (t) => {
  const r = decodeV4PcpServers([hex('10 e0000001 7f000001 00000000 ffffffff 04 c6336401')]);
  t.same(r, {
    ok: true,
    servers: [{ addresses: ['198.51.100.1'] }],
    discarded: [
      { address: '224.0.0.1', why: 'multicast' },
      { address: '127.0.0.1', why: 'loopback' },
      { address: '0.0.0.0', why: 'unspecified' },
      { address: '255.255.255.255', why: 'broadcast' },
    ],
  });
  t.same(decodeV4PcpServers([]), { ok: true, servers: [], discarded: [] });
  t.same(decodeV4PcpServers([Buffer.alloc(0), Buffer.alloc(0)]), { ok: true, servers: [], discarded: [] });
});

t.test('option 158: counts and total length are bounded', async (t) => {
  const nine = hex('04 c6336401'.repeat(MAX_SERVERS + 1));
  t.match(decodeV4PcpServers([nine]), { ok: false, detail: /list 9 \(at octet 40\): more than the 8 servers taken/ });
  const wide = hex('24' + 'c6336401'.repeat(9));
  t.match(decodeV4PcpServers([wide]), { ok: false, detail: /9 addresses, more than the 8 taken/ });
  const huge = Buffer.alloc(MAX_OPTION_OCTETS + 1, 4);
  t.match(decodeV4PcpServers([huge]), { ok: false, detail: /2049 octets, more than 2048/ });
});

const SEED = resolveSeed(7291);
const RUNS = resolveRuns(2000);

t.test('fuzz: neither decoder throws, and what they keep is within bounds', async (t) => {
  const chunks = fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 12 });
  fc.assert(
    fc.property(chunks, (instances) => {
      for (const r of [decodeV4PcpServers(instances), decodeV6PcpServers(instances)]) {
        if (!r.ok) continue;
        if (r.servers.length > MAX_SERVERS) return false;
        if (r.servers.some((s) => s.addresses.length === 0 || s.addresses.length > 8)) return false;
      }
      return true;
    }),
    { numRuns: RUNS, seed: SEED },
  );
  t.pass(`${RUNS} runs, FUZZ_SEED=${SEED}`);
});
