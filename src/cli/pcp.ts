// portcullis pcp map|announce: a small PCP client for checking a router by hand.

import { intFlag, protoFlag } from './flags.js';
import { parseArgs } from 'node:util';
import { ConfigError } from '../config.js';
import { describe, exchange, localAddressFor, mapRequestBytes } from '../client/pcp-client.js';
import { parseIp } from '../net/address.js';
import { encodePcpRequest } from '../protocols/pcp/codec.js';
import { Opcode, PCP_SERVER_PORT } from '../protocols/pcp/constants.js';

function parseFilterArg(f: string): { prefix: string; port: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(f);
  const v4 = /^([\d.]+(?:\/\d+)?)(?::(\d+))?$/.exec(f);
  const m = bracketed ?? v4;
  const prefix = m ? m[1] : f;
  const port = m?.[2] ? Number(m[2]) : 0;
  if (!prefix || port > 65535) throw new ConfigError(`--filter '${f}': expected PREFIX, PREFIX:PORT or [IPv6-PREFIX]:PORT`);
  return { prefix, port };
}

export async function pcp(argv: string[]): Promise<void> {
  const [op, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      server: { type: 'string' },
      proto: { type: 'string' },
      port: { type: 'string' },
      lifetime: { type: 'string' },
      suggest: { type: 'string' },
      filter: { type: 'string', multiple: true },
      'prefer-failure': { type: 'boolean' },
      nonce: { type: 'string' },
      description: { type: 'string' },
      'server-port': { type: 'string' },
      bind: { type: 'string' },
    },
    strict: true,
  });
  const server = values.server;
  if (!server || !parseIp(server)) throw new ConfigError('--server ADDR is required (the router\'s LAN address; fe80::…%IFACE works)');
  const serverPort = intFlag('server-port', values['server-port']) ?? PCP_SERVER_PORT;
  const bound = values.bind !== undefined ? parseIp(values.bind) : undefined;
  if (values.bind !== undefined && !bound) throw new ConfigError(`--bind '${values.bind}' is not an address`);
  const client = bound ?? (await localAddressFor(server, serverPort));
  let request: Buffer;
  if (op === 'announce') {
    request = encodePcpRequest({ opcode: Opcode.ANNOUNCE, lifetime: 0, clientAddress: client });
  } else if (op === 'map') {
    const protocol = protoFlag(values.proto);
    const internalPort = intFlag('port', values.port);
    if (internalPort === undefined || internalPort > 65535) throw new ConfigError('--port N (1-65535) is required');
    if (values.nonce !== undefined && !/^[0-9a-fA-F]{24}$/.test(values.nonce)) throw new ConfigError('--nonce takes 24 hex digits');
    request = mapRequestBytes({
      client,
      protocol,
      internalPort,
      lifetime: intFlag('lifetime', values.lifetime) ?? 3600,
      suggestedExternalPort: intFlag('suggest', values.suggest),
      nonce: values.nonce ? Buffer.from(values.nonce, 'hex') : undefined,
      filters: (values.filter ?? []).map(parseFilterArg),
      preferFailure: values['prefer-failure'],
      description: values.description,
    });
  } else {
    throw new ConfigError(`unknown pcp operation '${op ?? ''}': map or announce`);
  }
  const reply = await exchange(server, request, { port: serverPort, bind: values.bind });
  if (!reply) {
    process.stderr.write(`portcullis: no PCP response from ${server}\n`);
    process.exitCode = 1;
    return;
  }
  process.stdout.write(JSON.stringify(describe(reply)) + '\n');
  if (reply.result !== 0) process.exitCode = 3;
}
