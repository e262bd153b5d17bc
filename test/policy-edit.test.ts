// The policy file edited for the admin API: what is outside the edited entry
// stays byte for byte (comments, spacing, order), JSON keeps its key order
// and indentation, an edit that would make the file invalid is refused with
// the loader's words, and writing is atomic with one backup.

import t from 'tap';
import { lstatSync, mkdtempSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import { isSeq, parse, parseDocument } from 'yaml';
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
  t.equal(out.slice(EXAMPLE.length), '  - name: printer-ipp\n    description: IPP to the printer\n    device:\n      mac: "52:54:00:aa:bb:cc"\n      protocol: tcp\n      ports: 631\n');
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
  const entryLines = '  - name: printer-ipp\n    description: IPP to the printer\n    device:\n      mac: "52:54:00:aa:bb:cc"\n      protocol: tcp\n      ports: 631\n';
  t.equal(editedText(none, 'p.yaml', add()), `${none}static:\n${entryLines}`);
  const again = editedText(emptied, 'p.yaml', add());
  t.equal(again, `${none}static:\n${entryLines}`, 'added to the emptied list: a block list again, not the document writer\'s flow style');
  t.match(parsePolicyText(again, 'p').statics, [{ name: 'printer-ipp' }]);
  const flow = '# flow\nversion: 1\nrules: []\nstatic: [ { name: a, forward: { protocol: tcp, port: 80, to: 192.168.1.2 } } ]  # both\n';
  const fromFlow = editedText(flow, 'p.yaml', add());
  t.match(fromFlow, /^# flow\n/);
  t.match(fromFlow, /# both/);
  t.same((parse(fromFlow) as { static: { name: string }[] }).static.map((s) => s.name), ['a', 'printer-ipp']);
});

t.test('YAML: remove every entry, then add: a block list at the key\'s indentation, every comment kept, the same policy as a fresh add', async (t) => {
  let text = EXAMPLE;
  const names = (parse(EXAMPLE) as { static: { name: string }[] }).static.map((s) => s.name);
  for (const name of names) text = editedText(text, 'p.yaml', { op: 'remove', name });
  t.match(text, /^static: \[\]$/m, 'emptied: static: []');
  const added = editedText(text, 'p.yaml', add());
  t.equal(added, text.replace(/^static: \[\]\n/m, `static:\n  - name: printer-ipp\n    description: IPP to the printer\n    device:\n      mac: "52:54:00:aa:bb:cc"\n      protocol: tcp\n      ports: 631\n`), 'only that line changed');
  t.notMatch(added, /\[\s*\{/, 'no flow-style entry');
  for (const comment of text.match(/#.*$/gm) ?? []) t.ok(added.includes(comment), `kept: ${comment.slice(0, 40)}`);
  t.same(parsePolicyText(added, 'p'), parsePolicyText(editedText(text.replace(/^static: \[\]\n/m, ''), 'p.yaml', add()), 'p'), 'reloads to the same policy as an add to a file without the list');

  const commented = 'version: 1\nrules: []\nstatic: []   # openings from the admin page\n';
  t.equal(editedText(commented, 'p.yaml', add()).split('\n').slice(0, 4).join('\n'), 'version: 1\nrules: []\nstatic:   # openings from the admin page\n  - name: printer-ipp', 'the comment on the line stays on it');
  t.equal(editedText('version: 1\nrules: []\nstatic: []', 'p.yaml', add()), `version: 1\nrules: []\nstatic:\n${'  - name: printer-ipp\n    description: IPP to the printer\n    device:\n      mac: "52:54:00:aa:bb:cc"\n      protocol: tcp\n      ports: 631\n'}`, 'no final newline');
});

t.test('YAML 1.1 readers (PyYAML, Ansible) read what was written: the MAC double-quoted, yes/off/octal-looking strings quoted', async (t) => {
  const digits: FileStatic = { name: 'yes', description: 'off', device: { mac: '12:34:56:12:34:56', protocol: 'tcp', ports: 22 } };
  const none = 'version: 1\nrules: []\n';
  for (const [what, text] of [
    ['a new list', none],
    ['an existing block list', editedText(none, 'p.yaml', add())],
    ['an emptied list', 'version: 1\nrules: []\nstatic: []\n'],
    ['a flow list (the document writer)', 'version: 1\nrules: []\nstatic: [ { name: a, forward: { protocol: tcp, port: 80, to: 192.168.1.2 } } ]\n'],
  ] as const) {
    const out = editedText(text, 'p.yaml', add(digits));
    t.match(out, /mac: "12:34:56:12:34:56"/, `${what}: the MAC in double quotes`);
    const as11 = (parse(out, { version: '1.1' }) as { static: Record<string, unknown>[] }).static.at(-1);
    t.same(as11, digits, `${what}: read as YAML 1.1, the entry as meant (not the integer 9783981296, not true/false)`);
  }
  const plain = editedText(none, 'p.yaml', add({ name: 'nas', description: 'the NAS', device: { mac: '52:54:00:aa:bb:cc', protocol: 'udp', ports: '1000-1010' } }));
  t.match(plain, /name: nas\n    description: the NAS\n/, 'strings both versions read alike stay plain');
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

t.test('property: any sequence of adds and removes leaves a file the loader takes, holding exactly the entries meant, readable alike as YAML 1.1', async (t) => {
  // Entries a careless writer gets wrong: an all-digit MAC, names and descriptions YAML 1.1 reads as booleans or numbers.
  const pool: FileStatic[] = [
    { name: 'yes', description: 'off', device: { mac: '12:34:56:12:34:56', protocol: 'tcp', ports: 40001 } },
    { name: 'no', device: { mac: '02:00:00:00:00:10', protocol: 'udp', ports: [40002, '40010-40012'] } },
    { name: 'on', description: '0777', forward: { protocol: 'tcp', port: 40003, to: '192.168.1.30' } },
    { name: 'nas-https', device: { mac: '52:54:00:00:00:01', protocol: 'tcp', ports: 40004 } },
    { name: 'n', description: '~', device: { mac: '10:20:30:40:50:59', protocol: 'any', ports: 40005 } },
    { name: 'printer', description: 'IPP: the printer # hall', device: { mac: '52:54:00:aa:bb:cc', protocol: 'tcp', ports: 631 } },
  ];
  const starts = [EXAMPLE, 'version: 1\nrules: []\n', '# hand-written\nversion: 1\nrules: []\nstatic: []   # none yet\n', 'version: 1\nrules: []\nstatic:\n  - name: web\n    forward: { protocol: tcp, port: 80, to: 192.168.1.2 }\n'];
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...starts), fc.array(fc.tuple(fc.boolean(), fc.nat(pool.length - 1)), { maxLength: 14 }), async (start, steps) => {
      let text = start;
      const names = ((parse(start) as { static?: { name: string }[] }).static ?? []).map((s) => s.name);
      for (const [adding, i] of steps) {
        const entry = pool[i] as FileStatic;
        const present = names.includes(entry.name);
        const edit: StaticEdit = adding ? add(entry) : { op: 'remove', name: entry.name };
        if (adding === present) {
          t.match(refusal(() => editedText(text, 'p.yaml', edit)), adding ? /^exists: / : /^unknown: /);
          continue;
        }
        text = editedText(text, 'p.yaml', edit);
        if (adding) names.push(entry.name);
        else names.splice(names.indexOf(entry.name), 1);
        const loaded = parsePolicyText(text, 'p');
        if (!isDeepStrictEqual(loaded.statics.map((s) => s.name), names)) return false;
        const as11 = (parse(text, { version: '1.1' }) as { static?: { name: unknown }[] }).static ?? [];
        if (!isDeepStrictEqual(as11.map((s) => s.name), names)) return false;
        const list = parseDocument(text).get('static', true);
        if (names.length > 0 && (!isSeq(list) || list.flow)) return false;
        if (!text.startsWith(start.slice(0, start.indexOf('static:') < 0 ? start.length : start.indexOf('static:')))) return false;
      }
      return true;
    }),
    { numRuns: 150 },
  );
});
