// ctnetlink's bytes: the conntrack table's netlink interface
// (NETLINK_NETFILTER, subsystem NFNL_SUBSYS_CTNETLINK; uapi headers
// linux/netlink.h, linux/netfilter/nfnetlink.h, nfnetlink_conntrack.h).
// Pure functions: requests to bytes, the kernel's answers to flows. No I/O.
//
// Two requests: a dump of one family's flows matching a tuple filter (CTA_FILTER,
// Linux ≥ 5.8: the kernel walks the table and sends back only what matches,
// instead of every flow for user space to sort) and the deletion of one flow
// by its exact original tuple and id.
//
// What the kernel sends back is read defensively: every length is checked
// against what is left of its container before anything is read, unknown
// attributes are skipped, only the attributes a flow is known by are entered
// (nesting is at most three deep by construction), and a message that does not
// add up ends the reading of its buffer with an error value.

import { endianness } from 'node:os';
import { addressBytes, familyOf, fromWire16, ipv4FromBytes, isV4MappedWire, type Family, type IpAddress } from '../net/address.js';

// linux/netlink.h
export const NETLINK_NETFILTER = 12;
export const NLMSG_HDRLEN = 16;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
/** NLM_F_ROOT | NLM_F_MATCH. */
export const NLM_F_DUMP = 0x300;
const NLA_HDRLEN = 4;
const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;

// linux/netfilter/nfnetlink.h: a struct nfgenmsg follows every header.
const NFGENMSG_LEN = 4;
const NFNETLINK_V0 = 0;
export const NFNL_SUBSYS_CTNETLINK = 1;
const AF_INET = 2;
const AF_INET6 = 10;

// linux/netfilter/nfnetlink_conntrack.h
export const IPCTNL_MSG_CT_NEW = 0;
export const IPCTNL_MSG_CT_GET = 1;
export const IPCTNL_MSG_CT_DELETE = 2;
const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_REPLY = 2;
const CTA_ID = 12;
const CTA_ZONE = 18;
const CTA_FILTER = 25;
const CTA_TUPLE_IP = 1;
const CTA_TUPLE_PROTO = 2;
const CTA_IP_V4_SRC = 1;
const CTA_IP_V4_DST = 2;
const CTA_IP_V6_SRC = 3;
const CTA_IP_V6_DST = 4;
const CTA_PROTO_NUM = 1;
const CTA_PROTO_SRC_PORT = 2;
const CTA_PROTO_DST_PORT = 3;
const CTA_FILTER_ORIG_FLAGS = 1;
const CTA_FILTER_REPLY_FLAGS = 2;

/**
 * Which fields of the filter's tuple the kernel compares: CTA_FILTER_F_* of
 * net/netfilter/nf_internals.h (kernel-internal, stable since 5.8: the
 * kernel refuses bits it does not know with EOPNOTSUPP).
 */
export const FILTER = { IP_SRC: 1 << 0, IP_DST: 1 << 1, PROTO_NUM: 1 << 3, PROTO_SRC_PORT: 1 << 4, PROTO_DST_PORT: 1 << 5 } as const;

/** Netlink headers and the filter flags are in the host's byte order; addresses and ports in the network's. */
const LE = endianness() === 'LE';

/** One direction of a flow. */
export interface Tuple {
  src: IpAddress;
  dst: IpAddress;
  srcPort: number;
  dstPort: number;
}

/** A flow with ports (IPv4 or IPv6: its tuples' addresses say which), as a dump tells it. */
export interface Flow {
  protocol: number;
  orig: Tuple;
  reply: Tuple;
  /** CTA_ID: the entry's id; a deletion that names it cannot hit a newer entry with the same tuple. */
  id?: number;
  /** CTA_ZONE, when the kernel reports one (a deletion looks the tuple up in this zone). */
  zone?: number;
}

/** The fields a dump's filter compares; the others may be anything. */
export interface TupleFilter {
  direction: 'orig' | 'reply';
  /** The flows' family: the dump's (nfgenmsg), which the kernel always compares. An address given must be of it. */
  family: Family;
  protocol: number;
  src?: IpAddress;
  dst?: IpAddress;
  srcPort?: number;
  dstPort?: number;
}

// ---- encoding ---------------------------------------------------------------

/** An attribute: header, payload, padding to 4 octets. */
function attr(type: number, payload: Buffer): Buffer {
  const len = NLA_HDRLEN + payload.length;
  const b = Buffer.alloc(align4(len));
  writeU16(b, 0, len);
  writeU16(b, 2, type);
  payload.copy(b, NLA_HDRLEN);
  return b;
}
const nested = (type: number, children: Buffer[]): Buffer => attr(type | NLA_F_NESTED, Buffer.concat(children));
const u8 = (v: number): Buffer => Buffer.from([v]);
const be16 = (v: number): Buffer => Buffer.from([(v >> 8) & 0xff, v & 0xff]);
const be32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};
function hostU32(v: number): Buffer {
  const b = Buffer.alloc(4);
  if (LE) b.writeUInt32LE(v >>> 0);
  else b.writeUInt32BE(v >>> 0);
  return b;
}

/** A ctnetlink message: netlink header, nfgenmsg (the family, version 0, resource id 0), attributes. */
function message(msgType: number, flags: number, seq: number, family: Family, attrs: Buffer[]): Buffer {
  const body = Buffer.concat(attrs);
  const b = Buffer.alloc(NLMSG_HDRLEN + NFGENMSG_LEN + body.length);
  writeU32(b, 0, b.length);
  writeU16(b, 4, (NFNL_SUBSYS_CTNETLINK << 8) | msgType);
  writeU16(b, 6, flags);
  writeU32(b, 8, seq);
  writeU32(b, 12, 0); // port id 0: the kernel fills ours in
  b[16] = family === 4 ? AF_INET : AF_INET6;
  b[17] = NFNETLINK_V0;
  body.copy(b, NLMSG_HDRLEN + NFGENMSG_LEN);
  return b;
}

/** The attributes of a tuple, with only the fields given. */
function tupleAttrs(protocol: number, t: Partial<Tuple>): Buffer[] {
  const ip = [...(t.src ? [ipAttr('src', t.src)] : []), ...(t.dst ? [ipAttr('dst', t.dst)] : [])];
  const proto = [attr(CTA_PROTO_NUM, u8(protocol)), ...(t.srcPort !== undefined ? [attr(CTA_PROTO_SRC_PORT, be16(t.srcPort))] : []), ...(t.dstPort !== undefined ? [attr(CTA_PROTO_DST_PORT, be16(t.dstPort))] : [])];
  return [...(ip.length ? [nested(CTA_TUPLE_IP, ip)] : []), nested(CTA_TUPLE_PROTO, proto)];
}

/** An address attribute: CTA_IP_V4_* with 4 octets, CTA_IP_V6_* with 16, by the address's family. */
function ipAttr(which: 'src' | 'dst', a: IpAddress): Buffer {
  const v4 = familyOf(a) === 4;
  return attr(which === 'src' ? (v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC) : v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST, addressBytes(a));
}

/** IPCTNL_MSG_CT_GET with NLM_F_DUMP and CTA_FILTER: the flows of `f.family` whose tuple in `f.direction` has f's fields. */
export function encodeDump(seq: number, f: TupleFilter): Buffer {
  if ((f.src && familyOf(f.src) !== f.family) || (f.dst && familyOf(f.dst) !== f.family)) throw new Error(`a filter of family ${f.family} with an address of the other`);
  const flags = FILTER.PROTO_NUM | (f.src ? FILTER.IP_SRC : 0) | (f.dst ? FILTER.IP_DST : 0) | (f.srcPort !== undefined ? FILTER.PROTO_SRC_PORT : 0) | (f.dstPort !== undefined ? FILTER.PROTO_DST_PORT : 0);
  const orig = f.direction === 'orig';
  return message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, f.family, [
    nested(orig ? CTA_TUPLE_ORIG : CTA_TUPLE_REPLY, tupleAttrs(f.protocol, f)),
    nested(CTA_FILTER, [attr(CTA_FILTER_ORIG_FLAGS, hostU32(orig ? flags : 0)), attr(CTA_FILTER_REPLY_FLAGS, hostU32(orig ? 0 : flags))]),
  ]);
}

/** IPCTNL_MSG_CT_DELETE of one flow by its original tuple (and id and zone, when known), acknowledged. */
export function encodeDelete(seq: number, flow: Flow): Buffer {
  return message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, familyOf(flow.orig.src), [
    nested(CTA_TUPLE_ORIG, tupleAttrs(flow.protocol, flow.orig)),
    ...(flow.id !== undefined ? [attr(CTA_ID, be32(flow.id))] : []),
    ...(flow.zone !== undefined ? [attr(CTA_ZONE, be16(flow.zone))] : []),
  ]);
}

// ---- decoding ---------------------------------------------------------------

/** What one netlink message said. */
export type Answer =
  /** A flow of a dump (a CT message we could read as an IPv4 or IPv6 flow with ports). */
  | { kind: 'flow'; seq: number; flow: Flow }
  /** A CT message that is no flow with ports of its family (ICMP, another family, a field missing or of the wrong length): skipped. */
  | { kind: 'other'; seq: number }
  /** NLMSG_ERROR: errno 0 is an acknowledgement; else the negative errno's absolute value. */
  | { kind: 'ack'; seq: number; errno: number }
  /** NLMSG_DONE: the dump is complete (errno non-zero: it ended in an error). */
  | { kind: 'done'; seq: number; errno: number };

export type Decoded = { ok: true; answers: Answer[] } | { ok: false; answers: Answer[]; detail: string };

/**
 * The messages in one datagram from the kernel. A malformed message ends the
 * reading (what came before it is kept); `maxMessages` bounds the work.
 */
export function decodeMessages(buf: Buffer, maxMessages = 4096): Decoded {
  const answers: Answer[] = [];
  let at = 0;
  while (at < buf.length) {
    if (answers.length >= maxMessages) return { ok: false, answers, detail: `more than ${maxMessages} messages in one datagram` };
    if (buf.length - at < NLMSG_HDRLEN) return { ok: false, answers, detail: `a trailing ${buf.length - at} octets, shorter than a header` };
    const len = readU32(buf, at);
    if (len < NLMSG_HDRLEN || len > buf.length - at) return { ok: false, answers, detail: `message length ${len} at ${at} does not fit the ${buf.length - at} octets left` };
    const type = readU16(buf, at + 4);
    const seq = readU32(buf, at + 8);
    const body = buf.subarray(at + NLMSG_HDRLEN, at + len);
    if (type === NLMSG_ERROR || type === NLMSG_DONE) {
      // NLMSG_DONE of a dump carries an int (0 or -errno); an old kernel's may carry none.
      if (body.length < 4 && type === NLMSG_ERROR) return { ok: false, answers, detail: 'an error message without its code' };
      const code = body.length >= 4 ? readI32(body, 0) : 0;
      answers.push({ kind: type === NLMSG_ERROR ? 'ack' : 'done', seq, errno: Math.abs(code) });
    } else if (type >> 8 === NFNL_SUBSYS_CTNETLINK) {
      const family = body.length >= NFGENMSG_LEN ? ({ [AF_INET]: 4, [AF_INET6]: 6 } as Record<number, Family | undefined>)[body[0]!] : undefined;
      const flow = family ? flowOf(body.subarray(NFGENMSG_LEN), family) : undefined;
      answers.push(flow ? { kind: 'flow', seq, flow } : { kind: 'other', seq });
    } else {
      return { ok: false, answers, detail: `message type ${type} is not ctnetlink's` };
    }
    at += align4(len);
  }
  return { ok: true, answers };
}

/** The attributes directly inside `b`, by type (the last of a type wins); undefined if one does not fit. */
function attrsOf(b: Buffer): Map<number, Buffer> | undefined {
  const out = new Map<number, Buffer>();
  let at = 0;
  while (b.length - at >= NLA_HDRLEN) {
    const len = readU16(b, at);
    if (len < NLA_HDRLEN || len > b.length - at) return undefined;
    out.set(readU16(b, at + 2) & NLA_TYPE_MASK, b.subarray(at + NLA_HDRLEN, at + len));
    at += align4(len);
  }
  return out;
}

function flowOf(attrsBuf: Buffer, family: Family): Flow | undefined {
  const top = attrsOf(attrsBuf);
  if (!top) return undefined;
  const orig = tupleOf(top.get(CTA_TUPLE_ORIG), family);
  const reply = tupleOf(top.get(CTA_TUPLE_REPLY), family);
  if (!orig || !reply || orig.protocol !== reply.protocol) return undefined;
  const id = top.get(CTA_ID);
  const zone = top.get(CTA_ZONE);
  return {
    protocol: orig.protocol,
    orig: orig.tuple,
    reply: reply.tuple,
    ...(id?.length === 4 ? { id: id.readUInt32BE(0) } : {}),
    ...(zone?.length === 2 ? { zone: zone.readUInt16BE(0) } : {}),
  };
}

/** One tuple of a flow of `family`: its addresses must be that family's attributes, of that family's exact length. */
function tupleOf(b: Buffer | undefined, family: Family): { protocol: number; tuple: Tuple } | undefined {
  if (!b) return undefined;
  const t = attrsOf(b);
  const ip = t && attrsOf(t.get(CTA_TUPLE_IP) ?? Buffer.alloc(0));
  const proto = t && attrsOf(t.get(CTA_TUPLE_PROTO) ?? Buffer.alloc(0));
  const length = family === 4 ? 4 : 16;
  const src = ip?.get(family === 4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC);
  const dst = ip?.get(family === 4 ? CTA_IP_V4_DST : CTA_IP_V6_DST);
  const num = proto?.get(CTA_PROTO_NUM);
  const sport = proto?.get(CTA_PROTO_SRC_PORT);
  const dport = proto?.get(CTA_PROTO_DST_PORT);
  if (src?.length !== length || dst?.length !== length || num?.length !== 1 || sport?.length !== 2 || dport?.length !== 2) return undefined;
  // An IPv4-mapped address in an IPv6 flow would read back as IPv4 text, and a deletion would name it in the wrong family.
  if (family === 6 && (isV4MappedWire(src) || isV4MappedWire(dst))) return undefined;
  const address = family === 4 ? ipv4FromBytes : fromWire16;
  return { protocol: num[0]!, tuple: { src: address(src), dst: address(dst), srcPort: sport.readUInt16BE(0), dstPort: dport.readUInt16BE(0) } };
}

// ---- helpers ----------------------------------------------------------------

const align4 = (n: number): number => (n + 3) & ~3;
const readU16 = (b: Buffer, at: number): number => (LE ? b.readUInt16LE(at) : b.readUInt16BE(at));
const readU32 = (b: Buffer, at: number): number => (LE ? b.readUInt32LE(at) : b.readUInt32BE(at));
const readI32 = (b: Buffer, at: number): number => (LE ? b.readInt32LE(at) : b.readInt32BE(at));
const writeU16 = (b: Buffer, at: number, v: number): number => (LE ? b.writeUInt16LE(v, at) : b.writeUInt16BE(v, at));
const writeU32 = (b: Buffer, at: number, v: number): number => (LE ? b.writeUInt32LE(v >>> 0, at) : b.writeUInt32BE(v >>> 0, at));
