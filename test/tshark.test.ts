// Every well-formed request vector and every datagram the daemon sends,
// decoded by an independent implementation: Wireshark's dissectors, through
// tshark (Debian package `tshark`). Our own decoder agreeing with our own
// encoder proves little; a third party reading the bytes without "Malformed"
// or an error-severity expert mark is evidence the wire format is right.
// Deliberately malformed request vectors are left out (tshark is right to
// complain about them); the daemon's replies to them are kept.
//
// All packets go into one pcap and tshark runs once: it takes about 0.2 s to
// start, and one run per packet (over 200 of them) would take most of a minute.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { NatPmpResult, NATPMP_ANNOUNCE_GROUP, encodeExternalAddressResponse } from '../src/protocols/natpmp/codec.js';
import { Opcode, PCP_CLIENT_PORT, PCP_SERVER_PORT } from '../src/protocols/pcp/constants.js';
import { encodePcpResponse } from '../src/protocols/pcp/codec.js';
import { EXTERNAL, harness } from './helpers/harness.js';
import { writePcap, type UdpPacket } from './helpers/pcap.js';
import { loadVectors } from './helpers/vectors.js';

const TSHARK = 'tshark';
const CLIENT_PORT = 40000;
const ROUTER_V4 = '192.168.77.1';
const ROUTER_V6 = '2001:db8:77::1';
const ROUTER_LINK_LOCAL = 'fe80::1';
/** Top-level tree lines tshark -V prints for the two dissectors. */
const PCP_TREE = 'Port Control Protocol';
const NATPMP_TREE = 'NAT Port Mapping Protocol';

interface Labelled extends UdpPacket {
  /** Names the packet in assertion messages: vector file and direction. */
  label: string;
  /**
   * An error reply to a deliberately malformed request: RFC 6887 §7.3 makes
   * it a copy of the request, bad option and all, so tshark is right to
   * trip on the same bytes. Exempt like the request it copies.
   */
  echoOfMalformed?: boolean;
}

/**
 * Wireshark's portcontrol dissector (packet-nat-pmp.c, 4.0) computes an
 * option's padding once and never resets it: an option whose length is a
 * multiple of 4, after one that needed padding, is read 1-3 octets too far
 * and reported Malformed. True when a PCP payload has that shape — such
 * frames are well-formed, and the dissector's verdict on them is not evidence.
 */
export function hitsWiresharkPaddingBug(payload: Buffer): boolean {
  if (payload[0] !== 2) return false;
  const op = (payload[1] ?? 0) & 0x7f;
  let off = op === 1 ? 60 : op === 2 ? 80 : 24;
  let padded = false;
  while (off + 4 <= payload.length) {
    const len = payload.readUInt16BE(off + 2);
    if (len % 4 !== 0) padded = true;
    else if (padded) return true;
    off += 4 + ((len + 3) & ~3);
  }
  return false;
}

const routerFor = (client: string): string => (client.includes(':') ? ROUTER_V6 : ROUTER_V4);

const toRouter = (label: string, client: string, payload: Buffer): Labelled => ({
  label: `${label} (client → router)`,
  src: client,
  srcPort: CLIENT_PORT,
  dst: routerFor(client),
  dstPort: PCP_SERVER_PORT,
  payload,
});

const toClient = (label: string, client: string, payload: Buffer): Labelled => ({
  label: `${label} (router → client)`,
  src: routerFor(client),
  srcPort: PCP_SERVER_PORT,
  dst: client,
  dstPort: CLIENT_PORT,
  payload,
});

/** Replays every vector through a fresh harness, collecting what crosses the wire. */
async function collectPackets(): Promise<Labelled[]> {
  const packets: Labelled[] = [];
  for (const v of loadVectors()) {
    const h = harness();
    if (v.external === null) h.setExternal(undefined);
    // Setup requests are ordinary, well-formed traffic (they are there to
    // create state), so they are checked whatever the vector's flag says.
    for (const [i, s] of v.setup.entries()) {
      const req = Buffer.from(s.request, 'hex');
      packets.push(toRouter(`${v.file} setup[${i}] request`, s.source, req));
      const reply = await h.send(s.source, req);
      if (reply) packets.push(toClient(`${v.file} setup[${i}] reply`, s.source, reply));
    }
    const req = Buffer.from(v.request, 'hex');
    if (!v.malformed) packets.push(toRouter(`${v.file} request`, v.source, req));
    const reply = await h.send(v.source, req);
    if (reply) packets.push({ ...toClient(`${v.file} reply`, v.source, reply), echoOfMalformed: v.malformed });
  }

  // The unsolicited announcements PortControlServer.announceOnce() sends,
  // with the multicast TTL / hop limit of 1 it sets.
  const epoch = 5;
  const pcpAnnounce = encodePcpResponse({ opcode: Opcode.ANNOUNCE, result: 0, lifetime: 0, epoch });
  const announce = (label: string, src: string, dst: string, payload: Buffer): Labelled => ({
    label: `announcement: ${label} (router → ${dst})`,
    src,
    srcPort: PCP_SERVER_PORT,
    dst,
    // The daemon's announcePort, RFC 6887 §14.1.3 and RFC 6886 §3.2.1 alike.
    dstPort: PCP_CLIENT_PORT,
    payload,
    ttl: 1,
  });
  packets.push(
    announce('NAT-PMP external address', ROUTER_V4, NATPMP_ANNOUNCE_GROUP, encodeExternalAddressResponse(NatPmpResult.SUCCESS, epoch, EXTERNAL)),
    announce('PCP ANNOUNCE', ROUTER_V4, NATPMP_ANNOUNCE_GROUP, pcpAnnounce),
    announce('PCP ANNOUNCE', ROUTER_LINK_LOCAL, 'ff02::1', pcpAnnounce),
  );
  return packets;
}

/** tshark -V output split per frame: frame number → that frame's text. */
function splitFrames(verbose: string): Map<number, string> {
  const frames = new Map<number, string>();
  // Each frame's tree starts with an unindented "Frame N: ..." line.
  const parts = verbose.split(/^(?=Frame \d+: )/m);
  for (const part of parts) {
    const m = /^Frame (\d+): /.exec(part);
    if (m) frames.set(Number(m[1]), part);
  }
  return frames;
}

/** The lines of a frame's text that matched, for failure messages. */
const lines = (text: string, re: RegExp): string[] => text.split('\n').filter((l) => re.test(l)).map((l) => l.trim());

t.test('tshark decodes every well-formed request and every reply without errors', async (t) => {
  const version = spawnSync(TSHARK, ['--version'], { encoding: 'utf8' });
  if (version.error || version.status !== 0) {
    // A failure, not a skip: this is an acceptance check, and a silently
    // skipped one would read as passed.
    t.fail(`cannot run ${TSHARK} (${version.error?.message ?? `exit ${version.status}`}): install the Debian package \`tshark\` (apt-get install tshark)`);
    return;
  }
  t.comment(version.stdout.split('\n')[0] ?? '');

  const packets = await collectPackets();
  const file = join(t.testdir(), 'vectors.pcap');
  writePcap(file, packets);

  const run = spawnSync(
    TSHARK,
    [
      '-r', file,
      '-V',
      // Checksum validation is off by default; turned on so a wrong
      // checksum (a bug in pcap.ts) shows up instead of passing unseen.
      '-o', 'udp.check_checksum:TRUE',
      '-o', 'ip.check_checksum:TRUE',
      // 5350/5351 are the defaults; pinned so a local Wireshark profile
      // cannot send them elsewhere. "portcontrol" hands version-0 messages
      // to its NAT-PMP sub-dissector. ("pcp" is Performance Co-Pilot.)
      '-d', 'udp.port==5351,portcontrol',
      '-d', 'udp.port==5350,portcontrol',
    ],
    // Stderr is ignored: as root, tshark warns there on every run.
    { encoding: 'utf8', timeout: 120_000, maxBuffer: 256 * 1024 * 1024 },
  );
  if (run.error || run.status !== 0) {
    t.fail(`tshark failed: ${run.error?.message ?? `exit ${run.status}`}\n${run.stderr}`);
    return;
  }

  const frames = splitFrames(run.stdout);
  t.equal(frames.size, packets.length, 'tshark read one frame per packet written');

  for (const [i, p] of packets.entries()) {
    const frame = `frame ${i + 1}`;
    const text = frames.get(i + 1) ?? '';
    // Version octet 0 is NAT-PMP (RFC 6887 §9 shares the port); anything
    // else the dissector treats as PCP.
    const expected = p.payload[0] === 0 ? NATPMP_TREE : PCP_TREE;
    t.match(text, new RegExp(`^${expected}\\b`, 'm'), `${p.label}: ${frame} dissected as ${expected}`);
    // On failure, show what tshark made of the payload: the dissector's
    // subtree (where it stopped tells which field it choked on) and the bytes.
    const diag = { payload: p.payload.toString('hex'), tshark: text.slice(Math.max(0, text.search(new RegExp(`^${expected}`, 'm')))) };
    if (p.echoOfMalformed || hitsWiresharkPaddingBug(p.payload)) {
      const why = p.echoOfMalformed ? 'copies a deliberately malformed request' : 'hits the Wireshark option-padding bug';
      t.comment(`${p.label}: ${frame} ${why}: Malformed marks not held against it`);
      continue;
    }
    // "[Malformed Packet: ...]" is tshark's marker for a dissector exception;
    // a bare /Malformed/ would also catch result names such as
    // "Result Code: Malformed option (6)".
    t.same(lines(text, /^\[Malformed Packet/), [], `${p.label}: ${frame} not Malformed`, diag);
    t.same(lines(text, /\[Expert Info \(Error/), [], `${p.label}: ${frame} has no error-severity expert info`, diag);
    // Warnings are not part of the acceptance criterion, but worth seeing.
    for (const w of lines(text, /\[Expert Info \(Warn/)) t.comment(`${p.label}: ${frame}: ${w}`);
  }
});
