// The double-NAT lab (scripts/lab-cgn.sh) with both daemons: the ISP's
// portcullis as the CGN's PCP server, the CPE's as the proxy. For the lab
// tests of the proxy beyond test/lab-cgn.test.ts.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { CLI, labUp, logLines, stateDir, waitForLine, type Lab } from './lab.js';

/** The ISP's public address (scripts/lab-cgn.sh says why not documentation space). */
export const PUBLIC = '11.22.33.1';

export interface Daemon {
  proc: ChildProcess;
  lines: string[];
}

export interface CgnLab {
  lab: Lab;
  cpeDir: string;
  isp: Daemon;
  cpe: Daemon;
  /** Stops the CPE's daemon and starts it again with `extra` flags; resolves once it serves. */
  restartCpe(extra?: string[]): Promise<Daemon>;
}

function serve(lab: Lab, node: 'cpe' | 'isp', args: string[]): Daemon {
  const proc = lab.spawn(node, [process.execPath, CLI, 'serve', '--min-lifetime', '5', '--no-upnp', ...args]);
  return { proc, lines: logLines(proc) };
}

/** The lab up, the ISP's daemon (any subscriber port allowed) and the CPE's serving; `beforeCpe` runs in between. */
export async function cgnLab(prefix: string, t: { teardown(fn: () => void): void }, beforeCpe: (lab: Lab) => void = () => undefined): Promise<CgnLab> {
  const lab = labUp(prefix, 'lab-cgn.sh');
  t.teardown(() => lab.down());
  const policy = join(stateDir(), 'isp-policy.yaml');
  writeFileSync(policy, 'version: 1\nrules:\n  - name: subscribers\n    action: allow\n    match:\n      internalPorts: 1024-65535\n      externalPorts: 1024-65535\n');
  const isp = serve(lab, 'isp', ['--lan', 'cpe0', '--wan', 'wan0', '--state-dir', stateDir(), '--policy', policy]);
  await waitForLine(isp.proc, (l) => l.includes('"event":"started"'), 20_000);
  beforeCpe(lab);
  const cpeDir = stateDir();
  const cpeArgs = ['--lan', 'lan0', '--wan', 'wan0', '--state-dir', cpeDir];
  const out: CgnLab = {
    lab,
    cpeDir,
    isp,
    cpe: serve(lab, 'cpe', cpeArgs),
    async restartCpe(extra = []) {
      out.cpe.proc.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 1000));
      out.cpe = serve(lab, 'cpe', [...cpeArgs, ...extra]);
      await waitForLine(out.cpe.proc, (l) => l.includes('"event":"started"'), 30_000);
      return out.cpe;
    },
  };
  t.teardown(() => {
    out.cpe.proc.kill('SIGTERM');
    out.isp.proc.kill('SIGTERM');
  });
  await waitForLine(out.cpe.proc, (l) => l.includes('"event":"started"'), 30_000);
  return out;
}
