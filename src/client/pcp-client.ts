// A small PCP client (RFC 6887 §8.1): for admins checking a router, for the
// lab tests and for the benchmark. Retransmits like a real client, with the
// timeouts shortened for interactive use.

import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { familyOf, mustParseIp, parsePrefix, type IpAddress } from '../net/address.js';
import { decodePcpResponse, encodePcpRequest, type PcpResponse } from '../protocols/pcp/codec.js';
import { Opcode, OptionCode, PCP_SERVER_PORT, resultName } from '../protocols/pcp/constants.js';
import type { PcpOption } from '../protocols/pcp/options.js';

export interface MapArgs {
  /** The client's own address as the server will see it (the PCP Client IP field). */
  client: IpAddress;
  port?: number;
  protocol: number;
  internalPort: number;
  suggestedExternalPort?: number;
  lifetime: number;
  nonce?: Buffer;
  filters?: { prefix: string; port: number }[];
  preferFailure?: boolean;
  description?: string;
  thirdParty?: IpAddress;
  /** Per-try wait; doubles on every retransmission. */
  timeoutMs?: number;
  tries?: number;
}

export function mapRequestBytes(a: MapArgs): Buffer {
  const options: PcpOption[] = [];
  if (a.thirdParty) options.push({ code: OptionCode.THIRD_PARTY, address: a.thirdParty, v4: familyOf(a.thirdParty) === 4 });
  if (a.preferFailure) options.push({ code: OptionCode.PREFER_FAILURE });
  for (const f of a.filters ?? []) {
    const p = parsePrefix(f.prefix);
    if (!p) throw new Error(`bad filter prefix ${f.prefix}`);
    const v4 = familyOf(p.address) === 4;
    options.push({ code: OptionCode.FILTER, prefixLength: v4 ? p.length + 96 : p.length, remotePeerPort: f.port, remotePeerAddress: p.address, v4 });
  }
  if (a.description !== undefined) options.push({ code: OptionCode.DESCRIPTION, text: a.description });
  return encodePcpRequest({
    opcode: Opcode.MAP,
    lifetime: a.lifetime,
    clientAddress: a.client,
    map: {
      nonce: a.nonce ?? randomBytes(12),
      protocol: a.protocol,
      internalPort: a.internalPort,
      externalPort: a.suggestedExternalPort ?? 0,
      externalAddress: mustParseIp(familyOf(a.client) === 4 ? '0.0.0.0' : '::'),
    },
    options,
  });
}

/**
 * Sends one request, retransmitting until a matching response or the tries run out.
 * `serverText` may carry a zone (fe80::1%eth0): a router's link-local address is a fine PCP server address.
 */
export async function exchange(serverText: string, request: Buffer, opts: { port?: number; timeoutMs?: number; tries?: number; bind?: string } = {}): Promise<PcpResponse | undefined> {
  const server = mustParseIp(serverText);
  const sock = createSocket(familyOf(server) === 4 ? 'udp4' : 'udp6');
  await new Promise<void>((r) => sock.bind(0, opts.bind, () => r()));
  try {
    let wait = opts.timeoutMs ?? 500;
    for (let i = 0; i < (opts.tries ?? 4); i++) {
      const reply = await new Promise<Buffer | undefined>((resolve) => {
        const timer = setTimeout(() => {
          sock.off('message', onMsg);
          resolve(undefined);
        }, wait);
        const onMsg = (m: Buffer, rinfo: { address: string }) => {
          // RFC 6887 §8.3: only a response from the server we asked counts.
          if (mustParseIp(rinfo.address) !== server) return;
          clearTimeout(timer);
          sock.off('message', onMsg);
          resolve(m);
        };
        sock.on('message', onMsg);
        sock.send(request, opts.port ?? PCP_SERVER_PORT, serverText);
      });
      if (reply) {
        const d = decodePcpResponse(reply);
        if (d.ok) return d.msg;
      }
      wait *= 2;
    }
    return undefined;
  } finally {
    sock.close();
  }
}

/** The local address the kernel would use to reach `server` (the PCP Client IP field). */
export async function localAddressFor(server: string, port = PCP_SERVER_PORT): Promise<IpAddress> {
  const sock = createSocket(familyOf(mustParseIp(server)) === 4 ? 'udp4' : 'udp6');
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.connect(port, server, () => resolve());
    });
    return mustParseIp(sock.address().address);
  } finally {
    sock.close();
  }
}

/** The response as a plain object for printing. */
export function describe(r: PcpResponse): Record<string, unknown> {
  return {
    result: resultName(r.result),
    lifetime: r.lifetime,
    epoch: r.epoch,
    ...(r.map ? { protocol: r.map.protocol, internalPort: r.map.internalPort, externalAddress: r.map.externalAddress, externalPort: r.map.externalPort, nonce: r.map.nonce.toString('hex') } : {}),
    options: r.options?.map((o) => ({ ...o })),
  };
}
