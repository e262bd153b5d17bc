// Without NAT44 (a DS-Lite B4, --no-nat44) an IPv4 entry is admitted, not
// translated: its elements go into admit4 / admit4_filtered keyed by the LAN
// host's own endpoint, with no DNAT data, and both placements' forward path
// looks them up. With NAT44 (the default) nothing changes. The kernel's
// side is proven in test/lab-dslite.test.ts.

import t from 'tap';
import { elementTexts, elementsOf, ruleLines, setFor } from '../src/firewall/nft/ruleset.js';
import type { FirewallEntry } from '../src/firewall/backend.js';
import { mustParseIp } from '../src/net/address.js';

const entry: FirewallEntry = {
  family: 4,
  protocol: 17,
  externalAddress: mustParseIp('192.0.0.2'),
  externalPort: 41000,
  internalAddress: mustParseIp('192.168.77.2'),
  internalPort: 40001,
  filters: [],
};
const filtered: FirewallEntry = { ...entry, filters: [{ prefix: { address: mustParseIp('198.51.100.0'), length: 24 }, port: 0 }] };

t.test('the set and the elements of an IPv4 entry, with and without NAT44', async (t) => {
  t.equal(setFor(entry), 'dnat4', 'NAT44: the DNAT map');
  t.equal(setFor(filtered), 'dnat4Filtered');
  t.same(elementsOf(entry, 60), [[{ elem: { val: { concat: ['192.0.0.2', 'udp', 41000] }, timeout: 60 } }, { concat: ['192.168.77.2', 40001] }]], 'keyed by the external endpoint, the internal one as data');
  t.equal(setFor(entry, false), 'admit4', 'no NAT44: admitted');
  t.equal(setFor(filtered, false), 'admit4Filtered');
  t.same(elementsOf(entry, 60, false), [{ elem: { val: { concat: ['192.168.77.2', 'udp', 40001] }, timeout: 60 } }], 'keyed by the LAN host\'s own endpoint, no data');
  t.same(elementTexts(filtered, false), ['192.168.77.2 . udp . 40001 . 198.51.100.0/24 . 0-65535']);
  const v6: FirewallEntry = { ...entry, family: 6, externalAddress: mustParseIp('2001:db8::2'), internalAddress: mustParseIp('2001:db8::2'), externalPort: 40001 };
  t.same(elementsOf(v6, 60, false), elementsOf(v6, 60), 'IPv6 pinholes are the same either way');
});

t.test('the forward path looks admit4 up, in our own table and embedded', async (t) => {
  const topo = { wans: ['ds0'], lan: ['br-lan'], mark: 0x10000000, guarded: { udp: [5351], tcp: [] } };
  const own = ruleLines({ family: 'inet', table: 'portcullis', embedded: false }, topo).join('\n');
  t.match(own, /^wan_to_lan meta nfproto ipv4 meta l4proto \{ tcp, udp \} ip daddr \. meta l4proto \. th dport @admit4 meta mark set meta mark \| 0x10000000 return$/m);
  t.match(own, /^wan_to_lan .* ip daddr \. meta l4proto \. th dport \. ip saddr \. th sport @admit4_filtered .* return$/m);
  const embedded = ruleLines({ family: 'inet', table: 'fw4', embedded: true }, topo).join('\n');
  t.match(embedded, /^portcullis_forward .* @portcullis_admit4 meta mark set meta mark \| 0x10000000 accept$/m, 'embedded: accepted in the admin\'s chain that jumped here');
  // The admission rules come before the final drop: an unsolicited packet is still dropped.
  const lines = own.split('\n');
  t.ok(lines.findIndex((l) => l.includes('@admit4 ')) < lines.indexOf('wan_to_lan drop'), 'before the drop');
});
