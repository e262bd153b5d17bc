// The YAML library, loaded the first time a policy text is parsed or edited:
// a daemon on the built-in policy never needs it, and every start otherwise
// paid its load (40-110 ms on a 2-core router-class machine) before the
// first client could be answered. The package is CommonJS (dist/index.js
// for both `import` and `require`), so this is the same instance an import
// would give, loaded synchronously where the parsers are synchronous.

import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';

let loaded: typeof Yaml | undefined;

export function yaml(): typeof Yaml {
  loaded ??= createRequire(import.meta.url)('yaml') as typeof Yaml;
  return loaded;
}
