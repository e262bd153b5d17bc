// Requests captured from real UPnP clients (rfc-vectors/captures: upnpc,
// upnpc -6, @achingbrain/nat-port-mapper), read out of the pcapng by tshark
// and replayed in order through our parsers and the IGD actions over the
// service. Real clients' requests must all be understood (no 401/402), and
// what they ask for must happen.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { mustParseIp } from '../src/net/address.js';
import { HttpRequestParser } from '../src/protocols/upnp/http.js';
import { IgdControl, type ActionResult } from '../src/protocols/upnp/igd.js';
import { parseSoapAction, parseSoapRequest } from '../src/protocols/upnp/soap.js';
import { parseSsdp, searchAnswers, validateSearch } from '../src/protocols/upnp/ssdp.js';
import { igdTree } from '../src/protocols/upnp/device-tree.js';
import { harness } from './helpers/harness.js';

const CAPTURE = fileURLToPath(new URL('../../rfc-vectors/captures/real-client-requests.pcapng', import.meta.url));
// The UPnP part of the capture starts at frame 13 (frames 1-12 are NAT-PMP and PCP).
const FIRST_UPNP_FRAME = 13;

interface Frame {
  n: number;
  source: string;
  udp: Buffer;
  tcp: Buffer;
}

function frames(): Frame[] {
  const r = spawnSync('tshark', ['-r', CAPTURE, '-T', 'fields', '-E', 'separator=/t', '-e', 'frame.number', '-e', 'ip.src', '-e', 'ipv6.src', '-e', 'udp.payload', '-e', 'tcp.payload'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`tshark failed: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [n = '', v4 = '', v6 = '', udp = '', tcp = ''] = line.split('\t');
      return { n: Number(n), source: v4 || v6, udp: Buffer.from(udp.replace(/:/g, ''), 'hex'), tcp: Buffer.from(tcp.replace(/:/g, ''), 'hex') };
    })
    .filter((f) => f.n >= FIRST_UPNP_FRAME && (f.udp.length || f.tcp.length));
}

t.test('every captured UPnP request is understood and does what the client meant', async (t) => {
  t.ok(existsSync(CAPTURE), 'the capture is in the repository');
  const h = harness();
  // The capture's client is 192.168.77.2 / 2001:db8:77::2: inside the harness LAN.
  const igd = new IgdControl(h.service, {
    uptime: () => 1,
    linkUp: () => true,
    wanCounters: () => ({ txBytes: 0, rxBytes: 0, txPackets: 0, rxPackets: 0, speedMbps: 1000 }),
    outboundTimeout: () => 120,
    sameHost: () => false,
  });
  const tree = igdTree('5d5b2a8e-7a11-4e0b-9a3e-1c2d3e4f5a6b', 2);
  const seen = { searches: 0, gets: 0, actions: new Map<string, number>() };
  const results: { frame: number; action: string; result: ActionResult }[] = [];
  for (const f of frames()) {
    if (f.udp.length) {
      const parsed = parseSsdp(f.udp);
      t.ok(parsed.ok, `frame ${f.n}: SSDP parses`);
      if (!parsed.ok || parsed.msg.method !== 'M-SEARCH') continue;
      const v = validateSearch(parsed.msg, { multicast: true });
      t.ok(v.ok && searchAnswers(v.st, tree).length > 0, `frame ${f.n}: search for ${parsed.msg.st} is answered`);
      seen.searches++;
      continue;
    }
    const step = new HttpRequestParser().feed(f.tcp);
    if (step.state === 'need-more') continue; // a continuation segment
    t.equal(step.state, 'request', `frame ${f.n}: HTTP parses`);
    if (step.state !== 'request') continue;
    const req = step.request;
    if (req.method === 'GET') {
      seen.gets++;
      continue;
    }
    const header = parseSoapAction(req.headers.get('soapaction'));
    t.ok(header.ok, `frame ${f.n}: SOAPACTION parses`);
    if (!header.ok) continue;
    const soap = parseSoapRequest(req.body.toString('utf8'), header);
    t.ok(soap.ok, `frame ${f.n}: ${header.action} body parses`);
    if (!soap.ok) continue;
    const result = await igd.handle({ serviceName: soap.serviceName, serviceVersion: soap.serviceVersion, action: soap.action, args: soap.args, client: mustParseIp(f.source) });
    results.push({ frame: f.n, action: soap.action, result });
    seen.actions.set(soap.action, (seen.actions.get(soap.action) ?? 0) + 1);
    if (!result.ok) t.not(result.error.code, 401, `frame ${f.n}: ${soap.action} is known`), t.not(result.error.code, 402, `frame ${f.n}: ${soap.action}'s arguments are valid (${result.detail})`);
  }
  t.ok(seen.searches >= 5, `searches replayed (${seen.searches})`);
  t.ok(seen.gets >= 5, `description fetches parsed (${seen.gets})`);
  for (const a of ['GetStatusInfo', 'GetExternalIPAddress', 'AddPortMapping', 'GetGenericPortMappingEntry', 'DeletePortMapping', 'AddPinhole', 'AddAnyPortMapping', 'GetCommonLinkProperties']) {
    t.ok(seen.actions.get(a), `the capture exercises ${a}`);
  }
  const failures = results.filter((r) => !r.result.ok).map((r) => `${r.frame} ${r.action} ${r.result.ok ? '' : r.result.error.code}`);
  // Two refusals are right: the end of upnpc's listing, and frame 54, an
  // AddPinhole whose arguments were given in the wrong order (InternalClient
  // a WAN host, InternalPort 0, RemoteHost the LAN host).
  t.same(
    failures.filter((f) => !/GetGenericPortMappingEntry 713$/.test(f)),
    ['54 AddPinhole 706'],
    'no other action failed; the garbled pinhole is refused (InternalPort 0: 706)',
  );
  t.ok(failures.some((f) => /GetGenericPortMappingEntry 713$/.test(f)), 'upnpc -l ended its listing at 713');
  const anyMap = results.find((r) => r.action === 'AddAnyPortMapping');
  t.match(anyMap?.result, { ok: true, out: [['NewReservedPort', '40031']] }, 'nat-port-mapper got its port');
  t.equal(h.service.byKey('map|192.168.77.2|6|40031'), undefined, 'and its DeletePortMapping with an empty NewProtocol removed it');
  t.notOk(h.service.mappings().some((m) => m.family === 6), 'and opened nothing');
  const add = results.find((r) => r.action === 'AddPortMapping');
  const specific = results.find((r) => r.action === 'GetSpecificPortMappingEntry');
  t.ok(add?.result.ok && specific?.result.ok, "upnpc's AddPortMapping made the mapping its GetSpecificPortMappingEntry then found");
  t.same(h.service.mappings().filter((m) => m.origin === 'upnp'), [], 'both clients deleted what they made');
});
