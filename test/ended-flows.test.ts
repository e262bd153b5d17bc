// Which flows a closed static opening ends (src/firewall/ended-flows.ts): the
// statics a reload drops, diffed against those it keeps, bounded.

import t from 'tap';
import { closedStatics, MAX_STATIC_PORTS } from '../src/firewall/ended-flows.js';
import { parseAddressPattern, type AddressPattern } from '../src/domain/patterns.js';
import { mustParseIp } from '../src/net/address.js';
import type { StaticOpening } from '../src/domain/mapping.js';

const pattern = (text: string) => {
  const p = parseAddressPattern(text);
  if (!p.ok) throw new Error(text);
  return p.value as AddressPattern;
};
const forward = (name: string, port: number, to: string, toPort: number): StaticOpening => ({ kind: 'forward', name, protocol: 17, port, to: mustParseIp(to), toPort });
const pinhole = (name: string, to: string, ports: { min: number; max: number }[], protocols = [6, 17]): StaticOpening => ({ kind: 'pinhole', name, to: pattern(to), protocols, ports });

t.test('a dropped forward and a dropped single-address pinhole: their endpoints, both ways', async (t) => {
  const fw = forward('game', 3074, '192.168.77.2', 3075);
  const ph = pinhole('ssh', '2001:db8:77::2', [{ min: 2222, max: 2223 }], [6]);
  const r = closedStatics([fw, ph], []);
  t.same(r.unbounded, []);
  t.same(
    r.selectors.map((s) => `${s.by} ${s.protocol} ${s.address} ${s.port}`).sort(),
    [
      'destination 17 192.168.77.2 3075',
      'source 17 192.168.77.2 3075',
      'destination 6 2001:db8:77::2 2222',
      'source 6 2001:db8:77::2 2222',
      'destination 6 2001:db8:77::2 2223',
      'source 6 2001:db8:77::2 2223',
    ].sort(),
  );
});

t.test('what stays keeps its flows; nothing dropped, nothing ended', async (t) => {
  const fw = forward('game', 3074, '192.168.77.2', 3075);
  const ph = pinhole('ssh', '2001:db8:77::2', [{ min: 2222, max: 2222 }]);
  t.same(closedStatics([fw, ph], [fw, ph]).selectors, []);
  // Renamed, same endpoint: still admitted, its flows stay.
  t.same(closedStatics([fw], [forward('renamed', 3074, '192.168.77.2', 3075)]).selectors, []);
  // One of two protocols dropped: only that one's flows.
  const r = closedStatics([pinhole('both', '2001:db8:77::2', [{ min: 443, max: 443 }])], [pinhole('tcp', '2001:db8:77::2', [{ min: 443, max: 443 }], [6])]);
  t.same(r.selectors.map((s) => s.protocol), [17, 17]);
});

t.test('a pattern, a prefix or too many ports names no endpoint: said, not looked for', async (t) => {
  const r = closedStatics(
    [
      pinhole('iid', '::2/::ffff:ffff:ffff:ffff', [{ min: 443, max: 443 }]),
      pinhole('net', '2001:db8:77::/64', [{ min: 443, max: 443 }]),
      pinhole('wide', '2001:db8:77::2', [{ min: 1024, max: 1024 + MAX_STATIC_PORTS }], [6]),
      pinhole('whole', '2001:db8:77::2', [{ min: 1, max: 65535 }]),
    ],
    [],
  );
  t.same(r.selectors, [], 'no selector, and no loop over 65 535 ports');
  t.same(r.unbounded, ['iid', 'net', 'wide', 'whole']);
});
