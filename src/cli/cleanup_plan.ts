/**
 * What `weft cleanup` would remove from this node, and what it keeps and why: read from the kernel
 * (links and routes over netlink, nftables tables through libnftables, iptables through `*-save`), the
 * files weft writes and the processes of this network namespace. Nothing here changes the node;
 * cleanup.ts applies a plan.
 *
 * What weft creates on a node (the default scope):
 * - links `flannel.<VNI>`, `flannel-v6.<VNI>` (vxlan), `flannel<N>` (udp TUN), `flannel-wg`, `flannel-wg-v6`
 *   (and the wireguard-go process behind a userspace one), and `cni0` (its CNI mode's bridge: removed only
 *   when no pod is attached);
 * - routes of protocol 87 (every backend's, in every table), and the next-hop objects of protocol 87
 *   under the peers' IPv4 routes (src/datapath/nexthop_routes.ts);
 * - nftables tables `ip weft`, `ip6 weft` (masquerade, forward), `ip weft-cni`, `ip6 weft-cni` (the CNI
 *   mode's per-pod masquerade), `inet weft-policy` (NetworkPolicy);
 * - iptables chains `FLANNEL-POSTRTG` (nat) and `FLANNEL-FWD` (filter), flanneld's names, and their jumps
 *   from the built-in chains, in iptables and ip6tables of either backend;
 * - the CNI socket beside subnet.env; and, only when asked, subnet.env (with the WireGuard key beside it)
 *   and the installed CNI files (`/opt/cni/bin/flannel` when it is weft, `10-flannel.conflist`).
 *
 * `keepOverlay` (a rollback: flanneld takes the node over) keeps every link, route and FLANNEL-* chain,
 * which flanneld adopts as its own, and removes only what flanneld does not know. `flannel` adds
 * flanneld's own leftovers: every FLANNEL-* chain, its nftables tables `ip flannel-ipv4` and
 * `ip6 flannel-ipv6`, and its CNI plugin binary. `flannelOnly` (after a switch to weft, with weft
 * running) removes only what flanneld made and weft never uses: those two nftables tables.
 *
 * @module
 */
import { Netlink, nftRun } from "../../ffi/mod.ts";
import { WEFT_ROUTE_PROTOCOL } from "../../ffi/types.ts";
import { agentSocketBeside } from "../cni/agent_protocol.ts";
import { isWeftNexthop } from "../datapath/nexthop_routes.ts";

/** What to clean. */
export interface CleanupOptions {
  /** Also flanneld's leftovers. */
  flannel: boolean;
  /** Keep what flanneld adopts (links, routes, FLANNEL-* chains): a rollback to flanneld. */
  keepOverlay: boolean;
  /** Only flanneld's leftovers that weft never uses (its nftables tables); weft may be running. */
  flannelOnly?: boolean;
  /** subnet.env's path (the CNI socket sits beside it). */
  subnetFile: string;
  /** Also remove subnet.env (and the WireGuard key file beside it). */
  subnetEnv: boolean;
  /** Also remove the installed CNI plugin and conflist. */
  cniFiles: boolean;
  /** Where the CNI plugin is installed. */
  cniBinDir: string;
  /** Where the conflist is. */
  cniConfDir: string;
}

/** One thing to remove. */
export type CleanupAction =
  | { kind: "process"; pid: number; what: string }
  | { kind: "routes"; family: 4 | 6; routes: { dst: string; table: number; metric: number }[] }
  | { kind: "nexthops"; ids: number[] }
  | { kind: "link"; name: string; what: string }
  | { kind: "nft-table"; family: string; name: string; what: string }
  | { kind: "iptables"; bin: string; restore: string; chains: string[]; emptyTables: string[] }
  | { kind: "file"; path: string; what: string };

/** A plan: what would be removed, what is kept and why, what stops the cleanup altogether. */
export interface CleanupPlan {
  /** In the order they are applied. */
  actions: CleanupAction[];
  /** Things weft could have made that stay, each with the reason. */
  kept: { what: string; why: string }[];
  /** Reasons not to touch the node now (an agent still running on it). */
  blockers: string[];
}

/** The one-line description of an action, as the CLI prints it. */
export function describe(a: CleanupAction): string {
  switch (a.kind) {
    case "process":
      return `process ${a.pid} (${a.what})`;
    case "routes":
      return `${a.routes.length} IPv${a.family} route${a.routes.length === 1 ? "" : "s"} of protocol ` +
        `${WEFT_ROUTE_PROTOCOL} (${a.routes.slice(0, 3).map((r) => r.dst).join(", ")}` +
        `${a.routes.length > 3 ? ", …" : ""})`;
    case "nexthops":
      return `${a.ids.length} next-hop object${
        a.ids.length === 1 ? "" : "s"
      } of protocol ${WEFT_ROUTE_PROTOCOL}`;
    case "link":
      return `link ${a.name} (${a.what})`;
    case "nft-table":
      return `nftables table ${a.family} ${a.name} (${a.what})`;
    case "iptables":
      return `${a.bin.split("/").pop()}: chains ${a.chains.join(", ")} and the rules jumping to them` +
        (a.emptyTables.length ? `; then the tables left empty (${a.emptyTables.join(", ")})` : "");
    case "file":
      return `${a.path} (${a.what})`;
  }
}

/** A link weft's backends create, by name: what it is, or undefined. */
export function overlayLinkRole(name: string): string | undefined {
  if (/^flannel\.\d+$/.test(name)) return "vxlan device";
  if (/^flannel-v6\.\d+$/.test(name)) return "IPv6 vxlan device";
  if (/^flannel\d+$/.test(name)) return "udp backend's TUN device";
  if (name === "flannel-wg" || name === "flannel-wg-v6") return "WireGuard device";
  return undefined;
}

/** weft's nftables tables (family, name, what), and flanneld's with `flannel`. */
export function nftTablesToRemove(
  present: string[],
  flannel: boolean,
): { family: string; name: string; what: string }[] {
  const known: Record<string, string> = {
    "ip weft": "weft's masquerade and forward rules",
    "ip6 weft": "weft's masquerade and forward rules",
    "ip weft-cni": "weft's CNI per-pod masquerade",
    "ip6 weft-cni": "weft's CNI per-pod masquerade",
    "inet weft-policy": "weft's NetworkPolicy rules",
  };
  if (flannel) {
    known["ip flannel-ipv4"] = "flanneld's nftables rules";
    known["ip6 flannel-ipv6"] = "flanneld's nftables rules";
  }
  return present.filter((t) => known[t]).map((t) => {
    const [family, name] = t.split(" ") as [string, string];
    return { family, name, what: known[t]! };
  });
}

/** The tables nftables holds, as `family name` (`ip weft`). */
export function nftTables(): string[] {
  return nftRun("list tables\n").split("\n").map((l) => l.trim()).filter((l) => l.startsWith("table "))
    .map((l) => l.slice("table ".length));
}

/** `iptables-save`'s text split into tables: table → its lines. */
function savedTables(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let cur: string[] | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) out.set(line.slice(1).trim(), cur = []);
    else if (line === "COMMIT") cur = undefined;
    else if (cur && (line.startsWith(":") || line.startsWith("-A "))) cur.push(line);
  }
  return out;
}

/**
 * The `iptables-restore --noflush` input that removes the chains `wanted` picks (in tables nat and filter)
 * and every rule jumping to them; the chains removed; and the tables that hold nothing after it (only
 * built-in chains, no rules, policy ACCEPT), which iptables-nft leaves behind as nftables tables.
 */
export function iptablesRemoval(
  saveText: string,
  wanted: (chain: string) => boolean,
): { restore: string; chains: string[]; emptyTables: string[] } {
  const parts: string[] = [];
  const chains: string[] = [];
  const emptyTables: string[] = [];
  for (const [table, lines] of savedTables(saveText)) {
    const decl = lines.filter((l) => l.startsWith(":")).map((l) => l.slice(1).split(" ") as [string, string]);
    // Only user chains (policy "-"): a built-in chain is never removed, whatever its name.
    const ours = decl.filter(([c, policy]) => policy === "-" && wanted(c)).map(([c]) => c);
    if (!ours.length) continue;
    const targets = new RegExp(
      `\\s-[jg] (${ours.map((c) => c.replace(/[.*+?^${}()|[\]\\-]/g, "\\$&")).join("|")})(\\s|$)`,
    );
    const rules = lines.filter((l) => l.startsWith("-A "));
    const jumps = rules.filter((r) => targets.test(r) && !ours.includes(r.split(" ")[1]!));
    parts.push(
      `*${table}`,
      ...jumps.map((r) => `-D ${r.slice(3)}`),
      ...ours.map((c) => `-F ${c}`),
      ...ours.map((c) => `-X ${c}`),
      "COMMIT",
    );
    chains.push(...ours.map((c) => `${table}/${c}`));
    const left = rules.filter((r) => !jumps.includes(r) && !ours.includes(r.split(" ")[1]!));
    const others = decl.filter(([c]) => !ours.includes(c));
    if (!left.length && others.every(([, policy]) => policy === "ACCEPT")) emptyTables.push(table);
  }
  return { restore: parts.length ? parts.join("\n") + "\n" : "", chains, emptyTables };
}

/** The iptables backends and families present on this host: `[save, restore, nft family]`. */
function iptablesTools(): [string, string, string][] {
  const out: [string, string, string][] = [];
  for (
    const [fam, nftFam, names] of [["ip", "ip", "ip_tables_names"], [
      "ip6",
      "ip6",
      "ip6_tables_names",
    ]] as const
  ) {
    const base = fam === "ip" ? "iptables" : "ip6tables";
    for (const mode of ["nft", "legacy"]) {
      // Legacy tables are only read when the module already holds some here (reading loads nothing then).
      if (mode === "legacy") {
        try {
          if (!Deno.readTextFileSync(`/proc/net/${names}`).trim()) continue;
        } catch {
          continue;
        }
      }
      const save = findTool(`${base}-${mode}-save`), restore = findTool(`${base}-${mode}-restore`);
      if (save && restore) out.push([save, restore, mode === "nft" ? nftFam : ""]);
    }
  }
  return out;
}

/** An executable in the usual folders, or undefined. */
export function findTool(name: string): string | undefined {
  for (
    const d of [...(Deno.env.get("PATH") ?? "").split(":").filter(Boolean), "/usr/sbin", "/sbin", "/usr/bin"]
  ) {
    try {
      if (Deno.statSync(`${d}/${name}`).isFile) return `${d}/${name}`;
    } catch { /* not here */ }
  }
  return undefined;
}

/** The iptables actions for this node (none, and a note in `kept`, without iptables binaries). */
function iptablesActions(wanted: (chain: string) => boolean, plan: CleanupPlan): CleanupAction[] {
  const out: CleanupAction[] = [];
  const tools = iptablesTools();
  if (!tools.length) {
    plan.kept.push({
      what: "iptables chains FLANNEL-*",
      why:
        "no iptables-nft-save/-restore here to read or remove them (run weft cleanup where the node's iptables is)",
    });
  }
  for (const [save, restore, nftFamily] of tools) {
    const r = new Deno.Command(save, { stdout: "piped", stderr: "null" }).outputSync();
    if (!r.success) continue;
    const plan = iptablesRemoval(new TextDecoder().decode(r.stdout), wanted);
    if (!plan.restore) continue;
    out.push({
      kind: "iptables",
      bin: restore,
      restore: plan.restore,
      chains: plan.chains,
      // Only iptables-nft's tables are nftables tables that can go; legacy ones belong to the module.
      emptyTables: nftFamily ? plan.emptyTables.map((t) => `${nftFamily} ${t}`) : [],
    });
  }
  return out;
}

/** This network namespace's processes: pid → argv. */
function processesHere(): Map<number, string[]> {
  const own = Deno.statSync("/proc/thread-self/ns/net");
  const out = new Map<number, string[]>();
  for (const e of Deno.readDirSync("/proc")) {
    const pid = Number(e.name);
    if (!Number.isInteger(pid) || pid === Deno.pid) continue;
    try {
      const ns = Deno.statSync(`/proc/${pid}/ns/net`);
      if (ns.ino !== own.ino || ns.dev !== own.dev) continue;
      const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").filter(Boolean);
      if (argv.length) out.set(pid, argv);
    } catch { /* gone, or a kernel thread */ }
  }
  return out;
}

const base = (p: string) => p.slice(p.lastIndexOf("/") + 1);

/** A `weft agent` (binary or `deno run … main.ts agent`), flanneld, or wireguard-go for weft's devices. */
export function processRole(argv: string[]): "weft-agent" | "flanneld" | "wireguard-go" | undefined {
  const i = argv.indexOf("agent");
  if (i > 0 && ["weft", "main.ts"].includes(base(argv[i - 1]!))) return "weft-agent";
  if (argv[0] && base(argv[0]) === "flanneld") return "flanneld";
  if (argv[0] && base(argv[0]) === "wireguard-go" && argv.some((a) => /^flannel-wg(-v6)?$/.test(a))) {
    return "wireguard-go";
  }
  return undefined;
}

/** Whether something answers on the unix socket at `path`. */
async function socketAlive(path: string): Promise<boolean> {
  try {
    const c = await Deno.connect({ transport: "unix", path });
    c.close();
    return true;
  } catch {
    return false;
  }
}

function exists(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch {
    return undefined;
  }
}

/** Whether the file at `path` is weft (its binary, or a script that runs weft's main.ts). */
function isWeft(path: string): boolean {
  try {
    using f = Deno.openSync(path);
    const buf = new Uint8Array(1 << 20);
    let tail = "";
    for (let n = f.readSync(buf); n !== null && n > 0; n = f.readSync(buf)) {
      const text = tail + new TextDecoder("latin1").decode(buf.subarray(0, n));
      if (text.includes("weft-cni[") || /weft.*main\.ts|main\.ts.*weft/.test(text)) return true;
      tail = text.slice(-64);
    }
  } catch { /* unreadable: not ours to judge */ }
  return false;
}

/** The ids of weft's next-hop objects (none on a kernel without them). */
function weftNexthops(nl: Netlink): number[] {
  try {
    return nl.nexthopList().filter(isWeftNexthop).map((n) => n.id);
  } catch {
    return []; // Linux < 5.3: no next-hop objects, none of weft's either
  }
}

/** Links and routes: what goes, what stays. */
function datapathActions(opts: CleanupOptions, plan: CleanupPlan): void {
  using nl = Netlink.open();
  const links = nl.linkList();
  if (opts.keepOverlay) {
    for (const l of links.filter((l) => overlayLinkRole(l.name) || l.name === "cni0")) {
      plan.kept.push({ what: `link ${l.name}`, why: "--keep-overlay: flanneld adopts it" });
    }
    plan.kept.push({
      what: `routes of protocol ${WEFT_ROUTE_PROTOCOL} (and their next-hop objects)`,
      why: "--keep-overlay: flanneld replaces them",
    });
    return;
  }
  for (const family of [4, 6] as const) {
    const routes = nl.routeList({ family, protocol: WEFT_ROUTE_PROTOCOL, table: 0 })
      .map((r) => ({ dst: r.dst, table: r.table, metric: r.metric }));
    if (routes.length) plan.actions.push({ kind: "routes", family, routes });
  }
  const nexthops = weftNexthops(nl);
  if (nexthops.length) plan.actions.push({ kind: "nexthops", ids: nexthops });
  for (const l of links) {
    const role = overlayLinkRole(l.name);
    if (role) plan.actions.push({ kind: "link", name: l.name, what: role });
  }
  const bridge = links.find((l) => l.name === "cni0");
  if (bridge) {
    const ports = links.filter((l) => l.master === bridge.index);
    if (ports.length) {
      plan.kept.push({
        what: "link cni0",
        why: `${ports.length} pod interface${ports.length === 1 ? "" : "s"} still attached ` +
          `(${ports.slice(0, 3).map((p) => p.name).join(", ")}): drain the node first`,
      });
    } else plan.actions.push({ kind: "link", name: "cni0", what: "the pods' bridge, no pod attached" });
  }
}

/** Processes: agents that must be stopped first, wireguard-go processes to stop. */
function processActions(opts: CleanupOptions, plan: CleanupPlan): void {
  for (const [pid, argv] of processesHere()) {
    const role = processRole(argv);
    if (role === "weft-agent") {
      plan.blockers.push(
        `a weft agent runs in this network namespace (pid ${pid}): stop it first ` +
          "(systemctl stop weft, or take the node out of weft's DaemonSet)",
      );
    } else if (role === "flanneld" && !opts.keepOverlay) {
      plan.blockers.push(
        `flanneld runs in this network namespace (pid ${pid}) and uses flannel.1, cni0 and ` +
          "FLANNEL-* chains: use --keep-overlay to remove only weft's own state, or stop flanneld first",
      );
    } else if (role === "wireguard-go" && !opts.keepOverlay) {
      plan.actions.unshift({ kind: "process", pid, what: argv.join(" ") });
      // Its UAPI socket goes with it on SIGTERM; one left by a killed process goes here.
      const dev = argv.find((a) => /^flannel-wg(-v6)?$/.test(a))!;
      plan.actions.push({
        kind: "file",
        path: `/var/run/wireguard/${dev}.sock`,
        what: "wireguard-go's UAPI socket",
      });
    }
  }
}

/** Files: the CNI socket always; subnet.env and the CNI files when asked. */
async function fileActions(opts: CleanupOptions, plan: CleanupPlan): Promise<void> {
  const sock = agentSocketBeside(opts.subnetFile);
  const st = exists(sock);
  if (st?.isSocket) {
    if (await socketAlive(sock)) {
      plan.blockers.push(`an agent is serving CNI calls on ${sock}: stop it first`);
    } else plan.actions.push({ kind: "file", path: sock, what: "weft agent's CNI socket" });
  }
  const dir = opts.subnetFile.slice(0, opts.subnetFile.lastIndexOf("/") + 1) || "./";
  for (const [path, what] of [[opts.subnetFile, "subnet.env"], [`${dir}wgkey`, "the node's WireGuard key"]]) {
    if (!exists(path!)) continue;
    if (opts.subnetEnv) plan.actions.push({ kind: "file", path: path!, what: what! });
    else plan.kept.push({ what: path!, why: "--subnet-env removes it" });
  }
  const bin = `${opts.cniBinDir}/flannel`, conf = `${opts.cniConfDir}/10-flannel.conflist`;
  if (exists(bin)) {
    const weft = isWeft(bin);
    if (!opts.cniFiles) plan.kept.push({ what: bin, why: "--cni-files removes it" });
    else if (weft || opts.flannel) {
      plan.actions.push({
        kind: "file",
        path: bin,
        what: weft ? "weft as the CNI plugin" : "flannel's CNI plugin",
      });
    } else plan.kept.push({ what: bin, why: "it is flannel's CNI plugin, not weft (--flannel removes it)" });
  }
  if (exists(conf)) {
    if (opts.cniFiles) plan.actions.push({ kind: "file", path: conf, what: "kube-flannel's conflist" });
    else plan.kept.push({ what: conf, why: "--cni-files removes it" });
  }
}

/** After a switch to weft: flanneld's nftables tables only (weft may run; flanneld must not). */
function flannelOnlyPlan(): CleanupPlan {
  const plan: CleanupPlan = { actions: [], kept: [], blockers: [] };
  const weftTables = new Set(nftTablesToRemove(nftTables(), false).map((t) => `${t.family} ${t.name}`));
  for (const t of nftTablesToRemove(nftTables(), true)) {
    if (!weftTables.has(`${t.family} ${t.name}`)) plan.actions.push({ kind: "nft-table", ...t });
  }
  for (const [pid, argv] of processesHere()) {
    if (processRole(argv) === "flanneld") {
      plan.blockers.push(`flanneld runs in this network namespace (pid ${pid})`);
    }
  }
  plan.kept.push({
    what: "everything else",
    why: "--flannel-only: what weft uses, or adopted from flanneld, stays",
  });
  return plan;
}

/** Reads the node and returns what cleaning it with `opts` would do. */
export async function planCleanup(opts: CleanupOptions): Promise<CleanupPlan> {
  if (opts.flannelOnly) return flannelOnlyPlan();
  const plan: CleanupPlan = { actions: [], kept: [], blockers: [] };
  datapathActions(opts, plan);
  for (const t of nftTablesToRemove(nftTables(), opts.flannel)) {
    plan.actions.push({ kind: "nft-table", ...t });
  }
  const ours = (c: string) =>
    opts.flannel ? c.startsWith("FLANNEL-") : c === "FLANNEL-POSTRTG" || c === "FLANNEL-FWD";
  if (opts.keepOverlay) {
    plan.kept.push({ what: "iptables chains FLANNEL-*", why: "--keep-overlay: flanneld adopts them" });
  } else plan.actions.push(...iptablesActions(ours, plan));
  processActions(opts, plan);
  await fileActions(opts, plan);
  return plan;
}
