// PCP message codec, RFC 6887 §7 (common header), §11.1 (MAP), §12.1 (PEER),
// §14.1 (ANNOUNCE). Pure functions: bytes in, typed value or error value out.
//
// Request header (§7.1)                    Response header (§7.2)
//   [0]     Version = 2                      [0]     Version = 2
//   [1]     R=0 | Opcode (7 bits)            [1]     R=1 | Opcode
//   [2..3]  Reserved                         [2]     Reserved
//   [4..7]  Requested Lifetime               [3]     Result Code
//   [8..23] PCP Client's IP Address          [4..7]  Lifetime
//                                            [8..11] Epoch Time
//                                            [12..23] Reserved (zero)
// MAP opcode data (§11.1), offsets within the message:
//   [24..35] Mapping Nonce  [36] Protocol  [37..39] Reserved
//   [40..41] Internal Port  [42..43] Suggested/Assigned External Port
//   [44..59] Suggested/Assigned External IP Address
// PEER adds (§12.1): [60..61] Remote Peer Port  [62..63] Reserved
//   [64..79] Remote Peer IP Address

import { fromWire16, toWire16, type IpAddress } from '../../net/address.js';
import {
  OPTION_OPTIONAL_FROM,
  Opcode,
  OptionCode,
  PCP_HEADER_SIZE,
  PCP_MAX_MESSAGE,
  PCP_MAP_BODY_SIZE,
  PCP_OPCODE_MASK,
  PCP_PEER_BODY_SIZE,
  PCP_R_BIT,
  PCP_VERSION,
  type ResultName,
} from './constants.js';
import { OPTION_CODECS, encodeOption, optionName, optionSlots, type PcpOption } from './options.js';

export interface MapData {
  nonce: Buffer;
  protocol: number;
  internalPort: number;
  /** Suggested (request) or assigned (response) external port. */
  externalPort: number;
  /** Suggested (request) or assigned (response) external address. */
  externalAddress: IpAddress;
}

export interface PeerData extends MapData {
  remotePeerPort: number;
  remotePeerAddress: IpAddress;
}

export interface PcpRequest {
  opcode: number;
  lifetime: number;
  /** The PCP Client's IP Address field, raw (the §8.2 check compares all 128 bits). */
  clientAddressWire: Buffer;
  map?: MapData;
  peer?: PeerData;
  /** Known options, in wire order. Unknown optional options are skipped. */
  options: PcpOption[];
  /** The datagram as received, for error echoes (§7.3: an error reply copies the request). */
  raw: Buffer;
}

/** How a datagram failed to decode: either silence (§8.2) or a result code to echo. */
export type PcpDecodeError =
  | { ok: false; silent: true; detail: string }
  | { ok: false; silent: false; code: ResultName; detail: string };

export type PcpDecodeResult = { ok: true; msg: PcpRequest } | PcpDecodeError;

const silent = (detail: string): PcpDecodeError => ({ ok: false, silent: true, detail });
const fail = (code: ResultName, detail: string): PcpDecodeError => ({ ok: false, silent: false, code, detail });

const opcodeOf = (buf: Buffer): number => (buf[1] ?? 0) & PCP_OPCODE_MASK;

/** Where each opcode's data ends and its options begin. */
const MAP_END = PCP_HEADER_SIZE + PCP_MAP_BODY_SIZE;
const PEER_END = PCP_HEADER_SIZE + PCP_PEER_BODY_SIZE;

function decodeMapData(buf: Buffer): MapData {
  return {
    nonce: Buffer.from(buf.subarray(24, 36)),
    protocol: buf[36] ?? 0,
    internalPort: buf.readUInt16BE(40),
    externalPort: buf.readUInt16BE(42),
    externalAddress: fromWire16(buf.subarray(44, 60)),
  };
}

function decodePeerData(buf: Buffer): PeerData {
  return {
    ...decodeMapData(buf),
    remotePeerPort: buf.readUInt16BE(60),
    remotePeerAddress: fromWire16(buf.subarray(64, 80)),
  };
}

/**
 * Decodes a datagram whose version octet is not 0 (NAT-PMP is dispatched
 * before this). Checks run in the order that yields the most specific code
 * (§7.4): framing, then opcode, then opcode data, then options.
 */
export function decodePcpRequest(buf: Buffer): PcpDecodeResult {
  // §8.2: too short to hold version and opcode — nothing sensible to answer.
  if (buf.length < 2) return silent(`${buf.length}-octet datagram`);
  // §8.2: a message with R=1 is a response; answering it could loop.
  if ((buf[1] ?? 0) & PCP_R_BIT) return silent('R bit set (a response, not a request)');
  if (buf[0] !== PCP_VERSION) return fail('UNSUPP_VERSION', `version ${buf[0]}`);
  if (buf.length < PCP_HEADER_SIZE) return silent(`${buf.length}-octet PCP message, shorter than the header`);
  if (buf.length > PCP_MAX_MESSAGE) return fail('MALFORMED_REQUEST', `${buf.length} octets > ${PCP_MAX_MESSAGE}`);
  if (buf.length % 4 !== 0) return fail('MALFORMED_REQUEST', `${buf.length} octets, not a multiple of 4`);

  const opcode = opcodeOf(buf);
  let bodySize: number;
  switch (opcode) {
    case Opcode.ANNOUNCE:
      bodySize = 0;
      break;
    case Opcode.MAP:
      bodySize = PCP_MAP_BODY_SIZE;
      break;
    case Opcode.PEER:
      bodySize = PCP_PEER_BODY_SIZE;
      break;
    default:
      return fail('UNSUPP_OPCODE', `opcode ${opcode}`);
  }
  if (buf.length < PCP_HEADER_SIZE + bodySize) {
    return fail('MALFORMED_REQUEST', `${buf.length} octets, too short for opcode ${opcode}`);
  }

  const msg: PcpRequest = {
    opcode,
    lifetime: buf.readUInt32BE(4),
    clientAddressWire: Buffer.from(buf.subarray(8, 24)),
    options: [],
    raw: buf,
  };
  if (opcode === Opcode.MAP) msg.map = decodeMapData(buf);
  if (opcode === Opcode.PEER) msg.peer = decodePeerData(buf);

  const opts = decodeOptions(buf, PCP_HEADER_SIZE + bodySize, opcode);
  if (!opts.ok) return opts;
  msg.options = opts.options;
  return { ok: true, msg };
}

function decodeOptions(
  buf: Buffer,
  start: number,
  opcode: number,
): { ok: true; options: PcpOption[] } | PcpDecodeError {
  const options: PcpOption[] = [];
  const counts = new Map<number, number>();
  // Mandatory-option problems are remembered and reported after the whole
  // option list parsed: a framing error anywhere (MALFORMED_OPTION) means the
  // list cannot be trusted, so it outranks an unknown code seen before it.
  let unsupported: PcpDecodeError | undefined;
  // The message length is a multiple of 4, so no octets are left over after the last option.
  for (const slot of optionSlots(buf, start)) {
    const code = slot.code;
    if ('overrunLength' in slot) {
      return fail('MALFORMED_OPTION', `option ${optionName(code)} length ${slot.overrunLength} runs past the message end`);
    }
    const codec = OPTION_CODECS.get(code);
    if (!codec) {
      // §7.3: unknown mandatory → UNSUPP_OPTION; unknown optional → skip.
      if (code < OPTION_OPTIONAL_FROM) unsupported ??= fail('UNSUPP_OPTION', `unknown mandatory option ${code}`);
      continue;
    }
    if (!codec.validFor.has(opcode)) {
      // §13: these options "MUST NOT appear with other Opcodes". §12.1 names
      // PREFER_FAILURE in PEER as MALFORMED_REQUEST; any other misplaced
      // mandatory option "does not make sense" (§11.3): MALFORMED_OPTION.
      // A misplaced optional option is simply not processed.
      if (code === OptionCode.PREFER_FAILURE && opcode === Opcode.PEER) {
        return fail('MALFORMED_REQUEST', 'PREFER_FAILURE is not valid in PEER');
      }
      if (code < OPTION_OPTIONAL_FROM) return fail('MALFORMED_OPTION', `${codec.name} is not valid for opcode ${opcode}`);
      continue;
    }
    const n = (counts.get(code) ?? 0) + 1;
    counts.set(code, n);
    if (n > codec.maxCount) return fail('MALFORMED_OPTION', `${codec.name} appears ${n} times`);
    const d = codec.decode(Buffer.from(slot.data));
    if (!d.ok) return fail('MALFORMED_OPTION', d.detail);
    if (d.option) options.push(d.option);
  }
  if (unsupported) return unsupported;
  return { ok: true, options };
}

export interface PcpResponse {
  opcode: number;
  result: number;
  lifetime: number;
  epoch: number;
  map?: MapData;
  peer?: PeerData;
  options?: PcpOption[];
}

function writeHeader(out: Buffer, opcode: number, result: number, lifetime: number, epoch: number): void {
  out[0] = PCP_VERSION;
  out[1] = PCP_R_BIT | (opcode & PCP_OPCODE_MASK);
  out[2] = 0;
  out[3] = result;
  out.writeUInt32BE(lifetime >>> 0, 4);
  out.writeUInt32BE(epoch >>> 0, 8);
  out.fill(0, 12, 24);
}

function writeMapData(out: Buffer, d: MapData): void {
  d.nonce.copy(out, 24, 0, 12);
  out[36] = d.protocol;
  out.writeUInt16BE(d.internalPort, 40);
  out.writeUInt16BE(d.externalPort, 42);
  toWire16(d.externalAddress).copy(out, 44);
}

/** A header's room (left zero for the caller) followed by the MAP or PEER opcode data, if any. */
function headAndOpcodeData(r: { map?: MapData; peer?: PeerData }): Buffer {
  const head = Buffer.alloc(r.peer ? PEER_END : r.map ? MAP_END : PCP_HEADER_SIZE);
  const data = r.peer ?? r.map;
  if (data) writeMapData(head, data);
  if (r.peer) {
    head.writeUInt16BE(r.peer.remotePeerPort, 60);
    toWire16(r.peer.remotePeerAddress).copy(head, 64);
  }
  return head;
}

export function encodePcpResponse(r: PcpResponse): Buffer {
  const head = headAndOpcodeData(r);
  writeHeader(head, r.opcode, r.result, r.lifetime, r.epoch);
  const opts = (r.options ?? []).map(encodeOption);
  const out = Buffer.concat([head, ...opts]);
  // Options are chosen by the server from what the request carried, which
  // itself fit in 1100 octets; this guards the invariant, not a real path.
  if (out.length > PCP_MAX_MESSAGE) throw new Error(`PCP response of ${out.length} octets`);
  return out;
}

/**
 * An error reply (§7.3, §8.2): "a complete copy of the request packet" —
 * opcode data and options intact — at most 1100 octets, zero-padded to a
 * multiple of 4, under a response header. §7.2: for a request that did not
 * parse, the last 96 bits of the client address field stay as they were
 * copied; for one that did, that reserved field is zero. A reply is at least
 * a header so the client can read result and epoch (§9 sets no minimum for
 * a short unsupported-version request; 24 octets is what clients parse). A
 * MAP too short for its opcode is not padded to the opcode's size: that would
 * make the reply up to 3.3 times the request (a reflection lever).
 */
export function encodePcpErrorEcho(
  request: Buffer,
  result: number,
  lifetime: number,
  epoch: number,
  parsed: boolean,
): Buffer {
  const copied = Math.min(request.length, PCP_MAX_MESSAGE);
  const opcode = opcodeOf(request);
  const len = Math.max(PCP_HEADER_SIZE, (copied + 3) & ~3);
  const out = Buffer.alloc(len);
  request.copy(out, 0, 0, copied);
  const keep = Buffer.from(out.subarray(12, 24));
  writeHeader(out, opcode, result, lifetime, epoch);
  if (!parsed) keep.copy(out, 12);
  return out;
}

/** Decodes a response (for our own tests, benchmark client and tools). */
export function decodePcpResponse(buf: Buffer): { ok: true; msg: PcpResponse } | { ok: false; detail: string } {
  if (buf.length < PCP_HEADER_SIZE) return { ok: false, detail: `${buf.length} octets` };
  if (!((buf[1] ?? 0) & PCP_R_BIT)) return { ok: false, detail: 'R bit clear' };
  const opcode = opcodeOf(buf);
  const msg: PcpResponse = {
    opcode,
    result: buf[3] ?? 0,
    lifetime: buf.readUInt32BE(4),
    epoch: buf.readUInt32BE(8),
    options: [],
  };
  let off = PCP_HEADER_SIZE;
  if (opcode === Opcode.MAP && buf.length >= MAP_END) {
    msg.map = decodeMapData(buf);
    off = MAP_END;
  } else if (opcode === Opcode.PEER && buf.length >= PEER_END) {
    msg.peer = decodePeerData(buf);
    off = PEER_END;
  }
  for (const slot of optionSlots(buf, off)) {
    if ('overrunLength' in slot) return { ok: false, detail: `option ${slot.code} overruns` };
    const codec = OPTION_CODECS.get(slot.code);
    if (codec) {
      const d = codec.decode(Buffer.from(slot.data));
      if (!d.ok) return { ok: false, detail: d.detail };
      if (d.option) msg.options?.push(d.option);
    }
  }
  return { ok: true, msg };
}

/** Builds a request (tests, benchmark, tools). */
export function encodePcpRequest(r: {
  opcode: number;
  lifetime: number;
  clientAddress: IpAddress;
  map?: MapData;
  peer?: PeerData;
  options?: PcpOption[];
}): Buffer {
  const head = headAndOpcodeData(r);
  head[0] = PCP_VERSION;
  head[1] = r.opcode & PCP_OPCODE_MASK;
  head.writeUInt32BE(r.lifetime >>> 0, 4);
  toWire16(r.clientAddress).copy(head, 8);
  return Buffer.concat([head, ...(r.options ?? []).map(encodeOption)]);
}

