// Port Control Protocol (PCP), RFC 6887 — wire constants, named as the RFC names them.

export const PCP_VERSION = 2;
/** RFC 6887 §19.1: the server listens on 5351; clients listen for unsolicited messages on 5350. */
export const PCP_SERVER_PORT = 5351;
export const PCP_CLIENT_PORT = 5350;
/** RFC 6887 §7: "All PCP messages ... MUST NOT exceed 1100 octets". */
export const PCP_MAX_MESSAGE = 1100;
export const PCP_HEADER_SIZE = 24;
export const PCP_MAP_BODY_SIZE = 36;
export const PCP_PEER_BODY_SIZE = 56;
/** The R bit of octet 1: 0 = request, 1 = response. */
export const PCP_R_BIT = 0x80;
/** The other seven bits of octet 1: the Opcode. */
export const PCP_OPCODE_MASK = 0x7f;

export const Opcode = {
  ANNOUNCE: 0,
  MAP: 1,
  PEER: 2,
} as const;
export type Opcode = (typeof Opcode)[keyof typeof Opcode];

export const ResultCode = {
  SUCCESS: 0,
  UNSUPP_VERSION: 1,
  NOT_AUTHORIZED: 2,
  MALFORMED_REQUEST: 3,
  UNSUPP_OPCODE: 4,
  UNSUPP_OPTION: 5,
  MALFORMED_OPTION: 6,
  NETWORK_FAILURE: 7,
  NO_RESOURCES: 8,
  UNSUPP_PROTOCOL: 9,
  USER_EX_QUOTA: 10,
  CANNOT_PROVIDE_EXTERNAL: 11,
  ADDRESS_MISMATCH: 12,
  EXCESSIVE_REMOTE_PEERS: 13,
} as const;
export type ResultName = keyof typeof ResultCode;
export type ResultCode = (typeof ResultCode)[ResultName];

export const OptionCode = {
  THIRD_PARTY: 1,
  PREFER_FAILURE: 2,
  FILTER: 3,
  /** RFC 7220 */
  DESCRIPTION: 128,
} as const;
export type OptionCode = (typeof OptionCode)[keyof typeof OptionCode];

/** RFC 6887 §7.3: option codes 0-127 are mandatory to process, 128-255 optional. */
export const OPTION_OPTIONAL_FROM = 128;

/**
 * RFC 6887 §7.2: errors are "long lifetime" (the condition will not go away
 * soon) or "short lifetime"; the RFC recommends 30 minutes and 30 seconds.
 */
export const LONG_ERROR_LIFETIME = 1800;
const SHORT_ERROR_LIFETIME = 30;

const SHORT_ERRORS: ReadonlySet<number> = new Set([
  ResultCode.NETWORK_FAILURE,
  ResultCode.NO_RESOURCES,
  ResultCode.USER_EX_QUOTA,
  // §7.4 leaves this one's lifetime to the reason; ours is always "that port
  // is taken (or forbidden) right now", which may change soon.
  ResultCode.CANNOT_PROVIDE_EXTERNAL,
]);

export function errorLifetime(code: ResultCode): number {
  return SHORT_ERRORS.has(code) ? SHORT_ERROR_LIFETIME : LONG_ERROR_LIFETIME;
}

export function resultName(code: number): string {
  for (const [k, v] of Object.entries(ResultCode)) if (v === code) return k;
  return `RESULT_${code}`;
}
