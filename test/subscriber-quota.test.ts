// The ISP side of the PCP proxy (issue 14): a policy that lets a subscriber
// (its CPE) map for its hosts with THIRD_PARTY, and the subscriber's quota:
// the mappings it asked for, for all its hosts, count together.

import t from 'tap';
import { harness } from './helpers/harness.js';
import { mustParseIp } from '../src/net/address.js';
import { policyFromDocument, type PolicyDocument } from '../src/policy/load.js';
import { decodePcpResponse } from '../src/protocols/pcp/codec.js';
import { ResultCode } from '../src/protocols/pcp/constants.js';
import { mapRequestBytes } from '../src/client/pcp-client.js';

const CPE = mustParseIp('192.168.77.2');
const OTHER = mustParseIp('192.168.77.6');
const doc = {
  version: 1,
  rules: [{ name: 'subscribers', action: 'allow', match: { internalPorts: '1024-65535' }, limits: { maxMappingsPerClient: 2, thirdParty: true, requestsPerSecond: 0 } }],
} as unknown as PolicyDocument;

function setup() {
  const h = harness({ policy: policyFromDocument(doc, 'test').policy });
  const map = (client: string, host: string, port: number) =>
    h.service.map({ via: 'pcp', client: mustParseIp(client), internalAddress: mustParseIp(host), protocol: 17, internalPort: port, suggestedExternalPort: 0, lifetime: 600 });
  return { h, map };
}

t.test('a subscriber\'s THIRD_PARTY mappings for all its hosts count against one quota', async (t) => {
  const { h, map } = setup();
  t.ok((await map(CPE, '192.168.77.3', 40001)).ok, 'first host');
  t.ok((await map(CPE, '192.168.77.4', 40001)).ok, 'second host');
  t.match(await map(CPE, '192.168.77.5', 40001), { ok: false, refusal: 'USER_EX_QUOTA', detail: /192\.168\.77\.2 holds 2 mappings for its hosts/ }, 'a third host: over the subscriber\'s quota though that host holds none');
  t.ok((await map(OTHER, '192.168.77.7', 40001)).ok, 'another subscriber has its own quota');
  t.ok((await map(CPE, '192.168.77.3', 40001)).ok, 'a renewal is not a new mapping');
  await h.service.remove({ via: 'pcp', client: CPE, internalAddress: mustParseIp('192.168.77.4'), protocol: 17, internalPort: 40001 });
  t.ok((await map(CPE, '192.168.77.5', 40001)).ok, 'room again after a removal');
  t.equal(h.table.countByRequester(CPE), 2);
});

t.test('on the wire: PCP MAP with THIRD_PARTY over the quota is USER_EX_QUOTA', async (t) => {
  const { h } = setup();
  const ask = (host: string) => h.send(CPE, mapRequestBytes({ client: CPE, protocol: 17, internalPort: 40002, lifetime: 600, thirdParty: mustParseIp(host) }));
  for (const host of ['192.168.77.3', '192.168.77.4']) {
    const r = await ask(host);
    t.equal(r && decodePcpResponse(r).ok && (decodePcpResponse(r) as { msg: { result: number } }).msg.result, ResultCode.SUCCESS, host);
  }
  const over = await ask('192.168.77.5');
  const d = over ? decodePcpResponse(over) : undefined;
  t.equal(d?.ok && d.msg.result, ResultCode.USER_EX_QUOTA);
});
