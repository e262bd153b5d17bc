// Can the admin page's Open and Remove work? They edit the policy file
// (policy/edit.ts): the file itself, and beside it FILE.bak and a temporary
// file renamed over it, so both the file and its directory must be
// writable by the daemon. Two things can keep them read-only:
//
// - the file system as the doctor sees it (a read-only mount, the file's
//   write bits cleared: the admin's word that it is not to be changed);
// - the systemd unit the daemon runs under, which the doctor (run from a
//   shell) does not share: ProtectSystem= makes parts of the tree read-only
//   to the daemon alone, and only ReadWritePaths= (or StateDirectory= and its
//   kin) give some back. Its settings are read from the installed unit file
//   and its drop-ins, so the check also works where systemd is not running.

import { dirname, resolve } from 'node:path';
import type { Check } from './checks.js';

/** What editing would meet: the file's real path, or why it cannot be edited (policy/edit.ts's words). */
export type EditableProbe = { ok: true; target: string } | { ok: false; reason: 'read-only' | 'missing' | 'other'; message: string };

/** The sandbox settings that decide what the daemon may write. */
export interface UnitSandbox {
  /** Where the settings were read (the unit file, then its drop-ins). */
  files: string[];
  /** `no`, `yes`, `full` or `strict` (systemd.exec(5)). */
  protectSystem: string;
  readWritePaths: string[];
  readOnlyPaths: string[];
  /** StateDirectory=, CacheDirectory=, LogsDirectory=, RuntimeDirectory= as absolute paths: writable under any ProtectSystem. */
  ownDirectories: string[];
}

const DIRECTORY_ROOTS: Record<string, string> = { StateDirectory: '/var/lib', CacheDirectory: '/var/cache', LogsDirectory: '/var/log', RuntimeDirectory: '/run' };
/** ProtectSystem=yes and full (systemd.exec(5)): these trees read-only; strict: all but the API file systems. */
const READ_ONLY_TREES: Record<string, string[]> = { yes: ['/usr', '/boot', '/efi'], true: ['/usr', '/boot', '/efi'], full: ['/usr', '/boot', '/efi', '/etc'], strict: ['/'] };
const API_TREES = ['/dev', '/proc', '/sys'];

/**
 * The sandbox of a unit from its texts, in the order systemd reads them (the
 * unit, then its drop-ins): a later ProtectSystem= wins, path lists add up,
 * and an empty assignment clears a list, as in systemd.
 */
export function unitSandbox(texts: readonly { file: string; text: string }[]): UnitSandbox {
  const out: UnitSandbox = { files: texts.map((t) => t.file), protectSystem: 'no', readWritePaths: [], readOnlyPaths: [], ownDirectories: [] };
  for (const { text } of texts) {
    let section = '';
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (line.startsWith('[')) section = line;
      if (section !== '[Service]' || line.startsWith('#') || line.startsWith(';')) continue;
      const eq = line.indexOf('=');
      if (eq < 0) continue;
      const key = line.slice(0, eq).trim();
      const value = line.slice(eq + 1).trim();
      // `-` (ignore if missing) and `+` (relative to RootDirectory=) prefixes; quotes around a path.
      const paths = value.split(/\s+/).filter(Boolean).map((p) => p.replace(/^[-+]+/, '').replace(/^"(.*)"$/, '$1'));
      if (key === 'ProtectSystem') out.protectSystem = value === '' ? 'no' : value.toLowerCase();
      else if (key === 'ReadWritePaths' || key === 'ReadWriteDirectories') out.readWritePaths = value === '' ? [] : [...out.readWritePaths, ...paths];
      else if (key === 'ReadOnlyPaths' || key === 'ReadOnlyDirectories') out.readOnlyPaths = value === '' ? [] : [...out.readOnlyPaths, ...paths];
      else if (key in DIRECTORY_ROOTS) out.ownDirectories = value === '' ? out.ownDirectories : [...out.ownDirectories, ...paths.map((p) => resolve(DIRECTORY_ROOTS[key] as string, p.split(':')[0] as string))];
    }
  }
  return out;
}

const under = (path: string, tree: string) => tree === '/' || path === tree || path.startsWith(`${tree}/`);
/** The deepest of `trees` that holds `path`, as systemd mounts the more specific path last. */
const deepest = (path: string, trees: readonly string[]) => trees.filter((t) => under(path, t)).sort((a, b) => b.length - a.length)[0];

/** Whether the unit lets the daemon write in `dir`; undefined when it may, else the setting that keeps it read-only. */
export function readOnlyUnder(sandbox: UnitSandbox, dir: string): string | undefined {
  const ro = [...(READ_ONLY_TREES[sandbox.protectSystem] ?? []), ...sandbox.readOnlyPaths];
  const rw = [...sandbox.readWritePaths, ...sandbox.ownDirectories, ...(sandbox.protectSystem === 'strict' ? API_TREES : [])];
  const r = deepest(dir, ro);
  if (r === undefined) return undefined;
  const w = deepest(dir, rw);
  if (w !== undefined && w.length >= r.length) return undefined;
  return sandbox.readOnlyPaths.includes(r) ? `ReadOnlyPaths=${r}` : `ProtectSystem=${sandbox.protectSystem}`;
}

export interface AdminEditSettings {
  /** admin.listen: the check is only made when the admin page is served. */
  adminListen?: string;
  policy?: string;
}

export interface AdminEditView {
  /** What an edit of the policy file would meet (the daemon's own check, policy/edit.ts `editableFile`). */
  policyEditable(file: string): Promise<EditableProbe>;
  /** The installed portcullis.service and its drop-ins, in systemd's order; empty when none is installed. */
  serviceUnit(): { file: string; text: string }[];
}

const CANNOT = 'the admin page cannot add or remove openings';

/** The check, or none when the admin page is off. */
export async function adminEdits(s: AdminEditSettings, sys: AdminEditView): Promise<Check | undefined> {
  if (s.adminListen === undefined) return undefined;
  const name = 'admin page edits';
  if (s.policy === undefined) {
    return { name, status: 'warn', detail: `${CANNOT}: no policy file is configured (they are written to it)`, fix: 'create /etc/portcullis/policy.yaml (start from examples/policy.yaml) and set "policy": "/etc/portcullis/policy.yaml" in the config file (or --policy)' };
  }
  const probe = await sys.policyEditable(s.policy);
  if (!probe.ok) {
    if (probe.reason === 'missing') return { name, status: 'fail', detail: `${probe.message}: the daemon does not start without its policy file`, fix: `create ${s.policy} (start from examples/policy.yaml) or point "policy" at the right file` };
    const fix = probe.reason === 'read-only' ? `chmod u+w ${s.policy}, and check that ${dirname(s.policy)} is writable and on a read-write mount` : undefined;
    return { name, status: 'warn', detail: `${CANNOT}: ${probe.message}`, ...(fix ? { fix } : {}) };
  }
  const dir = dirname(probe.target);
  const units = sys.serviceUnit();
  const where = probe.target === s.policy ? probe.target : `${probe.target} (${s.policy} links to it)`;
  if (units.length > 0) {
    const sandbox = unitSandbox(units);
    const setting = readOnlyUnder(sandbox, dir);
    if (setting !== undefined) {
      return {
        name,
        status: 'warn',
        detail: `${CANNOT}: ${dir} is read-only to the daemon under ${sandbox.files[0]} (${setting}, no ReadWritePaths= for it), so ${where} cannot be rewritten there`,
        fix: `add ReadWritePaths=${dir} to the unit's [Service] section (systemctl edit portcullis; the shipped unit has ReadWritePaths=/etc/portcullis), or keep the policy file in /etc/portcullis; then systemctl restart portcullis`,
      };
    }
  }
  const unitSays = units.length > 0 ? `; ${units[0]?.file} lets the daemon write there` : '';
  return { name, status: 'ok', detail: `${where} and its directory are writable (the file, FILE.bak and a temporary file renamed over it)${unitSays}` };
}
