/**
 * 50 pods at once on one node, as kubelet does after a node restart: every ADD in its own process, all
 * racing for the IPAM store and the bridge.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { cni, cniLab } from "./helpers/cni.ts";
import { ROOT } from "./helpers/topology.ts";

const N = 50;

Deno.test({
  name:
    "50 parallel ADDs on one node get 50 distinct IPs without error, then 50 parallel DELs empty the store",
  ignore: !ROOT,
  async fn() {
    await using lab = await cniLab({ net: "10.244.21" });
    const pods = Array.from({ length: N }, () => lab.pod());
    const env = (i: number) => ({ containerId: `par${i}`, netns: pods[i]!, ifname: "eth0" });
    const t0 = performance.now();
    const adds = await Promise.all(
      pods.map((_, i) => cni(lab.node, { command: "ADD", ...env(i) }, lab.conf("1.0.0"))),
    );
    const addMs = performance.now() - t0;
    for (const a of adds) assert.equal(a.code, 0, a.stdout + a.stderr);
    const ips = adds.map((a) => (a.out!.ips as { address: string }[])[0]!.address);
    assert.equal(new Set(ips).size, N, "distinct IPs");
    assert.deepEqual(
      lab.allocated(),
      ips.map((a) => a.split("/")[0]!).sort(),
      "the store holds exactly those",
    );
    {
      using nl = Netlink.open({ netns: lab.node });
      const br = nl.linkGet("cni0")!;
      assert.equal(nl.linkList().filter((l) => l.master === br.index).length, N, "50 ports on cni0");
    }
    const t1 = performance.now();
    const dels = await Promise.all(
      pods.map((_, i) => cni(lab.node, { command: "DEL", ...env(i) }, lab.conf("1.0.0"))),
    );
    const delMs = performance.now() - t1;
    for (const d of dels) assert.equal(d.code, 0, d.stdout + d.stderr);
    assert.deepEqual(lab.allocated(), [], "store empty");
    using nl = Netlink.open({ netns: lab.node });
    const br = nl.linkGet("cni0")!;
    assert.equal(nl.linkList().filter((l) => l.master === br.index).length, 0, "no ports left on cni0");
    assert.deepEqual([...Deno.readDirSync(`${lab.dir}/flannel`)], [], "no saved configs left");
    console.log(
      `  ${N} parallel ADDs: ${addMs.toFixed(0)} ms; ${N} parallel DELs: ${delMs.toFixed(0)} ms (2 cores)`,
    );
  },
});
