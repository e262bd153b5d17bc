// Property-based fuzzing (fast-check) of everything a datagram touches:
//
//   1. decodePcpRequest and decodeNatPmpRequest, ≥ 100,000 inputs each:
//      (a) fully random byte arrays of 0..1200 octets, (b) mutations of the
//      well-formed rfc-vectors/ requests (bit flips, truncation, extension,
//      overwrites, option length/code rewrites, duplicated and added option
//      blocks), (c) random bodies under a plausible header. No exception may
//      escape and the result must be well typed; for PCP the error echo built
//      from the input must stay within RFC 6887 §7 limits (≤ 1100 octets,
//      a multiple of 4, never larger than the request: no amplification).
//   2. The full path (dispatch → handlers → MappingService → memory firewall)
//      through harness().send(), ≥ 20,000 mutated datagrams from a rotating
//      set of LAN sources; every reply is checked for size and header sanity.
//
// Each job runs in a worker thread watched from the main thread: the decoders
// are synchronous, so a hang inside one can only be caught from outside. The
// worker records every input in shared memory before using it; if it stops
// making progress the watchdog terminates it and reports that input. On the
// full path every datagram is additionally raced against a timeout.
//
// The seed is fixed for reproducibility; FUZZ_SEED=<int> overrides it.

import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { Test } from 'tap';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { mustParseIp, toWire16 } from '../src/net/address.js';
import { decodePcpRequest, encodePcpErrorEcho, type PcpDecodeResult, type MapData } from '../src/protocols/pcp/codec.js';
import { ResultCode, type ResultName } from '../src/protocols/pcp/constants.js';
import type { PcpOption } from '../src/protocols/pcp/options.js';
import { NatPmpResult, decodeNatPmpRequest, type NatPmpDecodeResult } from '../src/protocols/natpmp/codec.js';
import { harness } from './helpers/harness.js';
import { loadVectors } from './helpers/vectors.js';
import { resolveSeed, scaledRuns, watchProgress } from './helpers/fuzz.js';

// ---------------------------------------------------------------- parameters

const DEFAULT_SEED = 0x5eed6887;
/** Per decoder: (a) random + (b) mutated + (c) structured; (a)+(b) alone reach 100,000. */
const DECODER_RUNS = scaledRuns({ random: 40_000, mutated: 60_000, structured: 10_000 });
const DECODER_RANDOM_RUNS = DECODER_RUNS.random;
const DECODER_MUTATED_RUNS = DECODER_RUNS.mutated;
const DECODER_STRUCTURED_RUNS = DECODER_RUNS.structured;
/** 100 000 by default; `npm run fuzz -- --runs N` asks for more (or fewer). */
const MIN_DECODER_RUNS = DECODER_RANDOM_RUNS + DECODER_MUTATED_RUNS;
/** Full path: sequences of 1..8 datagrams against a fresh service each. */
const PATH_RUNS = 10_000;
const PATH_DATAGRAMS_PER_RUN = { min: 1, max: 8 };
const MIN_PATH_DATAGRAMS = 20_000;
/** One datagram through the whole path must be answered (or dropped) within this. */
const DATAGRAM_TIMEOUT_MS = 2_000;
/** A worker that records no new input for this long is hung. */
const STALL_MS = 15_000;
const MAX_RANDOM_LENGTH = 1200;
/** Mutations may grow a packet past the 1100-octet limit, up to this. */
const MAX_MUTATED_LENGTH = 1400;
const PCP_MAX = 1100;

const SOURCES = [
  '192.168.77.10',
  '192.168.77.11',
  '192.168.77.12',
  '192.168.77.13',
  '2001:db8:77::10',
  '2001:db8:77::11',
  '2001:db8:77::12',
  '2001:db8:77::13',
] as const;

type JobName = 'pcp' | 'natpmp' | 'path';

// ------------------------------------------------------- shared-memory slot
// [0] heartbeat (inputs started)  [1] input length  [2] source index (-1: none)
// [3] phase index; then the input octets (first SLOT_BYTES of them).

const SLOT_BYTES = 4096;
const SLOT_HEADER = 16;

class Slot {
  readonly meta: Int32Array;
  readonly bytes: Uint8Array;
  constructor(readonly sab: SharedArrayBuffer) {
    this.meta = new Int32Array(sab, 0, 4);
    this.bytes = new Uint8Array(sab, SLOT_HEADER, SLOT_BYTES);
  }
  static create(): Slot {
    return new Slot(new SharedArrayBuffer(SLOT_HEADER + SLOT_BYTES));
  }
  record(buf: Uint8Array, source = -1): void {
    this.bytes.set(buf.length > SLOT_BYTES ? buf.subarray(0, SLOT_BYTES) : buf);
    this.meta[1] = buf.length;
    this.meta[2] = source;
    Atomics.add(this.meta, 0, 1);
  }
  phase(i: number): void {
    this.meta[3] = i;
  }
  heartbeat(): number {
    return Atomics.load(this.meta, 0);
  }
  describe(): string {
    const len = this.meta[1] ?? 0;
    const src = this.meta[2] ?? -1;
    const hex = Buffer.from(this.bytes.subarray(0, Math.min(len, SLOT_BYTES))).toString('hex');
    return `${len}-octet input${src >= 0 ? ` from ${SOURCES[src]}` : ''}: ${hex}${len > SLOT_BYTES ? '…' : ''}`;
  }
}

// ------------------------------------------------------------ seed packets

const vectors = loadVectors();
function wellFormedRequests(): Buffer[] {
  const seen = new Set<string>();
  const out: Buffer[] = [];
  for (const v of vectors) {
    const hexes = [...v.setup.map((s) => s.request), ...(v.malformed ? [] : [v.request])];
    for (const h of hexes) {
      if (seen.has(h)) continue;
      seen.add(h);
      out.push(Buffer.from(h, 'hex'));
    }
  }
  return out;
}
const ALL_SEEDS = wellFormedRequests();
const PCP_SEEDS = ALL_SEEDS.filter((b) => b[0] === 2);
const NATPMP_SEEDS = ALL_SEEDS.filter((b) => b[0] === 0);

// --------------------------------------------------------------- mutations

type Mutation =
  | { k: 'flip'; at: number; bit: number }
  | { k: 'truncate'; to: number }
  | { k: 'extend'; bytes: Uint8Array }
  | { k: 'overwrite'; at: number; bytes: Uint8Array }
  | { k: 'word'; at: number; width: 1 | 2 | 4; value: number }
  | { k: 'version'; value: number }
  | { k: 'opcode'; value: number }
  | { k: 'optLen'; which: number; len: number }
  | { k: 'optCode'; which: number; code: number }
  | { k: 'dupOpt'; which: number; times: number; atEnd: boolean }
  | { k: 'addOpt'; code: number; data: Uint8Array; declared: number | null; pad: boolean };

const interesting = fc.oneof(
  fc.constantFrom(0, 1, 2, 3, 4, 5, 12, 16, 20, 24, 36, 56, 60, 80, 0x7f, 0x80, 0xff, 0x100, 1096, 1100, 1104, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff),
  fc.nat(0xffffffff),
);
const optionLength = fc.oneof(
  fc.constantFrom(0, 1, 2, 3, 4, 5, 7, 8, 12, 15, 16, 17, 19, 20, 21, 24, 127, 128, 129, 1024, 1036, 1076, 1100, 0xfffc, 0xffff),
  fc.integer({ min: 0, max: 0xffff }),
);
const optionCode = fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 127, 128, 129, 255), fc.integer({ min: 0, max: 255 }));

const pcpMutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('truncate' as const), to: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('extend' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('overwrite' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('word' as const), at: fc.nat(), width: fc.constantFrom(1 as const, 2 as const, 4 as const), value: interesting }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('version' as const), value: fc.constantFrom(0, 1, 2, 3, 0xff) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('opcode' as const), value: fc.oneof(fc.constantFrom(0, 1, 2, 3, 0x7f, 0x80, 0x81, 0x82), fc.integer({ min: 0, max: 255 })) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('optLen' as const), which: fc.nat(), len: optionLength }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('optCode' as const), which: fc.nat(), code: optionCode }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('dupOpt' as const), which: fc.nat(), times: fc.integer({ min: 1, max: 20 }), atEnd: fc.boolean() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('addOpt' as const),
      code: optionCode,
      data: fc.oneof(fc.uint8Array({ maxLength: 24 }), fc.uint8Array({ minLength: 0, maxLength: 300, size: 'max' })),
      declared: fc.option(optionLength, { freq: 3 }),
      pad: fc.boolean(),
    }),
  },
);

/** NAT-PMP has no options: the option-aware mutations are left out. */
const natpmpMutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('truncate' as const), to: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('extend' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('overwrite' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('word' as const), at: fc.nat(), width: fc.constantFrom(1 as const, 2 as const, 4 as const), value: interesting }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('version' as const), value: fc.constantFrom(0, 1, 2, 0xff) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('opcode' as const), value: fc.oneof(fc.constantFrom(0, 1, 2, 3, 0x7f, 0x80, 0x81, 0x82, 0xff), fc.integer({ min: 0, max: 255 })) }) },
);

/** Option blocks of a PCP message as the wire lays them out (the last one may be cut short). */
function optionBlocks(b: Buffer): { off: number; size: number }[] {
  const opcode = (b[1] ?? 0) & 0x7f;
  let off = opcode === 0 ? 24 : opcode === 2 ? 80 : 60;
  const out: { off: number; size: number }[] = [];
  while (off + 4 <= b.length && out.length < 300) {
    const len = b.readUInt16BE(off + 2);
    const size = Math.min(4 + ((len + 3) & ~3), b.length - off);
    out.push({ off, size });
    off += size;
  }
  return out;
}

function grownCopy(b: Buffer, min: number): Buffer {
  const c = Buffer.alloc(Math.max(b.length, min));
  b.copy(c);
  return c;
}

function applyMutation(b: Buffer, m: Mutation): Buffer {
  const len = b.length;
  switch (m.k) {
    case 'flip': {
      if (len === 0) return b;
      const c = Buffer.from(b);
      const i = m.at % len;
      c[i] = (c[i] ?? 0) ^ (1 << m.bit);
      return c;
    }
    case 'truncate':
      return len === 0 ? b : Buffer.from(b.subarray(0, m.to % len));
    case 'extend':
      return Buffer.concat([b, m.bytes]);
    case 'overwrite': {
      const at = len === 0 ? 0 : m.at % len;
      const c = grownCopy(b, at + m.bytes.length);
      c.set(m.bytes, at);
      return c;
    }
    case 'word': {
      const at = len === 0 ? 0 : m.at % len;
      const c = grownCopy(b, at + m.width);
      if (m.width === 1) c.writeUInt8(m.value & 0xff, at);
      else if (m.width === 2) c.writeUInt16BE(m.value & 0xffff, at);
      else c.writeUInt32BE(m.value >>> 0, at);
      return c;
    }
    case 'version': {
      const c = grownCopy(b, 1);
      c[0] = m.value;
      return c;
    }
    case 'opcode': {
      const c = grownCopy(b, 2);
      c[1] = m.value;
      return c;
    }
    case 'optLen':
    case 'optCode':
    case 'dupOpt': {
      const blocks = optionBlocks(b);
      const blk = blocks[m.which % Math.max(1, blocks.length)];
      if (!blk) return b;
      if (m.k === 'optLen') {
        const c = Buffer.from(b);
        c.writeUInt16BE(m.len, blk.off + 2);
        return c;
      }
      if (m.k === 'optCode') {
        const c = Buffer.from(b);
        c[blk.off] = m.code;
        return c;
      }
      const block = b.subarray(blk.off, blk.off + blk.size);
      const copies = Array.from({ length: m.times }, () => block);
      if (m.atEnd) return Buffer.concat([b, ...copies]);
      const cut = blk.off + blk.size;
      return Buffer.concat([b.subarray(0, cut), ...copies, b.subarray(cut)]);
    }
    case 'addOpt': {
      const head = Buffer.alloc(4);
      head[0] = m.code;
      head.writeUInt16BE(m.declared ?? m.data.length, 2);
      const pad = m.pad ? Buffer.alloc((4 - (m.data.length % 4)) % 4) : Buffer.alloc(0);
      return Buffer.concat([b, head, m.data, pad]);
    }
  }
}

function mutate(seed: Buffer, mutations: readonly Mutation[]): Buffer {
  let b = seed;
  for (const m of mutations) {
    b = applyMutation(b, m);
    if (b.length > MAX_MUTATED_LENGTH) b = Buffer.from(b.subarray(0, MAX_MUTATED_LENGTH));
  }
  return b;
}

// ------------------------------------------------------------ input shapes

const toBuf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.length);

/** (a) Fully random: lengths spread over 0..1200, with the short end (framing checks) well covered. */
const randomPacket: fc.Arbitrary<Buffer> = fc
  .oneof(
    fc.uint8Array({ minLength: 0, maxLength: MAX_RANDOM_LENGTH, size: 'max' }),
    fc.uint8Array({ minLength: 0, maxLength: MAX_RANDOM_LENGTH }),
    fc.uint8Array({ minLength: 0, maxLength: 32 }),
  )
  .map(toBuf);

function mutatedPacket(seeds: readonly Buffer[], mutation: fc.Arbitrary<Mutation>): fc.Arbitrary<Buffer> {
  if (seeds.length === 0) throw new Error('no well-formed seed requests');
  return fc
    .record({ seed: fc.integer({ min: 0, max: seeds.length - 1 }), mutations: fc.array(mutation, { minLength: 1, maxLength: 6 }) })
    .map(({ seed, mutations }) => mutate(seeds[seed] as Buffer, mutations));
}

/** (c) Random bodies under a header a decoder will look past. */
const structuredPcp: fc.Arbitrary<Buffer> = fc
  .record({
    version: fc.constantFrom(2, 2, 2, 2, 0, 1, 3, 0xff),
    opcode: fc.oneof(fc.constantFrom(0, 1, 2, 0x80, 0x81, 3, 0x7f), fc.integer({ min: 0, max: 255 })),
    body: fc.uint8Array({ minLength: 0, maxLength: MAX_RANDOM_LENGTH - 2, size: 'max' }),
    aligned: fc.boolean(),
  })
  .map(({ version, opcode, body, aligned }) => {
    const b = Buffer.concat([Buffer.from([version, opcode]), body]);
    return aligned ? Buffer.from(b.subarray(0, b.length & ~3)) : b;
  });

const structuredNatPmp: fc.Arbitrary<Buffer> = fc
  .record({
    opcode: fc.oneof(fc.constantFrom(0, 1, 2, 3, 0x7f, 0x80, 0x81, 0x82, 0xff), fc.integer({ min: 0, max: 255 })),
    body: fc.oneof(fc.uint8Array({ maxLength: 16 }), fc.uint8Array({ minLength: 0, maxLength: MAX_RANDOM_LENGTH - 2, size: 'max' })),
  })
  .map(({ opcode, body }) => Buffer.concat([Buffer.from([0, opcode]), body]));

// ---------------------------------------------------------- the properties

const RESULT_NAMES: ReadonlySet<string> = new Set(Object.keys(ResultCode));
const NATPMP_RESULTS: ReadonlySet<number> = new Set(Object.values(NatPmpResult));

function fail(what: string): never {
  throw new Error(what);
}
const isU16 = (n: unknown): boolean => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 0xffff;
const isU32 = (n: unknown): boolean => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 0xffffffff;
const roundUp4 = (n: number): number => (n + 3) & ~3;

function checkMapData(d: MapData | undefined, peer: boolean): void {
  if (!d || typeof d !== 'object') fail('MAP/PEER message without opcode data');
  if (!Buffer.isBuffer(d.nonce) || d.nonce.length !== 12) fail('nonce is not 12 octets');
  if (!Number.isInteger(d.protocol) || d.protocol < 0 || d.protocol > 255) fail(`protocol ${d.protocol}`);
  if (!isU16(d.internalPort) || !isU16(d.externalPort)) fail('port out of range');
  if (typeof d.externalAddress !== 'string') fail('external address is not an address');
  if (peer) {
    const p = d as MapData & { remotePeerPort?: unknown; remotePeerAddress?: unknown };
    if (!isU16(p.remotePeerPort)) fail('remote peer port out of range');
    if (typeof p.remotePeerAddress !== 'string') fail('remote peer address is not an address');
  }
}

function checkOption(o: PcpOption): void {
  switch (o.code) {
    case 1:
      if (typeof o.address !== 'string' || typeof o.v4 !== 'boolean') fail('malformed THIRD_PARTY value');
      return;
    case 2:
      return;
    case 3:
      if (!Number.isInteger(o.prefixLength) || o.prefixLength < 0 || o.prefixLength > 128) fail(`FILTER prefix ${o.prefixLength}`);
      if (!isU16(o.remotePeerPort) || typeof o.remotePeerAddress !== 'string' || typeof o.v4 !== 'boolean') fail('malformed FILTER value');
      return;
    case 128:
      if (typeof o.text !== 'string') fail('DESCRIPTION text is not a string');
      return;
    default:
      fail(`decoded option with code ${(o as { code: unknown }).code}`);
  }
}

/** decodePcpRequest: no throw, well-typed result, bounded error echo. */
function pcpDecoderProperty(buf: Buffer): void {
  const r: PcpDecodeResult = decodePcpRequest(buf);
  if (!r || typeof r !== 'object') fail('result is not an object');
  if (r.ok === true) {
    const m = r.msg;
    if (!m || typeof m !== 'object') fail('ok:true without msg');
    if (buf[0] !== 2 || ((buf[1] ?? 0) & 0x80) !== 0) fail('accepted a message that is not a version-2 request');
    if (buf.length < 24 || buf.length > PCP_MAX || buf.length % 4 !== 0) fail(`accepted a ${buf.length}-octet message`);
    if (m.opcode !== 0 && m.opcode !== 1 && m.opcode !== 2) fail(`accepted opcode ${m.opcode}`);
    if (!isU32(m.lifetime)) fail(`lifetime ${m.lifetime}`);
    if (!Buffer.isBuffer(m.clientAddressWire) || m.clientAddressWire.length !== 16) fail('client address is not 16 octets');
    if (!Buffer.isBuffer(m.raw) || !m.raw.equals(buf)) fail('raw is not the datagram');
    if (m.opcode === 1) checkMapData(m.map, false);
    else if (m.map !== undefined) fail('MAP data on a non-MAP message');
    if (m.opcode === 2) checkMapData(m.peer, true);
    else if (m.peer !== undefined) fail('PEER data on a non-PEER message');
    if (!Array.isArray(m.options)) fail('options is not an array');
    for (const o of m.options) checkOption(o);
  } else if (r.ok === false) {
    if (r.silent === true) {
      if (typeof r.detail !== 'string') fail('silent drop without detail');
    } else if (r.silent === false) {
      if (!RESULT_NAMES.has(r.code)) fail(`error code ${String(r.code)} is not an RFC 6887 result code`);
      if (r.code === 'SUCCESS') fail('error with result SUCCESS');
      if (typeof r.detail !== 'string') fail('error without detail');
    } else fail(`ok:false with silent ${String((r as { silent: unknown }).silent)}`);
  } else fail(`ok is ${String((r as { ok: unknown }).ok)}`);

  // The echo the handler would send (parsed or not), RFC 6887 §7.3/§8.2.
  const code: ResultName = r.ok ? 'ADDRESS_MISMATCH' : r.silent ? 'MALFORMED_REQUEST' : r.code;
  const echo = encodePcpErrorEcho(buf, ResultCode[code], 1800, 12345, r.ok);
  const bound = Math.max(24, roundUp4(buf.length));
  if (echo.length > PCP_MAX) fail(`error echo of ${echo.length} octets > 1100`);
  if (echo.length % 4 !== 0) fail(`error echo of ${echo.length} octets, not a multiple of 4`);
  if (echo.length > bound) fail(`error echo of ${echo.length} octets for a ${buf.length}-octet request (amplification)`);
  if (echo[0] !== 2 || ((echo[1] ?? 0) & 0x80) === 0 || echo[3] !== ResultCode[code]) fail('error echo header is not a PCP response');
}

/** decodeNatPmpRequest: no throw, well-typed result. */
function natpmpDecoderProperty(buf: Buffer): void {
  const r: NatPmpDecodeResult = decodeNatPmpRequest(buf);
  if (!r || typeof r !== 'object') fail('result is not an object');
  if (r.ok === true) {
    const m = r.msg;
    if (!m || typeof m !== 'object') fail('ok:true without msg');
    if (buf[0] !== 0 || buf.length < 2) fail('accepted a datagram that is not a NAT-PMP request');
    if (m.op === 0) {
      if (buf[1] !== 0) fail('external-address request from another opcode');
    } else if (m.op === 1 || m.op === 2) {
      if (buf[1] !== m.op || buf.length < 12) fail(`accepted a ${buf.length}-octet mapping request`);
      if (!isU16(m.internalPort) || !isU16(m.suggestedExternalPort) || !isU32(m.lifetime)) fail('mapping field out of range');
    } else fail(`accepted opcode ${(m as { op: unknown }).op}`);
  } else if (r.ok === false) {
    if (r.silent === true) {
      if (typeof r.detail !== 'string') fail('silent drop without detail');
    } else if (r.silent === false) {
      if (!NATPMP_RESULTS.has(r.result) || r.result === NatPmpResult.SUCCESS) fail(`error result ${String(r.result)}`);
      if (typeof r.detail !== 'string') fail('error without detail');
    } else fail(`ok:false with silent ${String((r as { silent: unknown }).silent)}`);
  } else fail(`ok is ${String((r as { ok: unknown }).ok)}`);
}

/** One reply (or silence) of the full path. */
function checkReply(source: string, req: Buffer, reply: Buffer | undefined): void {
  if (reply === undefined) return;
  if (!Buffer.isBuffer(reply)) fail('reply is not a Buffer');
  if (reply.length > PCP_MAX) fail(`${reply.length}-octet reply > 1100`);
  if (reply[0] === 2) {
    if (reply.length % 4 !== 0) fail(`${reply.length}-octet PCP reply, not a multiple of 4`);
    if (((reply[1] ?? 0) & 0x80) === 0) fail('PCP reply without the R bit');
    if ((reply[3] ?? 255) > 13) fail(`PCP result code ${reply[3]}`);
    const bound = Math.max(24, roundUp4(req.length));
    if (reply.length > bound) fail(`${reply.length}-octet PCP reply to a ${req.length}-octet request (amplification)`);
  } else if (reply[0] === 0) {
    if (mustParseIp(source).includes(':')) fail('NAT-PMP reply to an IPv6 source');
    const echoed = Math.min(req.length, PCP_MAX);
    if (reply.length !== 8 && reply.length !== 12 && reply.length !== 16 && reply.length !== echoed) {
      fail(`${reply.length}-octet NAT-PMP reply to a ${req.length}-octet request`);
    }
  } else fail(`reply with version octet ${reply[0]}`);
}

interface Datagram {
  src: number;
  packet: { seed: number; mutations: Mutation[] } | { random: Uint8Array };
  /** Put the source into the PCP client-address field, to get past §8.2's check. */
  patchClient: boolean;
  /** Milliseconds the clock moves (and expiry runs) before this datagram. */
  tick: number;
}

const pathMutation: fc.Arbitrary<Mutation> = fc.oneof({ weight: 3, arbitrary: pcpMutation }, { weight: 1, arbitrary: natpmpMutation });
const datagramArb: fc.Arbitrary<Datagram> = fc.record({
  src: fc.integer({ min: 0, max: SOURCES.length - 1 }),
  packet: fc.oneof(
    { weight: 1, arbitrary: fc.record({ random: fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: MAX_RANDOM_LENGTH, size: 'max' })) }) },
    {
      weight: 5,
      arbitrary: fc.record({ seed: fc.integer({ min: 0, max: ALL_SEEDS.length - 1 }), mutations: fc.array(pathMutation, { minLength: 0, maxLength: 4 }) }),
    },
  ),
  patchClient: fc.boolean(),
  tick: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 200_000_000 }) }),
});
const pathRunArb = fc.record({
  noExternal: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  datagrams: fc.array(datagramArb, { minLength: PATH_DATAGRAMS_PER_RUN.min, maxLength: PATH_DATAGRAMS_PER_RUN.max, size: 'max' }),
});

function buildDatagram(d: Datagram): Buffer {
  const source = SOURCES[d.src] as string;
  let b = 'random' in d.packet ? Buffer.from(d.packet.random) : mutate(ALL_SEEDS[d.packet.seed] as Buffer, d.packet.mutations);
  if (d.patchClient && b.length >= 24 && b[0] !== 0) {
    b = Buffer.from(b);
    toWire16(mustParseIp(source)).copy(b, 8);
  }
  return b;
}

/**
 * Once one datagram has timed out a hang is established, and fast-check goes
 * on to shrink it: each candidate that still hangs would cost the full
 * timeout, so from then on the fuse is short.
 */
let hangSeen = false;
const SHRINK_TIMEOUT_MS = 250;

async function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  const ms = hangSeen ? SHRINK_TIMEOUT_MS : DATAGRAM_TIMEOUT_MS;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          hangSeen = true;
          reject(new Error(`${what}: not handled within ${ms} ms (hang)`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// ------------------------------------------------------------- worker side

interface PhaseReport {
  name: string;
  numRuns: number;
  failed: boolean;
  ms: number;
  seed: number;
  datagrams?: number;
  counterexample?: string;
  error?: string;
  report?: string;
}
type WorkerMessage = { type: 'phase'; phase: PhaseReport } | { type: 'done' };

function errorText(e: unknown): string {
  return e instanceof Error ? (e.stack ?? e.message) : String(e);
}

/** What the decoder made of a counterexample, for the report. */
function describeDecode(job: JobName, b: Buffer): string {
  try {
    if (job === 'natpmp') {
      const r = decodeNatPmpRequest(b);
      return r.ok ? `ok, opcode ${r.msg.op}` : r.silent ? `silent (${r.detail})` : `result ${r.result} (${r.detail})`;
    }
    const r = decodePcpRequest(b);
    return r.ok ? `ok, opcode ${r.msg.opcode}, ${r.msg.options.length} options` : r.silent ? `silent (${r.detail})` : `${r.code} (${r.detail})`;
  } catch (e) {
    return `threw ${e instanceof Error ? e.message : String(e)}`;
  }
}

type PathRun = { noExternal: boolean; datagrams: Datagram[] };

/**
 * One property run of the full path: a fresh service, then each datagram in
 * turn. `trace`, when given, receives one line per datagram (the replay of a
 * counterexample uses it to show which datagram broke and what came back).
 */
async function runPath(run: PathRun, slot: Slot | undefined, onSent: () => void, trace?: string[]): Promise<void> {
  const h = harness();
  try {
    if (run.noExternal) h.setExternal(undefined);
    for (const [i, d] of run.datagrams.entries()) {
      const source = SOURCES[d.src] as string;
      const buf = buildDatagram(d);
      if (d.tick > 0) {
        h.clock.advance(d.tick);
        h.service.expireDue();
      }
      slot?.record(buf, d.src);
      const line = `#${i + 1}${d.tick ? ` after +${d.tick} ms` : ''} from ${source}: ${buf.length} octets ${buf.toString('hex')}`;
      let reply: Buffer | undefined;
      try {
        reply = await withTimeout(h.send(source, buf), `datagram from ${source}`);
        onSent();
        checkReply(source, buf, reply);
      } catch (e) {
        trace?.push(`${line}\n      → ${reply ? `${reply.length} octets ${reply.toString('hex')}` : 'no reply'}  ✗ ${e instanceof Error ? e.message : String(e)}`);
        throw e;
      }
      trace?.push(`${line}\n      → ${reply ? `${reply.length} octets ${reply.toString('hex')}` : 'no reply'}`);
    }
  } finally {
    h.service.stop();
  }
}

async function runWorker(job: JobName, seed: number, slot: Slot, post: (m: WorkerMessage) => void): Promise<void> {
  let phaseIndex = 0;
  const syncPhase = (name: string, arb: fc.Arbitrary<Buffer>, numRuns: number, check: (b: Buffer) => void): void => {
    slot.phase(phaseIndex++);
    const started = performance.now();
    const details = fc.check(
      fc.property(arb, (b) => {
        slot.record(b);
        check(b);
      }),
      { seed, numRuns },
    );
    const phase: PhaseReport = { name, numRuns: details.numRuns, failed: details.failed, ms: performance.now() - started, seed: details.seed };
    if (details.failed) {
      const ce = details.counterexample?.[0];
      phase.counterexample = ce ? `${ce.length} octets: ${ce.toString('hex')}; decoder: ${describeDecode(job, ce)}` : 'none';
      phase.error = errorText(details.errorInstance);
      phase.report = `FUZZ_SEED=${details.seed}, path ${details.counterexamplePath}, ${details.numShrinks} shrinks`;
    }
    post({ type: 'phase', phase });
  };

  if (job === 'pcp') {
    syncPhase('(a) random byte arrays, 0..1200 octets', randomPacket, DECODER_RANDOM_RUNS, pcpDecoderProperty);
    syncPhase(`(b) mutations of ${PCP_SEEDS.length} well-formed vector requests`, mutatedPacket(PCP_SEEDS, pcpMutation), DECODER_MUTATED_RUNS, pcpDecoderProperty);
    syncPhase('(c) random bodies under a plausible header', structuredPcp, DECODER_STRUCTURED_RUNS, pcpDecoderProperty);
  } else if (job === 'natpmp') {
    syncPhase('(a) random byte arrays, 0..1200 octets', randomPacket, DECODER_RANDOM_RUNS, natpmpDecoderProperty);
    syncPhase(`(b) mutations of ${NATPMP_SEEDS.length} well-formed vector requests`, mutatedPacket(NATPMP_SEEDS, natpmpMutation), DECODER_MUTATED_RUNS, natpmpDecoderProperty);
    syncPhase('(c) random bodies under a version-0 header', structuredNatPmp, DECODER_STRUCTURED_RUNS, natpmpDecoderProperty);
  } else {
    slot.phase(phaseIndex++);
    let datagrams = 0;
    const started = performance.now();
    const details = await fc.check(
      fc.asyncProperty(pathRunArb, (run) => runPath(run, slot, () => datagrams++)),
      { seed, numRuns: PATH_RUNS },
    );
    const phase: PhaseReport = {
      name: `${PATH_RUNS} service runs of ${PATH_DATAGRAMS_PER_RUN.min}..${PATH_DATAGRAMS_PER_RUN.max} datagrams`,
      numRuns: details.numRuns,
      failed: details.failed,
      ms: performance.now() - started,
      seed: details.seed,
      datagrams,
    };
    if (details.failed) {
      const run = details.counterexample?.[0];
      if (run) {
        const trace: string[] = [];
        await runPath(run, undefined, () => {}, trace).catch(() => {});
        phase.counterexample = `${run.noExternal ? '(no external address)\n' : ''}${trace.join('\n')}`;
      } else phase.counterexample = 'none';
      phase.error = errorText(details.errorInstance);
      phase.report = `FUZZ_SEED=${details.seed}, path ${details.counterexamplePath}, ${details.numShrinks} shrinks`;
    }
    post({ type: 'phase', phase });
  }
  post({ type: 'done' });
}

// --------------------------------------------------------------- main side

interface JobOutcome {
  phases: PhaseReport[];
  /** Hang, crash outside a property, or abnormal exit. */
  abnormal?: string;
}

function supervise(job: JobName, seed: number): Promise<JobOutcome> {
  const slot = Slot.create();
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { job, seed, sab: slot.sab } });
  const phases: PhaseReport[] = [];
  return new Promise((resolve) => {
    let finished = false;
    const finish = (abnormal?: string): void => {
      if (finished) return;
      finished = true;
      stopWatching();
      void worker.terminate();
      resolve({ phases, abnormal });
    };
    const stopWatching = watchProgress(() => slot.heartbeat(), STALL_MS, () =>
      finish(`hang: no progress for ${STALL_MS} ms in phase ${(slot.meta[3] ?? 0) + 1} while handling the ${slot.describe()}`),
    );
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'phase') phases.push(m.phase);
      else finish();
    });
    worker.on('error', (e) => finish(`exception escaped (outside the property) in phase ${(slot.meta[3] ?? 0) + 1}, last input ${slot.describe()}:\n${errorText(e)}`));
    worker.on('exit', (code) => finish(`worker exited with code ${code} before finishing; last input ${slot.describe()}`));
  });
}

function passed(o: JobOutcome): boolean {
  return o.abnormal === undefined && o.phases.length > 0 && o.phases.every((p) => !p.failed);
}

async function main(): Promise<void> {
  const { default: t } = await import('tap');
  const seed = resolveSeed(DEFAULT_SEED);
  t.comment(`fuzz seed ${seed} (FUZZ_SEED=<int> to override)`);

  // All three jobs start now and run in parallel; the tests below await them.
  const jobs: Record<JobName, Promise<JobOutcome>> = {
    pcp: supervise('pcp', seed),
    natpmp: supervise('natpmp', seed),
    path: supervise('path', seed),
  };

  const report = (t: Test, outcome: JobOutcome): void => {
    for (const p of outcome.phases) {
      t.comment(`${p.name}: ${p.numRuns} runs${p.datagrams !== undefined ? `, ${p.datagrams} datagrams` : ''} in ${(p.ms / 1000).toFixed(1)} s`);
      t.notOk(p.failed, `${p.name}: property holds`, p.failed ? { counterexample: p.counterexample, error: p.error, replay: p.report } : {});
    }
    t.notOk(outcome.abnormal, 'worker finished: no synchronous hang, no exception escaping outside the property', outcome.abnormal ? { failure: outcome.abnormal } : {});
  };

  t.test(`decodePcpRequest: ≥ ${MIN_DECODER_RUNS} random and mutated packets (seed ${seed})`, async (t) => {
    const outcome = await jobs.pcp;
    report(t, outcome);
    const ab = outcome.phases.slice(0, 2).reduce((n, p) => n + p.numRuns, 0);
    // A failing phase stops at its counterexample; the count only means something otherwise.
    if (passed(outcome)) t.ok(ab >= MIN_DECODER_RUNS, `${ab} random + mutated runs ≥ ${MIN_DECODER_RUNS}`);
  });

  t.test(`decodeNatPmpRequest: ≥ ${MIN_DECODER_RUNS} random and mutated packets (seed ${seed})`, async (t) => {
    const outcome = await jobs.natpmp;
    report(t, outcome);
    const ab = outcome.phases.slice(0, 2).reduce((n, p) => n + p.numRuns, 0);
    // A failing phase stops at its counterexample; the count only means something otherwise.
    if (passed(outcome)) t.ok(ab >= MIN_DECODER_RUNS, `${ab} random + mutated runs ≥ ${MIN_DECODER_RUNS}`);
  });

  t.test(`full path (dispatch → handlers → service → memory firewall): ≥ ${MIN_PATH_DATAGRAMS} mutated datagrams (seed ${seed})`, async (t) => {
    const outcome = await jobs.path;
    report(t, outcome);
    const sent = outcome.phases.reduce((n, p) => n + (p.datagrams ?? 0), 0);
    if (passed(outcome)) t.ok(sent >= MIN_PATH_DATAGRAMS, `${sent} datagrams ≥ ${MIN_PATH_DATAGRAMS}`);
  });
}

if (isMainThread) {
  await main();
} else {
  const { job, seed, sab } = workerData as { job: JobName; seed: number; sab: SharedArrayBuffer };
  const port = parentPort;
  if (!port) throw new Error('worker without a parent port');
  await runWorker(job, seed, new Slot(sab), (m) => port.postMessage(m));
}
