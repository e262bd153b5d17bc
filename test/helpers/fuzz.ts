// What the fuzz tests share: the seed (fixed, FUZZ_SEED overrides it) and
// the watchdog that calls a worker hung when its progress counter stops.

/** FUZZ_SEED=<int> replays another seed; a value that is not an integer is a mistake, not a request for the default. */
export function resolveSeed(defaultSeed: number): number {
  const text = process.env['FUZZ_SEED']?.trim() || String(defaultSeed);
  if (!/^-?[0-9]{1,15}$/.test(text)) throw new Error(`FUZZ_SEED must be an integer, got ${JSON.stringify(text)}`);
  return Number(text) | 0;
}

/** FUZZ_RUNS=<int> overrides a fuzzer's run count; like FUZZ_SEED, anything but a positive integer is a mistake. */
export function resolveRuns(defaultRuns: number): number {
  const text = process.env['FUZZ_RUNS']?.trim() || String(defaultRuns);
  if (!/^[0-9]{1,9}$/.test(text) || Number(text) < 1) throw new Error(`FUZZ_RUNS must be a positive integer, got ${JSON.stringify(text)}`);
  return Number(text);
}

/**
 * Polls `progress` every 250 ms and calls `onStall` once when it has not
 * changed for `stallMs`. Until it first moves, `startMs` is allowed instead
 * (a worker thread loading its modules on a loaded machine took over 15 s
 * before its first input, which is not a hang in the code under test).
 * Returns the function that stops watching.
 */
export function watchProgress(progress: () => number, stallMs: number, onStall: () => void, startMs = Math.max(stallMs, 120_000)): () => void {
  const first = progress();
  let seen = first;
  let moved = false;
  let movedAt = Date.now();
  const timer = setInterval(() => {
    const now = progress();
    if (now !== seen) {
      seen = now;
      moved = true;
      movedAt = Date.now();
    } else if (Date.now() - movedAt > (moved ? stallMs : startMs)) {
      clearInterval(timer);
      onStall();
    }
  }, 250);
  return () => clearInterval(timer);
}

/**
 * A fuzzer's phases, scaled so that they add up to FUZZ_RUNS when it is set
 * (`npm run fuzz -- --runs N`: N inputs per decoder); the defaults otherwise.
 */
export function scaledRuns<K extends string>(phases: Readonly<Record<K, number>>): Record<K, number> {
  const defaults = Object.values<number>(phases).reduce((a, b) => a + b, 0);
  const total = process.env['FUZZ_RUNS'] ? resolveRuns(defaults) : defaults;
  const out = {} as Record<K, number>;
  for (const k of Object.keys(phases) as K[]) out[k] = Math.ceil((phases[k] * total) / defaults);
  return out;
}
