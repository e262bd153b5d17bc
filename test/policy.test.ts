// The policy language: matching (CIDR, interface-identifier masks, ranges,
// first match, default deny), limits (defaults, rates, third party, remote
// peers, external ports), every kind of file error with its exact message,
// and the service obeying a policy (refusals per protocol, swaps).

import t from 'tap';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mustParseIp, parsePrefix, type IpAddress, type Prefix } from '../src/net/address.js';
import { parseAddressPattern, parsePortRange, patternMatches, patternCovers } from '../src/domain/patterns.js';
import { DEFAULT_POLICY, PolicyError, builtinPolicy, loadPolicyFile, parsePolicyText, policyFromDocument, summarize, type PolicyDocument } from '../src/policy/load.js';
import { explain } from '../src/policy/explain.js';
import type { PolicyRequest } from '../src/policy/policy.js';
import { encodePcpRequest, decodePcpResponse } from '../src/protocols/pcp/codec.js';
import { encodeNatPmpMapRequest, decodeNatPmpResponse } from '../src/protocols/natpmp/codec.js';
import { OptionCode, ResultCode } from '../src/protocols/pcp/constants.js';
import type { PcpOption } from '../src/protocols/pcp/options.js';
import type { MapRequest } from '../src/domain/requests.js';
import { PREFIX_SHARE } from '../src/net/rate-limit.js';
import { harness } from './helpers/harness.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ip = mustParseIp;
const A = ip('192.168.77.10');
const B = ip('192.168.77.11');
const A6 = ip('2001:db8:77::10');

const ask = (o: Partial<PolicyRequest> = {}): PolicyRequest => ({
  via: 'pcp',
  operation: 'map',
  client: A,
  internalAddress: A,
  protocol: 17,
  internalPort: 40000,
  ...o,
});

const must = <T>(r: { ok: true; value: T } | { ok: false; expected: string }): T => {
  if (!r.ok) throw new Error(r.expected);
  return r.value;
};

function problems(text: string, source = 'p.yaml'): string[] {
  try {
    parsePolicyText(text, source);
  } catch (err) {
    if (err instanceof PolicyError) return [...err.problems];
    throw err;
  }
  return [];
}

t.test('address patterns: exact, CIDR, and an interface identifier under any prefix', async (t) => {
  const iid = must(parseAddressPattern('::1234:5678:abcd:ef01/::ffff:ffff:ffff:ffff'));
  t.equal(iid.form, 'mask');
  t.ok(patternMatches(iid, ip('2001:db8:77::1234:5678:abcd:ef01')), 'matches under one /64');
  t.ok(patternMatches(iid, ip('2001:db8:9999:1:1234:5678:abcd:ef01')), 'and under a renumbered one');
  t.ok(patternMatches(iid, ip('fd00::1234:5678:abcd:ef01')), 'and under the ULA');
  t.notOk(patternMatches(iid, ip('2001:db8:77::1234:5678:abcd:ef02')), 'not another identifier');
  t.notOk(patternMatches(iid, ip('192.168.77.10')), 'never an IPv4 address');

  const v4 = must(parseAddressPattern('192.168.77.0/25'));
  t.equal(v4.form, 'prefix');
  t.ok(patternMatches(v4, ip('192.168.77.127')));
  t.notOk(patternMatches(v4, ip('192.168.77.128')));
  t.equal(must(parseAddressPattern('192.168.77.9/24')).text, '192.168.77.0/24', 'host bits cleared');
  const exact = must(parseAddressPattern('2001:db8::1'));
  t.equal(exact.form, 'exact');
  t.ok(patternMatches(exact, ip('2001:db8:0::1')));
  t.notOk(patternMatches(exact, ip('2001:db8::2')));
  // A contiguous mask is a prefix by another name.
  t.equal(must(parseAddressPattern('2001:db8::/ffff:ffff::')).text, '2001:db8::/32');

  t.notOk(parseAddressPattern('192.168.77.0/33').ok, 'IPv4 prefix longer than 32');
  t.notOk(parseAddressPattern('192.168.77.0/255.255.255.0').ok, 'IPv4 masks are written as CIDR');
  t.notOk(parseAddressPattern('host.example').ok, 'names are never resolved');
  t.notOk(parseAddressPattern('::1/::ffff/1').ok);

  t.ok(patternCovers(must(parseAddressPattern('203.0.113.0/24')), must(parseAddressPattern('203.0.113.5'))));
  t.notOk(patternCovers(must(parseAddressPattern('203.0.113.0/24')), must(parseAddressPattern('203.0.0.0/16'))));
});

t.test('port ranges', async (t) => {
  t.same(must(parsePortRange('1024-65535')), { min: 1024, max: 65535 });
  t.same(must(parsePortRange(443)), { min: 443, max: 443 });
  t.match(parsePortRange('2000-1000'), { ok: false, expected: /start \(2000\) is not above its end \(1000\)/ });
  t.notOk(parsePortRange('65536').ok);
  t.notOk(parsePortRange('80-').ok);
});

const doc = (rules: PolicyDocument['rules'], extra: Partial<PolicyDocument> = {}): PolicyDocument => ({ version: 1, rules, ...extra });

t.test('first match wins; what no rule matches is denied', async (t) => {
  const p = policyFromDocument(
    doc([
      { name: 'deny-a-tcp', action: 'deny', match: { client: '192.168.77.10', protocol: 'tcp' } },
      { name: 'allow-lan', action: 'allow', match: { client: '192.168.77.0/24', internalPorts: ['1024-2000', 3000] } },
      { name: 'allow-a-anything', action: 'allow', match: { client: '192.168.77.10' } },
    ]),
    't',
  ).policy;
  t.match(p.decide(ask({ protocol: 6 })), { allow: false, rule: 'deny-a-tcp' }, 'the earlier deny wins over later allows');
  t.match(p.decide(ask({ internalPort: 1500 })), { allow: true, rule: 'allow-lan' });
  t.match(p.decide(ask({ internalPort: 3000 })), { allow: true, rule: 'allow-lan' }, 'single-port item of a list');
  t.match(p.decide(ask({ internalPort: 2500 })), { allow: true, rule: 'allow-a-anything' }, 'falls through to the next rule');
  t.match(p.decide(ask({ client: B, internalAddress: B, internalPort: 2500 })), { allow: false, rule: '(default deny)', reason: 'no rule matches' });
  t.match(p.decide(ask({ client: A6, internalAddress: A6, internalPort: 1500 })), { allow: false, rule: '(default deny)' }, 'an IPv4 CIDR never matches IPv6');
});

t.test('matching on interface, via, operation and external ports', async (t) => {
  const p = policyFromDocument(
    doc([
      { name: 'iot', action: 'deny', match: { interface: 'br-iot' } },
      { name: 'upnp-low', action: 'deny', match: { via: 'upnp', externalPorts: '1-1023' } },
      { name: 'pinholes-only-udp', action: 'deny', match: { operation: 'pinhole', protocol: 'tcp' } },
      { name: 'no-peer', action: 'deny', match: { operation: ['peer'] } },
      { name: 'rest', action: 'allow', match: { internalPorts: '1-65535' } },
    ]),
    't',
  ).policy;
  t.match(p.decide(ask({ interface: 'br-iot' })), { allow: false, rule: 'iot' });
  t.match(p.decide(ask({ interface: 'br-lan' })), { allow: true, rule: 'rest' });
  t.match(p.decide(ask({ via: 'upnp', requiredExternalPort: 80 })), { allow: false, rule: 'upnp-low' }, 'an insisted-on low port over UPnP');
  t.match(p.decide(ask({ via: 'pcp', requiredExternalPort: 80 })), { allow: true }, 'over PCP the rule does not apply');
  t.match(p.decide(ask({ via: 'upnp' })), { allow: true }, 'a UPnP hint (AddAnyPortMapping) is not refused: allocation is limited instead');
  t.match(p.decide(ask({ client: A6, internalAddress: A6, protocol: 6 })), { allow: false, rule: 'pinholes-only-udp' });
  t.match(p.decide(ask({ protocol: 6 })), { allow: true }, 'an IPv4 TCP map is not a pinhole');
  t.match(p.decide(ask({ operation: 'peer' })), { allow: false, rule: 'no-peer' });
});

t.test('limits: defaults, then the rule, key by key; allocation range from externalPorts', async (t) => {
  const p = policyFromDocument(
    doc(
      [
        { name: 'narrow', action: 'allow', match: { client: '192.168.77.10', externalPorts: '20000-29999' }, limits: { maxLifetime: 600 } },
        { name: 'wide', action: 'allow' },
      ],
      { defaults: { maxMappingsPerClient: 5, requestsPerSecond: 3 } },
    ),
    't',
  ).policy;
  const v = p.decide(ask());
  t.match(v, { allow: true, limits: { maxLifetime: 600, maxMappingsPerClient: 5, requestsPerSecond: 3, burst: 6, externalPorts: [{ min: 20000, max: 29999 }], thirdParty: false } });
  t.match(p.decide(ask({ client: B, internalAddress: B })), { allow: true, limits: { maxLifetime: 86400, maxMappingsPerClient: 5, externalPorts: [{ min: 1024, max: 65535 }] } });
  t.match(builtinPolicy().policy.decide(ask()), { allow: true, limits: { maxLifetime: 86400, maxMappingsPerClient: 128, requestsPerSecond: 10, burst: 20, thirdParty: false } }, 'the shipped default');
  t.match(builtinPolicy().policy.decide(ask({ internalPort: 80 })), { allow: false }, 'no ports below 1024 by default');
});

t.test('disjoint externalPorts stay disjoint: no port in a gap is ever allocated', async (t) => {
  const p = policyFromDocument(doc([{ name: 'two-ranges', action: 'allow', match: { externalPorts: ['2000-2001', '60000-60001'] } }]), 't').policy;
  const v = p.decide(ask());
  t.match(v, { allow: true, limits: { externalPorts: [{ min: 2000, max: 2001 }, { min: 60000, max: 60001 }] } }, 'two ranges, not 2000-60001');
  const h = harness({ policy: p });
  const A6b = ip('2001:db8:77::11');
  const given: number[] = [];
  // Hints in the gap, hints in a range, and no hint at all: every grant is inside a range.
  for (const [i, hint] of [30000, 2000, 40000, 0, 59999, 0, 0].entries()) {
    const r = await h.service.map({ via: 'pcp', client: A, internalAddress: A, protocol: 17, internalPort: 30000 + i, suggestedExternalPort: hint, lifetime: 600 });
    if (r.ok) given.push(r.mapping.externalPort);
    else t.equal(r.refusal, 'NO_RESOURCES', `refused only when both ranges are full (${r.detail})`);
  }
  t.same([...given].sort((x, y) => x - y), [2000, 2001, 60000, 60001], 'the four ports of the two ranges, nothing between');
  t.equal(h.firewall.list().filter((e) => e.externalPort > 2001 && e.externalPort < 60000).length, 0, 'the kernel has nothing in the gap');
  // A pinhole does not translate ports: the ranges do not apply to it.
  t.match(await h.service.map({ via: 'pcp', client: A6b, internalAddress: A6b, protocol: 17, internalPort: 30000, suggestedExternalPort: 0, lifetime: 600 }), { ok: true });
});

t.test('limits: third party, remote peers, same external port', async (t) => {
  const p = policyFromDocument(
    doc([
      { name: 'nas', action: 'allow', match: { client: '192.168.77.10' }, limits: { thirdParty: true, remotePeers: ['203.0.113.0/24'], externalPortMayDiffer: false } },
      { name: 'rest', action: 'allow' },
    ]),
    't',
  ).policy;
  const remotes = (...r: string[]) => r.map((x) => ({ prefix: parsePrefix(x) as Prefix, port: 0 }));
  t.match(p.decide(ask({ internalAddress: B, filters: remotes('203.0.113.5/32') })), { allow: true }, 'for another host, inside the allowed peers');
  t.match(p.decide(ask({ filters: [] })), { allow: false, reason: /must be restricted to remote peers in 203\.0\.113\.0\/24/ }, 'unrestricted is refused');
  t.match(p.decide(ask({ filters: remotes('203.0.0.0/16') })), { allow: false, reason: /remote peer 203\.0\.0\.0\/16 is outside/ });
  t.match(p.decide(ask({ filters: remotes('203.0.113.0/25'), requiredExternalPort: 40001 })), { allow: false, reason: /external port must equal the internal port/ });
  t.match(p.decide(ask({ client: B, internalAddress: A })), { allow: false, reason: 'mappings for another host are not allowed' }, 'third party off by default');
});

t.test('request rate: a token bucket per client and rule', async (t) => {
  let now = 0;
  const p = policyFromDocument(doc([{ name: 'r', action: 'allow', limits: { requestsPerSecond: 2, burst: 3 } }]), 't', () => now).policy;
  const v = p.decide(ask());
  if (!v.allow) throw new Error('allowed expected');
  t.same([1, 2, 3, 4].map(() => p.takeToken(v, A)), [true, true, true, false], 'the burst, then refused');
  t.ok(p.takeToken(v, B), 'another client has its own bucket');
  now += 500;
  t.same([p.takeToken(v, A), p.takeToken(v, A)], [true, false], 'one token back after half a second at 2/s');
  // A host is its /64, not an address: new addresses in it share one larger bucket.
  const many = Array.from({ length: 2000 }, (_, i) => ip(`2001:db8:77::a:${(i + 1).toString(16)}`));
  const granted = many.filter((c) => p.takeToken(v, c)).length;
  t.equal(granted, 3 * PREFIX_SHARE, `2 000 addresses of one /64 get the /64's burst (${3 * PREFIX_SHARE}), not 2 000 bursts`);
  t.ok(p.takeToken(v, ip('2001:db8:78::1')), 'a host in another /64 is still served');
  now += 1000;
  const again = many.filter((c) => p.takeToken(v, c)).length;
  t.equal(again, 2 * PREFIX_SHARE, 'a second later: the /64 rate (4 × 2/s), not 2 000 × 2/s');
  const unlimited = policyFromDocument(doc([{ name: 'u', action: 'allow', limits: { requestsPerSecond: 0 } }]), 't').policy;
  const u = unlimited.decide(ask());
  if (!u.allow) throw new Error('allowed expected');
  t.ok(Array.from({ length: 1000 }, () => unlimited.takeToken(u, A)).every(Boolean), '0 = unlimited');
});

t.test('file errors: file, line, JSON path and what was expected', async (t) => {
  t.same(problems('version: 1\nrules:\n  - action: allow\n    match: { protocol: sctp }\n'), [
    'p.yaml:4: /rules/0/match/protocol: expected one of udp, tcp, any; got "sctp"',
  ]);
  t.same(problems('version: 1\nrules:\n  - name: x\n'), ["p.yaml:3: /rules/0: missing required key 'action'"]);
  t.same(problems('version: 1\nrules:\n  - action: allow\n    mtach: {}\n'), [
    "p.yaml:3: /rules/0: unknown key 'mtach' (expected one of: name, description, action, match, limits)",
  ]);
  t.same(problems('version: 2\nrules: []\n'), ['p.yaml:1: /version: expected 1; got 2']);
  t.same(problems('rules: []\n'), ["p.yaml:1: (top level): missing required key 'version'"]);
  t.same(problems('version: 1\nrules:\n  - action: allow\n    match:\n      internalPorts: "1024-x"\n'), [
    'p.yaml:5: /rules/0/match/internalPorts: expected a port (0-65535), a range like "1024-65535", or a list of them; got "1024-x"',
  ]);
  t.same(problems('version: 1\nrules:\n  - action: allow\n    match:\n      internalPorts: [80, "9000-8000"]\n'), [
    'p.yaml:5: /rules/0/match/internalPorts/1: expected a range whose start (9000) is not above its end (8000); got "9000-8000"',
  ]);
  t.same(problems('version: 1\nrules:\n  - action: allow\n    match:\n      client: [10.0.0.0/8, "fe80::/1234"]\n'), [
    'p.yaml:5: /rules/0/match/client/1: expected a prefix length of at most 128; got "fe80::/1234"',
  ]);
  t.same(problems('version: 1\nrules:\n  - action: allow\n    limits: { maxLifetime: 0 }\n'), ['p.yaml:4: /rules/0/limits/maxLifetime: expected >= 1; got 0']);
  t.same(problems('version: 1\nrules:\n  - action: allow\n    match: { via: [pcp, smtp] }\n'), [
    'p.yaml:4: /rules/0/match/via/1: expected one of pcp, natpmp, upnp; got "smtp"',
  ]);
  t.same(problems('version: 1\nrules:\n  - action: deny\n    limits: { maxLifetime: 60 }\n'), ['p.yaml:4: /rules/0/limits: a deny rule takes no limits']);
  t.same(problems('version: 1\nrules:\n  - { name: a, action: allow }\n  - { name: a, action: deny }\n'), [
    'p.yaml:4: /rules/1/name: rule name "a" is already used at /rules/0/name',
  ]);
  t.same(problems('version: 1\nrules: []\nstatic:\n  - name: s\n'), ["p.yaml:4: /static/0: give exactly one of 'pinhole', 'forward' or 'device'"]);
  t.same(problems('version: 1\nrules: []\nstatic:\n  - name: s\n    forward: { protocol: udp, port: 80, to: "2001:db8::1" }\n'), [
    'p.yaml:5: /static/0/forward/to: expected an IPv4 unicast address of a LAN host; got "2001:db8::1"',
  ]);
  t.same(problems('version: 1\nrules: []\nstatic:\n  - name: s\n    pinhole: { to: 192.168.1.1, protocol: tcp, ports: 443 }\n'), [
    'p.yaml:5: /static/0/pinhole/to: expected an IPv6 address pattern; got "192.168.1.1"',
  ]);
  t.same(
    problems('version: 1\nrules: []\nstatic:\n  - name: a\n    forward: { protocol: udp, port: 80, to: 10.0.0.2 }\n  - name: b\n    forward: { protocol: udp, port: 80, to: 10.0.0.3 }\n'),
    ['p.yaml:7: /static/1/forward/port: udp/80 is already forwarded by /static/0'],
  );
  t.same(problems('version: 1\nrules: [\n'), ['p.yaml:3: not valid YAML/JSON: Flow sequence in block collection must be sufficiently indented and end with a ]'], 'a syntax error');
  t.match(problems('version: 1\nversion: 1\nrules: []\n')[0], /^p\.yaml:2: not valid YAML\/JSON: Map keys must be unique/, 'duplicate keys are an error, not a silent override');
  t.same(problems('{\n  "version": 1,\n  "rules": [\n    { "action": "maybe" }\n  ]\n}\n', 'p.json'), [
    'p.json:4: /rules/0/action: expected one of allow, deny; got "maybe"',
  ], 'JSON files get line numbers too');
  t.equal(problems('version: 1\nrules:\n  - action: allow\n    match: { protocol: sctp, via: smtp }\n    limits: { burst: 0 }\n').length, 3, 'every problem at once');
});

t.test('a file that cannot be read says so', async (t) => {
  t.throws(() => loadPolicyFile('/nonexistent/policy.yaml'), { message: /^\/nonexistent\/policy\.yaml: cannot read: ENOENT/ });
});

t.test('the shipped files: examples/default-policy.yaml is the built-in default; examples/policy.yaml is valid', async (t) => {
  const file = loadPolicyFile(join(ROOT, 'examples/default-policy.yaml'));
  t.same(JSON.parse(JSON.stringify(file.rules)), JSON.parse(JSON.stringify(builtinPolicy().rules)));
  t.same(file.statics, []);
  const example = loadPolicyFile(join(ROOT, 'examples/policy.yaml'));
  t.equal(example.rules.length, 5);
  t.equal(example.statics.length, 3);
  t.match(summarize(example), /static "nas-https": device tcp 443 → 52:54:00:12:34:56 \(its current IPv6 addresses; IPv4 forwarded from the same ports\)/);
  t.match(summarize(example), /static "home-server-https": pinhole tcp 443 → ::1234:5678:abcd:ef01\/::ffff:ffff:ffff:ffff/);
  // The schema is a plain JSON Schema an editor can use.
  const schema = JSON.parse(readFileSync(join(ROOT, 'schema/policy.schema.json'), 'utf8')) as { $schema: string };
  t.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
  t.same(DEFAULT_POLICY.rules.length, 1);
});

t.test('explain walks the rules like the service', async (t) => {
  const p = loadPolicyFile(join(ROOT, 'examples/policy.yaml'));
  const console = explain(p, ask({ client: ip('2001:db8:9::1a2b:3cff:fe4d:5e6f'), internalAddress: ip('2001:db8:9::1a2b:3cff:fe4d:5e6f'), internalPort: 3074 }));
  t.ok(console.allowed);
  t.match(console.text, /rule 1 "no-iot" .*: no match: interface \(unknown\) is not br-iot/);
  t.match(console.text, /verdict: ALLOW by rule 2 "console"\nlimits: lifetime ≤ 86400 s; 32 mappings per client/);
  const low = explain(p, ask({ client: ip('192.168.1.50'), internalAddress: ip('192.168.1.50'), protocol: 6, internalPort: 8080, via: 'upnp', requiredExternalPort: 80 }));
  t.notOk(low.allowed);
  t.match(low.text, /verdict: DENY by rule 4 "upnp-no-low-ports"/);
});

// --- the service obeying a policy ---------------------------------------

const NONCE = Buffer.from('0102030405060708090a0b0c', 'hex');
const mapReq = (o: Partial<MapRequest> = {}): MapRequest => ({ via: 'pcp', client: A, internalAddress: A, protocol: 17, internalPort: 40000, suggestedExternalPort: 0, lifetime: 3600, nonce: NONCE, ...o });
const pcpMap = (client: IpAddress, port: number, proto = 17, options: PcpOption[] = []) =>
  encodePcpRequest({ opcode: 1, lifetime: 3600, clientAddress: client, map: { nonce: NONCE, protocol: proto, internalPort: port, externalPort: 0, externalAddress: ip('0.0.0.0') }, options });

t.test('the service: denials and rates on the wire of each protocol', async (t) => {
  let now = 0;
  const p = policyFromDocument(
    doc([
      { name: 'no-tcp', action: 'deny', match: { protocol: 'tcp' } },
      { name: 'udp', action: 'allow', match: { internalPorts: '1024-65535' }, limits: { requestsPerSecond: 1, burst: 1 } },
    ]),
    't',
    () => now,
  ).policy;
  const h = harness({ policy: p });
  const denied = decodePcpResponse(await h.send(A, pcpMap(A, 40000, 6)) as Buffer);
  t.match(denied, { ok: true, msg: { result: ResultCode.NOT_AUTHORIZED } }, 'PCP: NOT_AUTHORIZED');
  const nat = decodeNatPmpResponse(await h.send(A, encodeNatPmpMapRequest(2, 40000, 40000, 3600)) as Buffer);
  t.match(nat, { ok: true, msg: { result: 2 } }, 'NAT-PMP: 2 (not authorized)');
  t.match(decodePcpResponse(await h.send(A, pcpMap(A, 40001)) as Buffer), { ok: true, msg: { result: ResultCode.SUCCESS } });
  const limited = decodePcpResponse(await h.send(A, pcpMap(A, 40002)) as Buffer);
  t.match(limited, { ok: true, msg: { result: ResultCode.NO_RESOURCES } }, 'PCP over the rate: NO_RESOURCES');
  t.match(decodePcpResponse(await h.send(B, pcpMap(B, 40002)) as Buffer), { ok: true, msg: { result: ResultCode.SUCCESS } }, 'another client is unaffected');
  const natLimited = decodeNatPmpResponse(await h.send(A, encodeNatPmpMapRequest(1, 40003, 40003, 3600)) as Buffer);
  t.match(natLimited, { ok: true, msg: { result: 4 } }, 'NAT-PMP over the rate: 4 (out of resources)');
  now += 1000;
  t.match(decodePcpResponse(await h.send(A, pcpMap(A, 40002)) as Buffer), { ok: true, msg: { result: ResultCode.SUCCESS } }, 'a second later: granted');
  t.equal(h.firewall.list().length, 3, 'only granted requests reached the firewall');
});

t.test('the service: a third-party request is UNSUPP_OPTION only when the third party is the problem', async (t) => {
  const p = policyFromDocument(doc([{ name: 'high', action: 'allow', match: { internalPorts: '1024-65535' } }]), 't').policy;
  const h = harness({ policy: p });
  const forB: PcpOption[] = [{ code: OptionCode.THIRD_PARTY, address: B, v4: true }];
  t.match(decodePcpResponse(await h.send(A, pcpMap(A, 40000, 17, forB)) as Buffer), { ok: true, msg: { result: ResultCode.UNSUPP_OPTION } }, 'allowed for itself → UNSUPP_OPTION');
  t.match(decodePcpResponse(await h.send(A, pcpMap(A, 80, 17, forB)) as Buffer), { ok: true, msg: { result: ResultCode.NOT_AUTHORIZED } }, 'not even for itself → NOT_AUTHORIZED');
});

t.test('the service: a policy swap revokes what the new policy denies, and static forwards win their port', async (t) => {
  const h = harness();
  t.match(await h.service.map(mapReq({ internalPort: 40000, suggestedExternalPort: 40000 })), { ok: true });
  t.match(await h.service.map(mapReq({ client: B, internalAddress: B, internalPort: 5000, suggestedExternalPort: 5000 })), { ok: true, mapping: { externalPort: 5000 } });
  t.match(await h.service.map(mapReq({ internalPort: 41000, suggestedExternalPort: 41000 })), { ok: true });
  const next = policyFromDocument(
    doc(
      [
        { name: 'no-40000', action: 'deny', match: { internalPorts: 40000 } },
        { name: 'high', action: 'allow', match: { internalPorts: '1024-65535' } },
      ],
      { static: [{ name: 'fwd', forward: { protocol: 'udp', port: 5000, to: '192.168.77.20', toPort: 5001 } }] },
    ),
    't',
  );
  const report = await h.service.swapPolicy(next.policy, next.statics);
  t.same(report.removed.map((r) => [r.mapping.internalPort, r.rule]), [[40000, 'no-40000']], 'revoked with the rule that denies it');
  t.same(report.evicted.map((m) => m.internalAddress), [B], "B's mapping on external port 5000 gave way to the forward");
  t.equal(report.staticsAdded, 1);
  t.same(h.firewall.list().map((e) => e.internalPort).sort(), [41000], 'the kernel keeps only what is still allowed');
  t.match(h.log.lines.find((l) => l.event === 'mapping-revoked'), { rule: 'no-40000', internalPort: 40000 });
  const statics = h.service.mappings((m) => m.origin === 'static');
  t.match(statics, [{ origin: 'static', externalPort: 5000, internalAddress: '192.168.77.20', internalPort: 5001, description: 'static:fwd' }]);
  t.match(await h.service.remove({ via: 'pcp', client: ip('192.168.77.20'), internalAddress: ip('192.168.77.20'), protocol: 17, internalPort: 5001 }), { ok: false, refusal: 'NOT_AUTHORIZED' }, 'not deletable by a client');
  const again = await h.service.swapPolicy(next.policy, next.statics);
  t.same([again.staticsAdded, again.staticsRemoved, again.removed.length], [0, 0, 0], 'the same policy again changes nothing');
  t.equal(h.service.mappings((m) => m.origin === 'static')[0], statics[0], 'the static mapping object is untouched');
  const gone = await h.service.swapPolicy(next.policy, []);
  t.equal(gone.staticsRemoved, 1);
  t.same(h.service.mappings((m) => m.origin === 'static'), []);
});

t.test('a policy file on disk, changed and loaded again', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-policy-'));
  const f = join(dir, 'p.yaml');
  writeFileSync(f, 'version: 1\nrules:\n  - action: allow\n');
  t.equal(loadPolicyFile(f).rules[0]?.name, '#1', 'an unnamed rule is called by its position');
  writeFileSync(f, 'version: 1\nrules:\n  - action: allow\n    match: { client: host.example }\n');
  t.throws(() => loadPolicyFile(f), { message: /p\.yaml:4: \/rules\/0\/match\/client: expected an IPv4\/IPv6 address, a CIDR prefix/ });
});
