// PCP server request processing (RFC 6887 §8.2, §11.3, §12.3, §14.1.2):
// wire request → MappingService call → wire response. Knows PCP rules, not nftables.

import { familyOf, normalizePrefix, toWire16, type IpAddress } from '../../net/address.js';
import type { MappingService } from '../../service/mapping-service.js';
import { nonceBytes, reachedAt, type Mapping } from '../../domain/mapping.js';
import type { FilterStep, MapOutcome, Refusal } from '../../domain/requests.js';
import {
  LONG_ERROR_LIFETIME,
  Opcode,
  OptionCode,
  ResultCode,
  errorLifetime,
  type ResultCode as ResultCodeValue,
  type ResultName,
} from './constants.js';
import { decodePcpRequest, encodePcpErrorEcho, encodePcpResponse, type MapData, type PcpRequest } from './codec.js';
import type { DescriptionOption, FilterOption, PcpOption, ThirdPartyOption } from './options.js';
import type { DoorReply } from '../door-reply.js';

const REFUSAL_TO_RESULT: Record<Refusal, ResultName> = {
  NOT_AUTHORIZED: 'NOT_AUTHORIZED',
  MALFORMED_REQUEST: 'MALFORMED_REQUEST',
  NETWORK_FAILURE: 'NETWORK_FAILURE',
  NO_RESOURCES: 'NO_RESOURCES',
  // §7.4: NO_RESOURCES is the catch-all for "cannot do it right now".
  FIREWALL_FAILED: 'NO_RESOURCES',
  UNSUPP_PROTOCOL: 'UNSUPP_PROTOCOL',
  USER_EX_QUOTA: 'USER_EX_QUOTA',
  CANNOT_PROVIDE_EXTERNAL: 'CANNOT_PROVIDE_EXTERNAL',
  EXCESSIVE_REMOTE_PEERS: 'EXCESSIVE_REMOTE_PEERS',
  // §13.1: a THIRD_PARTY request from a client not allowed to make one
  // "MUST generate an UNSUPP_OPTION error".
  THIRD_PARTY_NOT_ALLOWED: 'UNSUPP_OPTION',
  // §7.4: NO_RESOURCES is a short-lifetime error: the client retries later.
  RATE_LIMITED: 'NO_RESOURCES',
  UNSUPP_OPTION: 'UNSUPP_OPTION',
};

/** An unasked response for a client: where it goes, and its bytes. */
export interface MappingUpdate {
  to: IpAddress;
  port: number;
  message: () => Buffer;
}

export class PcpHandler {
  constructor(private readonly service: MappingService) {}

  /** Handles one datagram from `source` (already known to be a LAN host). */
  async handle(buf: Buffer, source: IpAddress, sourcePort?: number): Promise<DoorReply> {
    const decoded = decodePcpRequest(buf);
    if (!decoded.ok) {
      if (decoded.silent) return { reply: undefined, result: 'dropped', detail: decoded.detail };
      return this.error(buf, decoded.code, decoded.detail, false);
    }
    const req = decoded.msg;
    // §8.2: the client's own idea of its address must be the packet's source,
    // all 128 bits (an IPv4 source appears only as ::ffff:a.b.c.d).
    if (!req.clientAddressWire.equals(toWire16(source))) {
      return this.error(buf, 'ADDRESS_MISMATCH', `client address field differs from source ${source}`, true);
    }
    switch (req.opcode) {
      case Opcode.ANNOUNCE:
        // §14.1.2: SUCCESS with lifetime 0; no state is touched.
        return this.ok(encodePcpResponse({ opcode: Opcode.ANNOUNCE, result: ResultCode.SUCCESS, lifetime: 0, epoch: this.epoch() }), 'SUCCESS');
      case Opcode.MAP:
        return this.map(req, source, sourcePort);
      default:
        return this.peer(req, source, sourcePort);
    }
  }

  private async map(req: PcpRequest, source: IpAddress, sourcePort: number | undefined): Promise<DoorReply> {
    const map = req.map as MapData;
    const opts = sortOptions(req.options);
    const internal = this.internalAddress(opts.thirdParty, source);
    if (!internal.ok) return this.error(req.raw, internal.code, internal.detail, true);
    // §11.3: protocol 0 ("all protocols") with a specific port is invalid.
    if (map.protocol === 0 && map.internalPort !== 0) {
      return this.error(req.raw, 'MALFORMED_REQUEST', 'protocol 0 with a non-zero internal port', true);
    }
    const family = familyOf(internal.address);
    const filters = toFilterSteps(opts.filters, family);
    if (!filters.ok) return this.error(req.raw, 'MALFORMED_OPTION', filters.detail, true);

    if (req.lifetime === 0) {
      // §11.3: options that make no sense with a delete are MALFORMED_OPTION.
      if (opts.preferFailure) return this.error(req.raw, 'MALFORMED_OPTION', 'PREFER_FAILURE in a delete', true);
      if (opts.filters.length > 0) return this.error(req.raw, 'MALFORMED_OPTION', 'FILTER in a delete', true);
      if (map.internalPort !== 0) {
        const out = await this.service.remove({
          via: 'pcp',
          client: source,
          internalAddress: internal.address,
          protocol: map.protocol,
          internalPort: map.internalPort,
          nonce: map.nonce,
        });
        if (!out.ok) return { ...this.error(req.raw, REFUSAL_TO_RESULT[out.refusal], out.detail, true, out.lifetime), decided: true };
      }
      // §15.1 (port 0: the "wildcard" mapping, which this router never
      // creates, so there is nothing to delete). Erratum 3621: the suggested
      // external address and port are copied into the response.
      const echoed: PcpOption[] = opts.thirdParty ? [opts.thirdParty] : [];
      const reply = encodePcpResponse({ opcode: Opcode.MAP, result: ResultCode.SUCCESS, lifetime: 0, epoch: this.epoch(), map, options: echoed });
      return { ...this.ok(reply, 'SUCCESS', 'removed'), decided: true };
    }

    // §13.2: PREFER_FAILURE needs something to prefer.
    if (opts.preferFailure && map.externalPort === 0) {
      return this.error(req.raw, 'MALFORMED_OPTION', 'PREFER_FAILURE with no suggested external port', true);
    }
    const out = await this.service.map({
      via: 'pcp',
      client: source,
      internalAddress: internal.address,
      protocol: map.protocol,
      internalPort: map.internalPort,
      suggestedExternalPort: map.externalPort,
      lifetime: req.lifetime,
      nonce: map.nonce,
      preferFailure: opts.preferFailure !== undefined,
      filters: opts.filters.length > 0 ? filters.steps : undefined,
      description: opts.description?.text,
      clientPort: sourcePort,
    });
    return this.mapReply(req, map, opts, out, Opcode.MAP);
  }

  private async peer(req: PcpRequest, source: IpAddress, sourcePort: number | undefined): Promise<DoorReply> {
    const peer = req.peer as NonNullable<PcpRequest['peer']>;
    const opts = sortOptions(req.options);
    const internal = this.internalAddress(opts.thirdParty, source);
    if (!internal.ok) return this.error(req.raw, internal.code, internal.detail, true);
    // §12.1: protocol, internal port and remote peer port "MUST NOT be zero".
    if (peer.protocol === 0 || peer.internalPort === 0 || peer.remotePeerPort === 0) {
      return this.error(req.raw, 'MALFORMED_REQUEST', 'PEER with a zero protocol or port', true);
    }
    const out = await this.service.peer({
      via: 'pcp',
      client: source,
      internalAddress: internal.address,
      protocol: peer.protocol,
      internalPort: peer.internalPort,
      suggestedExternalPort: peer.externalPort,
      remotePeerAddress: peer.remotePeerAddress,
      remotePeerPort: peer.remotePeerPort,
      lifetime: req.lifetime,
      nonce: peer.nonce,
      description: opts.description?.text,
      clientPort: sourcePort,
    });
    return this.mapReply(req, peer, opts, out, Opcode.PEER);
  }

  private mapReply(req: PcpRequest, data: MapData, opts: SortedOptions, out: MapOutcome, opcode: number): DoorReply {
    if (!out.ok) return { ...this.error(req.raw, REFUSAL_TO_RESULT[out.refusal], out.detail, true, out.lifetime), decided: true };
    const at = reachedAt(out.mapping);
    const assigned = { ...data, externalPort: at.port, externalAddress: at.address };
    // §7.3: a success reply carries the options that were processed, each as
    // often as it was sent; the DESCRIPTION echoed is the one stored (RFC 7220 §3).
    const echoed: PcpOption[] = [];
    if (opts.thirdParty) echoed.push(opts.thirdParty);
    if (opts.preferFailure) echoed.push({ code: OptionCode.PREFER_FAILURE });
    echoed.push(...opts.filters);
    if (opts.description) echoed.push({ code: OptionCode.DESCRIPTION, text: out.mapping.description });
    const reply = encodePcpResponse({
      opcode,
      result: ResultCode.SUCCESS,
      lifetime: out.lifetime,
      epoch: this.epoch(),
      map: opcode === Opcode.MAP ? assigned : undefined,
      peer: opcode === Opcode.PEER ? { ...(req.peer as NonNullable<PcpRequest['peer']>), ...assigned } : undefined,
      options: echoed,
    });
    return { ...this.ok(reply, 'SUCCESS'), decided: true };
  }

  private internalAddress(
    tp: ThirdPartyOption | undefined,
    source: IpAddress,
  ): { ok: true; address: IpAddress } | { ok: false; code: ResultName; detail: string } {
    if (!tp) return { ok: true, address: source };
    // §13.1: naming yourself as the third party is MALFORMED_REQUEST.
    if (tp.address === source) return { ok: false, code: 'MALFORMED_REQUEST', detail: 'THIRD_PARTY names the source itself' };
    if (familyOf(tp.address) !== familyOf(source)) {
      return { ok: false, code: 'MALFORMED_OPTION', detail: 'THIRD_PARTY address family differs from the client' };
    }
    return { ok: true, address: tp.address };
  }

  /**
   * §14.2: the updates owed for mappings that changed under their clients
   * (a new external address): one per PCP mapping whose client's port is
   * known, the message built when it is sent (the lifetime counts down).
   */
  mappingUpdates(changed: readonly Mapping[]): MappingUpdate[] {
    return changed
      .filter((m) => m.origin === 'pcp' && m.clientPort !== undefined)
      .map((m) => ({ to: m.client, port: m.clientPort as number, message: () => encodeMappingUpdate(m, this.service.remaining(m), this.epoch()) }));
  }

  private epoch(): number {
    return this.service.epochSeconds();
  }

  private ok(reply: Buffer, result: string, detail?: string): DoorReply {
    return { reply, result, detail };
  }

  private error(raw: Buffer, code: ResultName, detail: string, parsed: boolean, lifetime?: number): DoorReply {
    const value = ResultCode[code] as ResultCodeValue;
    const lt = lifetime ?? (code === 'UNSUPP_VERSION' ? LONG_ERROR_LIFETIME : errorLifetime(value));
    return { reply: encodePcpErrorEcho(raw, value, lt, this.epoch(), parsed), result: code, detail };
  }
}

interface SortedOptions {
  thirdParty?: ThirdPartyOption;
  preferFailure?: PcpOption;
  filters: FilterOption[];
  description?: DescriptionOption;
}

function sortOptions(options: readonly PcpOption[]): SortedOptions {
  const out: SortedOptions = { filters: [] };
  for (const o of options) {
    if (o.code === OptionCode.THIRD_PARTY) out.thirdParty = o;
    else if (o.code === OptionCode.PREFER_FAILURE) out.preferFailure = o;
    else if (o.code === OptionCode.FILTER) out.filters.push(o);
    else if (o.code === OptionCode.DESCRIPTION) out.description = o;
  }
  return out;
}

/** §13.3: FILTER prefixes in 128-bit space → family-native prefixes, in wire order. */
function toFilterSteps(filters: readonly FilterOption[], family: 4 | 6): { ok: true; steps: FilterStep[] } | { ok: false; detail: string } {
  const steps: FilterStep[] = [];
  for (const f of filters) {
    if (f.prefixLength === 0) {
      steps.push('clear');
      continue;
    }
    if ((family === 4) !== f.v4) return { ok: false, detail: 'FILTER remote address family differs from the internal address' };
    const length = family === 4 ? f.prefixLength - 96 : f.prefixLength;
    steps.push({ prefix: normalizePrefix(f.remotePeerAddress, length), port: f.remotePeerPort });
  }
  return { ok: true, steps };
}

/**
 * RFC 6887 §14.2 mapping update: the response a client would get for `m`
 * now, sent unasked — "MAP or PEER responses, as appropriate for the
 * mapping". THIRD_PARTY "MUST also appear" if the mapping was made for
 * another host; non-mandatory options "SHOULD NOT be sent".
 */
function encodeMappingUpdate(m: Mapping, lifetime: number, epoch: number): Buffer {
  // Every PEER mapping has its remote peer (mapping-service.ts makes it with one).
  if (m.kind === 'peer' && m.remotePeer) return encodePeerUpdate(m, m.remotePeer, lifetime, epoch);
  return encodePcpResponse({ opcode: Opcode.MAP, result: ResultCode.SUCCESS, lifetime, epoch, map: updateData(m), options: updateOptions(m) });
}

/** §14.2 for a PEER mapping: a PEER response, with the remote peer it was made for (§12.2). */
function encodePeerUpdate(m: Mapping, remote: { address: IpAddress; port: number }, lifetime: number, epoch: number): Buffer {
  return encodePcpResponse({
    opcode: Opcode.PEER,
    result: ResultCode.SUCCESS,
    lifetime,
    epoch,
    peer: { ...updateData(m), remotePeerPort: remote.port, remotePeerAddress: remote.address },
    options: updateOptions(m),
  });
}

function updateData(m: Mapping): MapData {
  const at = reachedAt(m);
  return { nonce: m.nonce ? nonceBytes(m.nonce) : Buffer.alloc(12), protocol: m.protocol, internalPort: m.internalPort, externalPort: at.port, externalAddress: at.address };
}

function updateOptions(m: Mapping): PcpOption[] {
  return m.client !== m.internalAddress ? [{ code: OptionCode.THIRD_PARTY, address: m.internalAddress, v4: m.family === 4 }] : [];
}
