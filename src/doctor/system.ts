// The real system as the doctor's checks read it: nft, /proc/sys, `ip -j link`.

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { nftRunner } from '../firewall/nft/run.js';
import type { SystemView } from './checks.js';

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
  };
}
