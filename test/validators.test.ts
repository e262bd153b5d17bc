// The generated schema validators (src/generated/) are the schemas as they
// are now: regenerated in memory, each file must read the same, and each
// validator must agree with a fresh ajv compile of its schema on what it
// admits and what it reports.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { validate as policyValidate } from '../src/generated/policy-validate.js';
import { validate as configValidate } from '../src/generated/config-validate.js';

interface Spec {
  schema: string;
  options: Record<string, unknown>;
  out: string;
}
type Validate = ((data: unknown) => boolean) & { errors?: unknown };

const ROOT = new URL('../../', import.meta.url).pathname;
const gen = (await import(new URL('../../scripts/make-validators.mjs', import.meta.url).href)) as { VALIDATORS: Spec[]; validatorSource(v: Spec): Promise<string> };

for (const v of gen.VALIDATORS) {
  t.test(`${v.out} is up to date with ${v.schema}`, async (t) => {
    const fresh = await gen.validatorSource(v);
    t.ok(readFileSync(ROOT + v.out, 'utf8') === fresh, `regenerate with \`npm run validators\` after changing ${v.schema}`);
  });
}

const samples: Record<string, unknown[]> = {
  'schema/policy.schema.json': [
    { rules: [] },
    { rules: [{ name: 'r', action: 'allow' }] },
    { rules: [{ name: 'r', action: 'maybe' }] },
    { rules: [{ name: 'r', action: 'allow', extra: 1 }] },
    { static: [{ name: 's', kind: 'pinhole', protocol: 'tcp', port: 443 }] },
    { rules: 'no' },
    [],
    'text',
    null,
  ],
  'schema/config.schema.json': [{}, { lan: ['br-lan'], wan: 'wan0' }, { lan: 'br-lan' }, { port: 'x' }, { unknown: true }, { wan: ['a', 'b'] }, [], null],
};

t.test('each generated validator judges as a fresh compile of its schema does', async (t) => {
  const generated: Record<string, Validate> = {
    'schema/policy.schema.json': policyValidate as unknown as Validate,
    'schema/config.schema.json': configValidate as unknown as Validate,
  };
  for (const v of gen.VALIDATORS) {
    const compiled = new Ajv(v.options).compile(JSON.parse(readFileSync(ROOT + v.schema, 'utf8')) as object);
    const mine = generated[v.schema] as Validate;
    for (const s of samples[v.schema] ?? []) {
      const ok = mine(s);
      t.equal(ok, compiled(s), `${v.schema}: ${JSON.stringify(s)}`);
      t.same(mine.errors ?? null, compiled.errors ?? null, `${v.schema}: the same errors for ${JSON.stringify(s)}`);
    }
  }
});
