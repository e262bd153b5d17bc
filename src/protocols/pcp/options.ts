// PCP options (RFC 6887 §7.3, §13; RFC 7220). Each known option is one small
// codec in a table keyed by its IANA code: adding an option is adding a row.
//
//   0                   1                   2                   3
//   | Option Code   |  Reserved     |       Option Length           |
//   |                       (optional) data, padded to 4 octets     |

import { fromWire16, isV4MappedWire, toWire16, type IpAddress } from '../../net/address.js';
import { Opcode, OptionCode } from './constants.js';

export interface ThirdPartyOption {
  code: typeof OptionCode.THIRD_PARTY;
  /** RFC 6887 §13.1: the internal address the mapping is for. */
  address: IpAddress;
  v4: boolean;
}
export interface PreferFailureOption {
  code: typeof OptionCode.PREFER_FAILURE;
}
export interface FilterOption {
  code: typeof OptionCode.FILTER;
  /** Prefix length in 128-bit space as on the wire (IPv4: 96 + v4 length). */
  prefixLength: number;
  /** 0 = every port. */
  remotePeerPort: number;
  remotePeerAddress: IpAddress;
  v4: boolean;
}
export interface DescriptionOption {
  code: typeof OptionCode.DESCRIPTION;
  text: string;
}
export type PcpOption = ThirdPartyOption | PreferFailureOption | FilterOption | DescriptionOption;

/** `option: undefined` = understood, valid, and deliberately not processed. */
type OptionDecode<T> = { ok: true; option: T | undefined } | { ok: false; detail: string };

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

interface OptionCodec<T extends PcpOption> {
  code: T['code'];
  name: string;
  /** Opcodes the option may accompany (RFC 6887 §7.3 and each option's section). */
  validFor: ReadonlySet<number>;
  /** How many times one request may carry it. */
  maxCount: number;
  decode(data: Buffer): OptionDecode<T>;
  encode(option: T): Buffer;
}

const thirdParty: OptionCodec<ThirdPartyOption> = {
  code: OptionCode.THIRD_PARTY,
  name: 'THIRD_PARTY',
  validFor: new Set([Opcode.MAP, Opcode.PEER]),
  maxCount: 1,
  decode(data) {
    if (data.length !== 16) return { ok: false, detail: `THIRD_PARTY length ${data.length}, expected 16` };
    return { ok: true, option: { code: OptionCode.THIRD_PARTY, address: fromWire16(data), v4: isV4MappedWire(data) } };
  },
  encode: (o) => toWire16(o.address),
};

const preferFailure: OptionCodec<PreferFailureOption> = {
  code: OptionCode.PREFER_FAILURE,
  name: 'PREFER_FAILURE',
  validFor: new Set([Opcode.MAP]),
  maxCount: 1,
  decode(data) {
    if (data.length !== 0) return { ok: false, detail: `PREFER_FAILURE length ${data.length}, expected 0` };
    return { ok: true, option: { code: OptionCode.PREFER_FAILURE } };
  },
  encode: () => Buffer.alloc(0),
};

//  | Reserved | Prefix Length | Remote Peer Port | Remote Peer IP Address (128 bits) |
const filter: OptionCodec<FilterOption> = {
  code: OptionCode.FILTER,
  name: 'FILTER',
  validFor: new Set([Opcode.MAP]),
  maxCount: Number.POSITIVE_INFINITY,
  decode(data) {
    if (data.length !== 20) return { ok: false, detail: `FILTER length ${data.length}, expected 20` };
    const prefixLength = data[1] ?? 0;
    const addr = data.subarray(4, 20);
    const v4 = isV4MappedWire(addr);
    // §13.3: a prefix longer than 128 bits, or an IPv4 prefix that does not
    // cover the 96-bit mapped prefix, is malformed. 0 means "remove all".
    if (prefixLength > 128) return { ok: false, detail: `FILTER prefix length ${prefixLength} > 128` };
    if (v4 && prefixLength !== 0 && prefixLength < 96) {
      return { ok: false, detail: `FILTER IPv4 prefix length ${prefixLength} < 96` };
    }
    return {
      ok: true,
      option: {
        code: OptionCode.FILTER,
        prefixLength,
        remotePeerPort: data.readUInt16BE(2),
        remotePeerAddress: fromWire16(addr),
        v4,
      },
    };
  },
  encode(o) {
    const b = Buffer.alloc(20);
    b[1] = o.prefixLength;
    b.writeUInt16BE(o.remotePeerPort, 2);
    toWire16(o.remotePeerAddress).copy(b, 4);
    return b;
  },
};

const description: OptionCodec<DescriptionOption> = {
  code: OptionCode.DESCRIPTION,
  name: 'DESCRIPTION',
  validFor: new Set([Opcode.MAP, Opcode.PEER]),
  maxCount: 1,
  decode(data) {
    // RFC 7220 §3: a description that is not UTF-8 is ignored, not an
    // error (the option is optional to process): it is left out here.
    let text: string;
    try {
      text = strictUtf8.decode(data);
    } catch {
      return { ok: true, option: undefined };
    }
    return { ok: true, option: { code: OptionCode.DESCRIPTION, text } };
  },
  encode: (o) => Buffer.from(o.text, 'utf8'),
};

export const OPTION_CODECS: ReadonlyMap<number, OptionCodec<PcpOption>> = new Map(
  ([thirdParty, preferFailure, filter, description] as OptionCodec<PcpOption>[]).map((c) => [c.code, c]),
);

export function optionName(code: number): string {
  return OPTION_CODECS.get(code)?.name ?? `OPTION_${code}`;
}

/** Option Code, Reserved, Option Length. */
const OPTION_HEADER_SIZE = 4;

/** §7.3: "padded with zeros ... to a multiple of 4 octets". */
const padded4 = (n: number): number => (n + 3) & ~3;

/** One option on the wire: 4-octet header, data, zero padding to a multiple of 4. */
export function encodeOption(o: PcpOption): Buffer {
  const codec = OPTION_CODECS.get(o.code);
  if (!codec) throw new Error(`no codec for option ${o.code}`);
  const data = codec.encode(o);
  const out = Buffer.alloc(OPTION_HEADER_SIZE + padded4(data.length));
  out[0] = o.code;
  out.writeUInt16BE(data.length, 2);
  data.copy(out, OPTION_HEADER_SIZE);
  return out;
}

/** One option as framed on the wire, or the one whose Option Length runs past the message end. */
export type OptionSlot = { code: number; data: Buffer } | { code: number; overrunLength: number };

/**
 * The options of a message from `start` on, in wire order, framed but not
 * decoded. Stops after an overrun; octets too few for another option header
 * are left alone. Lazy, so a caller that stops at an earlier error never
 * sees a later overrun.
 */
export function* optionSlots(buf: Buffer, start: number): Generator<OptionSlot> {
  let off = start;
  while (off + OPTION_HEADER_SIZE <= buf.length) {
    const code = buf[off] ?? 0;
    const len = buf.readUInt16BE(off + 2);
    const end = off + OPTION_HEADER_SIZE + padded4(len);
    if (end > buf.length) {
      yield { code, overrunLength: len };
      return;
    }
    yield { code, data: buf.subarray(off + OPTION_HEADER_SIZE, off + OPTION_HEADER_SIZE + len) };
    off = end;
  }
}
