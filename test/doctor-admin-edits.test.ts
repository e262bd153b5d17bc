// `portcullis doctor`'s "admin page edits" check: whether the daemon may
// write the policy file and its directory (the admin page's Open and Remove
// edit it), on real files, and under the systemd unit's sandbox as the unit
// file says it — the shipped unit first.

import t from 'tap';
import { chmodSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { adminEdits, readOnlyUnder, unitSandbox } from '../src/doctor/admin-edits.js';
import { systemView } from '../src/doctor/system.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const UNIT_FILE = join(ROOT, 'packaging/systemd/portcullis.service');
const SHIPPED = { file: UNIT_FILE, text: readFileSync(UNIT_FILE, 'utf8') };
const EXAMPLE = readFileSync(join(ROOT, 'examples/policy.yaml'), 'utf8');

const dir = mkdtempSync(join(tmpdir(), 'portcullis-doctor-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const real = systemView();
const probe = (file: string) => (real.policyEditable as NonNullable<typeof real.policyEditable>)(file);

t.test('the shipped unit lets the daemon write /etc/portcullis (the policy file, FILE.bak, the temporary file) and nothing else there', async (t) => {
  const s = unitSandbox([SHIPPED]);
  t.equal(s.protectSystem, 'strict');
  t.equal(readOnlyUnder(s, '/etc/portcullis'), undefined, '/etc/portcullis is writable');
  t.equal(readOnlyUnder(s, '/etc/portcullis/sub'), undefined, 'and what is below it');
  t.equal(readOnlyUnder(s, '/var/lib/portcullis'), undefined, 'the state directory (StateDirectory=)');
  t.equal(readOnlyUnder(s, '/etc'), 'ProtectSystem=strict', '/etc itself is not');
  t.equal(readOnlyUnder(s, '/etc/portcullis-old'), 'ProtectSystem=strict', 'nor a sibling whose name starts the same');
  t.equal(readOnlyUnder(s, '/srv/policy'), 'ProtectSystem=strict', 'nor a policy directory elsewhere');
  t.equal(readOnlyUnder(s, '/proc/sys/net'), undefined, 'the API file systems stay as they are');
});

t.test('unit settings: drop-ins add paths, an empty assignment clears them, full and yes protect less, ReadOnlyPaths wins over a shallower ReadWritePaths', async (t) => {
  const withoutRw = { file: UNIT_FILE, text: SHIPPED.text.replace(/^ReadWritePaths=.*$/m, '') };
  t.equal(readOnlyUnder(unitSandbox([withoutRw]), '/etc/portcullis'), 'ProtectSystem=strict', 'the unit as it was before: read-only');
  const dropIn = { file: '/etc/systemd/system/portcullis.service.d/policy.conf', text: '[Service]\nReadWritePaths=-/srv/portcullis\n' };
  t.equal(readOnlyUnder(unitSandbox([withoutRw, dropIn]), '/srv/portcullis'), undefined, 'a drop-in adds a path (its - prefix ignored)');
  const cleared = { file: 'x.conf', text: '[Service]\nReadWritePaths=\n' };
  t.equal(readOnlyUnder(unitSandbox([SHIPPED, cleared]), '/etc/portcullis'), 'ProtectSystem=strict', 'ReadWritePaths= empty clears the list');
  t.equal(readOnlyUnder(unitSandbox([{ file: 'u', text: '[Service]\nProtectSystem=full\n' }]), '/etc/portcullis'), 'ProtectSystem=full');
  t.equal(readOnlyUnder(unitSandbox([{ file: 'u', text: '[Service]\nProtectSystem=full\n' }]), '/srv/p'), undefined, 'full leaves /srv writable');
  t.equal(readOnlyUnder(unitSandbox([{ file: 'u', text: '[Service]\nProtectSystem=yes\n' }]), '/etc/portcullis'), undefined, 'yes leaves /etc writable');
  t.equal(readOnlyUnder(unitSandbox([{ file: 'u', text: '[Unit]\nProtectSystem=strict\n' }]), '/etc/portcullis'), undefined, 'only the [Service] section counts');
  t.equal(readOnlyUnder(unitSandbox([{ file: 'u', text: '[Service]\nReadWritePaths=/etc\nReadOnlyPaths=/etc/portcullis\n' }]), '/etc/portcullis'), 'ReadOnlyPaths=/etc/portcullis');
});

t.test('the check on real files: writable, read-only by its mode, missing, none configured, admin page off', async (t) => {
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, EXAMPLE, { mode: 0o644 });
  const noUnit = { policyEditable: probe, serviceUnit: () => [] };
  t.equal(await adminEdits({ policy: file }, noUnit), undefined, 'no check without --admin');

  const ok = await adminEdits({ adminListen: '192.168.1.1:8080', policy: file }, noUnit);
  t.equal(ok?.status, 'ok');
  t.match(ok?.detail, `${file} and its directory are writable`);

  const link = join(dir, 'link.yaml');
  symlinkSync(file, link);
  t.match((await adminEdits({ adminListen: '192.168.1.1:8080', policy: link }, noUnit))?.detail, `${file} (${link} links to it)`, 'a link: the file it points to is what is rewritten');

  chmodSync(file, 0o444);
  const ro = await adminEdits({ adminListen: '192.168.1.1:8080', policy: file }, noUnit);
  t.equal(ro?.status, 'warn');
  t.match(ro?.detail, `the admin page cannot add or remove openings: the policy file ${file} is read-only (no write permission in its mode)`);
  t.match(ro?.fix, `chmod u+w ${file}`);
  chmodSync(file, 0o644);

  const missing = await adminEdits({ adminListen: '192.168.1.1:8080', policy: join(dir, 'nope.yaml') }, noUnit);
  t.equal(missing?.status, 'fail');
  t.match(missing?.detail, /nope\.yaml does not exist: the daemon does not start without its policy file/);

  const none = await adminEdits({ adminListen: '192.168.1.1:8080' }, noUnit);
  t.equal(none?.status, 'warn');
  t.match(none?.detail, 'the admin page cannot add or remove openings: no policy file is configured');
});

t.test('the check under a unit: a policy file outside its ReadWritePaths is said to be read-only to the daemon, with the line to add', async (t) => {
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, EXAMPLE, { mode: 0o644 });
  const shipped = await adminEdits({ adminListen: '192.168.1.1:8080', policy: file }, { policyEditable: probe, serviceUnit: () => [SHIPPED] });
  t.equal(shipped?.status, 'warn', `${dir} is outside /etc/portcullis`);
  t.match(shipped?.detail, `the admin page cannot add or remove openings: ${dir} is read-only to the daemon under ${UNIT_FILE} (ProtectSystem=strict, no ReadWritePaths= for it)`);
  t.match(shipped?.fix, `add ReadWritePaths=${dir} to the unit's [Service] section`);
  const dropIn = { file: 'policy.conf', text: `[Service]\nReadWritePaths=${dir}\n` };
  const fixed = await adminEdits({ adminListen: '192.168.1.1:8080', policy: file }, { policyEditable: probe, serviceUnit: () => [SHIPPED, dropIn] });
  t.equal(fixed?.status, 'ok', 'with the drop-in the doctor suggests');
  t.match(fixed?.detail, `${UNIT_FILE} lets the daemon write there`);
});
