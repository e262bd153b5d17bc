// Which path reaches the kernel (config `nft.path`): in-process libnftables,
// or an `nft` process per call. `auto` takes the library when it loads and
// answers `list tables` (and nft, its fallback, answers too), else the process
// path with one log line saying why.
// The choice is made on the first call — the backend's start — so building a
// backend stays synchronous and a `library` that cannot load fails start.

import type { Config } from '../../config.js';
import type { Logger } from '../../log.js';
import { libraryRunner, openLibnftables, type NftContext } from './libnftables.js';
import { nftRunner, type NftRunner } from './run.js';

export type NftPath = Config['nft']['path'];

export interface ChooseDeps {
  open: () => Promise<NftContext>;
  process: () => NftRunner;
}

const REAL: ChooseDeps = { open: () => openLibnftables(), process: () => nftRunner() };

export function chooseRunner(path: NftPath, log: Logger, deps: ChooseDeps = REAL): NftRunner {
  let chosen: NftRunner | undefined;
  let choosing: Promise<NftRunner> | undefined;

  async function choose(): Promise<NftRunner> {
    const proc = deps.process();
    if (path === 'process') return proc;
    let why: string;
    try {
      const runner = libraryRunner(await deps.open(), {
        fallback: proc,
        onWedged: (ms) => log.error({ event: 'nft-path', path: 'process', why: `a libnftables call did not return within ${ms} ms` }),
      });
      const probe = await runner.list(['list', 'tables']);
      if (probe.ok && path === 'library') return runner;
      // auto promises the process path behind the library (a wedged call
      // falls back to it): without a working nft, auto is the process path
      // and start fails as it always did, naming the missing package.
      const nft = probe.ok ? await proc.list(['list', 'tables']) : undefined;
      if (nft?.ok) return runner;
      why = probe.ok ? `libnftables answers but nft, its fallback, does not: ${nft && !nft.ok ? nft.error : ''}` : `libnftables: 'list tables' failed: ${probe.error}`;
    } catch (err) {
      why = `libnftables does not load: ${(err as Error).message}`;
    }
    if (path === 'library') return unusable(`nft.path is 'library' but ${why}`);
    log.warn({ event: 'nft-path', path: 'process', why });
    return proc;
  }
  const runner = async (): Promise<NftRunner> => chosen ?? (chosen = await (choosing ??= choose()));

  return {
    get kind() {
      return chosen?.kind;
    },
    batch: async (commands) => (await runner()).batch(commands),
    script: async (text) => (await runner()).script(text),
    list: async (args) => (await runner()).list(args),
  };
}

/** Every call fails with `why`: the backend's start reports it and the daemon does not start. */
function unusable(why: string): NftRunner {
  return {
    kind: 'library',
    batch: async () => ({ ok: false, stdout: '', stderr: why }),
    script: async () => ({ ok: false, stdout: '', stderr: why }),
    list: async () => ({ ok: false, error: why }),
  };
}
