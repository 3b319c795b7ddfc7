/**
 * The checks behind `weft doctor`: each looks at one thing a support engineer would look at on a node,
 * and returns a finding with a fix. Checks read the namespace the process runs in (run the doctor with
 * `ip netns exec NODE weft doctor` to check a namespace "node").
 *
 * @module
 */
import { libnlAvailable, Netlink, txChecksumOffload } from "../../../ffi/mod.ts";
import type { LinkInfo } from "../../../ffi/mod.ts";
import { readSubnetEnv, type SubnetEnv } from "../../config/subnet_env.ts";
import { formatNet } from "../../net/ip.ts";
import { checkUdpBackend, checkWireguard } from "./backends.ts";
import { checkHostFirewall, checkIptables } from "./host_firewall.ts";
import { checkEtcd, type EtcdCheckOptions } from "./etcd.ts";
import { type Finding, readSysctl, udpPortBound } from "./finding.ts";

export type { Finding, Status } from "./finding.ts";

/** What the doctor needs to know about the node. */
export interface DoctorOptions {
  /** subnet.env path. */
  subnetFile: string;
  /** etcd, through the agent's client; absent: etcd is not checked (kube mode). */
  etcd?: EtcdCheckOptions;
  /** VXLAN VNI (device `flannel.<VNI>`). */
  vni: number;
  /** VXLAN UDP port. */
  port: number;
}

/** libnl-3 and libnl-route-3 can be loaded. */
export function checkLibnl(): Finding {
  return libnlAvailable() ? { id: "libnl", status: "ok", message: "libnl-3 and libnl-route-3 load" } : {
    id: "libnl",
    status: "fail",
    message: "libnl-3.so.200 / libnl-route-3.so.200 cannot be loaded",
    fix: "apt-get install libnl-3-200 libnl-route-3-200",
  };
}

/** IPv4 forwarding is on (pods' traffic is routed through the node). */
export function checkIpForward(): Finding {
  const v = readSysctl("/proc/sys/net/ipv4/ip_forward");
  if (v === "1") return { id: "ip_forward", status: "ok", message: "net.ipv4.ip_forward = 1" };
  return {
    id: "ip_forward",
    status: "fail",
    message: `net.ipv4.ip_forward = ${v ?? "unreadable"}: the node drops traffic to and from its pods`,
    fix: "sysctl -w net.ipv4.ip_forward=1 (and persist it in /etc/sysctl.d/)",
  };
}

/**
 * IPv6 forwarding is on when subnet.env says the node is dual-stack (or IPv6-only); skipped otherwise,
 * since an IPv4-only node does not need it.
 */
export function checkIpv6Forward(env: SubnetEnv | undefined): Finding {
  if (!env?.ipv6Subnet) {
    return { id: "ipv6_forward", status: "skip", message: "no IPv6 subnet in subnet.env" };
  }
  const v = readSysctl("/proc/sys/net/ipv6/conf/all/forwarding");
  if (v === "1") return { id: "ipv6_forward", status: "ok", message: "net.ipv6.conf.all.forwarding = 1" };
  return {
    id: "ipv6_forward",
    status: "fail",
    message: `net.ipv6.conf.all.forwarding = ${v ?? "unreadable"}: the node drops its pods' IPv6 traffic`,
    fix: "sysctl -w net.ipv6.conf.all.forwarding=1 (and persist it in /etc/sysctl.d/)",
  };
}

/** Strict reverse-path filtering on the overlay device drops asymmetric traffic. */
export function checkRpFilter(vxlanName: string): Finding {
  const all = Number(readSysctl("/proc/sys/net/ipv4/conf/all/rp_filter") ?? "0");
  const dev = Number(readSysctl(`/proc/sys/net/ipv4/conf/${vxlanName}/rp_filter`) ?? "0");
  // The kernel uses the larger of "all" and the device's value.
  const effective = Math.max(all, dev);
  if (effective !== 1) {
    return { id: "rp_filter", status: "ok", message: `rp_filter effective value ${effective} (not strict)` };
  }
  return {
    id: "rp_filter",
    status: "warn",
    message: "strict rp_filter (1) is in effect: replies that come back another way are dropped",
    fix: `sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.${vxlanName}.rp_filter=2 (loose mode)`,
  };
}

/** Kubernetes Services need bridged pod traffic to pass through iptables. */
export function checkBridgeNetfilter(): Finding {
  const v = readSysctl("/proc/sys/net/bridge/bridge-nf-call-iptables");
  if (v === undefined) {
    return {
      id: "br_netfilter",
      status: "warn",
      message: "br_netfilter is not loaded: kube-proxy rules do not see pod-to-pod traffic on cni0",
      fix: "modprobe br_netfilter && echo br_netfilter > /etc/modules-load.d/br_netfilter.conf",
    };
  }
  if (v === "1") return { id: "br_netfilter", status: "ok", message: "bridge-nf-call-iptables = 1" };
  return {
    id: "br_netfilter",
    status: "warn",
    message: "bridge-nf-call-iptables = 0: Service traffic between pods on one node bypasses kube-proxy",
    fix: "sysctl -w net.bridge.bridge-nf-call-iptables=1",
  };
}

/** The VXLAN UDP port is free for weft's device (or already used by it). */
export function checkVxlanPort(vxlan: LinkInfo | undefined, port: number): Finding {
  if (vxlan) {
    return {
      id: "vxlan_port",
      status: "ok",
      message: `${vxlan.name} exists and owns UDP ${vxlan.vxlan?.port ?? port}`,
    };
  }
  if (!udpPortBound(port)) return { id: "vxlan_port", status: "ok", message: `UDP ${port} is free` };
  return {
    id: "vxlan_port",
    status: "fail",
    message:
      `UDP ${port} is already bound by another socket or VXLAN device: weft's device cannot be created`,
    fix: `find the owner (ss -ulpn 'sport = :${port}') or set Backend.Port in the network config`,
  };
}

/** MTUs agree: overlay device = underlay − 50, cni0 and pod veths = FLANNEL_MTU. */
export function checkMtu(nl: Netlink, env: SubnetEnv | undefined, vxlan: LinkInfo | undefined): Finding {
  const problems: string[] = [];
  const links = nl.linkList();
  const byIndex = new Map(links.map((l) => [l.index, l]));
  if (vxlan?.vxlan?.link) {
    const under = byIndex.get(vxlan.vxlan.link);
    if (under && vxlan.mtu > under.mtu - 50) {
      problems.push(
        `${vxlan.name} MTU ${vxlan.mtu} > ${under.name} MTU ${under.mtu} − 50 = ${under.mtu - 50}`,
      );
    }
  }
  if (env?.mtu !== undefined) {
    if (vxlan && env.mtu > vxlan.mtu) {
      problems.push(`FLANNEL_MTU ${env.mtu} > ${vxlan.name} MTU ${vxlan.mtu}`);
    }
    const cni0 = links.find((l) => l.name === "cni0");
    if (cni0) {
      if (cni0.mtu !== env.mtu) problems.push(`cni0 MTU ${cni0.mtu} ≠ FLANNEL_MTU ${env.mtu}`);
      const ports = links.filter((l) => l.master === cni0.index && l.mtu !== env.mtu);
      for (const p of ports.slice(0, 5)) {
        problems.push(`pod port ${p.name} MTU ${p.mtu} ≠ FLANNEL_MTU ${env.mtu}`);
      }
    }
  }
  if (!problems.length) {
    return {
      id: "mtu",
      status: vxlan || env ? "ok" : "skip",
      message: vxlan || env ? "MTUs are consistent" : "no overlay device and no subnet.env to compare",
    };
  }
  return {
    id: "mtu",
    status: "fail",
    message: `MTU mismatch: ${problems.join("; ")} (large packets are dropped or fragmented)`,
    fix:
      "restart the agent so it rewrites subnet.env and the device MTU; recreate pods created with the old MTU",
  };
}

/** TX checksum offload on the VXLAN device (some kernels send bad checksums for VXLAN-encapsulated UDP). */
export function checkTxChecksum(vxlan: LinkInfo | undefined): Finding {
  if (!vxlan) return { id: "tx_checksum", status: "skip", message: "no VXLAN device" };
  const on = txChecksumOffload(vxlan.name);
  if (on === undefined) {
    return { id: "tx_checksum", status: "skip", message: `${vxlan.name}: driver did not answer` };
  }
  if (!on) return { id: "tx_checksum", status: "ok", message: `${vxlan.name}: tx checksum offload off` };
  return {
    id: "tx_checksum",
    status: "warn",
    message:
      `${vxlan.name}: tx checksum offload is on; with the known kernel bug, Service (NodePort/ClusterIP) ` +
      "traffic over VXLAN gets bad checksums and stalls",
    fix: `weft agent switches it off itself unless the network config's Backend has "TxChecksumOffload": ` +
      `true (then: ethtool -K ${vxlan.name} tx-checksum-ip-generic off)`,
  };
}

/** subnet.env exists and is complete. */
export function checkSubnetEnv(path: string): { finding: Finding; env?: SubnetEnv } {
  try {
    const env = readSubnetEnv(path);
    const subnet = env.subnet ? formatNet(env.subnet) : env.ipv6Subnet ? formatNet(env.ipv6Subnet) : "?";
    return {
      finding: { id: "subnet_env", status: "ok", message: `${path}: subnet ${subnet}, MTU ${env.mtu}` },
      env,
    };
  } catch (err) {
    return {
      finding: {
        id: "subnet_env",
        status: "fail",
        message: `${(err as Error).message}; pods cannot start ("loadFlannelSubnetEnv failed")`,
        fix: "start the agent (weft agent …) and check its log for lease errors",
      },
    };
  }
}

/** The devices peers' traffic comes through here: weft's overlay devices, else the default route's. */
function overlayDevices(nl: Netlink, vxlanName: string): string[] {
  const names = [
    vxlanName,
    vxlanName.replace("flannel.", "flannel-v6."),
    "flannel0",
    "flannel-wg",
    "flannel-wg-v6",
  ];
  const found = names.filter((n) => nl.linkGet(n));
  if (found.length) return found;
  const dflt = nl.routeList({ family: 4 }).find((r) => r.dst === "0.0.0.0/0");
  const dev = dflt?.index ? nl.linkGet(dflt.index)?.name : undefined;
  return [dev ?? "eth0"];
}

/** Runs every check and returns the findings in a fixed order. */
export async function runDoctor(opts: DoctorOptions): Promise<Finding[]> {
  const findings: Finding[] = [checkLibnl()];
  const vxlanName = `flannel.${opts.vni}`;
  findings.push(checkIpForward(), checkRpFilter(vxlanName), checkBridgeNetfilter());
  const { finding: envFinding, env } = checkSubnetEnv(opts.subnetFile);
  findings.push(checkIpv6Forward(env));
  if (findings[0]!.status === "ok") {
    using nl = Netlink.open();
    const vxlan = nl.linkGet(vxlanName);
    findings.push(checkVxlanPort(vxlan, opts.port), checkMtu(nl, env, vxlan), checkTxChecksum(vxlan));
    findings.push(checkWireguard(nl), checkUdpBackend(nl));
    findings.push(...checkHostFirewall(env, overlayDevices(nl, vxlanName)), await checkIptables(env));
  }
  findings.push(
    envFinding,
    ...(opts.etcd
      ? await checkEtcd(opts.etcd, env)
      : [{ id: "etcd", status: "skip", message: "kube mode: leases are in the Kubernetes API" } as Finding]),
  );
  return findings;
}
