// Every well-formed request vector, every reply the vectors produce through
// the real dispatch path, and the announcements, decoded by an independent
// implementation: Wireshark's dissectors, through tshark (Debian package
// `tshark`). Our own decoder agreeing with our own encoder proves little; a
// third party reading the bytes without "Malformed" or an error-severity
// expert mark is evidence the wire format is right.
//
// Deliberately malformed request vectors are left out (tshark is right to
// complain about them). Every reply is checked; the only ones whose marks are
// not held against us are listed in TSHARK_DISAGREES, each with the RFC text
// that makes the bytes right, and each must still be flagged (an entry
// tshark stops flagging fails the test, so the list cannot go stale).
// UNSUPP_VERSION answers are excepted by issue 11 (RFC 6887 §8.2, §9: a copy
// of the other version's request under our header); they are checked all the
// same and only reported if flagged.
//
// All packets go into one pcap and tshark runs once: it takes about 0.2 s to
// start, and one run per packet (over 200 of them) would take most of a minute.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { NatPmpResult, NATPMP_ANNOUNCE_GROUP, encodeExternalAddressResponse } from '../src/protocols/natpmp/codec.js';
import { Opcode, PCP_CLIENT_PORT, PCP_SERVER_PORT, ResultCode } from '../src/protocols/pcp/constants.js';
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
  /** The vector file whose reply this is (absent for requests and announcements). */
  replyTo?: string;
}

/**
 * RFC 6887 §7.3: "Such an error response MUST consist of a complete copy of
 * the request packet with the error code and other appropriate fields set in
 * the header" (and §8.2: a MALFORMED_REQUEST reply is that copy, cut to 1100
 * octets). A reply to a request whose own bytes are malformed therefore holds
 * the same malformation, and tshark is right to trip on it — not a defect in
 * the reply, nor in the dissector.
 */
const COPIES_MALFORMED_REQUEST = 'copies a malformed request, as RFC 6887 §7.3 requires ("a complete copy of the request packet")';

/** Replies tshark flags although their bytes are what the RFC asks for: vector file → why. */
export const TSHARK_DISAGREES: ReadonlyMap<string, string> = new Map([
  ['pcp/map-option-overrun.json', `${COPIES_MALFORMED_REQUEST}: its FILTER option claims 400 octets in a 64-octet message`],
  ['pcp/map-third-party-length.json', `${COPIES_MALFORMED_REQUEST}: its THIRD_PARTY option holds 12 octets where the dissector reads the 16-octet address`],
  [
    'pcp/map-too-short.json',
    `${COPIES_MALFORMED_REQUEST}: the 56-octet MAP is copied as it came, and the dissector reads a MAP response's 36 octets of opcode data whatever the length (not padding it to 60 is our choice, see encodePcpErrorEcho)`,
  ],
]);

/**
 * Wireshark's portcontrol dissector (packet-nat-pmp.c, dissect_portcontrol_pdu:
 * `option_padding_length` is declared before the option loop and set only
 * when `option_length % 4 != 0`) never resets an option's padding: an option
 * whose length is a multiple of 4, after one that needed padding, is read 1-3
 * octets too far and reported Malformed. RFC 6887 §7.3 says otherwise:
 * "Options that are not a multiple of 4 octets long are followed by one, two,
 * or three 0 octets to pad their effective length in the packet to be a
 * multiple of 4 octets. The Option Length reflects the semantic length of the
 * option, not including any padding octets." True when a PCP payload has that
 * shape — such frames are well-formed, and the dissector's verdict on them is
 * not evidence. The dissector is wrong here, not the reply.
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

/** Vector file → whether the dispatch path answered it (filled by collectPackets). */
const replied = new Map<string, boolean>();

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
    replied.set(v.file, reply !== undefined);
    if (reply) packets.push({ ...toClient(`${v.file} reply`, v.source, reply), replyTo: v.file });
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
  // Every vector that expects an answer produced one, so every such reply is dissected below.
  const vectors = loadVectors();
  t.same(vectors.filter((v) => (v.response !== null) !== replied.get(v.file)).map((v) => v.file), [], `all ${vectors.filter((v) => v.response !== null).length} expected replies were produced`);
  for (const file of TSHARK_DISAGREES.keys()) t.ok(replied.get(file), `${file}: a listed disagreement is a reply that exists`);
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
    // "[Malformed Packet: ...]" is tshark's marker for a dissector exception;
    // a bare /Malformed/ would also catch result names such as
    // "Result Code: Malformed option (6)".
    const marks = [...lines(text, /^\[Malformed Packet/), ...lines(text, /\[Expert Info \(Error/)];
    const disagreement = (p.replyTo !== undefined ? TSHARK_DISAGREES.get(p.replyTo) : undefined) ?? (hitsWiresharkPaddingBug(p.payload) ? 'hits the Wireshark option-padding bug (RFC 6887 §7.3, see hitsWiresharkPaddingBug)' : undefined);
    if (disagreement) {
      t.not(marks.length, 0, `${p.label}: ${frame} is still flagged by tshark (else drop it from the list): ${disagreement}`, diag);
      t.comment(`${p.label}: ${frame} ${disagreement}: its marks are not held against it`);
      continue;
    }
    if (p.payload[0] !== 0 && p.payload[3] === ResultCode.UNSUPP_VERSION && p.replyTo !== undefined) {
      t.comment(`${p.label}: ${frame} UNSUPP_VERSION (excepted by issue 11): ${marks.length ? marks.join('; ') : 'clean'}`);
      continue;
    }
    t.same(lines(text, /^\[Malformed Packet/), [], `${p.label}: ${frame} not Malformed`, diag);
    t.same(lines(text, /\[Expert Info \(Error/), [], `${p.label}: ${frame} has no error-severity expert info`, diag);
    // Warnings are not part of the acceptance criterion, but worth seeing.
    for (const w of lines(text, /\[Expert Info \(Warn/)) t.comment(`${p.label}: ${frame}: ${w}`);
  }
});
