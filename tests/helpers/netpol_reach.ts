/**
 * Expected and observed reachability tables for network-policy tests, in the style of the upstream
 * Kubernetes netpol e2e suite (`test/e2e/network/netpol/reachability.go`): every (from pod, to pod)
 * pair, for every probed (protocol, port), is allowed or not; loopback (a pod to itself) is always
 * allowed, since it never leaves the pod.
 *
 * ```ts
 * const r = new Reachability(PODS).expect("*", "x/*", false).expect("x/*", "x/*", true);
 * r.get("y/a", "x/b", { proto: "tcp", port: 80 }); // false
 * ```
 *
 * @module
 */

/** What one probe tries: a protocol and a destination port. */
export interface Target {
  /** Protocol. */
  proto: "tcp" | "udp" | "sctp";
  /** Port. */
  port: number;
}

/** The targets every matrix case probes: TCP and UDP on 80 and 81. */
export const TARGETS: Target[] = [
  { proto: "tcp", port: 80 },
  { proto: "tcp", port: 81 },
  { proto: "udp", port: 80 },
  { proto: "udp", port: 81 },
];

/**
 * A set of pods: `"x/a"`, `"x/*"` (a namespace), `"*\/a"` (a pod name in every namespace), `"*"` (all),
 * or a list of those.
 */
export type PodSel = string | string[];

function matches(sel: PodSel, pod: string): boolean {
  if (Array.isArray(sel)) return sel.some((s) => matches(s, pod));
  if (sel === "*") return true;
  const [ns, name] = pod.split("/");
  const [sn, sp] = sel.split("/");
  return (sn === "*" || sn === ns) && (sp === "*" || sp === name);
}

const tkey = (t: Target) => `${t.proto}/${t.port}`;

/** A reachability table over `pods` × `pods` × targets. */
export class Reachability {
  #ops: { from: PodSel; to: PodSel; allowed: boolean; on?: Target[] }[] = [];

  /** @param pods the pods (`ns/name`), in table order; @param dflt the value before any `expect` */
  constructor(readonly pods: string[], readonly dflt = true) {}

  /**
   * Sets every (from, to) pair of the two sets to `allowed`, for `on` targets (default: every target).
   * Later calls override earlier ones.
   */
  expect(from: PodSel, to: PodSel, allowed: boolean, on?: Target | Target[]): this {
    this.#ops.push({ from, to, allowed, ...(on ? { on: Array.isArray(on) ? on : [on] } : {}) });
    return this;
  }

  /** Whether `from` may reach `to` on `t`. */
  get(from: string, to: string, t: Target): boolean {
    if (from === to) return true;
    let v = this.dflt;
    for (const op of this.#ops) {
      if (op.on && !op.on.some((o) => tkey(o) === tkey(t))) continue;
      if (matches(op.from, from) && matches(op.to, to)) v = op.allowed;
    }
    return v;
  }

  /** A copy with other pods (for a step that adds a pod). */
  withPods(pods: string[]): Reachability {
    const r = new Reachability(pods, this.dflt);
    r.#ops = [...this.#ops];
    return r;
  }
}

/** Observed results: `observed.get(from, to, target)`. */
export type Observed = (from: string, to: string, t: Target) => boolean;

/** One pair whose result differs from the expectation. */
export interface Mismatch {
  /** Source pod. */
  from: string;
  /** Destination pod. */
  to: string;
  /** What was probed. */
  target: Target;
  /** What was expected. */
  expected: boolean;
}

/** The pairs where `observed` differs from `expected`. */
export function compareReach(
  expected: Reachability,
  observed: Observed,
  targets: Target[] = TARGETS,
): Mismatch[] {
  const out: Mismatch[] = [];
  for (const t of targets) {
    for (const from of expected.pods) {
      for (const to of expected.pods) {
        const e = expected.get(from, to, t);
        if (observed(from, to, t) !== e) out.push({ from, to, target: t, expected: e });
      }
    }
  }
  return out;
}

/**
 * The upstream-style table for one target: rows are sources, columns destinations, `.` allowed,
 * `X` denied; a mismatch shows what was observed in brackets-free form with `!` after it.
 */
export function formatReach(
  expected: Reachability,
  observed: Observed | undefined,
  t: Target,
): string {
  const pods = expected.pods;
  const w = Math.max(...pods.map((p) => p.length), 4);
  const pad = (s: string) => s.padEnd(w + 2);
  const lines = [`${tkey(t)}  (rows: from, columns: to; . allowed, X denied, ! differs from expected)`];
  lines.push(pad("") + pods.map(pad).join(""));
  for (const from of pods) {
    let row = pad(from);
    for (const to of pods) {
      const e = expected.get(from, to, t);
      const o = observed ? observed(from, to, t) : e;
      row += pad(`${o ? "." : "X"}${o !== e ? "!" : ""}`);
    }
    lines.push(row);
  }
  return lines.join("\n");
}

/** The tables of every target that has a mismatch (empty when none). */
export function reachDiff(expected: Reachability, observed: Observed, targets: Target[] = TARGETS): string {
  const bad = compareReach(expected, observed, targets);
  const seen = new Set(bad.map((m) => tkey(m.target)));
  return targets.filter((t) => seen.has(tkey(t))).map((t) => formatReach(expected, observed, t)).join("\n\n");
}
