#!/usr/bin/env node
// portcullis command line.

import { parseArgs } from 'node:util';
import { ConfigError, DEFAULTS, loadConfigFile, resolveConfig } from './config.js';
import { startDaemon, type ReloadReport } from './daemon.js';
import { PolicyError, loadPolicyFile, summarize } from './policy/load.js';
import { explain } from './policy/explain.js';
import { controlRequest, controlSocketPath } from './server/control-socket.js';
import { listedMapping, type ListedMapping, type Listing } from './server/listing.js';
import { packageVersion } from './version.js';
import { jsonLogger } from './log.js';
import { describe, exchange, localAddressFor, mapRequestBytes } from './client/pcp-client.js';
import { parseIp, parsePrefix } from './net/address.js';
import { protocolByName, protocolName } from './net/ipproto.js';
import { encodePcpRequest } from './protocols/pcp/codec.js';
import { Opcode, PCP_SERVER_PORT } from './protocols/pcp/constants.js';
import { monotonicClock } from './state/clock.js';
import { DurableStore, remainingMs, type LoadedState } from './state/store.js';

const USAGE = `usage: portcullis serve --lan IFACE [--lan IFACE ...] --wan IFACE [options]
       portcullis pcp map --server ADDR --proto udp|tcp --port N [pcp options]
       portcullis pcp announce --server ADDR
       portcullis policy check FILE
       portcullis policy explain FILE --client ADDR --proto udp|tcp --port N [explain options]
       portcullis policy reload [--state-dir DIR]
       portcullis list [--state-dir DIR] [--json]

Serves PCP (RFC 6887) and NAT-PMP (RFC 6886) on the LAN interfaces' addresses
and installs the mappings it grants in the firewall.

options:
  --lan IFACE            LAN interface to serve (repeatable)
  --wan IFACE            WAN interface (its first IPv4 address is the external address)
  --external-ip ADDR     external IPv4 address, instead of the WAN interface's
  --state-dir DIR        where state is kept (default /var/lib/portcullis)
  --flush-on-exit        remove granted entries from the kernel on exit (default: they expire)
  --config FILE          JSON configuration file (flags override it)
  --policy FILE          admin policy file
  --backend nft|memory   firewall backend
  --nft-table NAME       nftables table (default portcullis, created and owned by portcullis)
  --nft-embed            add portcullis' chains and sets to the existing table --nft-table
                         instead (e.g. --nft-table fw4 --nft-embed); the admin jumps to them
  --port N               UDP port for PCP/NAT-PMP (default 5351; for tests)
  --min-lifetime S       shortest lifetime granted (default 120)
  --max-lifetime S       longest lifetime granted (default 86400)
  --no-announce          do not multicast announcements at start
  --no-upnp              do not serve UPnP IGD (SSDP on UDP 1900, HTTP on --upnp-port)
  --upnp-port N          TCP port of UPnP descriptions and control (default 5000)
  --dhcp-leases FILE     dnsmasq's lease file (OpenWrt: /tmp/dhcp.leases): mappings end
                         with their host's DHCP lease
  -h, --help             this text
  --version              print the version

pcp options (a PCP client, for checking a router; prints the response as JSON):
  --server ADDR          the router's LAN address
  --lifetime S           requested lifetime (default 3600; 0 deletes)
  --suggest N            suggested external port
  --filter PREFIX[:PORT] admit only this remote (repeatable; PCP FILTER; IPv6 as [PREFIX]:PORT)
  --prefer-failure       only the suggested port will do
  --nonce HEX            24 hex digits (default: random)
  --description TEXT     RFC 7220 description
  --server-port N        default 5351
  --bind ADDR            send from this local address (e.g. a global address to a fe80:: server)

explain options (what the daemon would decide for one request):
  --client ADDR          the address asking (required)
  --proto udp|tcp        (required)
  --port N               internal port (required)
  --via pcp|natpmp|upnp  asking protocol (default pcp)
  --for ADDR             the host the mapping is for (a third-party request)
  --external-port N      an external port the client insists on
  --interface IFACE      the LAN interface the client is on
  --peer                 a PCP PEER request instead of MAP
  --remote PREFIX        a remote peer the mapping is restricted to (repeatable)

policy reload / list talk to the running daemon through DIR/control.sock
(default /var/lib/portcullis); SIGHUP also reloads the policy.
`;

function intFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new ConfigError(`--${name}: '${v}' is not a whole number`);
  return n;
}

/** `--proto udp|tcp`, required. */
function protoFlag(v: string | undefined): number {
  const protocol = v === undefined ? undefined : protocolByName(v);
  if (protocol === undefined) throw new ConfigError('--proto udp|tcp is required');
  return protocol;
}

async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      lan: { type: 'string', multiple: true },
      wan: { type: 'string' },
      'external-ip': { type: 'string' },
      'state-dir': { type: 'string' },
      config: { type: 'string' },
      policy: { type: 'string' },
      backend: { type: 'string' },
      port: { type: 'string' },
      'min-lifetime': { type: 'string' },
      'max-lifetime': { type: 'string' },
      'no-announce': { type: 'boolean' },
      'no-upnp': { type: 'boolean' },
      'upnp-port': { type: 'string' },
      'flush-on-exit': { type: 'boolean' },
      'nft-table': { type: 'string' },
      'nft-embed': { type: 'boolean' },
      'dhcp-leases': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (values.backend !== undefined && values.backend !== 'nft' && values.backend !== 'memory') {
    throw new ConfigError(`--backend: '${values.backend}' is not one of nft, memory`);
  }
  const file = values.config ? loadConfigFile(values.config) : {};
  const lifetime = { min: intFlag('min-lifetime', values['min-lifetime']), max: intFlag('max-lifetime', values['max-lifetime']) };
  const cfg = resolveConfig(file, {
    lan: values.lan,
    wan: values.wan,
    externalIp: values['external-ip'],
    stateDir: values['state-dir'],
    policy: values.policy,
    backend: values.backend as 'nft' | 'memory' | undefined,
    port: intFlag('port', values.port),
    announce: values['no-announce'] ? false : undefined,
    upnp: { enabled: values['no-upnp'] ? false : undefined, httpPort: intFlag('upnp-port', values['upnp-port']) },
    flushOnExit: values['flush-on-exit'] ? true : undefined,
    dhcpLeases: values['dhcp-leases'],
    nft: { table: values['nft-table'], embed: values['nft-embed'] },
    lifetime: Object.fromEntries(Object.entries(lifetime).filter(([, v]) => v !== undefined)) as { min: number; max: number },
  });
  const log = jsonLogger();
  const daemon = await startDaemon(cfg, log);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ event: 'signal', signal });
    daemon.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ event: 'stop-failed', error: String(err) });
        process.exit(1);
      },
    );
  };
  process.on('SIGHUP', () => {
    log.info({ event: 'signal', signal: 'SIGHUP' });
    daemon.reloadPolicy().catch((err: unknown) => {
      // The running policy stays; the admin reads why in the log.
      log.error({ event: 'policy-reload-refused', error: (err as Error).message });
    });
  });
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

/** `203.0.113.0/24`, `203.0.113.5:443`, `2001:db8::/32`, `[2001:db8::5]:443`. */
function parseFilterArg(f: string): { prefix: string; port: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(f);
  const v4 = /^([\d.]+(?:\/\d+)?)(?::(\d+))?$/.exec(f);
  const m = bracketed ?? v4;
  const prefix = m ? m[1] : f;
  const port = m?.[2] ? Number(m[2]) : 0;
  if (!prefix || port > 65535) throw new ConfigError(`--filter '${f}': expected PREFIX, PREFIX:PORT or [IPv6-PREFIX]:PORT`);
  return { prefix, port };
}

async function pcp(argv: string[]): Promise<void> {
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

async function policyCommand(argv: string[]): Promise<void> {
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

/** Why a state directory cannot be listed, in one line. */
class UnlistableError extends Error {}

/**
 * What the store of a directory no daemon answers for holds: read without
 * its lock and without changing it (DurableStore.inspect), lifetimes counted
 * to now by the rules a restart would apply; expired mappings are left out.
 */
function storedListing(dir: string): { r: Listing; state: LoadedState; expired: number } {
  let state: LoadedState;
  try {
    state = DurableStore.inspect(dir);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'does not exist' : e.code === 'EACCES' || e.code === 'EPERM' ? `cannot be read (${e.code}: permission denied)` : e.code === 'ENOTDIR' ? 'is not a directory' : `cannot be read (${e.message})`;
    throw new UnlistableError(`${e.path ?? dir} ${why}`);
  }
  if (state.status === 'corrupt') throw new UnlistableError(`the store in ${dir} is damaged (${state.detail ?? 'unreadable'}); the daemon moves it aside at its next start`);
  if (state.status === 'fresh') throw new UnlistableError(`${dir} holds no store (no daemon has kept state there)`);
  const now = { mono: monotonicClock.now(), wall: monotonicClock.wall(), bootId: monotonicClock.bootId() };
  const mappings: ListedMapping[] = [];
  let expired = 0;
  for (const m of state.mappings) {
    const left = Math.floor(remainingMs(m, now, state.lastWriteWall) / 1000);
    if (left <= 0) {
      expired++;
      continue;
    }
    const filters = m.filters.map(([address, length, port]) => ({ address, length, port }));
    mappings.push(listedMapping({ ...m, filters, client: m.owner }, left));
  }
  return { r: { mappings, staticPinholes: [] }, state, expired };
}

async function list(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { 'state-dir': { type: 'string' }, json: { type: 'boolean' } }, strict: true });
  const dir = values['state-dir'] ?? DEFAULTS.stateDir;
  let r: Listing;
  try {
    const reply = await controlRequest(controlSocketPath(dir), { op: 'list' });
    if (!reply.ok) throw new ConfigError(reply.error);
    r = reply.result as Listing;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    // No daemon answers: what its store holds is the next best answer.
    let stored;
    try {
      stored = storedListing(dir);
    } catch (why) {
      if (!(why instanceof UnlistableError)) throw why;
      process.stderr.write(`portcullis: cannot list: ${(err as Error).message}, and ${why.message}\n`);
      process.exitCode = 1;
      return;
    }
    r = stored.r;
    const at = new Date(stored.state.lastWriteWall).toISOString();
    process.stderr.write(
      `portcullis: no daemon answers for ${dir}; listing its store as last written (${at})` +
        `${stored.expired ? `, ${stored.expired} expired since left out` : ''}; static openings are in the policy file\n`,
    );
  }
  if (values.json) {
    process.stdout.write(JSON.stringify(r) + '\n');
    return;
  }
  const rows = [['ORIGIN', 'PROTO', 'EXTERNAL', 'INTERNAL', 'LIFETIME', 'REMOTES', 'DESCRIPTION']];
  for (const m of r.mappings) {
    rows.push([m.origin + (m.kind === 'peer' ? '/peer' : ''), m.protocol, m.external, m.internal, String(m.lifetime), m.filters.join(',') || 'any', m.description]);
  }
  for (const s of r.staticPinholes) rows.push(['static', '', '', '', 'static', '', `${s.name}: ${s.rule}`]);
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length))) ?? [];
  for (const row of rows) process.stdout.write(row.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd() + '\n');
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === '--version') {
    process.stdout.write(`portcullis ${packageVersion()}\n`);
    return;
  }
  if (cmd === 'serve') return serve(rest);
  if (cmd === 'pcp') return pcp(rest);
  if (cmd === 'policy') return policyCommand(rest);
  if (cmd === 'list') return list(rest);
  process.stdout.write(USAGE);
  if (cmd !== '-h' && cmd !== '--help') process.exitCode = 2;
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`portcullis: ${(err as Error).message}\n`);
    process.exit(2);
  }
  process.stderr.write(`portcullis: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
