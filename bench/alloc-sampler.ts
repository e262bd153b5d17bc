// Where the bytes went: V8's sampling heap profiler through the inspector,
// counting objects the collector already took as well (what a start
// allocates and drops is what its peak is made of), summed per function.

import { Session } from 'node:inspector/promises';

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

export async function allocationSampler(): Promise<{ stop(top: number): Promise<string> }> {
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  await session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true } as never);
  return {
    async stop(top) {
      const { profile } = (await session.post('HeapProfiler.stopSampling')) as unknown as { profile: { head: ProfileNode } };
      session.disconnect();
      const byFrame = new Map<string, number>();
      let total = 0;
      const walk = (n: ProfileNode) => {
        const f = n.callFrame;
        const where = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/dist\//, '')}:${f.lineNumber + 1}`;
        byFrame.set(where, (byFrame.get(where) ?? 0) + n.selfSize);
        total += n.selfSize;
        for (const c of n.children) walk(c);
      };
      walk(profile.head);
      const rows = [...byFrame].sort((a, b) => b[1] - a[1]).slice(0, top);
      return `sampled allocations: ${(total / 2 ** 20).toFixed(1)} MiB\n${rows.map(([w, b]) => `${(b / 2 ** 20).toFixed(1).padStart(8)} MiB  ${w}`).join('\n')}\n`;
    },
  };
}
