// A minimal classic libpcap writer, so that tests can hand our datagrams to
// an independent dissector (tshark). Link type 101 (LINKTYPE_RAW) lets each
// record start at the IP header: no Ethernet addresses to invent. Every
// header is built and checksummed here so the file is exactly what a capture
// on the router would hold; a wrong checksum would show up in tshark as an
// error and be blamed on our encoder, so the checksums must be right.

import { writeFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { addressBytes, mustParseIp } from '../../src/net/address.js';
import { IPPROTO_UDP } from '../../src/net/ipproto.js';

export interface UdpPacket {
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
  payload: Buffer;
  /** TTL / hop limit; 64 unless given (the daemon sends multicast with 1). */
  ttl?: number;
}

const PCAP_MAGIC = 0xa1b2c3d4;
const LINKTYPE_RAW = 101;
const SNAPLEN = 65535;
const DEFAULT_TTL = 64;
const IPV4_HEADER = 20;
const IPV6_HEADER = 40;
const UDP_HEADER = 8;

/** RFC 1071 one's-complement sum of 16-bit words (odd tail padded with zero), not yet inverted. */
function onesSum(bufs: Buffer[]): number {
  let sum = 0;
  for (const b of bufs) {
    // Each part but the last is an even length here (pseudo-header pieces,
    // the UDP header), so words never straddle two buffers.
    for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
    if (b.length % 2) sum += (b[b.length - 1] ?? 0) << 8;
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

function checksum(bufs: Buffer[]): number {
  return ~onesSum(bufs) & 0xffff;
}

/** Address text → its own family's bytes; refuses anything node:net does not call an address. */
function ipBytes(text: string): { family: 4 | 6; bytes: Buffer } {
  if (isIPv4(text)) return { family: 4, bytes: Buffer.from(addressBytes(mustParseIp(text))) };
  if (isIPv6(text)) {
    const bytes = Buffer.from(addressBytes(mustParseIp(text)));
    // mustParseIp folds ::ffff:a.b.c.d to the IPv4 host; an IPv6 header
    // needs the 16-octet form, which is what the caller wrote.
    return { family: 6, bytes: bytes.length === 16 ? bytes : Buffer.concat([Buffer.from('00000000000000000000ffff', 'hex'), bytes]) };
  }
  throw new Error(`not an IP address: ${text}`);
}

/** One IP datagram (IPv4 or IPv6, by the addresses' family) carrying one UDP datagram. */
export function udpDatagram(p: UdpPacket): Buffer {
  const src = ipBytes(p.src);
  const dst = ipBytes(p.dst);
  if (src.family !== dst.family) throw new Error(`${p.src} → ${p.dst}: mixed address families`);
  const udpLength = UDP_HEADER + p.payload.length;
  const ipHeader = src.family === 4 ? IPV4_HEADER : IPV6_HEADER;
  if (ipHeader + udpLength > 0xffff) throw new Error(`${p.payload.length}-octet payload does not fit one datagram`);

  const udp = Buffer.alloc(UDP_HEADER);
  udp.writeUInt16BE(p.srcPort, 0);
  udp.writeUInt16BE(p.dstPort, 2);
  udp.writeUInt16BE(udpLength, 4);
  // Pseudo-header: RFC 768 for IPv4 (src, dst, zero, protocol, UDP length),
  // RFC 8200 §8.1 for IPv6 (src, dst, 32-bit length, 24 zero bits, next header).
  const pseudo = Buffer.alloc(src.family === 4 ? 12 : 40);
  if (src.family === 4) {
    src.bytes.copy(pseudo, 0);
    dst.bytes.copy(pseudo, 4);
    pseudo[9] = IPPROTO_UDP;
    pseudo.writeUInt16BE(udpLength, 10);
  } else {
    src.bytes.copy(pseudo, 0);
    dst.bytes.copy(pseudo, 16);
    pseudo.writeUInt32BE(udpLength, 32);
    pseudo[39] = IPPROTO_UDP;
  }
  // A computed 0 is sent as 0xffff: 0 means "no checksum" (RFC 768), which
  // IPv6 forbids outright (RFC 8200 §8.1).
  udp.writeUInt16BE(checksum([pseudo, udp, p.payload]) || 0xffff, 6);

  const ip = Buffer.alloc(ipHeader);
  if (src.family === 4) {
    ip[0] = 0x45; // version 4, 5-word header: no options
    ip.writeUInt16BE(IPV4_HEADER + udpLength, 2);
    // Identification 0 with Don't Fragment: an atomic datagram (RFC 6864 §4.1).
    ip.writeUInt16BE(0x4000, 6);
    ip[8] = p.ttl ?? DEFAULT_TTL;
    ip[9] = IPPROTO_UDP;
    src.bytes.copy(ip, 12);
    dst.bytes.copy(ip, 16);
    ip.writeUInt16BE(checksum([ip]), 10);
  } else {
    ip.writeUInt32BE(0x60000000, 0); // version 6, traffic class 0, flow label 0
    ip.writeUInt16BE(udpLength, 4);
    ip[6] = IPPROTO_UDP;
    ip[7] = p.ttl ?? DEFAULT_TTL;
    src.bytes.copy(ip, 8);
    dst.bytes.copy(ip, 24);
  }
  return Buffer.concat([ip, udp, p.payload]);
}

/**
 * Writes `packets` to `path` as a pcap file, one record each, in order, so
 * that frame N in a dissector's output is packets[N - 1]. Timestamps are one
 * second apart from the epoch: deterministic, and nothing here reads them.
 */
export function writePcap(path: string, packets: UdpPacket[]): void {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(PCAP_MAGIC, 0); // little-endian file; readers detect order by the magic
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeInt32LE(0, 8); // thiszone: UTC
  header.writeUInt32LE(0, 12); // sigfigs
  header.writeUInt32LE(SNAPLEN, 16);
  header.writeUInt32LE(LINKTYPE_RAW, 20);

  const records = packets.map((p, i) => {
    const data = udpDatagram(p);
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(i, 0); // ts_sec
    rec.writeUInt32LE(0, 4); // ts_usec
    rec.writeUInt32LE(data.length, 8); // incl_len: never truncated, all ≤ snaplen
    rec.writeUInt32LE(data.length, 12); // orig_len
    return Buffer.concat([rec, data]);
  });
  writeFileSync(path, Buffer.concat([header, ...records]));
}
