// A real headless Chromium (Debian's `chromium`) inside one of the lab's
// namespaces, driven by playwright-core. Playwright starts the browser
// itself and talks to it over a pipe (file descriptors 3 and 4), which a
// wrapper carries through `ip netns exec`: the browser's network is the
// namespace's, the test process stays where it is, and no debugging port is
// opened anywhere. The wrapper writes the browser's pid, so teardown can end
// it even if Playwright cannot.

import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import type { Lab, Node } from './lab.js';

export const CHROMIUM = '/usr/bin/chromium';
const LAUNCH_TIMEOUT_MS = 30_000;
const CLOSE_TIMEOUT_MS = 5_000;

export interface LabBrowser {
  browser: Browser;
  /** Closes the browser (killed if it does not close in time) and removes its files. */
  close(): Promise<void>;
}

export async function browserIn(lab: Lab, node: Node): Promise<LabBrowser> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-browser-'));
  const pidFile = join(dir, 'browser.pid');
  const wrapper = join(dir, 'chromium-in-namespace');
  // `exec` all the way down: the pid written is the browser's own.
  writeFileSync(wrapper, `#!/bin/sh\necho $$ > '${pidFile}'\nexec ip netns exec '${lab.prefix}-${node}' ${CHROMIUM} "$@"\n`);
  chmodSync(wrapper, 0o700);
  const kill = () => {
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8').trim()), 'SIGKILL');
    } catch {
      // Not started, or gone already.
    }
  };
  let browser: Browser;
  try {
    browser = await chromium.launch({ executablePath: wrapper, timeout: LAUNCH_TIMEOUT_MS, args: ['--disable-gpu', '--no-first-run', '--disable-dev-shm-usage'] });
  } catch (err) {
    kill();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    browser,
    async close() {
      await Promise.race([browser.close().catch(() => undefined), new Promise((r) => setTimeout(r, CLOSE_TIMEOUT_MS))]);
      if (browser.isConnected()) kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
