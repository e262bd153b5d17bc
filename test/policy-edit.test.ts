// The policy file edited for the admin API: what is outside the edited entry
// stays byte for byte (comments, spacing, order), JSON keeps its key order
// and indentation, an edit that would make the file invalid is refused with
// the loader's words, and writing is atomic with one backup.

import t from 'tap';
import { lstatSync, mkdtempSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { PolicyEditError, backupOf, editableFile, editedText, writePolicyFile, type StaticEdit } from '../src/policy/edit.js';
import { parsePolicyText, type FileStatic } from '../src/policy/load.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const EXAMPLE = readFileSync(join(ROOT, 'examples/policy.yaml'), 'utf8');
const NAS: FileStatic = { name: 'printer-ipp', description: 'IPP to the printer', device: { mac: '52:54:00:aa:bb:cc', protocol: 'tcp', ports: 631 } };
const add = (entry: FileStatic = NAS): StaticEdit => ({ op: 'add', entry });
const refusal = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (err) {
    return err instanceof PolicyEditError ? `${err.refusal}: ${err.message}` : `not a PolicyEditError: ${(err as Error).message}`;
  }
};

t.test('YAML, add: the file as it was, then the entry at the list\'s indentation', async (t) => {
  const out = editedText(EXAMPLE, 'policy.yaml', add());
  t.ok(out.startsWith(EXAMPLE), 'everything before is byte for byte');
  t.equal(out.slice(EXAMPLE.length), '  - name: printer-ipp\n    description: IPP to the printer\n    device:\n      mac: 52:54:00:aa:bb:cc\n      protocol: tcp\n      ports: 631\n');
  t.match(parsePolicyText(out, 'p').statics.at(-1), { kind: 'device', name: 'printer-ipp', mac: '52:54:00:aa:bb:cc' });
  t.equal(editedText(EXAMPLE.trimEnd(), 'policy.yaml', add()), `${EXAMPLE.trimEnd()}\n${out.slice(EXAMPLE.length)}`, 'a file without a final newline gets one before the entry');
});

t.test('YAML, remove: the entry and the comment above it go, nothing else', async (t) => {
  const start = EXAMPLE.indexOf('  # HTTPS to the home server');
  const end = EXAMPLE.indexOf('  # An IPv4 port forward');
  t.ok(start > 0 && end > start);
  t.equal(editedText(EXAMPLE, 'policy.yaml', { op: 'remove', name: 'home-server-https' }), EXAMPLE.slice(0, start) + EXAMPLE.slice(end), 'a middle entry');
  const last = EXAMPLE.indexOf('  # A device, known by its link-layer address');
  t.equal(editedText(EXAMPLE, 'policy.yaml', { op: 'remove', name: 'nas-https' }), EXAMPLE.slice(0, last), 'the last entry');
  const added = editedText(EXAMPLE, 'policy.yaml', add());
  t.equal(editedText(added, 'policy.yaml', { op: 'remove', name: 'printer-ipp' }), EXAMPLE, 'add then remove: the file as it was');
});

t.test('YAML: the only entry removed leaves an empty list; no list yet gets one; a flow list is edited through the document', async (t) => {
  const one = '# mine\nversion: 1\nrules: []   # none\nstatic:\n  - name: a\n    forward: { protocol: tcp, port: 80, to: 192.168.1.2 }\n';
  const emptied = editedText(one, 'p.yaml', { op: 'remove', name: 'a' });
  t.equal(emptied, '# mine\nversion: 1\nrules: []   # none\nstatic: []\n');
  t.same(parsePolicyText(emptied, 'p').statics, []);
  const none = '# mine\nversion: 1\nrules: []   # none\n';
  t.equal(editedText(none, 'p.yaml', add()), `${none}static:\n  - name: printer-ipp\n    description: IPP to the printer\n    device:\n      mac: 52:54:00:aa:bb:cc\n      protocol: tcp\n      ports: 631\n`);
  const again = editedText(emptied, 'p.yaml', add());
  t.match(again, /^# mine\nversion: 1\nrules: \[\] +# none\n/, 'comments kept by the document');
  t.match(parsePolicyText(again, 'p').statics, [{ name: 'printer-ipp' }]);
  const flow = '# flow\nversion: 1\nrules: []\nstatic: [ { name: a, forward: { protocol: tcp, port: 80, to: 192.168.1.2 } } ]  # both\n';
  const fromFlow = editedText(flow, 'p.yaml', add());
  t.match(fromFlow, /^# flow\n/);
  t.match(fromFlow, /# both/);
  t.same((parse(fromFlow) as { static: { name: string }[] }).static.map((s) => s.name), ['a', 'printer-ipp']);
});

t.test('JSON: key order and indentation kept', async (t) => {
  const text = JSON.stringify({ $schema: '../schema/policy.schema.json', version: 1, rules: [{ action: 'allow', name: 'x' }], static: [{ forward: { to: '192.168.1.2', port: 80, protocol: 'tcp' }, name: 'a' }] }, null, 4) + '\n';
  const out = editedText(text, 'policy.json', add());
  t.equal(out, JSON.stringify({ ...(JSON.parse(text) as object), static: [...(JSON.parse(text) as { static: unknown[] }).static, NAS] }, null, 4) + '\n');
  t.match(out, /"forward": \{\n {16}"to": "192\.168\.1\.2",\n {16}"port": 80/, 'the forward\'s keys in their order');
  t.equal(editedText(out, 'policy.json', { op: 'remove', name: 'printer-ipp' }), text, 'removed: as it was');
});

t.test('refused: a name in use, an unknown name, a result the loader refuses, a file that does not parse', async (t) => {
  t.match(refusal(() => editedText(EXAMPLE, 'p.yaml', add({ ...NAS, name: 'game-server' }))), /^exists: a static opening named "game-server" is already in p\.yaml/);
  t.match(refusal(() => editedText(EXAMPLE, 'p.yaml', { op: 'remove', name: 'nope' })), /^unknown: no static opening named "nope"/);
  t.match(refusal(() => editedText(EXAMPLE, 'p.yaml', add({ name: 'clash', device: { mac: '52:54:00:aa:bb:cc', protocol: 'udp', ports: 27015 } }))), /^invalid: the policy file would not be valid after this change, so it was left as it is:\n.*udp\/27015 is already forwarded by \/static\/1/);
  t.match(refusal(() => editedText('version: 1\nrules: [\n', 'p.yaml', add())), /^invalid: p\.yaml does not parse now/);
});

t.test('writing: atomic, the previous contents kept as FILE.bak, mode kept, no temporary file left; read-only refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-edit-'));
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, EXAMPLE, { mode: 0o640 });
  const f = await editableFile(file);
  t.equal(f.text, EXAMPLE);
  const next = editedText(f.text, file, add());
  await writePolicyFile(f.target, next, f, f.text);
  t.equal(readFileSync(file, 'utf8'), next);
  t.equal(readFileSync(backupOf(file), 'utf8'), EXAMPLE, 'the backup');
  t.equal(statSync(file).mode & 0o777, 0o640, 'mode kept');
  t.same(readdirSync(dir).sort(), ['policy.yaml', 'policy.yaml.bak'], 'no temporary file left');

  const link = join(dir, 'link.yaml');
  symlinkSync(file, link);
  const viaLink = await editableFile(link);
  t.equal(viaLink.target, file, 'a link is followed to its file');
  await writePolicyFile(viaLink.target, EXAMPLE, viaLink);
  t.ok(lstatSync(link).isSymbolicLink(), 'the link stays a link');

  chmodSync(file, 0o444);
  await t.rejects(editableFile(file), { refusal: 'read-only', message: /the policy file .* is read-only: nothing was changed/ });
  t.equal(readFileSync(file, 'utf8'), EXAMPLE, 'untouched');
  await t.rejects(editableFile(join(dir, 'missing.yaml')), { refusal: 'io', message: /cannot read the policy file/ });
});
