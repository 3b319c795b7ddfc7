/**
 * What turns the installed table into the desired one: {@linkcode diffTables} compares two
 * {@linkcode TableSpec}s and returns the difference as units — one per set, chain, or pod address —
 * each with its nft commands sorted into phases, so that
 *
 * - all of them together render as one transaction (`renderUnits`) in an order nft accepts: elements
 *   that point at a chain go before the chain is deleted, new sets and chains exist before the rules and
 *   elements that use them, and so on (the phases below);
 * - or, when that transaction is refused, each unit can be applied on its own, in an order that respects
 *   what depends on what ({@linkcode Unit.order}), so one bad entry costs only itself (and what needs it).
 *
 * Phases: 1 per-address element deletions · 2 flush changed and removed chains · 3 delete removed chains
 * · 4 delete removed sets · 5 add sets, change set-wide elements · 6 add chains · 7 add the rules of new
 * and changed chains · 8 per-address element additions.
 *
 * Nothing here touches the kernel; the table's counters are passed in to be carried over.
 *
 * @module
 */
import {
  type ChainSpec,
  type Counters,
  elementText,
  POLICY_TABLE_REF,
  quote,
  ruleText,
  type SetSpec,
  type TableSpec,
} from "./nft_render.ts";

/** Part of a diff that can be applied on its own. */
export interface Unit {
  /** `set <name>`, `chain <name>` or `ip <address>`. */
  key: string;
  /** Where it runs when units are applied one by one (lower first). */
  order: number;
  /** Its commands by phase (1–8). */
  phases: Map<number, string[]>;
  /** Chains whose rules it replaces (their counters are read before, to be carried over). */
  refills: string[];
  /** Records the unit as applied: makes `installed` hold its desired state. */
  commit(installed: TableSpec): void;
}

const T = POLICY_TABLE_REF;

function unit(key: string, order: number, commit: (installed: TableSpec) => void): Unit {
  return { key, order, phases: new Map(), refills: [], commit };
}

function push(u: Unit, phase: number, line: string): void {
  let list = u.phases.get(phase);
  if (!list) u.phases.set(phase, list = []);
  list.push(line);
}

function sameRules(a: ChainSpec, b: ChainSpec): boolean {
  if (a.rules.length !== b.rules.length || a.hook !== b.hook) return false;
  return a.rules.every((r, i) => ruleText(a.name, r) === ruleText(b.name, b.rules[i]!));
}

function chainDecl(c: ChainSpec): string {
  const inner = [c.hook, c.comment ? `comment ${quote(c.comment)};` : ""].filter(Boolean).join(" ");
  return `add chain ${T} ${c.name} { ${inner} }`;
}

/** A copy of a set whose element map can be changed without touching `s`. */
function cloneSet(s: SetSpec): SetSpec {
  return { ...s, elements: new Map(s.elements) };
}

function chainUnits(from: TableSpec, to: TableSpec, out: Unit[]): void {
  for (const c of to.chains.values()) {
    const had = from.chains.get(c.name);
    if (had && sameRules(had, c)) continue;
    const u = unit(`chain ${c.name}`, 20 + c.level, (t) => void t.chains.set(c.name, c));
    if (had) {
      push(u, 2, `flush chain ${T} ${c.name}`);
      u.refills.push(c.name);
    } else push(u, 6, chainDecl(c));
    for (const r of c.rules) push(u, 7, `add rule ${T} ${c.name} ${ruleText(c.name, r)}`);
    out.push(u);
  }
  for (const c of from.chains.values()) {
    if (to.chains.has(c.name)) continue;
    // Combinations go before the policy chains they jump to.
    const u = unit(`chain ${c.name}`, 41 - c.level, (t) => void t.chains.delete(c.name));
    push(u, 2, `flush chain ${T} ${c.name}`);
    push(u, 3, `delete chain ${T} ${c.name}`);
    out.push(u);
  }
}

/** Element changes of a set that is one unit: deletions then additions, in phase 5. */
function setElementLines(name: string, from: SetSpec | undefined, to: SetSpec): string[] {
  const del: string[] = [], add: string[] = [];
  for (const [k, text] of from?.elements ?? []) if (to.elements.get(k) !== text) del.push(k);
  for (const [k, text] of to.elements) if (from?.elements.get(k) !== text) add.push(elementText(to, k));
  const lines: string[] = [];
  if (del.length) lines.push(`delete element ${T} ${name} { ${del.join(", ")} }`);
  if (add.length) lines.push(`add element ${T} ${name} { ${add.join(", ")} }`);
  return lines;
}

function setUnits(from: TableSpec, to: TableSpec, out: Unit[]): void {
  for (const s of to.sets.values()) {
    const had = from.sets.get(s.name);
    const changed = s.unit === "set" && !s.dynamic ? setElementLines(s.name, had, s) : [];
    if (had && changed.length === 0) continue;
    if (had && s.unit === "ip") continue; // per-address elements: ipUnits
    const u = unit(`set ${s.name}`, 10, (t) => {
      const have = t.sets.get(s.name);
      // A per-address set keeps the elements committed so far (ipUnits fill it).
      t.sets.set(s.name, s.unit === "ip" ? { ...cloneSet(s), elements: have?.elements ?? new Map() } : s);
    });
    if (!had) push(u, 5, `add ${s.kind} ${T} ${s.name} { ${s.decl} }`);
    for (const l of changed) push(u, 5, l);
    out.push(u);
  }
  for (const s of from.sets.values()) {
    if (to.sets.has(s.name)) continue;
    const u = unit(`set ${s.name}`, 50, (t) => void t.sets.delete(s.name));
    push(u, 4, `delete ${s.kind} ${T} ${s.name}`);
    out.push(u);
  }
}

/** Per-address units: every per-address set's element for one address, deleted and/or added. */
function ipUnits(from: TableSpec, to: TableSpec, out: Unit[]): void {
  const byIP = new Map<string, Unit>();
  const of = (ip: string) => {
    let u = byIP.get(ip);
    if (!u) {
      u = unit(`ip ${ip}`, 30, (t) => {
        for (const s of to.sets.values()) {
          if (s.unit !== "ip") continue;
          let have = t.sets.get(s.name);
          if (!have) t.sets.set(s.name, have = { ...cloneSet(s), elements: new Map() });
          const want = s.elements.get(ip);
          if (want === undefined) have.elements.delete(ip);
          else have.elements.set(ip, want);
        }
      });
      byIP.set(ip, u);
    }
    return u;
  };
  for (const s of to.sets.values()) {
    if (s.unit !== "ip") continue;
    const had = from.sets.get(s.name)?.elements ?? new Map<string, string>();
    for (const [k, text] of had) {
      if (s.elements.get(k) === text) continue;
      push(of(k), 1, `delete element ${T} ${s.name} { ${k} }`);
    }
    for (const [k, text] of s.elements) {
      if (had.get(k) === text) continue;
      push(of(k), 8, `add element ${T} ${s.name} { ${elementText(s, k)} }`);
    }
  }
  out.push(...byIP.values());
}

/** The units that make `from` into `to` (empty: nothing to do). */
export function diffTables(from: TableSpec, to: TableSpec): Unit[] {
  const out: Unit[] = [];
  setUnits(from, to, out);
  chainUnits(from, to, out);
  ipUnits(from, to, out);
  return out.sort((a, b) => a.order - b.order || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** The script of `units` as one transaction (phases in order), the refilled chains' counters kept. */
export function renderUnits(units: Unit[], counters?: Counters): string {
  const lines: string[] = [];
  for (let phase = 1; phase <= 8; phase++) {
    for (const u of units) {
      for (const l of u.phases.get(phase) ?? []) lines.push(phase === 7 ? withCounters(l, counters) : l);
    }
  }
  return lines.length ? lines.join("\n") + "\n" : "";
}

/** A copy of a table spec whose per-address sets can be committed into without touching `spec`. */
export function cloneTable(spec: TableSpec): TableSpec {
  const sets = new Map<string, SetSpec>();
  for (const [k, s] of spec.sets) sets.set(k, s.unit === "ip" ? cloneSet(s) : s);
  return { sets, chains: new Map(spec.chains) };
}

/** An `add rule` line with the counter values `counters` has for its chain and comment. */
function withCounters(line: string, counters?: Counters): string {
  if (!counters) return line;
  const m = line.match(/^add rule \S+ \S+ (\S+) .* comment "(.*)"$/);
  if (!m) return line;
  const n = counters.get(m[1]!)?.get(m[2]!);
  return n ? line.replace(/ counter /, ` counter packets ${n.packets} bytes ${n.bytes} `) : line;
}
