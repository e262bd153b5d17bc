// portcullis status, ls (list), rm: the admin's view of a running daemon
// through its control socket, and of the store when the daemon is down.

import { intFlag, stateDirOption } from './flags.js';
import { parseArgs } from 'node:util';
import { ConfigError, DEFAULTS } from '../config.js';
import { controlRequest, controlSocketPath, type ControlReply, type ControlRequest } from '../server/control-socket.js';
import { listedMapping, mappingCounts, type Listing, type MappingCounts } from '../server/listing.js';
import { storeSize, type RemoveReport, type StatusReport } from '../daemon/control.js';
import { parseIp } from '../net/address.js';
import { monotonicClock } from '../state/clock.js';
import { DurableStore, remainingMs, type LoadedState } from '../state/store.js';
import type { StoredMapping } from '../state/records.js';

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

export async function ls(argv: string[]): Promise<void> {
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
    rows.push([m.id === undefined ? '-' : String(m.id), m.device ?? '-', m.protocol, `${m.upstream ? `${m.upstream} → ` : ''}${m.external} → ${m.internal}`, m.origin + (m.kind === 'peer' ? '/peer' : ''), left, printable(m.description)]);
  }
  // The admin API's id for a static opening (GET /api/openings, DELETE /api/statics/NAME).
  for (const s of r.staticPinholes) rows.push([`static-${s.name}`, '-', '', '', 'static', 'static', `${s.name}: ${s.rule}`]);
  printTable(rows);
}

export async function status(argv: string[]): Promise<void> {
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
    ...upstreamLines(r.upstream),
    r.errors.length ? 'recent errors:' : 'recent errors: none',
    ...r.errors.map((e) => `  ${e.at} ${e.event}: ${printable(e.detail)}`),
  ];
  process.stdout.write(out.join('\n') + '\n');
}

/** The RFC 7648 proxy's lines of `status`. */
function upstreamLines(u: StatusReport['upstream']): string[] {
  if (!u) return [];
  if (u.state !== 'proxying') return [`upstream PCP (${u.setting}): ${u.state === 'none' ? 'NONE: ' : ''}${u.detail}`];
  const w = u.wire;
  const c = u.counts;
  return [
    `upstream PCP (${u.setting}): ${w?.server ?? '?'} (${u.source ?? '?'}), external address ${u.publicAddress ?? 'not known yet'}`,
    `  last answer ${w?.lastAnswer ?? 'never'}, epoch ${w?.epoch ?? '?'}, ${w?.inFlight ?? 0} in flight, state lost ${w?.stateLosses ?? 0} times`,
    `  ${c?.relayed ?? 0} relayed, ${c?.refused ?? 0} refused, ${c?.unanswered ?? 0} unanswered, ${c?.removed ?? 0} removals relayed`,
    `  ${u.detail}`,
  ];
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

export async function rm(argv: string[]): Promise<void> {
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
    const named = /^static-([A-Za-z0-9][A-Za-z0-9_.-]{0,62})$/.exec(id);
    if (named) {
      throw new ConfigError(`rm: ${id} is the policy file's static opening '${named[1]}': remove it from the file and run portcullis policy reload, or remove it on the admin page (DELETE /api/statics/${named[1]})`);
    }
    if (!/^\d{1,15}$/.test(id)) throw new ConfigError(`rm: '${id.slice(0, 64)}' is not a mapping ID (portcullis ls shows them)`);
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
