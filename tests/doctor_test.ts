/**
 * `weft doctor` finds ip_forward off, an MTU mismatch and a missing subnet.env, each broken on purpose in
 * a throw-away namespace, and reports them fixed once they are.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { uniqueNetnsName } from "./helpers/names.ts";

import { ROOT } from "./helpers/skip.ts";
const MAIN = new URL("../main.ts", import.meta.url).pathname;

interface Finding {
  id: string;
  status: string;
  message: string;
  fix?: string;
}

async function ip(...args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command("ip", { args, stderr: "piped" }).output();
  if (code !== 0) throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(stderr)}`);
}

async function doctor(
  ns: string,
  subnetFile: string,
): Promise<{ code: number; findings: Map<string, Finding> }> {
  const out = await new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns,
      Deno.execPath(),
      "run",
      "-A",
      MAIN,
      "doctor",
      "--json",
      "--subnet-file",
      subnetFile,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const { findings } = JSON.parse(text) as { findings: Finding[] };
  return { code: out.code, findings: new Map(findings.map((f) => [f.id, f])) };
}

Deno.test({
  name: "weft doctor finds ip_forward off, an MTU mismatch and a missing subnet.env, then sees them fixed",
  ignore: !ROOT,
  async fn() {
    const ns = uniqueNetnsName("doc");
    const dir = await Deno.makeTempDir({ prefix: "weft-doctor-" });
    await ip("netns", "add", ns);
    try {
      {
        using nl = Netlink.open({ netns: ns });
        const under = nl.linkAddBridge({ name: "eth0", mtu: 1500 });
        nl.linkSetUp(under.index);
        nl.addrReplace(under.index, "192.168.90.2/24");
        nl.linkAddVxlan({ name: "flannel.1", vni: 1, local: "192.168.90.2", dev: under.index, mtu: 1450 });
        // Broken on purpose: the underlay's MTU drops after the overlay device was sized for 1500.
        nl.linkSetMtu(under.index, 1400);
      }
      const subnetFile = `${dir}/subnet.env`;

      const broken = await doctor(ns, subnetFile);
      assert.equal(broken.code, 1, "doctor exits 1 when a check fails");
      assert.equal(broken.findings.get("ip_forward")?.status, "fail");
      assert.match(broken.findings.get("ip_forward")!.fix!, /ip_forward=1/);
      assert.equal(broken.findings.get("mtu")?.status, "fail");
      assert.match(broken.findings.get("mtu")!.message, /flannel\.1 MTU 1450 > eth0 MTU 1400 − 50 = 1350/);
      assert.equal(broken.findings.get("subnet_env")?.status, "fail");
      assert.match(broken.findings.get("subnet_env")!.message, /does not exist/);

      // Fix all three.
      await ip("netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1");
      {
        using nl = Netlink.open({ netns: ns });
        nl.linkSetMtu("flannel.1", 1350);
      }
      await Deno.writeTextFile(
        subnetFile,
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1350\nFLANNEL_IPMASQ=true\n",
      );
      const fixed = await doctor(ns, subnetFile);
      assert.equal(fixed.findings.get("ip_forward")?.status, "ok");
      assert.equal(fixed.findings.get("mtu")?.status, "ok");
      assert.equal(fixed.findings.get("subnet_env")?.status, "ok");
      assert.equal(fixed.findings.get("vxlan_port")?.status, "ok");
      assert.equal(fixed.code, 0, `no failures left: ${JSON.stringify([...fixed.findings.values()])}`);
      assert.equal(
        fixed.findings.get("ipv6_forward")?.status,
        "skip",
        "an IPv4-only node needs no IPv6 forwarding",
      );

      // The node turns dual-stack: IPv6 forwarding (off in a new namespace) becomes a failure, then is fixed.
      await Deno.writeTextFile(
        subnetFile,
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\n" +
          "FLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\nFLANNEL_MTU=1350\nFLANNEL_IPMASQ=true\n",
      );
      const dual = await doctor(ns, subnetFile);
      assert.equal(dual.findings.get("ipv6_forward")?.status, "fail");
      assert.match(dual.findings.get("ipv6_forward")!.fix!, /net\.ipv6\.conf\.all\.forwarding=1/);
      await ip("netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1");
      assert.equal((await doctor(ns, subnetFile)).findings.get("ipv6_forward")?.status, "ok");
    } finally {
      await ip("netns", "del", ns).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});
