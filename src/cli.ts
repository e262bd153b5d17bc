#!/usr/bin/env node
// portcullis command line.

import { parseArgs } from 'node:util';
import { ConfigError, DEFAULTS, loadConfigFile, resolveConfig, type Config } from './config.js';
import { startDaemon, type ReloadReport } from './daemon.js';
import { PolicyError, loadPolicyFile, summarize } from './policy/load.js';
import { explain } from './policy/explain.js';
import { controlRequest, controlSocketPath, type ControlReply, type ControlRequest } from './server/control-socket.js';
import { listedMapping, mappingCounts, type Listing, type MappingCounts } from './server/listing.js';
import { storeSize, type RemoveReport, type StatusReport } from './daemon/control.js';
import { formatChecks, runChecks } from './doctor/checks.js';
import { systemView } from './doctor/system.js';
import { packageVersion } from './version.js';
import { createLogger, LOG_LEVELS, type LogLevel } from './log.js';
import { describe, exchange, localAddressFor, mapRequestBytes } from './client/pcp-client.js';
import { parseIp, parsePrefix } from './net/address.js';
import { protocolByName, protocolName } from './net/ipproto.js';
import { encodePcpRequest } from './protocols/pcp/codec.js';
import { Opcode, PCP_SERVER_PORT } from './protocols/pcp/constants.js';
import { monotonicClock } from './state/clock.js';
import { DurableStore, remainingMs, type LoadedState } from './state/store.js';
import type { StoredMapping } from './state/records.js';

const USAGE = `usage: portcullis serve --lan IFACE [--lan IFACE ...] --wan IFACE [options]
       portcullis status [--state-dir DIR] [--json]
       portcullis ls [--state-dir DIR] [--json]            (or: portcullis list)
       portcullis rm ID [--state-dir DIR]
       portcullis rm --client ADDR [--port N] [--state-dir DIR]
       portcullis doctor [--config FILE] [--lan IFACE ...] [--wan IFACE] [--external-ip ADDR]
                         [--nft-table NAME] [--nft-embed]
       portcullis pcp map --server ADDR --proto udp|tcp --port N [pcp options]
       portcullis pcp announce --server ADDR
       portcullis policy check FILE
       portcullis policy explain FILE --client ADDR --proto udp|tcp --port N [explain options]
       portcullis policy reload [--state-dir DIR]

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
                         with their host's DHCP lease, and ls names devices by it
  --metrics ADDR:PORT    serve Prometheus metrics at http://ADDR:PORT/metrics
                         (a loopback or LAN address)
  --admin ADDR:PORT      serve the admin API at http://ADDR:PORT/api (a LAN or loopback
                         address; its bearer token is in STATE/admin.token)
  --log-level LEVEL      debug, info (default), warn or error
  --log-format FORMAT    json or pretty (default: pretty on a terminal, JSON otherwise)
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

status, ls, rm and policy reload talk to the running daemon through
DIR/control.sock (default /var/lib/portcullis); SIGHUP also reloads the policy.

  status   version, uptime, epoch, mappings by origin and family, the LAN guard,
           the last firewall repair, the store's size, recent errors. No daemon:
           says so, counts what the store holds, exit 3.
  ls       one row per mapping: ID (for rm), DEVICE (DHCP host name or link-layer
           address, - when unknown), PROTO, EXTERNAL → INTERNAL, ORIGIN, LEFT,
           DESCRIPTION. No daemon: the store as last written, without IDs or devices.
  rm       removes as the admin: one mapping by ID, or a client's (on internal
           port N). Static forwards are the policy file's and stay. Nothing
           matched: exit 1; no daemon: exit 3.
  doctor   checks the system for what serve needs, with the settings serve would
           use (config file and flags); exit 1 if a check failed.
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

/** The flags that name the router's parts: `serve` runs with them, `doctor` checks them. */
const ROUTER_OPTIONS = {
  lan: { type: 'string', multiple: true },
  wan: { type: 'string' },
  'external-ip': { type: 'string' },
  config: { type: 'string' },
  'nft-table': { type: 'string' },
  'nft-embed': { type: 'boolean' },
} as const;

function routerFlags(values: { lan?: string[]; wan?: string; 'external-ip'?: string; 'nft-table'?: string; 'nft-embed'?: boolean }) {
  return { lan: values.lan, wan: values.wan, externalIp: values['external-ip'], nft: { table: values['nft-table'], embed: values['nft-embed'] } };
}

/** --metrics, --log-level, --log-format as config keys (a bad level or format is refused here, with its flag's name). */
function logFlags(values: { metrics?: string; 'log-level'?: string; 'log-format'?: string }): Partial<Pick<Config, 'metrics' | 'logLevel' | 'logFormat'>> {
  const level = values['log-level'];
  if (level !== undefined && !(LOG_LEVELS as readonly string[]).includes(level)) throw new ConfigError(`--log-level: '${level}' is not one of ${LOG_LEVELS.join(', ')}`);
  const format = values['log-format'];
  if (format !== undefined && format !== 'json' && format !== 'pretty') throw new ConfigError(`--log-format: '${format}' is not one of json, pretty`);
  return { metrics: values.metrics, logLevel: level as LogLevel | undefined, logFormat: format };
}

async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...ROUTER_OPTIONS,
      'state-dir': { type: 'string' },
      policy: { type: 'string' },
      backend: { type: 'string' },
      port: { type: 'string' },
      'min-lifetime': { type: 'string' },
      'max-lifetime': { type: 'string' },
      'no-announce': { type: 'boolean' },
      'no-upnp': { type: 'boolean' },
      'upnp-port': { type: 'string' },
      'flush-on-exit': { type: 'boolean' },
      'dhcp-leases': { type: 'string' },
      metrics: { type: 'string' },
      admin: { type: 'string' },
      'log-level': { type: 'string' },
      'log-format': { type: 'string' },
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
  const cfg: Config = resolveConfig(file, {
    ...routerFlags(values),
    ...logFlags(values),
    stateDir: values['state-dir'],
    policy: values.policy,
    backend: values.backend as 'nft' | 'memory' | undefined,
    port: intFlag('port', values.port),
    announce: values['no-announce'] ? false : undefined,
    upnp: { enabled: values['no-upnp'] ? false : undefined, httpPort: intFlag('upnp-port', values['upnp-port']) },
    flushOnExit: values['flush-on-exit'] ? true : undefined,
    dhcpLeases: values['dhcp-leases'],
    admin: { listen: values.admin },
    lifetime: Object.fromEntries(Object.entries(lifetime).filter(([, v]) => v !== undefined)) as { min: number; max: number },
  });
  const log = createLogger({ level: cfg.logLevel, format: cfg.logFormat });
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

interface StoredView {
  /** The mappings that have time left, with the seconds they have. */
  live: { m: StoredMapping; left: number }[];
  state: LoadedState;
  expired: number;
}

/**
 * What the store of a directory no daemon answers for holds: read without
 * its lock and without changing it (DurableStore.inspect), lifetimes counted
 * to now by the rules a restart would apply; expired mappings are left out.
 */
function readStore(dir: string): StoredView {
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
  const live: StoredView['live'] = [];
  let expired = 0;
  for (const m of state.mappings) {
    const left = Math.floor(remainingMs(m, now, state.lastWriteWall) / 1000);
    if (left <= 0) expired++;
    else live.push({ m, left });
  }
  return { live, state, expired };
}

function storedListing(stored: StoredView): Listing {
  const mappings = stored.live.map(({ m, left }) => listedMapping({ ...m, filters: m.filters.map(([address, length, port]) => ({ address, length, port })), client: m.owner }, left));
  return { mappings, staticPinholes: [] };
}

/** The daemon's reply, or why no daemon answers. */
async function ask(dir: string, req: ControlRequest): Promise<ControlReply | { down: string }> {
  try {
    return await controlRequest(controlSocketPath(dir), req);
  } catch (err) {
    return { down: (err as Error).message };
  }
}

const stateDirOption = { 'state-dir': { type: 'string' }, json: { type: 'boolean' } } as const;

/** `1h02m`, `9m58s`, `45s`: time left at a glance. */
function duration(s: number): string {
  const two = (n: number) => String(Math.floor(n)).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${two((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${two((s % 86400) / 3600)}h`;
}

/** A client's description on the admin's terminal: control characters (escape sequences) shown as '?'. */
const printable = (text: string) => text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');

function printTable(rows: string[][]): void {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length))) ?? [];
  for (const row of rows) process.stdout.write(row.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd() + '\n');
}

const countsLine = (c: MappingCounts) =>
  `${c.total} (pcp ${c.byOrigin.pcp}, natpmp ${c.byOrigin.natpmp}, upnp ${c.byOrigin.upnp}, static ${c.byOrigin.static}; IPv4 ${c.byFamily.ipv4}, IPv6 ${c.byFamily.ipv6})`;

async function ls(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: stateDirOption, strict: true });
  const dir = values['state-dir'] ?? DEFAULTS.stateDir;
  let r: Listing;
  const reply = await ask(dir, { op: 'list' });
  if (!('down' in reply)) {
    if (!reply.ok) throw new ConfigError(reply.error);
    r = reply.result as Listing;
  } else {
    // No daemon answers: what its store holds is the next best answer.
    let stored;
    try {
      stored = readStore(dir);
    } catch (why) {
      if (!(why instanceof UnlistableError)) throw why;
      process.stderr.write(`portcullis: cannot list: ${reply.down}, and ${why.message}\n`);
      process.exitCode = 1;
      return;
    }
    r = storedListing(stored);
    const at = new Date(stored.state.lastWriteWall).toISOString();
    process.stderr.write(
      `portcullis: no daemon answers for ${dir}; listing its store as last written (${at})` +
        `${stored.expired ? `, ${stored.expired} expired since left out` : ''}; no IDs or devices without a daemon; static openings are in the policy file\n`,
    );
  }
  if (values.json) {
    process.stdout.write(JSON.stringify(r) + '\n');
    return;
  }
  const rows = [['ID', 'DEVICE', 'PROTO', 'EXTERNAL → INTERNAL', 'ORIGIN', 'LEFT', 'DESCRIPTION']];
  for (const m of r.mappings) {
    const left = m.lifetime === 'static' ? 'static' : duration(m.lifetime);
    rows.push([m.id === undefined ? '-' : String(m.id), m.device ?? '-', m.protocol, `${m.external} → ${m.internal}`, m.origin + (m.kind === 'peer' ? '/peer' : ''), left, printable(m.description)]);
  }
  for (const s of r.staticPinholes) rows.push(['-', '-', '', '', 'static', 'static', `${s.name}: ${s.rule}`]);
  printTable(rows);
}

async function status(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: stateDirOption, strict: true });
  const dir = values['state-dir'] ?? DEFAULTS.stateDir;
  const reply = await ask(dir, { op: 'status' });
  if ('down' in reply) return statusDown(dir, reply.down, values.json === true);
  if (!reply.ok) throw new ConfigError(reply.error);
  const r = reply.result as StatusReport;
  if (values.json) {
    process.stdout.write(JSON.stringify({ running: true, ...r }) + '\n');
    return;
  }
  const fw = r.firewall;
  const guard = fw.guard ? (fw.guard.status === 'in place' ? `in place since ${fw.guard.since}` : `MISSING since ${fw.guard.since}: ${fw.guard.detail}; NOT answering any request`) : 'not checked yet';
  const repair = fw.lastRepair
    ? `last repair ${fw.lastRepair.at} (${fw.lastRepair.why}): ${fw.lastRepair.added} added, ${fw.lastRepair.removed} removed${fw.lastRepair.recreated ? ', recreated' : ''}`
    : 'no repair since start';
  const out = [
    `portcullis ${r.version}: running for ${duration(r.uptimeSeconds)} (since ${r.startedAt}), epoch ${r.epochSeconds} s`,
    `mappings: ${countsLine(r.mappings)}`,
    `firewall: ${fw.backend} backend; LAN guard ${guard}`,
    `  ${fw.reconcileSeconds > 0 ? `checked every ${fw.reconcileSeconds} s; ${repair}` : 'not checked (this backend cannot be)'}`,
    `store: ${r.store.dir}: ${r.store.bytes} bytes in ${r.store.files} files`,
    r.errors.length ? 'recent errors:' : 'recent errors: none',
    ...r.errors.map((e) => `  ${e.at} ${e.event}: ${printable(e.detail)}`),
  ];
  process.stdout.write(out.join('\n') + '\n');
}

/** No daemon: said plainly (exit 3), with what the store holds if it can be read. */
function statusDown(dir: string, why: string, json: boolean): void {
  process.exitCode = 3;
  let store: { lastWritten: string; mappings: MappingCounts; expired: number; bytes: number; files: number } | { error: string };
  try {
    const s = readStore(dir);
    store = { lastWritten: new Date(s.state.lastWriteWall).toISOString(), mappings: mappingCounts(s.live.map((l) => l.m)), expired: s.expired, ...storeSize(dir) };
  } catch (err) {
    if (!(err instanceof UnlistableError)) throw err;
    store = { error: err.message };
  }
  if (json) {
    process.stdout.write(JSON.stringify({ running: false, reason: why, store: { dir, ...store } }) + '\n');
    return;
  }
  const held =
    'error' in store
      ? `store: ${store.error}`
      : `store: ${dir}, last written ${store.lastWritten}: mappings ${countsLine(store.mappings)}${store.expired ? `, ${store.expired} expired since` : ''}; ${store.bytes} bytes in ${store.files} files`;
  process.stdout.write(`portcullis is not running: ${why}\n${held}\n`);
}

async function rm(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { 'state-dir': { type: 'string' }, client: { type: 'string' }, port: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  const dir = values['state-dir'] ?? DEFAULTS.stateDir;
  let req: ControlRequest;
  if (positionals.length === 1 && values.client === undefined && values.port === undefined) {
    const id = positionals[0] ?? '';
    if (!/^\d{1,15}$/.test(id)) throw new ConfigError(`rm: '${id}' is not a mapping ID (portcullis ls shows them)`);
    req = { op: 'remove', id: Number(id) };
  } else if (positionals.length === 0 && values.client !== undefined) {
    const client = parseIp(values.client);
    if (!client) throw new ConfigError(`--client '${values.client}' is not an address`);
    const port = intFlag('port', values.port);
    if (port !== undefined && (port < 1 || port > 65535)) throw new ConfigError('--port N: 1-65535');
    req = { op: 'remove', client, port };
  } else {
    throw new ConfigError('usage: portcullis rm ID | portcullis rm --client ADDR [--port N]');
  }
  const reply = await ask(dir, req);
  if ('down' in reply) {
    process.stderr.write(`portcullis: nothing removed: ${reply.down}\n`);
    process.exitCode = 3;
    return;
  }
  if (!reply.ok) {
    process.stderr.write(`portcullis: nothing removed: ${reply.error}\n`);
    process.exitCode = 1;
    return;
  }
  const r = reply.result as RemoveReport;
  for (const m of r.removed) {
    const left = m.lifetime === 'static' ? '' : `, ${duration(m.lifetime)} left`;
    process.stdout.write(`removed ${m.id ?? '-'}: ${m.origin} ${m.protocol} ${m.external} → ${m.internal} (${m.device ?? 'device unknown'}${left})${m.description ? ` ${printable(m.description)}` : ''}\n`);
  }
  if (r.keptStatic) process.stdout.write(`kept ${r.keptStatic} static forward${r.keptStatic > 1 ? 's' : ''}: the policy file's\n`);
}

async function doctor(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: ROUTER_OPTIONS, strict: true });
  const file = values.config ? loadConfigFile(values.config) : {};
  const cfg = resolveConfig(file, routerFlags(values));
  const checks = await runChecks({ lan: cfg.lan, wan: cfg.wan, externalIp: cfg.externalIp, nft: cfg.nft }, systemView());
  process.stdout.write(formatChecks(checks));
  if (checks.some((c) => c.status === 'fail')) process.exitCode = 1;
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
  if (cmd === 'ls' || cmd === 'list') return ls(rest);
  if (cmd === 'status') return status(rest);
  if (cmd === 'rm') return rm(rest);
  if (cmd === 'doctor') return doctor(rest);
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
