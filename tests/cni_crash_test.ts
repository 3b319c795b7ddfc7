/**
 * Failure in the middle of ADD: a step that fails undoes the earlier ones, and a plugin killed at any
 * moment leaves nothing that GC (with the runtime's list of valid attachments) does not free.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { cni, cniLab, spawnCni } from "./helpers/cni.ts";
import { ROOT } from "./helpers/topology.ts";

function ports(node: string, bridge = "cni0"): string[] {
  using nl = Netlink.open({ netns: node });
  const br = nl.linkGet(bridge);
  if (!br) return [];
  return nl.linkList().filter((l) => l.master === br.index).map((l) => l.name).sort();
}

Deno.test({
  name: "an ADD that fails after allocating undoes everything: no IP, no veth, no saved config",
  ignore: !ROOT,
  async fn(t) {
    await using lab = await cniLab({ net: "10.244.22", agentMasq: false });
    await t.step("the pod already has the interface name (fails at the veth)", async () => {
      const pod = lab.pod();
      {
        using nl = Netlink.open({ netns: pod });
        nl.linkAddBridge({ name: "eth0" });
      }
      const r = await cni(
        lab.node,
        { command: "ADD", containerId: "clash", netns: pod, ifname: "eth0" },
        lab.conf("1.0.0"),
      );
      assert.equal(r.out?.code, 101, r.stdout);
      assert.match(String(r.out?.msg), /eth0 already exists/);
      assert.deepEqual(lab.allocated(), []);
      assert.deepEqual(ports(lab.node), []);
    });
    await t.step("the saved config cannot be written (fails at the very last step)", async () => {
      Deno.writeTextFileSync(`${lab.dir}/not-a-dir`, "");
      const pod = lab.pod();
      const r = await cni(
        lab.node,
        { command: "ADD", containerId: "late", netns: pod, ifname: "eth0" },
        lab.conf("1.0.0", { dataDir: `${lab.dir}/not-a-dir/flannel` }),
      );
      assert.equal(r.out?.code, 5, `an I/O error is the spec's code 5: ${r.stdout}`);
      assert.match(String(r.out?.msg), /saved config: .*not-a-dir/);
      assert.deepEqual(lab.allocated(), [], "IP released");
      assert.deepEqual(ports(lab.node), [], "host veth removed");
      using nl = Netlink.open({ netns: pod });
      assert.equal(nl.linkGet("eth0"), undefined, "container end removed with it");
      const set = await new Deno.Command("ip", {
        args: ["netns", "exec", lab.node, "nft", "list", "set", "ip", "weft-cni", "pods"],
      }).output();
      assert.doesNotMatch(new TextDecoder().decode(set.stdout), /10\.244\.22\./, "masquerade entry removed");
    });
  },
});

Deno.test({
  name: "a plugin killed mid-ADD leaves nothing that GC does not free",
  ignore: !ROOT,
  async fn() {
    await using lab = await cniLab({ net: "10.244.23", agentMasq: false });
    const keepPod = lab.pod();
    const kept = await cni(lab.node, {
      command: "ADD",
      containerId: "keeper",
      netns: keepPod,
      ifname: "eth0",
    }, lab.conf("1.1.0"));
    assert.equal(kept.code, 0, kept.stdout);
    const keeperIP = (kept.out!.ips as { address: string }[])[0]!.address.split("/")[0]!;
    const keeperPort = (kept.out!.interfaces as { name: string }[])[1]!.name;
    // A full ADD takes `full` ms; kill ADDs at spread-out moments of that span, most of them mid-way.
    const full = kept.ms;
    const victims: string[] = [];
    let killedAlive = 0;
    for (let i = 0; i < 10; i++) {
      const pod = lab.pod();
      victims.push(pod);
      const child = spawnCni(lab.node, {
        command: "ADD",
        containerId: `victim${i}`,
        netns: pod,
        ifname: "eth0",
      }, lab.conf("1.1.0"));
      await new Promise((r) => setTimeout(r, full * (0.3 + 0.08 * i)));
      try {
        child.kill("SIGKILL");
        killedAlive++;
      } catch { /* it had finished */ }
      await child.output();
    }
    const before = { ips: lab.allocated().length, ports: ports(lab.node).length };
    const gc = await cni(
      lab.node,
      { command: "GC" },
      lab.conf("1.1.0", { "cni.dev/valid-attachments": [{ containerID: "keeper", ifname: "eth0" }] }),
    );
    assert.equal(gc.code, 0, gc.stdout + gc.stderr);
    assert.deepEqual(lab.allocated(), [keeperIP], "only the valid attachment keeps its IP");
    assert.deepEqual(ports(lab.node), [keeperPort], "only the valid attachment keeps its veth");
    assert.deepEqual([...Deno.readDirSync(`${lab.dir}/flannel`)].map((e) => e.name), ["keeper"]);
    for (const pod of victims) {
      using nl = Netlink.open({ netns: pod });
      assert.equal(nl.linkGet("eth0"), undefined, `${pod} has no interface left`);
    }
    const set = await new Deno.Command("ip", {
      args: ["netns", "exec", lab.node, "nft", "list", "set", "ip", "weft-cni", "pods"],
    }).output();
    const elems = /elements = \{([^}]*)\}/.exec(new TextDecoder().decode(set.stdout))?.[1]?.trim();
    assert.equal(elems, keeperIP, "only the keeper is masqueraded");
    // The keeper still works.
    const check = await cni(lab.node, {
      command: "CHECK",
      containerId: "keeper",
      netns: keepPod,
      ifname: "eth0",
    }, lab.conf("1.1.0"));
    assert.equal(check.code, 0, check.stdout);
    console.log(
      `  ADD takes ~${
        full.toFixed(0)
      } ms; ${killedAlive}/10 killed while running; before GC ${before.ips} IPs and ` +
        `${before.ports} ports, after GC 1 and 1`,
    );
  },
});
