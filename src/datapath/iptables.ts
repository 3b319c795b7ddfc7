/**
 * The host's iptables, through the binaries kube-proxy and flanneld use (`iptables-save`,
 * `iptables-restore --noflush`; there is no stable library API): which backend the host uses
 * (iptables-nft or iptables-legacy, detected as kube-proxy's iptables-wrapper and Calico do), reading a
 * family's tables as `iptables-save` prints them, and applying one restore payload atomically.
 *
 * iptables rules are per network namespace. The agent runs the binaries in its own (the node's); tests
 * and tools name another with `netns` (the process is started inside it). The binaries are looked up on
 * PATH and in /usr/sbin and /sbin.
 *
 * @module
 */
import { withNetns } from "../../ffi/mod.ts";

/** An iptables backend. */
export type IptablesMode = "nft" | "legacy";

/** IPv4 (`iptables`) or IPv6 (`ip6tables`). */
export type IptablesFamily = 4 | 6;

/** One chain as `iptables-save` shows it. */
export interface SavedChain {
  /** Policy of a built-in chain (`ACCEPT`, `DROP`), `-` for a user chain. */
  policy: string;
  /** Its rules, each the text after `-A <chain> ` (iptables-save's canonical form). */
  rules: string[];
}

/** One table: chain name → chain. */
export type SavedTable = Map<string, SavedChain>;

/** A family's tables as `iptables-save` shows them: table name → table. */
export type SavedTables = Map<string, SavedTable>;

/** A failing iptables binary, or none installed. */
export class IptablesError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "IptablesError";
  }
}

/** Parses `iptables-save` output (any family, any backend). */
export function parseIptablesSave(text: string): SavedTables {
  const tables: SavedTables = new Map();
  let table: SavedTable | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    if (line.startsWith("*")) {
      table = new Map();
      tables.set(line.slice(1), table);
    } else if (line === "COMMIT") {
      table = undefined;
    } else if (table && line.startsWith(":")) {
      const [name, policy] = line.slice(1).split(" ");
      if (name) table.set(name, { policy: policy ?? "-", rules: table.get(name)?.rules ?? [] });
    } else if (table && line.startsWith("-A ")) {
      const rest = line.slice(3);
      const sp = rest.indexOf(" ");
      const chain = sp < 0 ? rest : rest.slice(0, sp);
      const c = table.get(chain) ?? { policy: "-", rules: [] };
      c.rules.push(sp < 0 ? "" : rest.slice(sp + 1));
      table.set(chain, c);
    }
  }
  return tables;
}

/** Number of rules in `iptables-save` output (lines starting with `-`), as iptables-wrapper counts. */
export function countSavedRules(text: string): number {
  return text.split("\n").filter((l) => l.startsWith("-")).length;
}

const SEARCH = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/** The full path of an executable on PATH (or in the sbin folders), or undefined. */
export function findBinary(name: string): string | undefined {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":").filter(Boolean), ...SEARCH];
  for (const d of dirs) {
    try {
      const st = Deno.statSync(`${d}/${name}`);
      if (st.isFile && (st.mode ?? 0o111) & 0o111) return `${d}/${name}`;
    } catch { /* not here */ }
  }
  return undefined;
}

/**
 * The binary for a backend, family and action (`save`/`restore`): `iptables-nft-save` etc., falling back
 * to the unsuffixed `iptables-save` when the host only has that one and it is the same backend (Calico's
 * FindBestBinary).
 */
export function iptablesBinary(
  mode: IptablesMode,
  family: IptablesFamily,
  action: "save" | "restore",
): string | undefined {
  const base = family === 6 ? "ip6tables" : "iptables";
  const exact = findBinary(`${base}-${mode}-${action}`);
  if (exact) return exact;
  const plain = findBinary(`${base}-${action}`);
  if (!plain) return undefined;
  // The unsuffixed binary is one backend or the other; only use it for the one it is.
  const v = new Deno.Command(plain, { args: ["--version"], stdout: "piped", stderr: "piped" }).outputSync();
  const text = new TextDecoder().decode(v.stdout) + new TextDecoder().decode(v.stderr);
  const isNft = /nf_tables/.test(text);
  return (mode === "nft") === isNft ? plain : undefined;
}

/** Runs `fn` inside `netns` when given, else where the process is. */
function inNetns<T>(netns: string | undefined, fn: () => T): T {
  return netns ? withNetns(netns, fn) : fn();
}

/** Whether the legacy backend holds any table in the namespace (read without loading anything). */
export function legacyInUse(family: IptablesFamily, netns?: string): boolean {
  try {
    const f = `/proc/thread-self/net/${family === 6 ? "ip6_tables_names" : "ip_tables_names"}`;
    return inNetns(netns, () => Deno.readTextFileSync(f)).trim() !== "";
  } catch {
    return false;
  }
}

async function run(bin: string, args: string[], stdin?: string, netns?: string): Promise<string> {
  const cmd = new Deno.Command(bin, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  });
  const child = inNetns(netns, () => cmd.spawn());
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  if (!out.success) {
    const err = dec.decode(out.stderr).trim() || dec.decode(out.stdout).trim() || `exit ${out.code}`;
    throw new IptablesError(`${bin.split("/").pop()} ${args.join(" ")}: ${err}`);
  }
  return dec.decode(out.stdout);
}

/** One backend and family: reads with `*-save`, writes with `*-restore --noflush`. */
export class Iptables {
  readonly #save: string;
  readonly #restore: string;
  /** Writes done (restore calls), for budgets and metrics. */
  writes = 0;

  /**
   * @param mode the backend
   * @param family 4 or 6
   * @param netns the namespace (a /run/netns name) to run in; default: the process's
   * Throws {@linkcode IptablesError} when the binaries are not installed.
   */
  constructor(readonly mode: IptablesMode, readonly family: IptablesFamily, readonly netns?: string) {
    const save = iptablesBinary(mode, family, "save");
    const restore = iptablesBinary(mode, family, "restore");
    if (!save || !restore) {
      const base = family === 6 ? "ip6tables" : "iptables";
      throw new IptablesError(
        `${base}-${mode}-save/-restore not found: install iptables (Debian/Ubuntu: apt-get install iptables), ` +
          `or set "EnableNFTables": true in the network config`,
      );
    }
    this.#save = save;
    this.#restore = restore;
  }

  /** `ip6tables-nft` etc., for logs. */
  get name(): string {
    return `${this.family === 6 ? "ip6tables" : "iptables"}-${this.mode}`;
  }

  /** The family's tables (or only `table`) as iptables-save prints them. */
  async save(table?: string): Promise<SavedTables> {
    return parseIptablesSave(await run(this.#save, table ? ["-t", table] : [], undefined, this.netns));
  }

  /**
   * Applies a payload (`*table … COMMIT` blocks) in one atomic call, without flushing anything the
   * payload does not name (`--noflush`; a chain declared with `:NAME - [0:0]` is flushed and refilled).
   * Waits for the xtables lock the legacy backend shares with other writers.
   */
  async restore(payload: string): Promise<void> {
    this.writes++;
    await run(this.#restore, ["--noflush", "--wait"], payload, this.netns);
  }
}

/** How the backend was chosen. */
export interface ModeDetection {
  /** The backend. */
  mode: IptablesMode;
  /** Why, for the log. */
  reason: string;
}

async function saveText(
  mode: IptablesMode,
  family: IptablesFamily,
  table: string | undefined,
  netns: string | undefined,
): Promise<string> {
  const bin = iptablesBinary(mode, family, "save");
  if (!bin) return "";
  try {
    return await run(bin, table ? ["-t", table] : [], undefined, netns);
  } catch {
    return "";
  }
}

/**
 * The backend the host uses, as kube-proxy's iptables-wrapper decides: the kubelet's hint chains
 * (`KUBE-IPTABLES-HINT`, `KUBE-KUBELET-CANARY` in mangle) first, then whichever backend holds more rules
 * (legacy when it holds 10 or more); nft when neither holds any (today's distributions' default).
 * `WEFT_IPTABLES_MODE=nft|legacy` overrides it.
 */
export async function detectIptablesMode(netns?: string): Promise<ModeDetection> {
  const forced = Deno.env.get("WEFT_IPTABLES_MODE");
  if (forced === "nft" || forced === "legacy") return { mode: forced, reason: "WEFT_IPTABLES_MODE" };
  const hint = /^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY) /m;
  const legacyUsed = legacyInUse(4, netns) || legacyInUse(6, netns);
  for (const mode of ["nft", "legacy"] as const) {
    if (mode === "legacy" && !legacyUsed) continue;
    const m = (await saveText(mode, 4, "mangle", netns)) + (await saveText(mode, 6, "mangle", netns));
    if (hint.test(m)) return { mode, reason: "the kubelet's KUBE-IPTABLES-HINT chain is there" };
  }
  const count = async (mode: IptablesMode) =>
    countSavedRules(await saveText(mode, 4, undefined, netns)) +
    countSavedRules(await saveText(mode, 6, undefined, netns));
  const legacy = legacyUsed ? await count("legacy") : 0;
  if (legacy >= 10) return { mode: "legacy", reason: `iptables-legacy holds ${legacy} rules` };
  const nft = await count("nft");
  if (legacy > nft) return { mode: "legacy", reason: `iptables-legacy holds ${legacy} rules, nft ${nft}` };
  return {
    mode: "nft",
    reason: nft || legacy
      ? `iptables-nft holds ${nft} rules, legacy ${legacy}`
      : "no rules in either backend",
  };
}
