/**
 * `weft leases` (table or `--json`), `weft leases reserve SUBNET --public-ip IP` and
 * `weft leases release SUBNET`, on flannel's etcd layout (`<prefix>/subnets/…`).
 *
 * A reservation is a lease key without an etcd lease (no TTL): weft and flanneld never hand it to
 * another node, and the node whose PublicIP it names takes it.
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { formatIP, type IPNet, netContainsNet, parseIP, parseNet } from "../net/ip.ts";
import { type Lease, leaseName, parseSubnetKey, type SubnetManager, vtepMac } from "../subnet/mod.ts";
import { clusterVerdicts, type EntryVerdict } from "../subnet/verdicts.ts";
import { CliError } from "./errors.ts";
import { addEtcdFlags, withSubnetManager } from "./etcd_flags.ts";
import { addKubeFlags, kubeFlagValues, kubeMode, kubeOptionsFrom } from "./kube_flags.ts";

/** One row of `weft leases --json`. */
export interface LeaseRow {
  /** etcd key suffix, e.g. `10.244.3.0-24`. */
  key: string;
  /** IPv4 subnet or null. */
  subnet: string | null;
  /** IPv6 subnet or null. */
  ipv6Subnet: string | null;
  /** PublicIP. */
  publicIP: string;
  /** PublicIPv6 or null. */
  publicIPv6: string | null;
  /** BackendType. */
  backendType: string;
  /** BackendData as stored. */
  backendData: unknown;
  /** Seconds until the lease expires; null for a reservation. */
  ttlSeconds: number | null;
  /** etcd lease id (decimal); null for a reservation. */
  etcdLeaseId: string | null;
  /**
   * `ok`, or the rule every agent refuses the entry for (validate.ts `LEASE_RULES`: `key_unparseable`,
   * `subnet_wrong_length`, `subnet_conflict`, …); an agent may refuse more for its own node (`weft status`).
   */
  status: string;
  /** What breaks the rule, when `status` is not `ok`. */
  reason?: string;
  /** The Kubernetes node (kube mode: a lease is a node's podCIDR and lives as long as the node). */
  node?: string;
}

/** The columns a lease itself fills (no TTL, lease id or verdict). */
export function leaseColumns(l: Lease): Omit<LeaseRow, "ttlSeconds" | "etcdLeaseId" | "status"> {
  return {
    key: l.key,
    subnet: l.subnet ? leaseName({ subnet: l.subnet }) : null,
    ipv6Subnet: l.ipv6Subnet ? leaseName({ ipv6Subnet: l.ipv6Subnet }) : null,
    publicIP: l.attrs.PublicIP,
    publicIPv6: l.attrs.PublicIPv6 ?? null,
    backendType: l.attrs.BackendType,
    backendData: l.attrs.BackendData ?? null,
  };
}

async function rowOf(v: EntryVerdict, leaseTTL?: (id: string) => Promise<number>): Promise<LeaseRow> {
  const judged = v.rejection ? { status: v.rejection.rule, reason: v.rejection.detail } : { status: "ok" };
  if (!v.parsed.ok) {
    return {
      key: v.entry.key,
      subnet: null,
      ipv6Subnet: null,
      publicIP: "",
      publicIPv6: null,
      backendType: "",
      backendData: null,
      ttlSeconds: null,
      etcdLeaseId: v.entry.leaseId ?? null,
      ...judged,
    };
  }
  const l = v.parsed.lease;
  return {
    ...leaseColumns(l),
    ttlSeconds: l.etcdLeaseId && leaseTTL ? await leaseTTL(l.etcdLeaseId) : null,
    etcdLeaseId: l.etcdLeaseId ?? null,
    ...judged,
  };
}

async function rowsOf(m: SubnetManager): Promise<LeaseRow[]> {
  const { entries } = await m.registry.listSubnets();
  const cfg = await m.getNetworkConfig().catch(() => undefined);
  const verdicts = clusterVerdicts(entries, cfg);
  const reg = m.registry as { leaseTTL?: (id: string) => Promise<number> };
  const ttl = reg.leaseTTL?.bind(reg);
  const rows: LeaseRow[] = [];
  // A few dozen TTL look-ups at a time: thousands of leases must not open thousands of calls at once.
  for (let i = 0; i < verdicts.length; i += 64) {
    rows.push(...await Promise.all(verdicts.slice(i, i + 64).map((v) => rowOf(v, ttl))));
  }
  return rows;
}

/** `86399` → `23h59m`, `75` → `1m15s`. */
export function formatDuration(s: number): string {
  if (s < 0) return "expired";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  if (h) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m${String(sec).padStart(2, "0")}s`;
  return `${sec}s`;
}

/** A table cell from anybody's text: control characters shown as `?`, at most 64 characters. */
function printable(cell: string): string {
  const safe = Array.from(cell, (c) => (c.charCodeAt(0) < 32 || c === "\x7f" ? "?" : c));
  return safe.length > 64 ? `${safe.slice(0, 63).join("")}…` : safe.join("");
}

/** Formats rows as an aligned table. */
export function leaseTable(rows: LeaseRow[]): string {
  const kube = rows.some((r) => r.node);
  const table = [
    kube
      ? ["NODE", "SUBNET", "PUBLIC IP", "BACKEND", "VTEP MAC"]
      : ["SUBNET", "PUBLIC IP", "BACKEND", "VTEP MAC", "EXPIRES IN", "STATUS"],
  ];
  for (const r of rows) {
    const mac = vtepMac(r.backendData);
    if (kube) {
      table.push([
        r.node ?? "",
        [r.subnet, r.ipv6Subnet].filter(Boolean).join(","),
        [r.publicIP, r.publicIPv6].filter(Boolean).join(","),
        r.backendType,
        typeof mac === "string" ? mac : "",
      ].map(printable));
      continue;
    }
    table.push([
      // A key that does not parse is shown as stored (escaped: it is anybody's text).
      r.subnet || r.ipv6Subnet ? [r.subnet, r.ipv6Subnet].filter(Boolean).join(",") : JSON.stringify(r.key),
      [r.publicIP, r.publicIPv6].filter(Boolean).join(","),
      r.backendType,
      typeof mac === "string" ? mac : "",
      r.ttlSeconds === null ? "reserved" : formatDuration(r.ttlSeconds),
      r.status === "ok" ? "ok" : `rejected: ${r.status}`,
    ].map(printable));
  }
  const w = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
  return table.map((r) => r.map((x, c) => x.padEnd(w[c]!)).join("  ").trimEnd()).join("\n");
}

function parseSubnetArg(text: string): IPNet | string {
  if (!text.includes("/") && parseSubnetKey(text)) return text; // a key as `weft leases` shows it
  try {
    return parseNet(text);
  } catch (err) {
    throw new CliError(`${text}: ${(err as Error).message} (expected a subnet like 10.244.3.0/24)`, 2);
  }
}

/** Registers `weft leases`. */
export function registerLeases(program: Command): void {
  const leases = addEtcdFlags(
    addKubeFlags(program.command("leases").description("list subnet leases (and reserve or release them)")),
  )
    .option("--json", "print JSON")
    .enablePositionalOptions()
    .action(async (flags) => {
      const kf = kubeFlagValues(flags);
      const rows = kubeMode(kf)
        ? await (await import("./kube_leases.ts")).kubeLeaseRows(await kubeOptionsFrom(kf))
        : await withSubnetManager(flags, rowsOf);
      if (flags.json) console.log(JSON.stringify(rows, null, 2));
      else console.log(leaseTable(rows));
    });
  addEtcdFlags(leases.command("reserve").description("reserve SUBNET (no TTL) for the node with --public-ip"))
    .argument("<subnet>", "e.g. 10.244.3.0/24")
    .requiredOption("--public-ip <ip>", "the node's public IP")
    .option("--backend <type>", "backend type", "vxlan")
    .action(async (subnet, flags) => {
      const net = parseSubnetArg(subnet);
      if (typeof net === "string") throw new CliError(`${subnet}: give the subnet as CIDR`, 2);
      try {
        if (parseIP(flags.publicIp).family !== 4) throw new Error("must be an IPv4 address");
      } catch (err) {
        throw new CliError(`--public-ip ${flags.publicIp}: ${(err as Error).message}`, 2);
      }
      await withSubnetManager(flags, async (m) => {
        const cfg = await m.getNetworkConfig().catch(() => undefined);
        if (cfg?.network && (net.prefix !== cfg.subnetLen || !netContainsNet(cfg.network, net))) {
          console.error(
            `weft: note: ${subnet} is not a /${cfg.subnetLen} of ${leaseName({ subnet: cfg.network })}: ` +
              "no node will use it",
          );
        }
        const existing = (await m.listLeases()).leases.find((l) =>
          l.subnet && leaseName(l) === leaseName({ subnet: net })
        );
        if (existing && existing.attrs.PublicIP !== flags.publicIp) {
          throw new CliError(
            `${subnet} is ${existing.etcdLeaseId ? "leased" : "reserved"} by ${existing.attrs.PublicIP}: ` +
              `release it first (weft leases release ${subnet})`,
            3,
          );
        }
        // The node's own lease becomes a reservation with its attributes kept (flannel's documented way).
        await m.reserve(
          net,
          existing?.attrs ?? {
            PublicIP: formatIP(parseIP(flags.publicIp)),
            PublicIPv6: null,
            BackendType: flags.backend,
            BackendData: null,
          },
        );
      });
      console.log(`reserved ${subnet} for ${flags.publicIp}`);
    });
  addEtcdFlags(leases.command("release").description("delete the lease or reservation of SUBNET"))
    .argument("<subnet>", "e.g. 10.244.3.0/24 (or a key as listed: 10.244.3.0-24)")
    .action(async (subnet, flags) => {
      const net = parseSubnetArg(subnet);
      const gone = await withSubnetManager(flags, (m) => m.release(net));
      if (!gone) throw new CliError(`no lease or reservation for ${subnet}`, 3);
      console.log(`released ${subnet}`);
    });
}
