// Issue 14: PEER and FILTER through the proxy, in the double-NAT lab
// (scripts/lab-cgn.sh) with real nftables on both routers. A LAN host's
// PCP PEER (built here byte by byte: `portcullis pcp` has no PEER) gets the
// ISP's public address and a port, and its outbound flow to the remote
// peer leaves the ISP from exactly that address and port (RFC 7648 §3: the
// proxy handles PEER like MAP, and the client learns upstream's external
// endpoint). A MAP with a FILTER is filtered at the ISP too: the ISP's
// kernel holds the mapping in its filtered map, keyed by the remote, and
// the datagram reaches the LAN host with the remote's own source (no router
// on the way puts its address in: ruleset.ts, the hairpin SNAT is a LAN's).

import t from 'tap';
import { lanClients } from './helpers/lab.js';
import { pcpPeer } from './helpers/pcp-peer.js';
import { PUBLIC, cgnLab } from './helpers/cgn-lab.js';
import { reaches, sourceSeen } from './helpers/reach.js';

const c = await cgnLab(`cp${process.pid % 10000}`, t);
const { lab } = c;
const { pcp } = lanClients(lab, '192.168.77.1');

const peer = (internalPort: number, remotePort: number, lifetime: number) => pcpPeer(lab, internalPort, '11.22.33.2', remotePort, lifetime);

t.test('PEER: upstream\'s address and port told, and the flow leaves the ISP from them', async (t) => {
  const r = peer(40030, 3478, 600);
  t.match(r, { result: 0, externalAddress: PUBLIC }, 'SUCCESS with the ISP\'s public address, not the CPE\'s 100.64.0.2');
  t.ok(r.lifetime > 0 && r.lifetime <= 600, `lifetime ${r.lifetime}`);
  const seen = await sourceSeen(lab, { proto: 'udp', listen: 'wan', port: 3478, from: 'lan', fromPort: 40030, to: '11.22.33.2' });
  t.equal(seen, `${PUBLIC}:${r.externalPort}`, 'the remote peer sees the flow from the endpoint the client was told');
  const isp = lab.exec('isp', ['nft', 'list', 'map', 'inet', 'portcullis', 'dnat4_filtered']).stdout;
  t.match(isp, new RegExp(`11\\.22\\.33\\.1 \\. udp \\. ${r.externalPort} \\. 11\\.22\\.33\\.2 \\. 3478 .*: 100\\.64\\.0\\.2 \\. \\d+`), 'the ISP holds a PEER mapping for the CPE, to that remote peer');
});

t.test('FILTER: the ISP filters too', async (t) => {
  const r = pcp('--proto', 'udp', '--port', '40031', '--lifetime', '600', '--filter', '11.22.33.2/32');
  t.match(r, { result: 'SUCCESS', externalAddress: PUBLIC });
  const filtered = lab.exec('isp', ['nft', 'list', 'map', 'inet', 'portcullis', 'dnat4_filtered']).stdout;
  t.match(filtered, new RegExp(`11\\.22\\.33\\.1 \\. udp \\. ${r.externalPort} \\. 11\\.22\\.33\\.2 \\. 0-65535 .*: 100\\.64\\.0\\.2 \\. 40031`), 'the ISP\'s mapping is keyed by the remote');
  const open = lab.exec('isp', ['nft', '-j', 'list', 'map', 'inet', 'portcullis', 'dnat4']).stdout;
  t.notMatch(open, /"100\.64\.0\.2"/, 'and no unfiltered one at the ISP');
  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40031, to: PUBLIC, toPort: r.externalPort as number }), 'the allowed remote reaches the LAN host');
  const seen = await sourceSeen(lab, { proto: 'udp', listen: 'lan', port: 40031, from: 'wan', fromPort: 5555, to: PUBLIC, toPort: r.externalPort as number });
  t.equal(seen, '11.22.33.2:5555', 'with the remote\'s own source: the CPE\'s filter and the LAN host see who sent it');
});
