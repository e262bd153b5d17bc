// held_nat's run (src/firewall/nft/outbound.ts, largestFreeRun): where a
// flow from a port a mapping holds is masqueraded to. It must never hold a
// held port, and mappings made on consecutive ports next to it must not
// land in it with every batch (each landing is a sort of every held port and
// a rule rewrite in the backend).

import t from 'tap';
import { REMAP_MARGIN, largestFreeRun } from '../src/firewall/nft/outbound.js';

const inRun = (run: { min: number; max: number }, p: number) => p >= run.min && p <= run.max;

t.test('nothing held: every port from 1024', async (t) => {
  t.same(largestFreeRun([]), { min: 1024, max: 65535 });
  t.same(largestFreeRun([80, 443]), { min: 1024, max: 65535 }, 'ports below 1024 do not count');
});

t.test('an end that borders a held port keeps a margin from it; an end of the port space does not', async (t) => {
  t.same(largestFreeRun([10_000]), { min: 10_001 + REMAP_MARGIN, max: 65535 });
  t.same(largestFreeRun([60_000]), { min: 1024, max: 59_999 - REMAP_MARGIN });
  t.same(largestFreeRun([1024, 65535]), { min: 1025 + REMAP_MARGIN, max: 65534 - REMAP_MARGIN });
});

t.test('a small run keeps at least half of itself', async (t) => {
  // Everything from 1024 held but 2000-2003 and 3000-3001.
  const held = [];
  for (let p = 1024; p <= 65535; p++) if (!(p >= 2000 && p <= 2003) && !(p >= 3000 && p <= 3001)) held.push(p);
  t.same(largestFreeRun(held), { min: 2001, max: 2002 });
  const one = held.concat([2000, 2001, 2002, 3001]);
  t.same(largestFreeRun(one), { min: 2003, max: 2003 }, 'a run of one port is kept whole');
});

t.test('the run never holds a held port', async (t) => {
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let k = 0; k < 200; k++) {
    const held = Array.from({ length: 1 + Math.floor(rand() * 2000) }, () => 1024 + Math.floor(rand() * 64512));
    const run = largestFreeRun(held);
    if (held.some((p) => inRun(run, p))) t.fail(`run ${run.min}-${run.max} holds a held port`);
    if (run.min > run.max || run.min < 1024 || run.max > 65535) t.fail(`run ${run.min}-${run.max} is not a run of high ports`);
  }
  t.pass('200 random holdings');
});

t.test('mappings on consecutive ports land in the run once per margin, not once each', async (t) => {
  // The backend's rule: a newly held port inside the run moves the run.
  let run = largestFreeRun([]);
  const held: number[] = [];
  let moves = 0;
  for (let p = 10_000; p < 15_000; p++) {
    held.push(p);
    if (!inRun(run, p)) continue;
    run = largestFreeRun(held);
    moves++;
  }
  t.ok(moves <= Math.ceil(5000 / REMAP_MARGIN) + 1, `${moves} moves for 5 000 consecutive ports`);
});
