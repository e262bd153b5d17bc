// The shipped systemd unit's file-system sandbox, made as systemd makes it,
// with the admin page's edit of the policy file run inside (issue 13). No
// systemd runs here (not PID 1), so the test builds the mount namespace
// itself from the unit's own settings, as systemd's namespace setup does:
// ProtectSystem=strict remounts every mount read-only but /dev, /proc and
// /sys; each ReadWritePaths= path is then bound onto itself and remounted
// read-write. /etc/portcullis inside is a tmpfs, so the host's is never
// written. Then: the real edit code (policy/edit.ts) adds an opening to
// /etc/portcullis/policy.yaml, a file beside the directory cannot be made,
// and `portcullis doctor --admin` says the file is writable; with the unit's
// ReadWritePaths= line taken out (the unit as it shipped before), the same
// edit is refused as read-only and the doctor warns.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { requireRoot } from './helpers/lab.js';

requireRoot();
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const UNIT = readFileSync(join(ROOT, 'packaging/systemd/portcullis.service'), 'utf8');
const EDIT = join(ROOT, 'dist/src/policy/edit.js');
const CLI = join(ROOT, 'dist/src/cli.js');
const EXAMPLE = join(ROOT, 'examples/policy.yaml');

// The mount point must exist on the host for the tmpfs; made (empty) only if absent, and removed again.
const CONF = '/etc/portcullis';
const made = !existsSync(CONF);
if (made) mkdirSync(CONF);
t.teardown(() => {
  if (made) rmdirSync(CONF);
});

const setting = (text: string, key: string) => [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].flatMap((m) => (m[1] as string).split(/\s+/).filter(Boolean).map((p) => p.replace(/^[-+]+/, '')));

/** The edit the admin page makes, through the daemon's own code; prints `edited` or the refusal. */
const EDIT_SCRIPT = `
const e = await import(process.env.EDIT);
try {
  const f = await e.editableFile('/etc/portcullis/policy.yaml');
  const next = e.editedText(f.text, f.target, { op: 'add', entry: { name: 'nas-ssh', device: { mac: '52:54:00:aa:bb:cc', protocol: 'tcp', ports: 22 } } });
  await e.writePolicyFile(f.target, next, f, f.text);
  console.log('edited');
} catch (err) { console.log(String(err.refusal) + ': ' + err.message); }
`;

/** In a new mount namespace: the tmpfs config directory, the unit's sandbox, then the edit, a sibling file, the doctor. */
function inSandbox(unit: string): { out: string; code: number | null } {
  const protect = setting(unit, 'ProtectSystem');
  const rw = setting(unit, 'ReadWritePaths');
  // tap's process tracking puts its NODE_OPTIONS back into a child's environment: the daemon's code runs without it.
  const script = `set -e
unset NODE_OPTIONS $(env | sed -n 's/^\\(_TAPJS[A-Za-z_]*\\)=.*/\\1/p')
mount -t tmpfs -o mode=0755 portcullis-test ${CONF}
cp "$EXAMPLE" ${CONF}/policy.yaml
if [ "$PROTECT" = strict ]; then
  for m in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
    case "$m" in /dev|/dev/*|/proc|/proc/*|/sys|/sys/*) continue;; esac
    mount -o remount,bind,ro "$m" 2>/dev/null || true
  done
fi
for p in $RW; do mount --bind "$p" "$p"; mount -o remount,bind,rw "$p"; done
set +e
echo "edit: $("$NODE" --input-type=module -e "$EDIT_SCRIPT")"
ls -a ${CONF} | tr '\\n' ' '; echo
touch /etc/portcullis-sibling 2>/dev/null && echo 'sibling: written' || echo 'sibling: refused'
grep -c nas-ssh ${CONF}/policy.yaml.bak || true
"$NODE" "$CLI" doctor --lan lo --wan pcl-none0 --admin 127.0.0.1:8080 --policy ${CONF}/policy.yaml | grep 'admin page edits'
`;
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, PROTECT: protect.at(-1) ?? 'no', RW: rw.join(' '), EDIT, EDIT_SCRIPT, NODE: process.execPath, CLI, EXAMPLE },
  });
  return { out: `${r.stdout}${r.stderr}`, code: r.status };
}

t.test('the shipped unit: ProtectSystem=strict with ReadWritePaths=/etc/portcullis', async (t) => {
  t.same(setting(UNIT, 'ProtectSystem'), ['strict'], 'the system is read-only to the daemon');
  t.ok(setting(UNIT, 'ReadWritePaths').includes(CONF), 'but for /etc/portcullis');
  t.match(UNIT, /^ConfigurationDirectory=portcullis$/m, 'which systemd makes before the sandbox (a missing ReadWritePaths= directory fails the start)');
});

t.test('under the shipped unit\'s sandbox the admin page\'s edit is written, with its backup, and nothing beside the directory can be', async (t) => {
  const r = inSandbox(UNIT);
  t.match(r.out, /^edit: edited$/m, `the edit is written: ${r.out}`);
  t.match(r.out, /policy\.yaml policy\.yaml\.bak/, 'the file and FILE.bak; no temporary file left');
  t.notMatch(r.out, /\.tmp/, 'no temporary file left');
  t.match(r.out, /^0$/m, 'the backup is the file as it was (no nas-ssh)');
  t.match(r.out, /^sibling: refused$/m, 'a file beside /etc/portcullis cannot be made: the rest of /etc stays read-only');
  t.match(r.out, /^ok {4}admin page edits: \/etc\/portcullis\/policy\.yaml and its directory are writable/m, 'the doctor says the edits can be made');
});

t.test('the unit as it shipped before (no ReadWritePaths=): the edit is refused as read-only and the doctor says why', async (t) => {
  const r = inSandbox(UNIT.replace(/^ReadWritePaths=.*$/gm, ''));
  t.match(r.out, /^edit: read-only: the policy file \/etc\/portcullis\/policy\.yaml or its directory is not writable by the daemon: nothing was changed$/m, r.out);
  t.match(r.out, /^WARN {2}admin page edits: the admin page cannot add or remove openings: \/etc\/portcullis\/policy\.yaml is read-only \(a read-only mount\)$/m);
});
