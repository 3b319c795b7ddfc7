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
import { leaseName, parseSubnetKey, type SubnetManager } from "../lease/etcd/mod.ts";
import { clusterVerdicts, type EntryVerdict } from "../lease/etcd/verdicts.ts";
import { CliError } from "./errors.ts";
import { leaseColumns, type LeaseRow, leaseTable, sortLeaseRows, unreadableRow } from "./lease_table.ts";
import { addEnvFileFlag } from "./env_file.ts";
import { addEtcdFlags, withSubnetManager } from "./etcd_flags.ts";
import { addKubeFlags, kubeFlagValues, kubeMode, kubeOptionsFrom } from "./kube_flags.ts";

async function rowOf(v: EntryVerdict, leaseTTL?: (id: string) => Promise<number>): Promise<LeaseRow> {
  const judged = v.rejection ? { status: v.rejection.rule, reason: v.rejection.detail } : { status: "ok" };
  if (!v.parsed.ok) {
    return unreadableRow(v.entry.key, judged, { etcdLeaseId: v.entry.leaseId ?? null });
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
  const leases = addEnvFileFlag(addEtcdFlags(
    addKubeFlags(program.command("leases").description("list subnet leases (and reserve or release them)")),
  ))
    .option("--json", "print JSON")
    .enablePositionalOptions()
    .action(async (flags) => {
      const kf = kubeFlagValues(flags);
      const rows = sortLeaseRows(
        kubeMode(kf)
          ? await (await import("./kube_leases.ts")).kubeLeaseRows(await kubeOptionsFrom(kf))
          : await withSubnetManager(flags, rowsOf),
      );
      if (flags.json) console.log(JSON.stringify(rows, null, 2));
      else console.log(leaseTable(rows));
    });
  addEnvFileFlag(
    addEtcdFlags(
      leases.command("reserve").description("reserve SUBNET (no TTL) for the node with --public-ip"),
    ),
  )
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
  addEnvFileFlag(
    addEtcdFlags(leases.command("release").description("delete the lease or reservation of SUBNET")),
  )
    .argument("<subnet>", "e.g. 10.244.3.0/24 (or a key as listed: 10.244.3.0-24)")
    .action(async (subnet, flags) => {
      const net = parseSubnetArg(subnet);
      const gone = await withSubnetManager(flags, (m) => m.release(net));
      if (!gone) throw new CliError(`no lease or reservation for ${subnet}`, 3);
      console.log(`released ${subnet}`);
    });
}
