// The real system as the doctor's checks read it: nft, /proc/sys, `ip -j link`,
// the policy file as an edit would meet it, the installed systemd unit.

import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { nftRunner } from '../firewall/nft/run.js';
import { PolicyEditError, editableFile } from '../policy/edit.js';
import type { SystemView } from './checks.js';
import type { EditableProbe } from './admin-edits.js';

/** Where systemd looks for a system unit, the first one found winning (systemd.unit(5)). */
const UNIT_DIRS = ['/etc/systemd/system', '/run/systemd/system', '/usr/local/lib/systemd/system', '/usr/lib/systemd/system', '/lib/systemd/system'];
const UNIT = 'portcullis.service';

export function systemView(): SystemView {
  const nft = nftRunner();
  return {
    nftJson: (args) => nft.list(args),
    read(path) {
      try {
        return readFileSync(path, 'utf8');
      } catch {
        return undefined;
      }
    },
    async links() {
      const r = spawnSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8', timeout: 5000 });
      const out = new Map<string, { up: boolean }>();
      if (r.status !== 0) return out;
      for (const l of JSON.parse(r.stdout) as { ifname: string; flags?: string[]; operstate?: string }[]) {
        // A bridge without ports says operstate DOWN while it is administratively up: the flag decides.
        out.set(l.ifname, { up: (l.flags ?? []).includes('UP') });
      }
      return out;
    },
    interfaces: networkInterfaces,
    policyEditable,
    serviceUnit,
  };
}

async function policyEditable(file: string): Promise<EditableProbe> {
  try {
    return { ok: true, target: (await editableFile(file)).target };
  } catch (err) {
    if (!existsSync(file)) return { ok: false, reason: 'missing', message: `the policy file ${file} does not exist` };
    if (!(err instanceof PolicyEditError && err.refusal === 'read-only')) return { ok: false, reason: 'other', message: (err as Error).message };
    return { ok: false, reason: 'read-only', message: readOnlyWhy(realpathSync(file)) };
  }
}

/** Which of the file and its directory is read-only, and how: its mode, or the mount. */
function readOnlyWhy(file: string): string {
  if ((statSync(file).mode & 0o222) === 0) return `the policy file ${file} is read-only (no write permission in its mode)`;
  for (const path of [file, dirname(file)]) {
    try {
      accessSync(path, constants.W_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return `${path} is read-only (${code === 'EROFS' ? 'a read-only mount' : `${code}: no write permission for the daemon's user`})`;
    }
  }
  return `the policy file ${file} is read-only`;
}

/** The installed unit, then its drop-ins (*.conf, by name; one in /etc hides one of the same name further down). */
function serviceUnit(): { file: string; text: string }[] {
  const read = (file: string) => {
    try {
      return readFileSync(file, 'utf8').slice(0, 1 << 20);
    } catch {
      return undefined;
    }
  };
  const unit = UNIT_DIRS.map((d) => join(d, UNIT)).find((f) => existsSync(f));
  const text = unit === undefined ? undefined : read(unit);
  if (unit === undefined || text === undefined) return [];
  const dropIns = new Map<string, string>();
  for (const d of [...UNIT_DIRS].reverse()) {
    let names: string[] = [];
    try {
      names = readdirSync(join(d, `${UNIT}.d`)).filter((n) => n.endsWith('.conf'));
    } catch {
      continue;
    }
    for (const n of names) dropIns.set(n, join(d, `${UNIT}.d`, n));
  }
  const out = [{ file: unit, text }];
  for (const n of [...dropIns.keys()].sort()) {
    const file = dropIns.get(n) as string;
    const t = read(file);
    if (t !== undefined) out.push({ file, text: t });
  }
  return out;
}
