// Install it the way an admin would (issue 12): `npm pack` a copy of the
// tree, `npm install -g` the tarball into a fresh prefix, and run what was
// installed — not this checkout: its version, a policy check on the shipped
// example, `systemd-analyze verify` on the shipped unit, and a short `serve`
// in the lab's router namespace on real nftables that serves the admin page
// from the installed files.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { labUp, stateDir, waitForLine, type Lab } from './helpers/lab.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

const work = mkdtempSync(join(tmpdir(), 'portcullis-pack-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

function run(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): { code: number; out: string } {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, encoding: 'utf8', timeout: opts.timeoutMs ?? 120_000, env: { ...process.env, npm_config_update_notifier: 'false' } });
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

// The copy keeps `npm pack` (whose prepare step compiles) away from the dist/
// that the other test files run from.
const copy = join(work, 'src-tree');
for (const p of ['src', 'schema', 'examples', 'packaging', 'docs', 'web', 'package.json', 'package-lock.json', 'tsconfig.json', 'README.md']) {
  if (existsSync(join(ROOT, p))) cpSync(join(ROOT, p), join(copy, p), { recursive: true });
}
symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'), 'dir');

const packed = run('npm', ['pack', '--silent', '--pack-destination', work], { cwd: copy, timeoutMs: 180_000 });
const tarball = readdirSync(work).find((f) => f.endsWith('.tgz'));
const prefix = join(work, 'prefix');
const installed = join(prefix, 'lib', 'node_modules', 'portcullis');
const bin = join(prefix, 'bin', 'portcullis');

t.test('npm pack: compiled code, schemas, examples, service files and the admin page; no tests, no TypeScript sources', async (t) => {
  t.equal(packed.code, 0, `npm pack ran: ${packed.out.slice(-500)}`);
  t.ok(tarball, 'a tarball was written');
  const list = run('tar', ['tzf', join(work, tarball ?? 'missing.tgz')]).out.split('\n').filter(Boolean);
  for (const f of ['package/dist/src/cli.js', 'package/schema/policy.schema.json', 'package/schema/config.schema.json', 'package/examples/policy.yaml', 'package/packaging/systemd/portcullis.service', 'package/packaging/openwrt/portcullis.init', 'package/packaging/openwrt/nftables.d/chain-pre/input/30-portcullis.nft', 'package/web/admin/index.html', 'package/web/admin/app.js', 'package/web/admin/app.css']) {
    t.ok(list.includes(f), `${f} is in the tarball`);
  }
  t.notOk(list.some((f) => f.startsWith('package/dist/test/') || f.startsWith('package/test/')), 'no tests');
  t.notOk(list.some((f) => f.endsWith('.ts')), 'no TypeScript sources');
});

t.test('npm install -g into a fresh prefix: the command on PATH, runtime dependencies only', async (t) => {
  const r = run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', join(work, tarball ?? 'missing.tgz')], { timeoutMs: 180_000 });
  t.equal(r.code, 0, `installed: ${r.out.slice(-500)}`);
  t.ok(existsSync(bin), `${bin} exists`);
  const deps = readdirSync(join(installed, 'node_modules'));
  for (const d of ['ajv', 'yaml', 'dgram-as-promised']) t.ok(deps.includes(d), `runtime dependency ${d} installed`);
  for (const d of ['tap', 'typescript', 'fast-check', 'playwright-core']) t.notOk(deps.includes(d), `development dependency ${d} left out`);

  const v = run(bin, ['--version']);
  t.equal(v.code, 0);
  t.equal(v.out.trim(), `portcullis ${VERSION}`, `--version prints portcullis ${VERSION}`);
  const check = run(bin, ['policy', 'check', join(installed, 'examples', 'policy.yaml')]);
  t.equal(check.code, 0, `policy check on the shipped example passes: ${check.out.slice(-300)}`);
  const bad = join(work, 'bad.yaml');
  writeFileSync(bad, 'version: 1\nrules: [{ name: x, action: maybe }]\n');
  const refused = run(bin, ['policy', 'check', bad]);
  t.not(refused.code, 0, 'a bad policy file fails the check');
  t.match(refused.out, /action/, 'and the message names what is wrong');
});

t.test('systemd-analyze verify passes on the shipped unit (pointed at the installed command)', async (t) => {
  const unit = readFileSync(join(installed, 'packaging', 'systemd', 'portcullis.service'), 'utf8');
  t.match(unit, /^ExecStart=\/usr\/local\/bin\/portcullis serve /m, 'the unit runs the command where npm -g puts it');
  t.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m, 'reload is SIGHUP');
  t.match(unit, /^Restart=on-failure$/m);
  t.match(unit, /^StateDirectory=portcullis$/m);
  t.match(unit, /^CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE$/m, 'only the capabilities it needs');
  t.match(unit, /^ProtectSystem=strict$/m, 'a read-only system otherwise');
  t.match(unit, /^ReadWritePaths=\/etc\/portcullis$/m, 'but for /etc/portcullis, where the admin page edits the policy file (systemd-sandbox proves it)');
  const dir = join(work, 'unit');
  cpSync(join(installed, 'packaging', 'systemd'), dir, { recursive: true });
  writeFileSync(join(dir, 'portcullis.service'), unit.replace('/usr/local/bin/portcullis', bin));
  const r = run('systemd-analyze', ['verify', join(dir, 'portcullis.service')]);
  t.equal(r.code, 0, `systemd-analyze verify: ${r.out}`);
  t.notMatch(r.out, /portcullis\.service/, 'no warning about the unit');
});

t.test('the installed command serves in a namespace on real nftables, with its admin page, and stops cleanly', async (t) => {
  const lab: Lab = labUp(`pk${process.pid % 10000}`);
  t.teardown(() => lab.down());
  const d = lab.spawn('rtr', [bin, 'serve', '--lan', 'br-lan', '--wan', 'wan0', '--state-dir', stateDir(), '--nft-table', 'pcl_pack', '--admin', '192.168.77.1:9353']);
  const lines: string[] = [];
  d.stdout?.on('data', (b: Buffer) => lines.push(...b.toString().split('\n')));
  const started = await waitForLine(d, (l) => l.includes('"event":"started"'), 20_000);
  t.match(started, /"backend":"nft"/, 'started on the nft backend');
  t.match(lab.exec('rtr', ['nft', 'list', 'table', 'inet', 'pcl_pack']).stdout, /chain lan_only/, 'its table is in the kernel');
  const mapped = lab.exec('lan', ['natpmpc', '-g', '192.168.77.1', '-a', '8080', '8080', 'tcp', '600']);
  t.match(mapped.stdout, /Mapped public port 8080 protocol TCP to local port 8080/, 'a real client maps a port through it');

  // The page comes from the installed package's web/admin/, not from this checkout.
  const page = lab.exec('lan', ['curl', '-sS', '--max-time', '15', '-D', '-', 'http://192.168.77.1:9353/'], { allowFail: true });
  t.match(page.stdout, /^HTTP\/1\.1 200 /, 'GET / from the LAN host: 200');
  t.match(page.stdout, /^content-type: text\/html; charset=utf-8\r$/im);
  t.match(page.stdout, /^content-security-policy: default-src 'none'; script-src 'self';/im);
  t.ok(page.stdout.endsWith(readFileSync(join(installed, 'web', 'admin', 'index.html'), 'utf8')), 'the body is the installed index.html');
  const script = lab.exec('lan', ['curl', '-sS', '--max-time', '15', 'http://192.168.77.1:9353/app.js'], { allowFail: true });
  t.equal(script.stdout, readFileSync(join(installed, 'web', 'admin', 'app.js'), 'utf8'), 'and /app.js the installed app.js');
  t.notOk(lines.some((l) => l.includes('admin-page-missing')), 'the daemon found its page files');
  const exited = new Promise<number | null>((resolve) => d.on('exit', (code) => resolve(code)));
  d.kill('SIGTERM');
  t.equal(await exited, 0, `SIGTERM: exit 0 ${lines.filter((l) => /"level":"(error|warn)"/.test(l)).join(' ').slice(-800)}`);
  lab.exec('rtr', ['nft', 'delete', 'table', 'inet', 'pcl_pack'], { allowFail: true });
});
