// One datagram to UDP 5351 → one reply (or silence). PCP and NAT-PMP share
// the port and are told apart by the version octet (RFC 6887 Appendix A):
// 0 = NAT-PMP, anything else = PCP (which answers unknown versions itself).

import { familyOf, type IpAddress } from '../net/address.js';
import type { MappingService } from '../service/mapping-service.js';
import type { Mapping } from '../domain/mapping.js';
import type { DoorReply } from './door-reply.js';
import { PcpHandler, type MappingUpdate } from './pcp/handler.js';
import { NatPmpHandler } from './natpmp/handler.js';
import { NATPMP_OP_EXTERNAL_ADDRESS, NATPMP_OP_MAP_TCP, NATPMP_OP_MAP_UDP, NATPMP_VERSION } from './natpmp/codec.js';
import { encodePcpErrorEcho } from './pcp/codec.js';
import { LONG_ERROR_LIFETIME, Opcode, PCP_OPCODE_MASK, ResultCode } from './pcp/constants.js';

export interface DatagramOutcome extends DoorReply {
  /** The door that answered. */
  via: 'pcp' | 'natpmp';
  decided: boolean;
}

export class PortControlProtocol {
  private readonly pcp: PcpHandler;
  private readonly natpmp: NatPmpHandler;

  constructor(private readonly service: MappingService) {
    this.pcp = new PcpHandler(service);
    this.natpmp = new NatPmpHandler(service);
  }

  /**
   * The door and operation a datagram asks for, from its first two octets
   * (version, opcode), by the same rule `handle` dispatches on: for the
   * metrics, a small fixed set, 'other' for the rest.
   */
  static requestOp(msg: Buffer): { door: 'pcp' | 'natpmp'; op: string } {
    const opcode = msg[1];
    if (msg[0] === NATPMP_VERSION) return { door: 'natpmp', op: (opcode !== undefined && NATPMP_OPS.get(opcode)) || 'other' };
    return { door: 'pcp', op: (opcode !== undefined && PCP_OPS.get(opcode & PCP_OPCODE_MASK)) || 'other' };
  }

  /** `source` must already be known to be a LAN host. */
  async handle(msg: Buffer, source: IpAddress, sourcePort?: number): Promise<DatagramOutcome> {
    if (msg.length >= 1 && msg[0] === NATPMP_VERSION) {
      if (familyOf(source) === 4) {
        const r = await this.natpmp.handle(msg, source);
        return { ...r, via: 'natpmp', decided: r.decided === true };
      }
      if (msg.length < 2) return { reply: undefined, via: 'pcp', result: 'dropped', detail: 'short datagram', decided: false };
      // NAT-PMP is IPv4-only (RFC 6886 §3): over IPv6 the closest version we
      // speak is PCP's, so say so (RFC 6887 §9).
      const reply = encodePcpErrorEcho(msg, ResultCode.UNSUPP_VERSION, LONG_ERROR_LIFETIME, this.service.epochSeconds(), false);
      return { reply, via: 'pcp', result: 'UNSUPP_VERSION', detail: 'NAT-PMP over IPv6', decided: false };
    }
    const r = await this.pcp.handle(msg, source, sourcePort);
    return { ...r, via: 'pcp', decided: r.decided === true };
  }

  /** RFC 6887 §14.2: the mapping updates owed to PCP clients for mappings that changed under them. */
  mappingUpdates(changed: readonly Mapping[]): MappingUpdate[] {
    return this.pcp.mappingUpdates(changed);
  }
}

const PCP_OPS = new Map<number, string>(Object.entries(Opcode).map(([name, code]) => [code, name.toLowerCase()]));
const NATPMP_OPS = new Map<number, string>([
  [NATPMP_OP_EXTERNAL_ADDRESS, 'external-address'],
  [NATPMP_OP_MAP_UDP, 'map-udp'],
  [NATPMP_OP_MAP_TCP, 'map-tcp'],
]);
