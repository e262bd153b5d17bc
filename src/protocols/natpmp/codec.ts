// NAT Port Mapping Protocol (NAT-PMP), RFC 6886 — wire codec.
//
// External address request (§3.2)   [0] Vers=0  [1] OP=0
// External address response         [0] Vers=0  [1] OP=128  [2..3] Result
//                                     [4..7] Seconds Since Start of Epoch
//                                     [8..11] External IPv4 Address
// Mapping request (§3.3)             [0] Vers=0  [1] OP=1 (UDP) / 2 (TCP)
//                                     [2..3] Reserved  [4..5] Internal Port
//                                     [6..7] Suggested External Port
//                                     [8..11] Requested Lifetime
// Mapping response                   [0] Vers=0  [1] OP=128+op  [2..3] Result
//                                     [4..7] SSSoE  [8..9] Internal Port
//                                     [10..11] Mapped External Port
//                                     [12..15] Lifetime

import { ipv4FromBytes, ipv4ToBytes, type IpAddress } from '../../net/address.js';
import { PCP_MAX_MESSAGE } from '../pcp/constants.js';

/** Octet 0 of every NAT-PMP message; PCP puts its version 2 there, which is how the shared port tells them apart. */
export const NATPMP_VERSION = 0;
export const NATPMP_OP_EXTERNAL_ADDRESS = 0;
export const NATPMP_OP_MAP_UDP = 1;
export const NATPMP_OP_MAP_TCP = 2;
const NATPMP_RESPONSE_BIT = 0x80;
/** Vers, OP, Result Code and Seconds Since Start of Epoch: what every response begins with. */
const NATPMP_RESPONSE_HEADER_SIZE = 8;
const NATPMP_EXTERNAL_ADDRESS_RESPONSE_SIZE = 12;
const NATPMP_MAP_REQUEST_SIZE = 12;
const NATPMP_MAP_RESPONSE_SIZE = 16;
/** §3.2.1: "The NAT gateway MUST ... send ... to 224.0.0.1:5350". */
export const NATPMP_ANNOUNCE_GROUP = '224.0.0.1';

/** §3.5 result codes. */
export const NatPmpResult = {
  SUCCESS: 0,
  UNSUPPORTED_VERSION: 1,
  /** "Not Authorized/Refused (e.g., box supports mapping, but user has turned feature off)" */
  NOT_AUTHORIZED: 2,
  /** "Network Failure (e.g., NAT box itself has not obtained a DHCP lease)" */
  NETWORK_FAILURE: 3,
  /** "Out of resources (NAT box cannot create any more mappings at this time)" */
  OUT_OF_RESOURCES: 4,
  UNSUPPORTED_OPCODE: 5,
} as const;
export type NatPmpResult = (typeof NatPmpResult)[keyof typeof NatPmpResult];

export type NatPmpRequest =
  | { op: typeof NATPMP_OP_EXTERNAL_ADDRESS }
  | {
      op: typeof NATPMP_OP_MAP_UDP | typeof NATPMP_OP_MAP_TCP;
      internalPort: number;
      suggestedExternalPort: number;
      lifetime: number;
    };

export type NatPmpDecodeResult =
  | { ok: true; msg: NatPmpRequest }
  | { ok: false; silent: true; detail: string }
  /** §3.5: an unsupported opcode below 128 is answered with result 5. */
  | { ok: false; silent: false; result: NatPmpResult; detail: string };

export function decodeNatPmpRequest(buf: Buffer): NatPmpDecodeResult {
  if (buf.length < 2) return { ok: false, silent: true, detail: `${buf.length}-octet datagram` };
  if (buf[0] !== NATPMP_VERSION) {
    return { ok: false, silent: false, result: NatPmpResult.UNSUPPORTED_VERSION, detail: `version ${buf[0]}` };
  }
  const op = buf[1] ?? 0;
  // §3.5: "If the opcode in the request is 128 or greater, then this is not a
  // request; it's a response, and the NAT gateway MUST silently ignore it."
  if (op >= NATPMP_RESPONSE_BIT) return { ok: false, silent: true, detail: `opcode ${op} is a response` };
  if (op === NATPMP_OP_EXTERNAL_ADDRESS) return { ok: true, msg: { op } };
  if (op === NATPMP_OP_MAP_UDP || op === NATPMP_OP_MAP_TCP) {
    // A short mapping request has no internal port to answer about; trailing
    // octets past 12 are ignored, as §3.3 defines none.
    if (buf.length < NATPMP_MAP_REQUEST_SIZE) {
      return { ok: false, silent: true, detail: `${buf.length}-octet mapping request` };
    }
    return {
      ok: true,
      msg: {
        op,
        internalPort: buf.readUInt16BE(4),
        suggestedExternalPort: buf.readUInt16BE(6),
        lifetime: buf.readUInt32BE(8),
      },
    };
  }
  return { ok: false, silent: false, result: NatPmpResult.UNSUPPORTED_OPCODE, detail: `opcode ${op}` };
}

export function encodeExternalAddressResponse(result: NatPmpResult, epoch: number, address: IpAddress | undefined): Buffer {
  const out = Buffer.alloc(NATPMP_EXTERNAL_ADDRESS_RESPONSE_SIZE);
  out[0] = NATPMP_VERSION;
  out[1] = NATPMP_RESPONSE_BIT | NATPMP_OP_EXTERNAL_ADDRESS;
  out.writeUInt16BE(result, 2);
  out.writeUInt32BE(epoch >>> 0, 4);
  // §3.2: the address field is meaningful only on success; zero otherwise.
  if (result === NatPmpResult.SUCCESS && address) ipv4ToBytes(address).copy(out, 8);
  return out;
}

export function encodeMapResponse(r: {
  op: number;
  result: NatPmpResult;
  epoch: number;
  internalPort: number;
  externalPort: number;
  lifetime: number;
}): Buffer {
  const out = Buffer.alloc(NATPMP_MAP_RESPONSE_SIZE);
  out[0] = NATPMP_VERSION;
  out[1] = NATPMP_RESPONSE_BIT | r.op;
  out.writeUInt16BE(r.result, 2);
  out.writeUInt32BE(r.epoch >>> 0, 4);
  out.writeUInt16BE(r.internalPort, 8);
  out.writeUInt16BE(r.externalPort, 10);
  out.writeUInt32BE(r.lifetime >>> 0, 12);
  return out;
}

/**
 * RFC 6886 sets no maximum; NAT-PMP shares its port with PCP, whose messages
 * "MUST NOT exceed 1100 octets" (RFC 6887 §7), and an echo is never longer.
 */
const NATPMP_MAX_ECHO = PCP_MAX_MESSAGE;

/**
 * §3.5: "the entire request MUST be returned to the sender, with the top bit
 * of the opcode set ... and the result code set to 5". Where the request is
 * long enough, the epoch goes in its usual place (every response carries it);
 * the reply is never shorter than a response header (8 octets) nor longer
 * than NATPMP_MAX_ECHO.
 */
export function encodeUnsupportedOpcodeResponse(request: Buffer, epoch: number): Buffer {
  const out = Buffer.alloc(Math.min(Math.max(NATPMP_RESPONSE_HEADER_SIZE, request.length), NATPMP_MAX_ECHO));
  request.copy(out, 0, 0, out.length);
  out[1] = (request[1] ?? 0) | NATPMP_RESPONSE_BIT;
  out.writeUInt16BE(NatPmpResult.UNSUPPORTED_OPCODE, 2);
  out.writeUInt32BE(epoch >>> 0, 4);
  return out;
}

export interface NatPmpResponse {
  op: number;
  result: number;
  epoch: number;
  externalAddress?: IpAddress;
  internalPort?: number;
  externalPort?: number;
  lifetime?: number;
}

/** Decodes a response (tests and tools). */
export function decodeNatPmpResponse(buf: Buffer): { ok: true; msg: NatPmpResponse } | { ok: false; detail: string } {
  if (buf.length < NATPMP_RESPONSE_HEADER_SIZE || buf[0] !== NATPMP_VERSION || !((buf[1] ?? 0) & NATPMP_RESPONSE_BIT)) {
    return { ok: false, detail: 'not a NAT-PMP response' };
  }
  const op = (buf[1] ?? 0) & ~NATPMP_RESPONSE_BIT;
  const msg: NatPmpResponse = { op, result: buf.readUInt16BE(2), epoch: buf.readUInt32BE(4) };
  if (op === NATPMP_OP_EXTERNAL_ADDRESS && buf.length >= NATPMP_EXTERNAL_ADDRESS_RESPONSE_SIZE) {
    msg.externalAddress = ipv4FromBytes(buf.subarray(8, 12));
  }
  if ((op === NATPMP_OP_MAP_UDP || op === NATPMP_OP_MAP_TCP) && buf.length >= NATPMP_MAP_RESPONSE_SIZE) {
    msg.internalPort = buf.readUInt16BE(8);
    msg.externalPort = buf.readUInt16BE(10);
    msg.lifetime = buf.readUInt32BE(12);
  }
  return { ok: true, msg };
}

export function encodeNatPmpMapRequest(op: number, internalPort: number, suggestedExternalPort: number, lifetime: number): Buffer {
  const b = Buffer.alloc(NATPMP_MAP_REQUEST_SIZE);
  b[0] = NATPMP_VERSION;
  b[1] = op;
  b.writeUInt16BE(internalPort, 4);
  b.writeUInt16BE(suggestedExternalPort, 6);
  b.writeUInt32BE(lifetime >>> 0, 8);
  return b;
}
