/**
 * Services in front of a {@linkcode NetpolMatrix}'s pods, programmed in every node's namespace the way
 * kube-proxy programs them, so probes can reach a pod through its Service IP: one ClusterIP per pod
 * (`10.96.0.<10+i>`), ports 80 and 81, TCP and UDP, its only endpoint the pod.
 *
 * - `iptables`: kube-proxy's iptables mode — nat PREROUTING/OUTPUT → `KUBE-SERVICES` → `KUBE-SVC-…` →
 *   `KUBE-SEP-…` → DNAT, loaded with `iptables-restore` (in nat at priority dstnat, −100).
 * - `nftables`: kube-proxy's nftables mode — `table ip kube-proxy`, a `service-ips` verdict map keyed
 *   by address . protocol . port jumping to per-endpoint chains that DNAT, hooked at prerouting and
 *   output, priority dstnat.
 * - `ipvs`: this kernel has no ip_vs module (ipvsadm cannot program it), so the path IPVS gives a packet
 *   is emulated for UDP (tests/helpers/netpol_ipvs_main.ts): Service IPs are local addresses of every
 *   node, a process takes each datagram in locally and re-sends it to the endpoint keeping the client's
 *   source — LOCAL_IN, then LOCAL_OUT and POSTROUTING, never FORWARD.
 *
 * @module
 */
import { withNetns } from "../../ffi/mod.ts";
import { runIn } from "../../src/lab/lab.ts";
import type { NetpolMatrix } from "./netpol_matrix.ts";

/** How kube-proxy is emulated. */
export type ProxyMode = "iptables" | "nftables" | "ipvs";

const MAIN = new URL("./netpol_ipvs_main.ts", import.meta.url).pathname;
const PORTS = [80, 81];

/** The Services of one mode, programmed on every node; `close()` removes them. */
export class Services implements AsyncDisposable {
  readonly #vips = new Map<string, string>();
  #forwarders: Deno.ChildProcess[] = [];

  private constructor(readonly m: NetpolMatrix, readonly mode: ProxyMode) {
    [...m.pods.keys()].forEach((k, i) => this.#vips.set(k, `10.96.0.${10 + i}`));
  }

  /** Programs the Services of every pod of `m` on every node, as `mode` does. */
  static async install(m: NetpolMatrix, mode: ProxyMode): Promise<Services> {
    const s = new Services(m, mode);
    for (const n of m.topo.nodes) await s.#program(n.netns);
    return s;
  }

  /** The Service IP in front of `pod`. */
  vip(pod: string): string {
    const v = this.#vips.get(pod);
    if (!v) throw new Error(`no Service for ${pod}`);
    return v;
  }

  #endpoints(): { vip: string; ip: string; port: number }[] {
    return [...this.#vips].flatMap(([pod, vip]) =>
      PORTS.map((port) => ({ vip, ip: this.m.pods.get(pod)!.ip, port }))
    );
  }

  async #program(netns: string): Promise<void> {
    if (this.mode === "iptables") await this.#iptables(netns);
    else if (this.mode === "nftables") await this.#nftables(netns);
    else await this.#ipvs(netns);
  }

  async #iptables(netns: string): Promise<void> {
    const lines = ["*nat", ":KUBE-SERVICES - [0:0]"];
    const rules: string[] = [
      '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
      '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    ];
    [...this.#vips].forEach(([pod, vip], i) => {
      const ip = this.m.pods.get(pod)!.ip;
      for (const proto of ["tcp", "udp"]) {
        const svc = `KUBE-SVC-${proto.toUpperCase()}${i}`, sep = `KUBE-SEP-${proto.toUpperCase()}${i}`;
        lines.push(`:${svc} - [0:0]`, `:${sep} - [0:0]`);
        rules.push(
          `-A KUBE-SERVICES -d ${vip}/32 -p ${proto} -m ${proto} -m multiport --dports 80,81 -j ${svc}`,
          `-A ${svc} -j ${sep}`,
          `-A ${sep} -p ${proto} -m ${proto} -j DNAT --to-destination ${ip}`,
        );
      }
    });
    const script = [...lines, ...rules, "COMMIT", ""].join("\n");
    await runRestore(netns, ["iptables-restore", "--noflush"], script);
  }

  async #nftables(netns: string): Promise<void> {
    const map: string[] = [], chains: string[] = [];
    for (const { vip, ip, port } of this.#endpoints()) {
      for (const proto of ["tcp", "udp"]) {
        const chain = `endpoint-${ip.replaceAll(".", "-")}-${proto}-${port}`;
        map.push(`${vip} . ${proto} . ${port} : goto ${chain}`);
        chains.push(`  chain ${chain} {\n    meta l4proto ${proto} dnat to ${ip}:${port}\n  }`);
      }
    }
    const script = [
      "table ip kube-proxy {",
      `  map service-ips {\n    type ipv4_addr . inet_proto . inet_service : verdict\n    elements = { ${
        map.join(", ")
      } }\n  }`,
      "  chain nat-prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    jump services\n  }",
      "  chain nat-output {\n    type nat hook output priority -100; policy accept;\n    jump services\n  }",
      "  chain services {\n    ip daddr . meta l4proto . th dport vmap @service-ips\n  }",
      ...chains,
      "}",
      "",
    ].join("\n");
    await runRestore(netns, ["nft", "-f", "-"], script);
  }

  async #ipvs(netns: string): Promise<void> {
    const r = await runIn(netns, [
      "sh",
      "-c",
      [
        ...[...this.#vips.values()].map((v) => `ip addr add ${v}/32 dev lo`),
        "sysctl -qw net.ipv4.ip_nonlocal_bind=1",
      ].join(" && "),
    ]);
    if (r.code !== 0) throw new Error(`ipvs emulation in ${netns}: ${r.stderr}`);
    const child = withNetns(netns, () =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--no-check", "--unstable-net", MAIN, JSON.stringify(this.#endpoints())],
        stdout: "piped",
        stderr: "inherit",
      }).spawn());
    this.#forwarders.push(child);
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const first = await reader.read();
    reader.releaseLock();
    if (!first.value?.includes("ready")) throw new Error(`ipvs emulation in ${netns} did not start`);
  }

  /** Removes what {@linkcode install} programmed. */
  async close(): Promise<void> {
    for (const c of this.#forwarders.splice(0)) {
      try {
        c.kill("SIGKILL");
      } catch { /* gone */ }
      await c.status;
      await c.stdout.cancel().catch(() => {});
    }
    for (const n of this.m.topo.nodes) {
      if (this.mode === "iptables") await runIn(n.netns, ["iptables", "-t", "nat", "-F"]);
      if (this.mode === "iptables") await runIn(n.netns, ["iptables", "-t", "nat", "-X"]);
      if (this.mode === "nftables") await runIn(n.netns, ["nft", "delete", "table", "ip", "kube-proxy"]);
      if (this.mode === "ipvs") {
        for (const v of this.#vips.values()) {
          await runIn(n.netns, ["ip", "addr", "del", `${v}/32`, "dev", "lo"]);
        }
      }
    }
  }

  /** Same as close(). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

async function runRestore(netns: string, cmd: string[], input: string): Promise<void> {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", netns, ...cmd],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(input));
  await w.close();
  const out = await child.output();
  if (out.code !== 0) {
    throw new Error(`${cmd.join(" ")} in ${netns}: ${new TextDecoder().decode(out.stderr)}`);
  }
}
