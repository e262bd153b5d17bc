// NAT-PMP server request processing (RFC 6886 §3.2-§3.5): wire request →
// MappingService call → wire response.

import type { IpAddress } from '../../net/address.js';
import { IPPROTO_TCP, IPPROTO_UDP } from '../../net/ipproto.js';
import type { MappingService } from '../../service/mapping-service.js';
import type { Refusal } from '../../domain/requests.js';
import { reachedAt } from '../../domain/mapping.js';
import {
  NATPMP_OP_EXTERNAL_ADDRESS,
  NATPMP_OP_MAP_UDP,
  NatPmpResult,
  decodeNatPmpRequest,
  encodeExternalAddressResponse,
  encodeMapResponse,
  encodeUnsupportedOpcodeResponse,
} from './codec.js';
import type { DoorReply } from '../door-reply.js';

const REFUSAL_TO_RESULT: Record<Refusal, NatPmpResult> = {
  NOT_AUTHORIZED: NatPmpResult.NOT_AUTHORIZED,
  THIRD_PARTY_NOT_ALLOWED: NatPmpResult.NOT_AUTHORIZED,
  // NAT-PMP has no options; never its clients' refusal, named for completeness.
  UNSUPP_OPTION: NatPmpResult.NOT_AUTHORIZED,
  UNSUPP_PROTOCOL: NatPmpResult.NOT_AUTHORIZED,
  MALFORMED_REQUEST: NatPmpResult.NOT_AUTHORIZED,
  NETWORK_FAILURE: NatPmpResult.NETWORK_FAILURE,
  NO_RESOURCES: NatPmpResult.OUT_OF_RESOURCES,
  FIREWALL_FAILED: NatPmpResult.NETWORK_FAILURE,
  USER_EX_QUOTA: NatPmpResult.OUT_OF_RESOURCES,
  CANNOT_PROVIDE_EXTERNAL: NatPmpResult.OUT_OF_RESOURCES,
  EXCESSIVE_REMOTE_PEERS: NatPmpResult.OUT_OF_RESOURCES,
  RATE_LIMITED: NatPmpResult.OUT_OF_RESOURCES,
};

const RESULT_NAMES = Object.fromEntries(Object.entries(NatPmpResult).map(([k, v]) => [v, k])) as Record<number, string>;

export class NatPmpHandler {
  constructor(private readonly service: MappingService) {}

  /** Handles one version-0 datagram from an IPv4 LAN host. */
  async handle(buf: Buffer, source: IpAddress): Promise<DoorReply> {
    const epoch = this.service.epochSeconds();
    const decoded = decodeNatPmpRequest(buf);
    if (!decoded.ok) {
      if (decoded.silent) return { reply: undefined, result: 'dropped', detail: decoded.detail };
      return { reply: encodeUnsupportedOpcodeResponse(buf, epoch), result: RESULT_NAMES[decoded.result] ?? '?', detail: decoded.detail };
    }
    const req = decoded.msg;
    if (req.op === NATPMP_OP_EXTERNAL_ADDRESS) {
      const ext = this.service.externalIPv4();
      // §3.5: "Network Failure (e.g., NAT box itself has not obtained a DHCP lease)".
      const result = ext ? NatPmpResult.SUCCESS : NatPmpResult.NETWORK_FAILURE;
      return this.reply(encodeExternalAddressResponse(result, epoch, ext), result);
    }

    const protocol = req.op === NATPMP_OP_MAP_UDP ? IPPROTO_UDP : IPPROTO_TCP;
    // Every answer below but one follows a MappingService decision (which logged it).
    const answer = (result: NatPmpResult, internalPort: number, externalPort = 0, lifetime = 0, detail?: string, decided = true) => ({
      ...this.reply(
        encodeMapResponse({ op: req.op, result, epoch: this.service.epochSeconds(), internalPort, externalPort, lifetime }),
        result,
        detail,
      ),
      decided,
    });

    if (req.lifetime === 0) {
      if (req.internalPort === 0) {
        // §3.4: delete all of this client's mappings of the protocol; any that
        // cannot go (static ones) turn the result non-zero after the rest went.
        const out = await this.service.removeAll({ via: 'natpmp', client: source, protocol });
        return answer(out.ok ? NatPmpResult.SUCCESS : out.kept > 0 ? NatPmpResult.NOT_AUTHORIZED : NatPmpResult.OUT_OF_RESOURCES, 0);
      }
      // §3.4: the suggested external port of a delete is ignored; deleting
      // what does not exist succeeds.
      const out = await this.service.remove({ via: 'natpmp', client: source, internalAddress: source, protocol, internalPort: req.internalPort });
      if (!out.ok) return answer(REFUSAL_TO_RESULT[out.refusal], req.internalPort, 0, 0, out.detail);
      return answer(NatPmpResult.SUCCESS, req.internalPort);
    }
    // Internal port 0 means "all" only for a delete (§3.4).
    if (req.internalPort === 0) return answer(NatPmpResult.NOT_AUTHORIZED, 0, 0, 0, 'internal port 0 with a lifetime', false);

    const out = await this.service.map({
      via: 'natpmp',
      client: source,
      internalAddress: source,
      protocol,
      internalPort: req.internalPort,
      suggestedExternalPort: req.suggestedExternalPort,
      lifetime: req.lifetime,
    });
    if (!out.ok) return answer(REFUSAL_TO_RESULT[out.refusal], req.internalPort, 0, 0, out.detail);
    return answer(NatPmpResult.SUCCESS, req.internalPort, reachedAt(out.mapping).port, out.lifetime);
  }

  private reply(reply: Buffer, result: NatPmpResult, detail?: string): DoorReply {
    return { reply, result: RESULT_NAMES[result] ?? String(result), detail };
  }
}
