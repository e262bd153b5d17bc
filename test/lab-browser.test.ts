// The admin page in a real browser (issue 13): Debian's headless Chromium on
// the lab's LAN host, the daemon in the router with real nftables and the
// page on its LAN address, real clients (natpmpc, upnpc, portcullis pcp) on
// the LAN host, and the WAN host proving what the clicks did to the data path.
//
// The page is only ever driven the way a person would: typing and Enter to
// log in, clicks on its buttons, its forms filled in, Tab and Enter. Until the
// picture is taken nothing is reloaded: a mark set in the page at the start
// must still be there after every step.
//
// SCREENSHOT=FILE keeps the picture of the page (docs/admin-page.png is made
// that way).

import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { BrowserContext, Locator, Page } from 'playwright-core';
import { browserIn, type LabBrowser } from './helpers/browser.js';
import { CLI, labUp, stateDir, waitForLine, type Lab } from './helpers/lab.js';
import { PAGE_DIR } from '../src/server/admin/page.js';
import { reaches } from './helpers/reach.js';

const lab: Lab = labUp(`pg${process.pid % 10000}`);
let daemon: ChildProcess | undefined;
let chromium: LabBrowser | undefined;
// One teardown, in order: the browser out of the LAN host, the daemon, then the namespaces.
t.teardown(async () => {
  await chromium?.close();
  daemon?.kill('SIGTERM');
  lab.down();
});

const ADMIN = 'http://192.168.77.1:9352/';
const EXT = '198.51.100.1';
/** Every wait in this file ends within this (a step that takes longer has failed). */
const STEP_MS = 30_000;

const mac = (node: 'lan' | 'lan2') => lab.exec(node, ['cat', '/sys/class/net/eth0/address']).stdout.trim();
const LAPTOP = mac('lan');
const TV = mac('lan2');

// The admin's policy file, with the comments an edit from the page must keep.
const COMMENTS = [
  '# The browser test\'s policy. Every comment here must outlive the admin page\'s edits.',
  '  # Anyone on the LAN may map an unprivileged port.',
  '  # The console\'s game port, forwarded by hand (the page must leave it alone).',
];
const POLICY = `${COMMENTS[0]}
version: 1

rules:
${COMMENTS[1]}
  - name: lan
    action: allow
    match:
      internalPorts: 1024-65535

static:
${COMMENTS[2]}
  - name: game
    forward:
      protocol: udp
      port: 3074
      to: 192.168.77.2
`;

const dir = stateDir();
const policyFile = join(dir, 'policy.yaml');
writeFileSync(policyFile, POLICY);
// dnsmasq's lease format: the two LAN hosts are named by their leases.
const leases = join(dir, 'dhcp.leases');
// The phone has a lease but is not on the LAN now: known from its lease alone.
writeFileSync(leases, `0 ${LAPTOP} 192.168.77.2 laptop *\n0 ${TV} 192.168.77.3 living-room-tv *\n0 02:5e:10:00:00:50 192.168.77.50 phone *\n`);
const config = join(dir, 'config.json');
const state = join(dir, 'state');
writeFileSync(config, JSON.stringify({ lan: ['br-lan'], wan: 'wan0', stateDir: state, policy: policyFile, dhcpLeases: leases, admin: { listen: '192.168.77.1:9352' }, reconcileSeconds: 1 }));

let context: BrowserContext;
let page: Page;
/** What the page said on its console that a person would call broken (CSP refusals, script errors). */
const broken: string[] = [];

t.before(async () => {
  daemon = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--config', config]);
  await waitForLine(daemon, (l) => l.includes('"event":"started"'), 15_000);
  // The TV says hello to the router, so the neighbour table knows it too.
  lab.exec('lan2', ['ping', '-c', '1', '-W', '2', '192.168.77.1'], { allowFail: true });
  chromium = await browserIn(lab, 'lan');
  context = await chromium.browser.newContext({ viewport: { width: 1200, height: 900 }, colorScheme: 'light' });
  // The page asks again every 30 s whatever happens (FALLBACK_REFRESH_MS). Here
  // it waits an hour: whatever below shows up "without a reload" came by the
  // event stream, however long a loaded machine takes.
  const appJs = readFileSync(join(PAGE_DIR, 'app.js'), 'utf8');
  const slowFallback = appJs.replace(/const FALLBACK_REFRESH_MS = [\d_]+;/, 'const FALLBACK_REFRESH_MS = 3_600_000;');
  if (slowFallback === appJs) throw new Error('web/admin/app.js has no FALLBACK_REFRESH_MS to slow down');
  await context.route(`${ADMIN}app.js`, (route) => route.fulfill({ status: 200, contentType: 'text/javascript; charset=utf-8', body: slowFallback }));
  page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on('pageerror', (err) => broken.push(`page error: ${err.message}`));
  // The browser reports every 4xx as a failed load; those are the API's answers, shown by the page.
  page.on('console', (m) => m.type() === 'error' && !/Failed to load resource/.test(m.text()) && broken.push(m.text()));
});

/** The card of the device the page names `name`. */
const card = (name: string): Locator => page.locator('article.device').filter({ has: page.getByRole('heading', { level: 3, name, exact: true }) });
/** The rows of a card whose text matches. */
const rows = (name: string, text: RegExp): Locator => card(name).locator('li.opening').filter({ hasText: text });
const message = async (): Promise<string> => (await page.locator('#message').textContent()) ?? '';
/** Still the page loaded at the start (set in the first step). */
const samePage = (): Promise<unknown> => page.evaluate(() => (window as unknown as { mark?: string }).mark);

/** Polls `probe` until it is true (or STEP_MS passes): the kernel changes a moment after the answer. */
async function eventually(probe: () => Promise<boolean>, ms = STEP_MS): Promise<boolean> {
  const until = Date.now() + ms;
  do {
    if (await probe()) return true;
    await new Promise((r) => setTimeout(r, 300));
  } while (Date.now() < until);
  return false;
}

t.test('log in with the keyboard only: a wrong token is said in the message area, the right one shows the devices', async (t) => {
  await page.goto(ADMIN);
  await page.evaluate(() => ((window as unknown as { mark: string }).mark = 'loaded once'));
  await page.locator('#login').waitFor({ state: 'visible' });
  t.equal(await page.evaluate(() => document.activeElement?.id), 'secret', 'the token field has the focus');
  await page.keyboard.type('0'.repeat(64));
  await page.keyboard.press('Enter');
  await page.getByRole('status').filter({ hasText: /wrong token/ }).waitFor();
  t.match(await message(), /^Log in failed: wrong token$/, 'the API\'s refusal, said');

  const token = readFileSync(join(state, 'admin.token'), 'utf8').trim();
  // After a failure the field's text is selected: typing replaces it.
  await page.keyboard.type(token);
  await page.keyboard.press('Enter');
  await page.locator('#app').waitFor({ state: 'visible' });
  await card('laptop').waitFor();
  await page.locator('#live.on').waitFor();
  t.equal(await page.locator('#live').innerText(), 'live', 'the event stream is up');

  const cookie = (await context.cookies()).find((c) => c.name === 'portcullis_session');
  t.match(cookie, { httpOnly: true, sameSite: 'Strict' }, 'an HttpOnly, SameSite=Strict session cookie');
  t.equal(await page.evaluate(() => document.cookie), '', 'the page\'s script cannot read it');
  t.equal(await page.locator('#secret').inputValue(), '', 'the token is not left in the field');

  t.match(await card('laptop').innerText(), new RegExp(LAPTOP), 'the laptop: named by its lease, its link-layer address shown');
  t.match(await card('laptop').innerText(), /192\.168\.77\.2/);
  t.match(await card('laptop').locator('li.opening').innerText(), /UDP 198\.51\.100\.1:3074 → 192\.168\.77\.2:3074[\s\S]*static[\s\S]*policy: game[\s\S]*no expiry/i, 'the policy file\'s forward to it');
  const tv = card('living-room-tv');
  t.match(await tv.getAttribute('class'), /\bclosed\b/, 'the TV is drawn closed');
  t.match(await tv.innerText(), /Closed: nothing on the internet can start a connection to this device/);
  t.equal(await tv.locator('li.opening').count(), 0);
  t.same(broken, [], 'no script error, nothing the CSP refused');
});

t.test('natpmpc maps a port: the card shows it without a reload; the WAN host reaches it; Close stops it', async (t) => {
  const mapped = lab.exec('lan', ['natpmpc', '-g', '192.168.77.1', '-a', '40001', '40001', 'udp', '600'], { allowFail: true });
  t.match(mapped.stdout, /Mapped public port 40001 protocol UDP to local port 40001/);
  const row = rows('laptop', /UDP 198\.51\.100\.1:40001 → 192\.168\.77\.2:40001/);
  await row.waitFor();
  t.match(await row.locator('.origin').innerText(), /NAT-PMP/i, 'origin NAT-PMP');
  t.match(await row.locator('.left').innerText(), /^(9|10) min \d\d s left$/, 'time left, counting down');
  const before = await row.locator('.left').innerText();
  // A second or two later (more on a busy machine) it says less: the page counts down by itself.
  const less = async () => {
    const now = await row.locator('.left').innerText();
    return now !== before && /^9 min \d\d s left$/.test(now);
  };
  t.ok(await eventually(less, 6000), `it counts down from ${before}`);
  t.equal(await samePage(), 'loaded once', 'no reload');

  t.ok(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40001, to: EXT }), 'the WAN host reaches the LAN host');
  await row.getByRole('button', { name: /^Close UDP 198\.51\.100\.1:40001/ }).click();
  await row.waitFor({ state: 'detached' });
  t.match(await message(), /^Closed UDP 198\.51\.100\.1:40001 → 192\.168\.77\.2:40001\. The app may ask for it again; to keep it closed, add a deny rule to the policy file\.$/, 'closed, and how long that lasts');
  t.notOk(await reaches(lab, { proto: 'udp', listen: 'lan', port: 40001, to: EXT }), 'and no longer does');
  t.equal(await page.evaluate(() => document.activeElement?.textContent), 'laptop', 'the keyboard goes on from the device\'s heading');

  // A mapping that ends elsewhere (the client deletes it) leaves the card by itself too.
  lab.exec('lan', ['natpmpc', '-g', '192.168.77.1', '-a', '40002', '40002', 'udp', '600']);
  const other = rows('laptop', /:40002/);
  await other.waitFor();
  lab.exec('lan', ['natpmpc', '-g', '192.168.77.1', '-a', '40002', '40002', 'udp', '0']);
  await other.waitFor({ state: 'detached' });
  t.pass('a removal the page did not make is shown without a reload');
  // And one that runs out (NAT-PMP may ask for a few seconds): the expiry takes it off the card.
  // 20 s, so that it is still on the card when a loaded machine gets to read it.
  lab.exec('lan', ['natpmpc', '-g', '192.168.77.1', '-a', '40003', '40003', 'udp', '20']);
  const brief = rows('laptop', /:40003/);
  await brief.waitFor();
  t.match(await brief.locator('.left').innerText(), /^([1-9]|1\d|20) s left$|^ending…$/, 'seconds left');
  await brief.waitFor({ state: 'detached', timeout: 20_000 + STEP_MS });
  t.pass('an expiry is shown without a reload');
  t.equal(await samePage(), 'loaded once', 'still no reload');
  t.same(broken, []);
});

t.test('a hostile description is only text: markup shown as written, a direction override as ?', async (t) => {
  const hostile = '<img src=x onerror=alert(1)>\u202egnp.exe';
  const r = JSON.parse(lab.exec('lan', [process.execPath, CLI, 'pcp', 'map', '--server', '192.168.77.1', '--proto', 'tcp', '--port', '40100', '--description', hostile]).stdout) as { result: string };
  t.match(r, { result: 'SUCCESS' }, 'PCP maps TCP 40100 with that description');
  const row = rows('laptop', /:40100/);
  await row.waitFor();
  t.equal(await row.locator('.about').innerText(), '“<img src=x onerror=alert(1)>?gnp.exe”', 'the text as sent, the override made visible');
  t.equal(await page.locator('#devices img').count(), 0, 'no element was made from it');
  await row.getByRole('button', { name: /^Close / }).click();
  await row.waitFor({ state: 'detached' });
  t.same(broken, [], 'nothing ran');
});

t.test('a static opening made with clicks: the WAN host gets through and the policy file holds it, comments kept; Remove undoes it', async (t) => {
  const form = card('laptop').locator('form.open');
  await form.getByLabel('Protocol').selectOption('tcp');
  await form.getByLabel('Port').fill('443');
  await form.getByLabel('Description').fill('web server');
  await form.getByRole('button', { name: 'Open' }).click();
  await page.getByRole('status').filter({ hasText: /Opened|Could not/ }).waitFor();
  const said = await message();
  t.match(said, /^Opened TCP port 443 from the internet to laptop\.$/, `the page says it is open (it said: ${said})`);
  if (!/^Opened/.test(said)) return;

  const row = rows('laptop', /TCP[^\n]*443/).first();
  await row.waitFor();
  t.match(await row.locator('.origin').innerText(), /static/i);
  t.ok(await eventually(() => reaches(lab, { proto: 'tcp', listen: 'lan', port: 443, to: EXT })), 'the WAN host reaches TCP 443 on the laptop');
  const file = readFileSync(policyFile, 'utf8');
  t.match(file.toLowerCase(), new RegExp(`mac: ["']?${LAPTOP}`), 'the policy file names the laptop');
  t.match(file, /443/);
  for (const c of COMMENTS) t.ok(file.includes(c), `comment kept: ${c.trim()}`);
  t.match(file, /- name: game\n {4}forward:/, 'the forward by hand is untouched');

  await row.getByRole('button', { name: /^Remove / }).click();
  await rows('laptop', /TCP[^\n]*443/).first().waitFor({ state: 'detached' });
  t.ok(await eventually(async () => !(await reaches(lab, { proto: 'tcp', listen: 'lan', port: 443, to: EXT }))), 'removed: the WAN host no longer gets through');
  const after = readFileSync(policyFile, 'utf8');
  t.notMatch(after.toLowerCase(), new RegExp(LAPTOP), 'gone from the policy file');
  for (const c of COMMENTS) t.ok(after.includes(c), `comment still kept: ${c.trim()}`);
  t.equal(await samePage(), 'loaded once', 'no reload');
});

t.test('a pinhole by hand to an address no device has: reloaded, it shows on the "Other openings" card without a reload; Remove takes it out of the file', async (t) => {
  t.equal(await card('Other openings').count(), 0, 'no such card while every opening has its device');
  const before = readFileSync(policyFile, 'utf8');
  writeFileSync(policyFile, before.replace('static:\n', 'static:\n  - name: printer\n    pinhole: { to: "2001:db8:77::10/128", protocol: tcp, ports: 631 }\n'));
  const reload = lab.exec('rtr', [process.execPath, CLI, 'policy', 'reload', '--state-dir', state], { allowFail: true });
  t.equal(reload.code, 0, `portcullis policy reload (${reload.stdout}${reload.stderr})`);
  const row = card('Other openings').locator('li.opening').filter({ hasText: /TCP port 631 → 2001:db8:77::10/ });
  await row.waitFor();
  t.match(await card('Other openings').innerText(), /One opening reaches no device seen on the LAN now/, 'said why it is apart');
  t.match(await row.innerText(), /static[\s\S]*policy: printer[\s\S]*no expiry/i);
  t.match(await page.locator('#summary').innerText(), /, 2 openings\.$/, 'the summary counts it');
  t.equal(await samePage(), 'loaded once', 'no reload: the reload raised an event');
  await row.getByRole('button', { name: /^Remove TCP port 631/ }).click();
  await card('Other openings').waitFor({ state: 'detached' });
  t.match(await message(), /^Removed the static opening printer/);
  t.equal(readFileSync(policyFile, 'utf8'), before, 'the file as it was');
  t.same(broken, []);
});

t.test('every door on one card, the TV and the phone closed: the picture (SCREENSHOT=FILE keeps it)', async (t) => {
  const pcp = JSON.parse(lab.exec('lan', [process.execPath, CLI, 'pcp', 'map', '--server', '2001:db8:77::1', '--proto', 'tcp', '--port', '8443', '--lifetime', '7200', '--description', 'home assistant']).stdout) as { result: string };
  t.match(pcp, { result: 'SUCCESS' }, 'PCP: an IPv6 pinhole');
  lab.exec('lan', ['natpmpc', '-g', '192.168.77.1', '-a', '51413', '51413', 'tcp', '3600']);
  // -i: miniupnpc calls an IGD with a documentation-space external address "not connected".
  const upnp = lab.exec('lan', ['upnpc', '-i', '-e', 'game streaming', '-a', '192.168.77.2', '27036', '27036', 'UDP', '1800'], { allowFail: true, timeoutMs: 20_000 });
  t.match(upnp.stdout, /external 198\.51\.100\.1:27036 UDP is redirected to internal 192\.168\.77\.2:27036/, 'UPnP: upnpc maps UDP 27036');
  const laptop = card('laptop');
  for (const port of [/8443/, /51413/, /27036/]) await rows('laptop', port).waitFor();
  const origins = await laptop.locator('.origin').allInnerTexts();
  t.same([...new Set(origins.map((o) => o.toUpperCase()))].sort(), ['NAT-PMP', 'PCP', 'STATIC', 'UPNP'], 'PCP, NAT-PMP, UPnP and static on one card');
  t.match(await rows('laptop', /8443/).innerText(), /home assistant/, 'the client\'s description');
  t.match(await rows('laptop', /27036/).innerText(), /game streaming/);
  t.match(await card('phone').innerText(), /192\.168\.77\.50[\s\S]*Closed/, 'a device known from its lease alone, closed');
  t.match(await laptop.locator('.addresses').innerText(), /2001:db8:77::2/, 'the laptop\'s IPv6 address joined its card');
  t.match(await card('living-room-tv').getAttribute('class'), /\bclosed\b/);

  t.match(await rows('laptop', /8443/).locator('.what').innerText(), /^TCP \[2001:db8:77::2\]:8443 \(no translation\)$/, 'an IPv6 pinhole: the device\'s own address');

  // A reload keeps the session (the cookie, and the CSRF token asked for again), and clears the last message for the picture.
  await page.reload();
  await rows('laptop', /51413/).waitFor();
  t.ok(await page.locator('#login').isHidden(), 'still logged in after a reload');
  t.equal(await message(), '');
  await page.locator('#live.on').waitFor();
  await page.setViewportSize({ width: 1200, height: 640 });
  const png = await page.screenshot({ fullPage: true, ...(process.env.SCREENSHOT ? { path: process.env.SCREENSHOT } : {}) });
  t.ok(png.subarray(0, 8).equals(Buffer.from('89504e470d0a1a0a', 'hex')) && png.length > 20_000, `a screenshot${process.env.SCREENSHOT ? ` in ${process.env.SCREENSHOT}` : ''} (${png.length} bytes)`);

  // The reloaded page asked for its CSRF token again: a change still works.
  await rows('laptop', /51413/).getByRole('button', { name: /^Close / }).click();
  await rows('laptop', /51413/).waitFor({ state: 'detached' });
  t.match(await message(), /^Closed TCP 198\.51\.100\.1:51413/, 'closed after the reload');
});

t.test('on a phone: one column, nothing wider than the screen, the forms within reach', async (t) => {
  const phone = await context.browser()!.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, colorScheme: 'dark' });
  t.teardown(() => phone.close());
  await phone.addCookies(await context.cookies());
  const p = await phone.newPage();
  p.setDefaultTimeout(STEP_MS);
  await p.goto(ADMIN);
  await p.locator('article.device').first().waitFor();
  const fit = await p.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    width: window.innerWidth,
    columns: new Set([...document.querySelectorAll('article.device')].map((e) => Math.round(e.getBoundingClientRect().left))).size,
    widest: Math.max(...[...document.querySelectorAll('article.device *')].map((e) => e.getBoundingClientRect().right)),
  }));
  t.ok(fit.scroll <= fit.width, `no sideways scrolling (${fit.scroll} ≤ ${fit.width})`);
  t.equal(fit.columns, 1, 'one column of cards');
  t.ok(fit.widest <= fit.width, `nothing sticks out (${fit.widest} ≤ ${fit.width})`);
  t.equal(await p.evaluate(() => getComputedStyle(document.body).backgroundColor), 'rgb(21, 23, 27)', 'dark, as the phone prefers');
});

t.test('with the keyboard alone: Tab walks the controls in reading order with a visible ring; Enter on Close closes', async (t) => {
  await page.setViewportSize({ width: 1200, height: 900 });
  await page.locator('#logout').focus();
  const seen: string[] = [];
  let ring = '';
  for (let i = 0; i < 40; i++) {
    const now = await page.evaluate(() => {
      const e = document.activeElement as HTMLElement | null;
      if (!e || e === document.body) return { name: '', ring: '' };
      const s = getComputedStyle(e);
      return { name: e.getAttribute('aria-label') ?? ((e as HTMLInputElement).labels?.[0]?.textContent || e.textContent || '').trim(), ring: `${s.outlineStyle} ${s.outlineWidth}` };
    });
    seen.push(now.name);
    if (/^Close UDP 198\.51\.100\.1:27036/.test(now.name)) {
      ring = now.ring;
      break;
    }
    await page.keyboard.press('Tab');
  }
  t.equal(seen[0], 'Log out');
  t.match(seen.slice(1), [/^Remove UDP 198\.51\.100\.1:3074/, /^Close TCP \[2001:db8:77::2\]:8443/, /^Close UDP 198\.51\.100\.1:27036/], `the laptop's rows in order (${seen.join(' | ')})`);
  t.equal(ring, 'solid 3px', 'the focused button shows the ring');
  await page.keyboard.press('Enter');
  await rows('laptop', /27036/).waitFor({ state: 'detached' });
  t.equal(await page.evaluate(() => document.activeElement?.textContent), 'laptop', 'then the focus is on the laptop\'s heading');
  await page.keyboard.press('Tab');
  t.match(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), /^Remove UDP 198\.51\.100\.1:3074/, 'and Tab goes on from there');
  t.same(broken, []);
});

t.test('the daemon restarts: the page notices, asks for a new login (sessions live in memory), and is live again after it', async (t) => {
  const old = daemon as ChildProcess;
  const exited = new Promise((resolve) => old.once('exit', resolve));
  old.kill('SIGTERM');
  await Promise.race([exited, new Promise((_, reject) => setTimeout(() => reject(new Error(`the daemon did not stop in ${STEP_MS / 1000} s`)), STEP_MS))]);
  await page.locator('#live.off').waitFor();
  t.equal(await page.locator('#live').innerText(), 'reconnecting…', 'the stream is down, and the page says so');

  daemon = lab.spawn('rtr', [process.execPath, CLI, 'serve', '--config', config]);
  await waitForLine(daemon, (l) => l.includes('"event":"started"'), 15_000);
  await page.locator('#login').waitFor({ state: 'visible', timeout: 20_000 });
  t.equal(await message(), 'Your session has ended: log in again.');
  t.equal(await page.evaluate(() => document.activeElement?.id), 'secret', 'the focus is in the field');
  await page.keyboard.type(readFileSync(join(state, 'admin.token'), 'utf8').trim());
  await page.keyboard.press('Enter');
  await page.locator('#live.on').waitFor();
  await rows('laptop', /3074/).waitFor();
  t.pass('logged in again, live, the picture back');
  t.same(broken, []);
});

t.test('Log out: the session ends, the cookie goes, the login is back with the focus in its field', async (t) => {
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.locator('#login').waitFor({ state: 'visible' });
  t.equal(await message(), 'Logged out.');
  t.ok(await page.locator('#app').isHidden(), 'the devices are no longer shown');
  t.equal((await context.cookies()).find((c) => c.name === 'portcullis_session'), undefined, 'the cookie is cleared');
  t.equal(await page.evaluate(() => document.activeElement?.id), 'secret');
  const status = await page.evaluate(async () => (await fetch('/api/devices')).status);
  t.equal(status, 401, 'the API no longer answers this browser');
});
