/**
 * weft's policy table in the kernel. {@linkcode PolicyTable} keeps `inet weft-policy` equal to the
 * last {@linkcode TableSpec} it was given:
 *
 * - The first install (and a repair) replaces the whole table in one transaction, carrying the rule and
 *   per-pod counters over. After that, only the difference is applied (nft_diff.ts), also in one
 *   transaction: a new pod is a few elements, not a new table. A spec equal to what is installed costs
 *   nothing (no nft call at all).
 * - When nft refuses a transaction, the difference is applied again unit by unit — a set, a chain, one
 *   pod address — so one bad entry fails alone (and what depends on it), never the whole batch; the
 *   failed units are reported, and a later apply tries them again.
 * - Every script runs off the JS thread (ffi/nftables.ts `nftRunAsync`), one at a time: kernel writes
 *   are queued, so a hold for a newly registered pod never interleaves with an install.
 * - {@linkcode PolicyTable.ensure} (each resync) re-reads the table and re-installs it when it was
 *   deleted or edited. Blocks (sets, maps, chains) installed since the last check are taken as they are
 *   listed; the others must list exactly as they did then (counter values aside, element order aside).
 *
 * @module
 */
import { nftRunAsync } from "../../ffi/mod.ts";
import { cloneTable, diffTables, renderUnits, type Unit } from "./nft_diff.ts";
import {
  type Count,
  type Counters,
  POLICY_TABLE_REF,
  renderTable,
  type SetSpec,
  type TableSpec,
} from "./nft_render.ts";

export { listPolicyTable, removePolicyTable } from "./table_ref.ts";

/** Runs a function in the network namespace the table lives in (identity: the calling thread's). */
export type Enter = <T>(fn: () => T) => T;

const here: Enter = (fn) => fn();

/** {@linkcode listPolicyTable} off the JS thread, in the namespace `enter` chooses. */
export async function listPolicyTableAsync(enter: Enter = here): Promise<string | undefined> {
  try {
    return await nftRunAsync(`list table ${POLICY_TABLE_REF}`, enter);
  } catch {
    return undefined;
  }
}

/** A listing with the counter values taken out (they move with traffic, the rules do not). */
export function withoutCounts(listing: string): string {
  return listing.replace(/counter packets \d+ bytes \d+/g, "counter");
}

/** The blocks of a listing (`set x`, `map x`, `chain x` → their lines), indented as nft prints them. */
export function listingBlocks(listing: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let cur: string[] | undefined;
  for (const line of listing.split("\n")) {
    const m = line.match(/^\t(set|map|chain) (\S+) \{$/);
    if (m) {
      out.set(`${m[1]} ${m[2]}`, cur = []);
      continue;
    }
    if (line === "\t}") cur = undefined;
    else if (cur) cur.push(line.trim());
  }
  return out;
}

/** The elements of a block's `elements = { … }` (which nft wraps over several lines). */
export function blockElements(lines: string[]): string[] {
  const text = lines.join(" ");
  const m = text.match(/elements = \{ (.*?) \}(?: |$)/);
  return m ? m[1]!.split(",").map((e) => e.trim()).filter(Boolean) : [];
}

/**
 * A block's text for comparison: counter values out, elements sorted (a hash set lists them in its own
 * order), a meter's elements (the kernel adds them) left out.
 */
function canonicalBlock(lines: string[]): string {
  const dynamic = lines.some((l) => /^flags .*dynamic/.test(l));
  const decl = withoutCounts(lines.join("\n").replace(/elements = \{[\s\S]*?\}(?=\n|$)/, ""))
    .replace(/\n+/g, "\n").trim();
  const els = dynamic ? [] : blockElements(lines).map(withoutCounts).sort();
  return `${decl}\n${els.join(", ")}`;
}

/** The whole listing in comparable form: blocks by name (see canonicalBlock). */
export function canonicalListing(listing: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, lines] of listingBlocks(listing)) out.set(k, canonicalBlock(lines));
  return out;
}

/** Reads every commented rule's counter, and every counted element's, by chain or set. */
export function parseCounters(listing: string): Counters {
  const out: Counters = new Map();
  for (const [k, lines] of listingBlocks(listing)) {
    const [kind, name] = k.split(" ") as [string, string];
    const counts = new Map<string, Count>();
    if (kind === "chain") {
      for (const l of lines) {
        const r = l.match(/counter packets (\d+) bytes (\d+) .*comment "(.*)"$/);
        if (r) counts.set(r[3]!, { packets: Number(r[1]), bytes: Number(r[2]) });
      }
    } else {
      for (const e of blockElements(lines)) {
        const r = e.match(/^(.*?) counter packets (\d+) bytes (\d+)/);
        if (r) counts.set(r[1]!, { packets: Number(r[2]), bytes: Number(r[3]) });
      }
    }
    if (counts.size) out.set(name, counts);
  }
  return out;
}

/** What an install did. */
export interface ApplyResult {
  /** `unchanged` (nothing to do), `installed`. */
  change: "unchanged" | "installed";
  /** Units nft refused (`ip 10.244.1.5`, `chain pol-in/x/web`, …), with nft's message; empty when all went in. */
  failed: { unit: string; error: string }[];
}

/** Options of {@linkcode PolicyTable}. */
export interface PolicyTableOptions {
  /** The table's namespace (default: the calling thread's). */
  enter?: Enter;
  /**
   * What to install when a whole table is refused: a table that holds every unknown pod closed and
   * allows nothing new (the units of the wanted spec are then applied one by one on top of it).
   */
  fallback: () => TableSpec;
}

/** Keeps weft's policy table equal to the last spec given. */
export class PolicyTable {
  #installed: TableSpec | undefined; // what the kernel holds as far as we know (undefined: not ours yet)
  #canonical = new Map<string, string>(); // blocks as last verified
  #unverified = true; // something was installed since the last check: take blocks as listed
  #adopted = false; // the table in the kernel is a previous run's, of this layout: kept until the first install
  #holdBatch: { ips: string[]; done: Promise<void> } | undefined; // a hold waiting in the queue
  #queue: Promise<unknown> = Promise.resolve();
  readonly #enter: Enter;

  /** @param opts see {@linkcode PolicyTableOptions} */
  constructor(private readonly opts: PolicyTableOptions) {
    this.#enter = opts.enter ?? here;
  }

  /** What is installed (undefined before the first install). */
  get installed(): TableSpec | undefined {
    return this.#installed;
  }

  /** Runs `op` after every kernel write queued before it. */
  #serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(op);
    this.#queue = run.catch(() => {});
    return run;
  }

  #run(script: string): Promise<string> {
    return nftRunAsync(script, this.#enter);
  }

  /** Installs `spec`: the difference to what is installed, or the whole table the first time. */
  apply(spec: TableSpec): Promise<ApplyResult> {
    return this.#serial(async () => {
      if (!this.#installed) return await this.#replace(spec);
      const units = diffTables(this.#installed, spec);
      if (units.length === 0) return { change: "unchanged", failed: [] };
      const refills = units.flatMap((u) => u.refills);
      const counters = refills.length ? await this.#chainCounters(refills) : undefined;
      this.#unverified = true;
      try {
        await this.#run(renderUnits(units, counters));
        for (const u of units) u.commit(this.#installed);
        return { change: "installed", failed: [] };
      } catch {
        return { change: "installed", failed: await this.#oneByOne(units, counters) };
      }
    });
  }

  /** Replaces the whole table; when nft refuses it, the fallback table, then `spec` unit by unit. */
  async #replace(spec: TableSpec): Promise<ApplyResult> {
    const before = await listPolicyTableAsync(this.#enter);
    const counters = before ? parseCounters(before) : undefined;
    this.#unverified = true;
    try {
      await this.#run(renderTable(spec, counters));
      this.#installed = cloneTable(spec);
      return { change: "installed", failed: [] };
    } catch {
      const base = this.opts.fallback();
      await this.#run(renderTable(base, counters)); // throws: the old table stays as it was
      this.#installed = cloneTable(base);
      return { change: "installed", failed: await this.#oneByOne(diffTables(base, spec), counters) };
    }
  }

  /** Applies units one transaction each, in their order; returns those nft refused. */
  async #oneByOne(units: Unit[], counters?: Counters): Promise<ApplyResult["failed"]> {
    const failed: ApplyResult["failed"] = [];
    for (const u of units) {
      try {
        await this.#run(renderUnits([u], counters));
        u.commit(this.#installed!);
      } catch (err) {
        failed.push({ unit: u.key, error: (err as Error).message });
      }
    }
    return failed;
  }

  /** The live counters of some chains (read before their rules are replaced). */
  async #chainCounters(chains: string[]): Promise<Counters | undefined> {
    try {
      const text = await this.#run(
        chains.map((c) => `list chain ${POLICY_TABLE_REF} ${c}`).join("\n") + "\n",
      );
      return parseCounters(text);
    } catch {
      return undefined;
    }
  }

  /**
   * At start: keeps the table a previous run left when it has this layout (it holds what that run
   * knew, and every pod it did not closed, until the first install replaces it); otherwise — none, or
   * an older layout — installs the fallback table, which holds every pod of the node closed.
   */
  adopt(): Promise<"kept" | "installed"> {
    return this.#serial(async () => {
      const listing = await listPolicyTableAsync(this.#enter);
      const blocks = listing ? listingBlocks(listing) : new Map();
      const ours =
        ["set known4", "set pending4", "set pending6", "chain ingress", "chain egress"].every((b) =>
          blocks.has(b)
        ) && (blocks.get("chain ingress") as string[]).some((l) => l.includes("hook postrouting"));
      if (ours) {
        this.#adopted = true;
        return "kept";
      }
      const base = this.opts.fallback();
      await this.#run(renderTable(base, listing ? parseCounters(listing) : undefined));
      this.#installed = cloneTable(base);
      this.#unverified = true;
      return "installed";
    });
  }

  /**
   * Holds `ips` closed at once (the `pending` sets): for pods CNI ADD registered before their rules are
   * in. Before the first install it adds them to the previous run's table when that is kept
   * ({@linkcode adopt}), else installs the fallback table (which holds every unknown pod, and these).
   */
  hold(ips: string[]): Promise<void> {
    // Holds asked for while one waits in the queue join it: a burst of registrations is one nft call.
    if (this.#holdBatch) {
      this.#holdBatch.ips.push(...ips);
      return this.#holdBatch.done;
    }
    const batch: { ips: string[]; done: Promise<void> } = { ips: [...ips], done: Promise.resolve() };
    this.#holdBatch = batch;
    batch.done = this.#serial(() => {
      this.#holdBatch = undefined;
      return this.#holdNow(batch.ips);
    });
    return batch.done;
  }

  async #holdNow(ips: string[]): Promise<void> {
    if (!this.#installed && this.#adopted) {
      const lines = ips.map((ip) =>
        `add element ${POLICY_TABLE_REF} pending${ip.includes(":") ? 6 : 4} { ${ip} }`
      );
      try {
        await this.#run(lines.join("\n") + "\n");
        return;
      } catch {
        this.#adopted = false; // not the table it looked like: replace it (below)
      }
    }
    if (!this.#installed) {
      const base = this.opts.fallback();
      for (const ip of ips) pendingSet(base, ip).elements.set(ip, ip);
      const before = await listPolicyTableAsync(this.#enter);
      await this.#run(renderTable(base, before ? parseCounters(before) : undefined));
      this.#installed = cloneTable(base);
      this.#unverified = true;
      return;
    }
    const add = ips.filter((ip) => !pendingSet(this.#installed!, ip).elements.has(ip));
    if (add.length === 0) return;
    const lines = add.map((ip) =>
      `add element ${POLICY_TABLE_REF} ${pendingSet(this.#installed!, ip).name} { ${ip} }`
    );
    this.#unverified = true;
    await this.#run(lines.join("\n") + "\n");
    for (const ip of add) pendingSet(this.#installed, ip).elements.set(ip, ip);
  }

  /**
   * Resync: re-reads the table; when it was deleted or edited, re-installs what was last installed
   * (counters kept). Returns whether it repaired.
   */
  ensure(): Promise<"unchanged" | "repaired"> {
    return this.#serial(async () => {
      if (!this.#installed) return "unchanged";
      const listing = await listPolicyTableAsync(this.#enter);
      const want = new Set(blockNames(this.#installed));
      const have = listing === undefined ? undefined : canonicalListing(listing);
      const intact = have !== undefined && have.size === want.size && [...want].every((k) => have.has(k)) &&
        (this.#unverified || [...have].every(([k, v]) => this.#canonical.get(k) === v));
      if (intact) {
        this.#canonical = have!;
        this.#unverified = false;
        return "unchanged";
      }
      await this.#run(renderTable(this.#installed, listing ? parseCounters(listing) : undefined));
      this.#unverified = true;
      return "repaired";
    });
  }

  /** The live counters (empty when the table is absent). */
  async counters(): Promise<Counters> {
    const l = await listPolicyTableAsync(this.#enter);
    return l ? parseCounters(l) : new Map();
  }

  /** Removes the table and forgets it. */
  remove(): Promise<void> {
    return this.#serial(async () => {
      await this.#run(`add table ${POLICY_TABLE_REF}\ndelete table ${POLICY_TABLE_REF}\n`);
      this.#installed = undefined;
      this.#canonical = new Map();
    });
  }
}

function pendingSet(spec: TableSpec, ip: string): SetSpec {
  const s = spec.sets.get(ip.includes(":") ? "pending6" : "pending4");
  if (!s) throw new Error("the policy table has no pending set");
  return s;
}

/** The block names nft lists for a spec (`set x`, `map x`, `chain x`). */
function blockNames(spec: TableSpec): string[] {
  return [
    ...[...spec.sets.values()].map((s) => `${s.kind} ${s.name}`),
    ...[...spec.chains.keys()].map((c) => `chain ${c}`),
  ];
}
