// portcullis policy check|explain|reload.

import { intFlag, protoFlag } from './flags.js';
import { parseArgs } from 'node:util';
import { ConfigError, DEFAULTS } from '../config.js';
import { type ReloadReport } from '../daemon.js';
import { PolicyError, loadPolicyFile, summarize } from '../policy/load.js';
import { explain } from '../policy/explain.js';
import { controlRequest, controlSocketPath } from '../server/control-socket.js';
import { parseIp, parsePrefix } from '../net/address.js';
import { protocolName } from '../net/ipproto.js';

export async function policyCommand(argv: string[]): Promise<void> {
  const [op, ...rest] = argv;
  if (op === 'reload') {
    const { values } = parseArgs({ args: rest, options: { 'state-dir': { type: 'string' } }, strict: true });
    const reply = await controlRequest(controlSocketPath(values['state-dir'] ?? DEFAULTS.stateDir), { op: 'reload' });
    if (!reply.ok) {
      process.stderr.write(`portcullis: policy not reloaded (the running policy stays):\n${reply.error}\n`);
      process.exitCode = 1;
      return;
    }
    const r = reply.result as ReloadReport;
    process.stdout.write(`reloaded ${r.source}: ${r.rules} rules, ${r.statics} static openings (${r.staticsAdded} added, ${r.staticsRemoved} removed)\n`);
    for (const v of r.revoked) process.stdout.write(`  revoked ${protocolName(v.protocol)} ${v.internal}:${v.internalPort}: rule ${v.rule}: ${v.reason}\n`);
    return;
  }
  const [file, ...flags] = rest;
  if (!file || (op !== 'check' && op !== 'explain')) throw new ConfigError(`usage: portcullis policy check FILE | explain FILE ... | reload`);
  let loaded;
  try {
    loaded = loadPolicyFile(file);
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    process.stderr.write(`${err.message}\n`);
    process.exitCode = 1;
    return;
  }
  if (op === 'check') {
    process.stdout.write(summarize(loaded) + '\n');
    return;
  }
  const { values } = parseArgs({
    args: flags,
    options: {
      client: { type: 'string' },
      proto: { type: 'string' },
      port: { type: 'string' },
      via: { type: 'string' },
      for: { type: 'string' },
      'external-port': { type: 'string' },
      interface: { type: 'string' },
      peer: { type: 'boolean' },
      remote: { type: 'string', multiple: true },
    },
    strict: true,
  });
  const client = values.client !== undefined ? parseIp(values.client) : undefined;
  if (!client) throw new ConfigError('--client ADDR is required (an IPv4 or IPv6 address)');
  const protocol = protoFlag(values.proto);
  const internalPort = intFlag('port', values.port);
  if (internalPort === undefined || internalPort > 65535) throw new ConfigError('--port N (0-65535) is required');
  const via = values.via ?? 'pcp';
  if (via !== 'pcp' && via !== 'natpmp' && via !== 'upnp') throw new ConfigError(`--via: '${via}' is not one of pcp, natpmp, upnp`);
  const forHost = values.for !== undefined ? parseIp(values.for) : client;
  if (!forHost) throw new ConfigError(`--for '${values.for}' is not an address`);
  const remotes = (values.remote ?? []).map((r) => {
    const p = parsePrefix(r);
    if (!p) throw new ConfigError(`--remote '${r}' is not an address or prefix`);
    return { prefix: p, port: 0 };
  });
  const r = explain(loaded, {
    via,
    operation: values.peer ? 'peer' : 'map',
    client,
    internalAddress: forHost,
    protocol,
    internalPort,
    requiredExternalPort: intFlag('external-port', values['external-port']),
    filters: remotes,
    interface: values.interface,
  });
  process.stdout.write(r.text + '\n');
  if (!r.allowed) process.exitCode = 3;
}
