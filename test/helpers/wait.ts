// Waiting for something to happen, not for a fixed time: on a loaded machine
// a fixed pause is outrun, and a poll with a generous deadline is not.

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `ok` every `step` ms until it is true (true) or `ms` passes (false); the caller asserts. */
export async function until(ok: () => boolean | Promise<boolean>, ms = 10_000, step = 100): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await ok()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(step);
  }
}
