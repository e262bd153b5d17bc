// `portcullis policy explain`: walks the rules for one request the way the
// service does, and says why each one before the deciding rule did not match.

import { describeLimits, describeRule, type LoadedPolicy } from './load.js';
import { mismatch, type PolicyRequest } from './policy.js';

export function explain(p: LoadedPolicy, req: PolicyRequest): { allowed: boolean; text: string } {
  const out: string[] = [];
  for (const rule of p.rules) {
    const why = mismatch(rule, req);
    const label = `rule ${rule.index + 1} ${JSON.stringify(rule.name)} (${describeRule(rule)})`;
    if (why !== undefined) {
      out.push(`  ${label}: no match: ${why}`);
      continue;
    }
    const verdict = p.policy.decide(req);
    out.push(`  ${label}: matches`);
    if (verdict.allow) {
      out.push(`verdict: ALLOW by rule ${rule.index + 1} ${JSON.stringify(rule.name)}`, `limits: ${describeLimits(verdict.limits)}`);
    } else {
      out.push(`verdict: DENY by rule ${rule.index + 1} ${JSON.stringify(rule.name)}: ${verdict.reason}`);
    }
    return { allowed: verdict.allow, text: out.join('\n') };
  }
  out.push('verdict: DENY: no rule matches (default deny)');
  return { allowed: false, text: out.join('\n') };
}
