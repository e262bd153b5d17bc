// A device opening's hand-set interface identifier (`identifier: "::10"`):
// what the loader takes and refuses, and that the device is opened under any
// prefix at once — before the router has seen it, beside the addresses it is
// seen at, once only when it is also the EUI-64 one — as the nft rule the
// firewall installs.

import t from 'tap';
import { mustParseIp } from '../src/net/address.js';
import { NOT_SEEN, eui64Pattern, identifierPattern, resolveDevice, resolveStatics } from '../src/policy/device-openings.js';
import { PolicyError, parsePolicyText, summarize } from '../src/policy/load.js';
import { editedText } from '../src/policy/edit.js';
import { staticRules } from '../src/firewall/nft/ruleset.js';
import type { ConcreteStatic, DeviceOpening } from '../src/domain/mapping.js';

const MAC = '52:54:00:12:34:56';
const file = (device: string) => `version: 1\nrules: []\nstatic:\n  - name: srv\n    device: { mac: "${MAC}", protocol: tcp, ports: 443${device} }\n`;
function opening(device: string): DeviceOpening {
  const d = parsePolicyText(file(device), 'p.yaml').statics[0];
  if (d?.kind !== 'device') throw new Error('not a device opening');
  return d;
}
const problems = (device: string): string[] => {
  try {
    parsePolicyText(file(device), 'p.yaml');
    return [];
  } catch (err) {
    return (err as PolicyError).problems as string[];
  }
};
const targets = (rules: ConcreteStatic[]) => rules.map((r) => (r.kind === 'pinhole' ? r.to.text : `forward ${r.to}:${r.toPort}`));
const placement = { family: 'inet' as const, table: 'portcullis', embedded: false };
const topo = { wans: ['wan0'], lan: ['br-lan'], mark: 0x10000000, guarded: { udp: [5351], tcp: [] } };

t.test('the loader: an identifier is the low 64 bits alone', async (t) => {
  t.equal(opening(', identifier: "::10"').identifier?.text, '::10/::ffff:ffff:ffff:ffff', '::10 under any prefix');
  t.equal(opening(', identifier: "::1:2:3:4"').identifier?.text, '::1:2:3:4/::ffff:ffff:ffff:ffff');
  t.equal(opening(', identifier: "::ABCD:10"').identifier?.text, '::abcd:10/::ffff:ffff:ffff:ffff', 'upper case taken');
  t.equal(opening('').identifier, undefined, 'none: none');
  const expected = /\/static\/0\/device\/identifier: expected an IPv6 interface identifier: the low 64 bits alone, such as ::10 or ::1:2:3:4 \(no prefix, no \/length, not ::\); got /;
  for (const bad of ['2001:db8::10', '::', '::10/64', '::10/::ffff:ffff:ffff:ffff', '192.168.1.10', 'fe80::10%br-lan', '1::', '::ffff:192.168.1.1x', 'ten']) {
    t.match(problems(`, identifier: "${bad}"`), [expected], `refused: ${bad}`);
  }
  t.match(problems(`, identifier: "${'0'.repeat(40)}"`), [/\/static\/0\/device\/identifier/], 'longer than an IPv6 address: refused by the schema');
  t.match(problems(', identifier: 10'), [/\/static\/0\/device\/identifier: expected .*string/], 'a number is not one');
  t.equal(identifierPattern('::0.0.0.16')?.text, '::10/::ffff:ffff:ffff:ffff', 'any IPv6 spelling of it');
});

t.test('not seen yet: the identifier is opened under any prefix at once; without one, nothing is', async (t) => {
  const d = opening(', identifier: "::10"');
  t.same(targets(resolveDevice(d, NOT_SEEN)), ['::10/::ffff:ffff:ffff:ffff'], 'one pinhole, no IPv4 forward (no address known)');
  t.same(resolveDevice(opening(''), NOT_SEEN), [], 'without identifier: nothing until the device is seen');
  const rules = [...staticRules(placement, topo, resolveDevice(d, NOT_SEEN)).values()];
  t.equal(rules.length, 1);
  t.match(rules[0]?.rule, /^ip6 daddr & ::ffff:ffff:ffff:ffff == ::10 meta l4proto tcp th dport 443 /, 'the nft rule matches the low 64 bits under any prefix');
  t.same(targets(resolveStatics([d], () => NOT_SEEN)), ['::10/::ffff:ffff:ffff:ffff'], 'as the daemon resolves every static opening');
});

t.test('seen: its addresses, its EUI-64 mask once seen, and the identifier, each once', async (t) => {
  const d = opening(', identifier: "::10"');
  const seen = { ipv6: [mustParseIp('2001:db8:77::10'), mustParseIp('2001:db8:77::abcd')], ipv4: mustParseIp('192.168.77.10'), eui64: false };
  t.same(targets(resolveDevice(d, seen)), ['2001:db8:77::10', '2001:db8:77::abcd', '::10/::ffff:ffff:ffff:ffff', 'forward 192.168.77.10:443']);
  t.same(targets(resolveDevice(d, { ...seen, eui64: true })), ['2001:db8:77::10', '2001:db8:77::abcd', eui64Pattern(MAC).text, '::10/::ffff:ffff:ffff:ffff', 'forward 192.168.77.10:443']);
  const sameAsEui = opening(', identifier: "::5054:ff:fe12:3456"');
  t.same(targets(resolveDevice(sameAsEui, { ...seen, eui64: true })).filter((x) => x === eui64Pattern(MAC).text).length, 1, 'the EUI-64 identifier set by hand too: one pinhole, not two');
  const v4only = opening(', identifier: "::10", from: 198.51.100.0/24');
  t.same(targets(resolveDevice(v4only, NOT_SEEN)), [], 'a `from` of IPv4 sources only admits nobody over IPv6');
  const v6from = opening(', identifier: "::10", from: "2001:db8:4000::/48"');
  t.match(resolveDevice(v6from, NOT_SEEN), [{ kind: 'pinhole', from: [{ text: '2001:db8:4000::/48' }] }], 'an IPv6 `from` goes with it');
});

t.test('policy check tells it; the admin page\'s editor keeps it', async (t) => {
  t.match(summarize(parsePolicyText(file(', identifier: "::10"'), 'p.yaml')), /device tcp 443 → 52:54:00:12:34:56 \(its current IPv6 addresses and ::10 under any prefix;/);
  const added = editedText('version: 1\nrules: []\n', 'p.yaml', { op: 'add', entry: { name: 'srv', device: { mac: MAC, protocol: 'tcp', ports: 443, identifier: '::10' } } });
  const d = parsePolicyText(added, 'p.yaml').statics[0] as DeviceOpening;
  t.equal(d.identifier?.text, '::10/::ffff:ffff:ffff:ffff', 'written and read back');
});
