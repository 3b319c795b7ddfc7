/**
 * `weft config set|get` and `weft leases [reserve|release]`, on flannel's etcd layout.
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { parseNetworkConfig } from "../config/net_conf.ts";
import { parseIP, parseNet } from "../net/ip.ts";
import { leaseName, openEtcdRegistry, SubnetManager } from "../subnet/mod.ts";
import { CliError } from "./main.ts";
import { addEtcdFlags, type EtcdFlagValues, etcdOptionsFrom } from "./etcd_flags.ts";

async function withManager<T>(flags: EtcdFlagValues, fn: (m: SubnetManager) => Promise<T>): Promise<T> {
  const { explainEtcdError } = await import("../subnet/etcd_registry.ts");
  const opts = etcdOptionsFrom(flags);
  const reg = await openEtcdRegistry({ ...opts, timeoutMs: 5000 });
  try {
    return await fn(new SubnetManager(reg));
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(explainEtcdError(err, opts));
  } finally {
    await reg.close();
  }
}

async function readInput(file: string): Promise<string> {
  if (file !== "-") return await Deno.readTextFile(file);
  let text = "";
  const dec = new TextDecoder();
  for await (const c of Deno.stdin.readable) text += dec.decode(c, { stream: true });
  return text + dec.decode();
}

/** Registers `weft config`. */
export function registerConfig(program: Command): void {
  const config = program.command("config").description("the network config in etcd (<prefix>/config)");
  addEtcdFlags(config.command("set").description("validate FILE (or - for stdin) and write it"))
    .argument("<file>", "net-conf.json, or - for stdin")
    .action(async (file, flags) => {
      const text = await readInput(file);
      try {
        parseNetworkConfig(text);
      } catch (err) {
        throw new CliError((err as Error).message, 2);
      }
      await withManager(flags, (m) => m.registry.setConfig(text));
      console.log(`network config written to ${flags.etcdPrefix}/config`);
    });
  addEtcdFlags(config.command("get").description("print the network config")).action(async (flags) => {
    const text = await withManager(flags, (m) => m.registry.getConfig());
    if (text === undefined) throw new CliError(`no network config at ${flags.etcdPrefix}/config`, 3);
    console.log(text);
  });
}

/** Registers `weft leases`. */
export function registerLeases(program: Command): void {
  const leases = addEtcdFlags(
    program.command("leases").description("list subnet leases (and reserve or release them)"),
  )
    .option("--json", "print JSON")
    .enablePositionalOptions()
    .action(async (flags) => {
      const rows = await withManager(flags, async (m) => {
        const { leases } = await m.listLeases();
        const reg = m.registry as { leaseTTL?: (id: string) => Promise<number> };
        return await Promise.all(leases.map(async (l) => ({
          subnet: leaseName(l),
          publicIP: l.attrs.PublicIP,
          backend: l.attrs.BackendType,
          vtepMAC: (l.attrs.BackendData as { VtepMAC?: string } | null)?.VtepMAC ?? "",
          ttlSeconds: l.etcdLeaseId && reg.leaseTTL ? await reg.leaseTTL(l.etcdLeaseId) : null,
        })));
      });
      if (flags.json) {
        console.log(JSON.stringify(rows, null, 2));
        return;
      }
      const table = [["SUBNET", "PUBLIC IP", "BACKEND", "VTEP MAC", "EXPIRES IN"]];
      for (const r of rows) {
        table.push([
          r.subnet,
          r.publicIP,
          r.backend,
          r.vtepMAC,
          r.ttlSeconds === null ? "reserved" : `${(r.ttlSeconds / 3600).toFixed(1)} h`,
        ]);
      }
      const w = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
      for (const r of table) console.log(r.map((x, c) => x.padEnd(w[c]!)).join("  ").trimEnd());
    });
  addEtcdFlags(leases.command("reserve").description("reserve SUBNET (no TTL) for a node"))
    .argument("<subnet>", "e.g. 10.244.3.0/24")
    .requiredOption("--public-ip <ip>", "the node's public IP")
    .option("--backend <type>", "backend type", "vxlan")
    .action(async (subnet, flags) => {
      let net;
      try {
        net = parseNet(subnet);
        parseIP(flags.publicIp);
      } catch (err) {
        throw new CliError((err as Error).message, 2);
      }
      await withManager(
        flags,
        (m) =>
          m.reserve(net, {
            PublicIP: flags.publicIp,
            PublicIPv6: null,
            BackendType: flags.backend,
            BackendData: null,
          }),
      );
      console.log(`reserved ${subnet} for ${flags.publicIp}`);
    });
  addEtcdFlags(leases.command("release").description("delete the lease or reservation of SUBNET"))
    .argument("<subnet>", "e.g. 10.244.3.0/24")
    .action(async (subnet, flags) => {
      let net;
      try {
        net = parseNet(subnet);
      } catch (err) {
        throw new CliError((err as Error).message, 2);
      }
      const gone = await withManager(flags, (m) => m.release(net));
      if (!gone) throw new CliError(`no lease for ${subnet}`, 3);
      console.log(`released ${subnet}`);
    });
}
