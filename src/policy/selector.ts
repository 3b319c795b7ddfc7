/**
 * Label selectors (metav1.LabelSelector) as apimachinery evaluates them: `matchLabels` and every
 * `matchExpressions` requirement must hold (AND); an empty selector matches every label set.
 *
 * @module
 */
import type { LabelSelector } from "./types.ts";

/** A selector the API would reject (unknown operator, values where none belong…). */
export class SelectorError extends Error {
  /** Creates the error; `message` names the offending requirement. */
  constructor(message: string) {
    super(message);
    this.name = "SelectorError";
  }
}

/** A compiled selector: true when the labels match. */
export type LabelMatcher = (labels: Readonly<Record<string, string>>) => boolean;

/**
 * Compiles a selector into a matcher. Throws {@linkcode SelectorError} for a requirement apimachinery
 * rejects (`LabelSelectorAsSelector`): an unknown operator, `In`/`NotIn` without values,
 * `Exists`/`DoesNotExist` with values.
 *
 * @example
 * ```ts
 * const m = compileSelector({ matchExpressions: [{ key: "app", operator: "In", values: ["web"] }] });
 * m({ app: "web" }); // true
 * ```
 */
export function compileSelector(sel: LabelSelector): LabelMatcher {
  const tests: LabelMatcher[] = [];
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) tests.push((l) => l[k] === v);
  for (const [i, r] of (sel.matchExpressions ?? []).entries()) {
    const values = r.values ?? [];
    const where = `matchExpressions[${i}] (key ${JSON.stringify(r.key)})`;
    switch (r.operator) {
      case "In":
      case "NotIn": {
        if (values.length === 0) throw new SelectorError(`${where}: operator ${r.operator} needs values`);
        const set = new Set(values);
        const key = r.key;
        tests.push(
          r.operator === "In"
            ? (l) => Object.hasOwn(l, key) && set.has(l[key]!)
            : (l) => !Object.hasOwn(l, key) || !set.has(l[key]!),
        );
        break;
      }
      case "Exists":
      case "DoesNotExist": {
        if (values.length > 0) throw new SelectorError(`${where}: operator ${r.operator} takes no values`);
        const key = r.key;
        tests.push(r.operator === "Exists" ? (l) => Object.hasOwn(l, key) : (l) => !Object.hasOwn(l, key));
        break;
      }
      default:
        throw new SelectorError(`${where}: unknown operator ${JSON.stringify(r.operator)}`);
    }
  }
  return (labels) => tests.every((t) => t(labels));
}

/** Renders a selector the way kubectl does (`app=web,tier in (a,b),!legacy`); `<all>` when empty. */
export function formatSelector(sel: LabelSelector | undefined): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(sel?.matchLabels ?? {})) parts.push(`${k}=${v}`);
  for (const r of sel?.matchExpressions ?? []) {
    const vals = (r.values ?? []).join(",");
    if (r.operator === "In") parts.push(`${r.key} in (${vals})`);
    else if (r.operator === "NotIn") parts.push(`${r.key} notin (${vals})`);
    else if (r.operator === "Exists") parts.push(r.key);
    else if (r.operator === "DoesNotExist") parts.push(`!${r.key}`);
    else parts.push(`${r.key} ${r.operator} (${vals})`);
  }
  return parts.length ? parts.join(",") : "<all>";
}
