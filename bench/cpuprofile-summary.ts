// Summarises a V8 .cpuprofile (`node --cpu-prof`, e.g. the daemon under the
// bench with BENCH_DAEMON_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR"): the
// functions with the most self time and the most total time (self plus
// everything they called; a function on the stack twice counts once per
// sample), as milliseconds and shares of the sampled time.
//
//   node dist/bench/cpuprofile-summary.js FILE.cpuprofile [TOP=25] [FILTER]
//
// FILTER (a substring of "name file:line") keeps only samples with such a
// function on their stack: where the time under one entry point goes.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface FunctionTime {
  name: string;
  selfMs: number;
  totalMs: number;
}

const short = (url: string) => url.replace(/^file:\/\//, '').replace(/^.*\/(dist|node_modules)\//, '$1/');

/** Self and total milliseconds per function ("name file:line"), over the samples that pass `filter`. */
export function summarise(profile: CpuProfile, filter?: string): { sampledMs: number; functions: FunctionTime[] } {
  const parent = new Map<number, number>();
  const label = new Map<number, string>();
  for (const n of profile.nodes) {
    const f = n.callFrame;
    label.set(n.id, `${f.functionName || '(anonymous)'} ${f.url ? `${short(f.url)}:${f.lineNumber + 1}` : ''}`.trim());
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let sampledMs = 0;
  profile.samples.forEach((id, i) => {
    // timeDeltas[i] is the time before sample i; it is what sample i stands for.
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    const stack: string[] = [];
    for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) stack.push(label.get(n) ?? '?');
    if (filter && !stack.some((s) => s.includes(filter))) return;
    sampledMs += ms;
    const top = stack[0] ?? '?';
    self.set(top, (self.get(top) ?? 0) + ms);
    for (const s of new Set(stack)) total.set(s, (total.get(s) ?? 0) + ms);
  });
  const functions = [...total.entries()].map(([name, totalMs]) => ({ name, selfMs: self.get(name) ?? 0, totalMs }));
  return { sampledMs, functions };
}

function main(): void {
  const [file, topText, filter] = process.argv.slice(2);
  if (!file) throw new Error('usage: cpuprofile-summary FILE.cpuprofile [TOP] [FILTER]');
  const top = Number(topText ?? 25);
  const { sampledMs, functions } = summarise(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, filter);
  const pct = (ms: number) => `${((ms / sampledMs) * 100).toFixed(1).padStart(5)} %`;
  const table = (title: string, key: 'selfMs' | 'totalMs') => {
    process.stdout.write(`\n${title}\n`);
    for (const f of [...functions].sort((a, b) => b[key] - a[key]).slice(0, top)) {
      process.stdout.write(`${f[key].toFixed(0).padStart(8)} ms ${pct(f[key])}  ${f.name}\n`);
    }
  };
  process.stdout.write(`sampled: ${sampledMs.toFixed(0)} ms${filter ? ` (stacks through "${filter}")` : ''}\n`);
  table('self time', 'selfMs');
  table('total time', 'totalMs');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
