/**
 * `weft doctor`'s checks of the host's firewall: whether anything on the forward hook drops pod traffic
 * where no accept can help (another nftables table, e.g. firewalld's), and where the masquerade/forward
 * rules are (iptables-nft, iptables-legacy: FLANNEL-FWD's jump first in FORWARD) — the same judgement the
 * agent makes every `--iptables-resync`.
 *
 * @module
 */
import type { SubnetEnv } from "../../config/subnet_env.ts";
import { podProbes, scanForwardBlockers } from "../../datapath/firewall.ts";
import { blockerFix, blockerMessage } from "../../datapath/host_rules.ts";
import {
  detectIptablesMode,
  Iptables,
  type IptablesFamily,
  type IptablesMode,
  legacyInUse,
} from "../../datapath/iptables.ts";
import { forwardMayDrop, FWD_CHAIN, isDropRule } from "../../datapath/iptables_rules.ts";
import type { MasqNets } from "../../datapath/masq.ts";
import type { Finding } from "./finding.ts";

/** The networks of subnet.env, as the rules see them. */
function netsOf(env: SubnetEnv): MasqNets[] {
  return [
    ...(env.network && env.subnet ? [{ network: env.network, podSubnet: env.subnet }] : []),
    ...(env.ipv6Network && env.ipv6Subnet ? [{ network: env.ipv6Network, podSubnet: env.ipv6Subnet }] : []),
  ];
}

/**
 * Every nftables base chain on the forward hook, walked for pod traffic between `cni0` and `overlays`:
 * a chain that drops it fails, one that may drop it (depending on matches weft cannot judge) warns.
 */
export function checkHostFirewall(env: SubnetEnv | undefined, overlays: string[]): Finding[] {
  if (!env) return [{ id: "host_firewall", status: "skip", message: "no subnet.env: no network to check" }];
  const nets = netsOf(env);
  let found;
  try {
    found = scanForwardBlockers(nets.flatMap((n) => podProbes(n.network, n.podSubnet, overlays)));
  } catch (err) {
    return [{
      id: "host_firewall",
      status: "skip",
      message: `cannot read nftables: ${(err as Error).message}`,
    }];
  }
  if (!found.length) {
    return [{
      id: "host_firewall",
      status: "ok",
      message: `no nftables chain on the forward hook drops pod traffic (${overlays.join(", ")} ↔ cni0)`,
    }];
  }
  return found.map((b) => ({
    id: "host_firewall",
    status: b.verdict === "drops" ? "fail" : "warn",
    message: blockerMessage(b),
    fix: blockerFix(b, nets),
  }));
}

/** One backend's FORWARD chain: does it drop pod traffic ahead of FLANNEL-FWD's jump? */
async function forwardState(mode: IptablesMode, fam: IptablesFamily): Promise<string | undefined> {
  const tables = await new Iptables(mode, fam).save("filter");
  const fwd = tables.get("filter")?.get("FORWARD");
  if (!fwd) return undefined;
  const at = fwd.rules.findIndex((r) => r.endsWith(`-j ${FWD_CHAIN}`));
  const drop = fwd.rules.findIndex(isDropRule);
  const name = `${fam === 6 ? "ip6tables" : "iptables"}-${mode}`;
  if (at >= 0 && (drop < 0 || at < drop)) return `${name}: FLANNEL-FWD first (FORWARD policy ${fwd.policy})`;
  if (!forwardMayDrop(tables)) return `${name}: FORWARD policy ${fwd.policy}, no DROP/REJECT`;
  throw new Error(
    `${name}: FORWARD ${fwd.policy === "DROP" ? "policy DROP" : "has a DROP/REJECT rule"} ` +
      `${
        at < 0 ? "and no FLANNEL-FWD jump" : "ahead of FLANNEL-FWD's jump"
      }: forwarded pod traffic is dropped`,
  );
}

/** Which iptables backend the host uses and whether its FORWARD chain lets pod traffic through. */
export async function checkIptables(env: SubnetEnv | undefined): Promise<Finding> {
  const fams = [env?.subnet ? 4 : 0, env?.ipv6Subnet ? 6 : 0].filter((f): f is IptablesFamily => !!f);
  let detected;
  try {
    detected = await detectIptablesMode();
  } catch (err) {
    return { id: "iptables", status: "skip", message: `iptables not readable: ${(err as Error).message}` };
  }
  const seen: string[] = [];
  try {
    for (const mode of ["nft", "legacy"] as const) {
      for (const fam of fams.length ? fams : [4 as const]) {
        if (mode === "legacy" && !legacyInUse(fam)) continue;
        let s;
        try {
          s = await forwardState(mode, fam);
        } catch (err) {
          if ((err as Error).name === "IptablesError") continue; // that backend is not installed
          throw err;
        }
        if (s) seen.push(s);
      }
    }
  } catch (err) {
    return {
      id: "iptables",
      status: "fail",
      message: (err as Error).message,
      fix: "start the agent (it inserts FLANNEL-FWD's jump first in FORWARD every --iptables-resync), " +
        "or check it runs with --iptables-forward-rules (the default)",
    };
  }
  return {
    id: "iptables",
    status: "ok",
    message: `the host uses iptables-${detected.mode} (${detected.reason})${
      seen.length ? `; ${seen.join("; ")}` : ""
    }`,
  };
}
