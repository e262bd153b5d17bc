// How a DHCP client hands the daemon the PCP servers its ISP named
// (RFC 7291): a hook script of the client writes what it received into
// DEFAULT_OPTION_FILE, a file or (what the shipped hooks use) a directory of
// files, one per DHCP client and interface, each replaced whole by a rename.
// docs/upstream-pcp.md tells the hooks' side; this is the reader's.
//
// One server a line, fields separated by blanks:
//
//   SOURCE  INTERFACE  hex   DATA          the option's data as the client saw it
//   SOURCE  INTERFACE  addr  ADDRESS…      one server's addresses, already decoded
//
//   dhcpv6 wan0 hex 20010db8000000000000000000000001
//   dhcpv4 wan0 hex 08:c6:33:64:1:c6:33:64:2
//   dhcpv6 wan0 addr 2001:db8::1 192.0.2.1
//
// SOURCE is dhcpv6 (option 86) or dhcpv4 (option 158); INTERFACE the device
// the client ran on. `hex` DATA is continuous hex or octets separated by
// colons with one or two digits each (ISC dhclient prints `4:c0:0:2:1`).
// A dhcpv6 hex line is one option instance, so one server; the dhcpv4 hex
// lines of an interface in one file are the instances of one option,
// joined in order (RFC 3396). `#` starts a comment line; blank lines are skipped.
//
// Stale-safe: a line names its interface, and only lines of the WAN
// interfaces count (a lease on an interface that is no longer the WAN, or a
// client on the LAN side, says nothing about the upstream). The hooks remove
// their file when the lease ends; /run does not outlive a reboot.
//
// Bounds: at most MAX_FILES files of MAX_FILE_BYTES each, MAX_LINES lines of
// MAX_LINE_CHARS; a file or directory that someone other than root (or the
// daemon's own user) owns, or that group or others may write, is not read:
// whoever writes it chooses where the proxy sends the LAN's requests. What is
// refused is said in `notes`, one sentence each; nothing here throws.

import { constants } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseIp, type IpAddress } from './address.js';
import { decodeV4PcpServers, decodeV6PcpServers, MAX_ADDRESSES_PER_SERVER, MAX_OPTION_OCTETS, usableServers, type PcpServersDecoded } from './pcp-server-option.js';

export type DhcpSource = 'dhcpv6' | 'dhcpv4';

/** One PCP server a DHCP client learned on a WAN interface. */
export interface LearnedServer {
  readonly source: DhcpSource;
  readonly interface: string;
  readonly addresses: readonly IpAddress[];
}

export interface LearnedServers {
  /** dhcpv6 first, then dhcpv4; within a source, the WAN interfaces' order, then the servers' own. */
  readonly servers: readonly LearnedServer[];
  /** What was refused, skipped or discarded, and why. */
  readonly notes: readonly string[];
}

/** Where the shipped hooks write (a directory; a plain file at the path is read too). */
export const DEFAULT_OPTION_FILE = '/run/portcullis/pcp-servers';

export const MAX_FILES = 16;
export const MAX_FILE_BYTES = 16 * 1024;
export const MAX_LINES = 256;
/** A whole option in hex with a colon after each octet, and room for the fields before it. */
export const MAX_LINE_CHARS = 3 * MAX_OPTION_OCTETS + 64;

const SOURCES: readonly DhcpSource[] = ['dhcpv6', 'dhcpv4'];
const INTERFACE = /^[A-Za-z0-9_.@-]{1,15}$/;
const HEX_RUN = /^(?:[0-9a-fA-F]{2})+$/;
const HEX_OCTETS = /^[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2})*$/;

/** A named text: one file's content (the name is for the notes). */
export interface OptionText {
  readonly name: string;
  readonly text: string;
}

type Line = { file: string; source: DhcpSource; interface: string; where: string } & (
  | { kind: 'hex'; data: Buffer }
  | { kind: 'addr'; addresses: IpAddress[] }
);

/** `hex` DATA → octets; undefined when it is not hex of either form. */
export function parseHexData(text: string): Buffer | undefined {
  if (HEX_RUN.test(text)) return Buffer.from(text, 'hex');
  if (text.includes(':') && HEX_OCTETS.test(text)) return Buffer.from(text.split(':').map((o) => parseInt(o, 16)));
  return undefined;
}

function parseLine(raw: string, file: string, where: string): { line?: Line; note?: string } {
  const fields = raw.trim().split(/\s+/);
  const [source, iface, kind, ...values] = fields;
  if (!SOURCES.includes(source as DhcpSource)) return { note: `${where}: '${(source ?? '').slice(0, 20)}' is not dhcpv6 or dhcpv4` };
  if (!iface || !INTERFACE.test(iface)) return { note: `${where}: '${(iface ?? '').slice(0, 20)}' is not an interface name` };
  const base = { file, source: source as DhcpSource, interface: iface, where };
  if (kind === 'hex') {
    if (values.length !== 1) return { note: `${where}: hex takes one DATA field, not ${values.length}` };
    const data = parseHexData(values[0] ?? '');
    return data ? { line: { ...base, kind, data } } : { note: `${where}: the DATA is not hex octets` };
  }
  if (kind === 'addr') {
    if (values.length === 0 || values.length > MAX_ADDRESSES_PER_SERVER) {
      return { note: `${where}: addr takes 1 to ${MAX_ADDRESSES_PER_SERVER} addresses, not ${values.length}` };
    }
    const addresses: IpAddress[] = [];
    for (const v of values) {
      // A zone would name an interface of the writer's choosing: not taken.
      const a = v.includes('%') ? undefined : parseIp(v);
      if (!a) return { note: `${where}: '${v.slice(0, 45)}' is not an IP address` };
      addresses.push(a);
    }
    return { line: { ...base, kind, addresses } };
  }
  return { note: `${where}: '${(kind ?? '').slice(0, 20)}' is not hex or addr` };
}

/** One source's lines on one interface → its servers (or why not). */
function decodeGroup(source: DhcpSource, lines: readonly Line[]): PcpServersDecoded {
  const hex = lines.flatMap((l) => (l.kind === 'hex' ? [l.data] : []));
  const addr = lines.flatMap((l) => (l.kind === 'addr' ? [l.addresses] : []));
  if (hex.length > 0 && addr.length > 0) return { ok: false, detail: 'hex and addr lines mixed: which one is the option is unclear' };
  if (addr.length > 0) return usableServers(addr);
  return source === 'dhcpv6' ? decodeV6PcpServers(hex) : decodeV4PcpServers(hex);
}

/**
 * The servers learned on `wanInterfaces`, from the texts of the option
 * file(s). Pure: the reader below does the I/O.
 */
export function parseOptionTexts(texts: readonly OptionText[], wanInterfaces: readonly string[]): LearnedServers {
  const notes: string[] = [];
  const lines: Line[] = [];
  const elsewhere = new Set<string>();
  let count = 0;
  for (const { name, text } of texts) {
    for (const [i, raw] of text.split('\n').entries()) {
      const trimmed = raw.trim();
      if (trimmed === '' || trimmed.startsWith('#')) continue;
      const where = `${name} line ${i + 1}`;
      if (++count > MAX_LINES) {
        notes.push(`${where}: more than ${MAX_LINES} lines; the rest is not read`);
        break;
      }
      if (raw.length > MAX_LINE_CHARS) {
        notes.push(`${where}: longer than ${MAX_LINE_CHARS} characters`);
        continue;
      }
      const { line, note } = parseLine(trimmed, name, where);
      if (note) notes.push(note);
      if (!line) continue;
      if (wanInterfaces.includes(line.interface)) lines.push(line);
      else elsewhere.add(line.interface);
    }
    if (count > MAX_LINES) break;
  }
  for (const iface of elsewhere) notes.push(`servers learned on ${iface} are not used: it is not a WAN interface`);
  const servers: LearnedServer[] = [];
  // One file is one DHCP client's one message: instances are joined within it, never across files.
  for (const source of SOURCES) {
    for (const iface of wanInterfaces) {
      for (const name of new Set(texts.map((x) => x.name))) {
        const group = lines.filter((l) => l.file === name && l.source === source && l.interface === iface);
        if (group.length === 0) continue;
        const decoded = decodeGroup(source, group);
        if (!decoded.ok) {
          const where = group.length <= 3 ? group.map((l) => l.where).join(', ') : `${group[0]?.where} and ${group.length - 1} more lines`;
          notes.push(`${source} on ${iface} (${where}): ${decoded.detail}; not used`);
          continue;
        }
        for (const d of decoded.discarded) notes.push(`${source} on ${iface}: ${d.address} discarded (${d.why})`);
        for (const s of decoded.servers) servers.push({ source, interface: iface, addresses: s.addresses });
      }
    }
  }
  return { servers, notes };
}

/** Root's or the daemon's own, and no one else may write it. */
function trusted(st: { uid: number; mode: number }): string | undefined {
  const own = process.getuid?.() ?? 0;
  if (st.uid !== 0 && st.uid !== own) return `owned by uid ${st.uid}, not root`;
  const writers = [(st.mode & 0o020) !== 0 && 'its group', (st.mode & 0o002) !== 0 && 'others'].filter(Boolean);
  if (writers.length > 0) return `writable by ${writers.join(' and ')}`;
  return undefined;
}

async function readCapped(path: string, follow: boolean, notes: string[]): Promise<OptionText | undefined> {
  const name = path;
  let handle;
  try {
    // O_NOFOLLOW: a name that became a link since it was listed is not followed;
    // O_NONBLOCK: a name that became a FIFO does not hang the open (the type is checked next).
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | (follow ? 0 : constants.O_NOFOLLOW));
    const st = await handle.stat();
    if (!st.isFile()) {
      notes.push(`${name} is not read: not a regular file`);
      return undefined;
    }
    const why = trusted(st);
    if (why) {
      notes.push(`${name} is not read: ${why}`);
      return undefined;
    }
    const buf = Buffer.alloc(MAX_FILE_BYTES + 1);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    if (bytesRead > MAX_FILE_BYTES) {
      notes.push(`${name} is not read: larger than ${MAX_FILE_BYTES} bytes`);
      return undefined;
    }
    return { name, text: buf.subarray(0, bytesRead).toString('utf8') };
  } catch (e) {
    notes.push(`${name} is not read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    return undefined;
  } finally {
    await handle?.close();
  }
}

/**
 * Reads the option file, or every file of the option directory (name order;
 * dot files are a hook's write in progress), within the bounds above.
 * Nothing at the path: nothing learned, no note.
 */
export async function readOptionTexts(path: string): Promise<{ texts: OptionText[]; notes: string[] }> {
  const notes: string[] = [];
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') notes.push(`${path} is not read: ${code ?? String(e)}`);
    return { texts: [], notes };
  }
  if (!st.isDirectory()) {
    const one = await readCapped(path, true, notes);
    return { texts: one ? [one] : [], notes };
  }
  const why = trusted(st);
  if (why) return { texts: [], notes: [`${path} is not read: ${why}`] };
  let names: string[];
  try {
    const entries = await readdir(path, { withFileTypes: true });
    // A link could point anywhere: only regular files the hooks wrote.
    names = entries.filter((e) => e.isFile() && !e.name.startsWith('.')).map((e) => e.name).sort();
  } catch (e) {
    return { texts: [], notes: [`${path} is not read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`] };
  }
  if (names.length > MAX_FILES) notes.push(`${path}: ${names.length} files, only the first ${MAX_FILES} are read`);
  const texts: OptionText[] = [];
  for (const name of names.slice(0, MAX_FILES)) {
    const t = await readCapped(join(path, name), false, notes);
    if (t) texts.push(t);
  }
  return { texts, notes };
}

/** The servers DHCP clients learned on the WAN interfaces, from `path`. */
export async function learnedServers(path: string, wanInterfaces: readonly string[]): Promise<LearnedServers> {
  const read = await readOptionTexts(path);
  const parsed = parseOptionTexts(read.texts, wanInterfaces);
  return { servers: parsed.servers, notes: [...read.notes, ...parsed.notes] };
}
