// dnsmasq's DHCP lease file (`--dhcp-leasefile`; OpenWrt keeps it at
// /tmp/dhcp.leases): which host holds which address, until when, under which
// link-layer address and name. The mapping service caps lifetimes at a host's
// lease and revokes the mappings of a host whose lease ended (RFC 6887 §15).
//
// One lease a line, five fields separated by single spaces, as dnsmasq's
// lease.c writes them:
//
//   IPv4:  EXPIRES  HWADDR        ADDRESS   HOSTNAME|*  CLIENT-ID|*
//          1700000000 aa:bb:cc:dd:ee:ff 192.168.1.20 laptop 01:aa:bb:cc:dd:ee:ff
//   then one line `duid SERVER-DUID`, then
//   IPv6:  EXPIRES  [T]IAID       ADDRESS   HOSTNAME|*  CLIENT-DUID|*
//          1700000000 87654321 2001:db8::20 laptop 00:01:00:01:…
//
// EXPIRES is wall-clock seconds since 1970, 0 for an infinite lease. HWADDR
// is colon-separated hex, prefixed `TT-` with the ARP hardware type when it
// is not Ethernet. A `T` before the IAID marks a temporary address.
//
// Bounds and tolerance: a file over MAX_FILE_BYTES or MAX_LINES is not used
// (a part of it would make every lease past the cut look ended); lines that
// do not parse are skipped and counted; the file is looked at no more often
// than every MIN_CHECK_MS whoever asks (the daemon asks every
// CHECK_EVERY_MS), and read again only when its mtime or size changed. dnsmasq rewrites the file in place, so a read that saw the file
// change under it, or that ends in an unfinished line, is not used until the
// file holds still: a half-written file must not end anyone's lease.

import { open, stat } from 'node:fs/promises';
import { familyOf, parseIp, type Family, type IpAddress } from './address.js';

export interface DhcpLease {
  readonly family: Family;
  readonly address: IpAddress;
  /** Wall-clock seconds since 1970 when the lease ends; 0: never. */
  readonly expires: number;
  /** IPv4: the client's hardware address as dnsmasq writes it, lowercase. */
  readonly mac?: string;
  /** IPv6: the identity association the address belongs to. */
  readonly iaid?: number;
  /** IPv6: a temporary address (IA_TA). */
  readonly temporary?: boolean;
  readonly hostname?: string;
  /** IPv4: the DHCP client identifier; IPv6: the client's DUID (hex, lowercase). */
  readonly clientId?: string;
}

export interface ParsedLeases {
  leases: DhcpLease[];
  /** Lines that were neither a lease nor the `duid` line. */
  skipped: number;
}

/** dnsmasq's default lease limit is 1 000; a line is at most a few hundred octets. */
const MAX_FILE_BYTES = 1024 * 1024;
const MAX_LINES = 20_000;
/** A client-id is at most 255 octets (765 characters of hex and colons). */
const MAX_LINE_CHARS = 1024;
/** How often the daemon looks at the file. */
export const CHECK_EVERY_MS = 5000;
/** The least time between two looks, however often `refresh` is called. */
const MIN_CHECK_MS = 2000;

const EXPIRES = /^\d{1,12}$/;
const HWADDR = /^(?:[0-9a-f]{2}-(?:[0-9a-f]{2}(?::[0-9a-f]{2})*)?|[0-9a-f]{2}(?::[0-9a-f]{2})*)$/;
const IAID = /^(T?)(\d{1,10})$/;
const HOSTNAME = /^[A-Za-z0-9._-]{1,253}$/;
const HEX_ID = /^[0-9a-f]{2}(?::[0-9a-f]{2})*$/;

/** Parses the whole file's text; never throws. `undefined` when it has more than `maxLines` lines. */
export function parseDnsmasqLeases(text: string, maxLines = MAX_LINES): ParsedLeases | undefined {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines.length > maxLines) return undefined;
  const byAddress = new Map<IpAddress, DhcpLease>();
  let skipped = 0;
  for (const line of lines) {
    if (line.startsWith('duid ')) continue;
    const lease = line.length <= MAX_LINE_CHARS ? parseLine(line) : undefined;
    if (!lease) {
      skipped++;
      continue;
    }
    // The same address twice (a file edited by hand): the later end wins.
    const seen = byAddress.get(lease.address);
    if (!seen || endsAfter(lease, seen)) byAddress.set(lease.address, lease);
  }
  return { leases: [...byAddress.values()], skipped };
}

function parseLine(line: string): DhcpLease | undefined {
  const f = line.split(' ');
  if (f.length !== 5) return undefined;
  const [expiresText, idText, addressText, hostText, clientText] = f as [string, string, string, string, string];
  if (!EXPIRES.test(expiresText)) return undefined;
  const address = parseIp(addressText);
  if (!address || addressText.includes('%')) return undefined;
  const hostname = hostText === '*' ? undefined : HOSTNAME.test(hostText) ? hostText : null;
  const clientId = clientText === '*' ? undefined : HEX_ID.test(clientText.toLowerCase()) ? clientText.toLowerCase() : null;
  if (hostname === null || clientId === null) return undefined;
  const base = { address, expires: Number(expiresText), hostname, clientId };
  if (familyOf(address) === 4) {
    const mac = idText.toLowerCase();
    return HWADDR.test(mac) ? { family: 4, mac, ...base } : undefined;
  }
  const iaid = IAID.exec(idText);
  if (!iaid || Number(iaid[2]) > 0xffffffff) return undefined;
  return { family: 6, iaid: Number(iaid[2]), temporary: iaid[1] === 'T' ? true : undefined, ...base };
}

function endsAfter(a: DhcpLease, b: DhcpLease): boolean {
  return b.expires !== 0 && (a.expires === 0 || a.expires > b.expires);
}

export interface LeaseRefresh {
  /** The leases in force changed. */
  changed: boolean;
  /** Addresses that had a lease before and have none now (released, or pruned by dnsmasq after it ended). */
  lost: IpAddress[];
}

export interface DhcpLeasesOptions {
  checkEveryMs?: number;
  maxBytes?: number;
  maxLines?: number;
  /** Monotonic milliseconds, for spacing the checks. */
  now?: () => number;
}

/** The lease file as last read: lookups are in memory; `refresh` looks at the file. */
export class DhcpLeases {
  private byAddress = new Map<IpAddress, DhcpLease>();
  private checkedAt = Number.NEGATIVE_INFINITY;
  /** mtime and size of the file the leases in force came from. */
  private signature: string | undefined;
  /** A file ending in an unfinished line, seen once: used if it is still the same at the next check. */
  private unfinished: string | undefined;
  private readonly checkEveryMs: number;
  private readonly maxBytes: number;
  private readonly maxLines: number;
  private readonly now: () => number;
  /** Lines skipped in the last file read. */
  skipped = 0;
  /** Why the file could not be used at the last look (the last good leases stay in force); undefined: it could. */
  error: string | undefined;

  constructor(
    readonly file: string,
    opts: DhcpLeasesOptions = {},
  ) {
    this.checkEveryMs = opts.checkEveryMs ?? MIN_CHECK_MS;
    this.maxBytes = opts.maxBytes ?? MAX_FILE_BYTES;
    this.maxLines = opts.maxLines ?? MAX_LINES;
    this.now = opts.now ?? (() => performance.now());
  }

  /** The lease of an address, if the file lists one (ended or not). */
  leaseOf(address: IpAddress): DhcpLease | undefined {
    return this.byAddress.get(address);
  }

  /** When an address's lease ends, in wall-clock milliseconds (Infinity: never); undefined: it has none. */
  leaseEnd(address: IpAddress): number | undefined {
    const l = this.byAddress.get(address);
    if (!l) return undefined;
    return l.expires === 0 ? Number.POSITIVE_INFINITY : l.expires * 1000;
  }

  leases(): IterableIterator<DhcpLease> {
    return this.byAddress.values();
  }

  get size(): number {
    return this.byAddress.size;
  }

  /**
   * Looks at the file, unless it was looked at less than `checkEveryMs` ago,
   * and reads it again if it changed. Never throws: a file that cannot be
   * used leaves the last good leases in force, and `error` says why.
   */
  async refresh(): Promise<LeaseRefresh> {
    const now = this.now();
    if (now - this.checkedAt < this.checkEveryMs) return { changed: false, lost: [] };
    this.checkedAt = now;
    const out = await this.look();
    this.error = 'error' in out ? out.error : undefined;
    return 'error' in out ? { changed: false, lost: [] } : out;
  }

  private async look(): Promise<LeaseRefresh | { error: string }> {
    let text: string;
    let sig: string;
    try {
      const before = await stat(this.file);
      sig = `${before.mtimeMs}|${before.size}`;
      if (sig === this.signature) return { changed: false, lost: [] };
      if (before.size > this.maxBytes) return { error: `${this.file} is ${before.size} bytes, over the ${this.maxBytes}-byte limit` };
      text = await this.readBounded();
      const after = await stat(this.file);
      if (`${after.mtimeMs}|${after.size}` !== sig) return { changed: false, lost: [] };
    } catch (err) {
      return { error: `${this.file}: ${(err as Error).message}` };
    }
    if (text.length > 0 && !text.endsWith('\n') && this.unfinished !== sig) {
      this.unfinished = sig;
      return { changed: false, lost: [] };
    }
    const parsed = parseDnsmasqLeases(text, this.maxLines);
    if (!parsed) return { error: `${this.file} has more than ${this.maxLines} lines` };
    this.signature = sig;
    this.unfinished = undefined;
    this.skipped = parsed.skipped;
    return this.replace(parsed.leases);
  }

  private async readBounded(): Promise<string> {
    const fh = await open(this.file, 'r');
    try {
      // One byte over the cap tells a file that grew past it since stat().
      const buf = Buffer.alloc(this.maxBytes + 1);
      let length = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, length, buf.length - length, length);
        if (bytesRead === 0) break;
        length += bytesRead;
        if (length === buf.length) throw new Error(`grew over the ${this.maxBytes}-byte limit while being read`);
      }
      return buf.subarray(0, length).toString('utf8');
    } finally {
      await fh.close();
    }
  }

  private replace(leases: readonly DhcpLease[]): LeaseRefresh {
    const next = new Map(leases.map((l) => [l.address, l]));
    const lost = [...this.byAddress.keys()].filter((a) => !next.has(a));
    const changed = lost.length > 0 || next.size !== this.byAddress.size || leases.some((l) => !sameLease(l, this.byAddress.get(l.address)));
    this.byAddress = next;
    return { changed, lost };
  }
}

function sameLease(a: DhcpLease, b: DhcpLease | undefined): boolean {
  return b !== undefined && a.expires === b.expires && a.mac === b.mac && a.iaid === b.iaid && a.hostname === b.hostname && a.clientId === b.clientId;
}
