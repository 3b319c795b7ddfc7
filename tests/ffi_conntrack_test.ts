/** ctnetlink through FFI (ffi/conntrack.ts): a pod address's tracked connections are deleted, others kept. */
import assert from "node:assert/strict";
import { conntrackFlushAddress, conntrackFlushAddresses, withNetns } from "../ffi/mod.ts";
import { runIn } from "../src/lab/lab.ts";
import { withScratchNetns } from "./helpers/scratch_netns.ts";
import { requireRoot } from "./helpers/topology.ts";

async function sh(ns: string, script: string): Promise<string> {
  const r = await runIn(ns, ["bash", "-c", script]);
  if (r.code !== 0) throw new Error(`${script}: ${r.stderr}`);
  return r.stdout;
}

const entries = async (ns: string) =>
  (await sh(ns, "cat /proc/net/nf_conntrack")).split("\n").filter(Boolean).map((l) => l.replace(/\s+/g, " "));

Deno.test({
  name:
    "conntrackFlushAddress() deletes the connections of one address, as source, destination or DNAT target",
  ignore: requireRoot(),
  async fn() {
    await withScratchNetns("ct", async (ns) => {
      await sh(
        ns,
        "ip link set lo up && ip link add v0 type veth peer name v1 && ip link set v0 up && ip link set v1 up && " +
          "ip addr add 10.9.0.1/16 dev v0 && ip route add 10.96.0.0/24 dev v0 && " +
          `printf 'table inet t {\\n chain o {\\n type filter hook output priority 0;\\n ct state new counter\\n }\\n}\\n` +
          `table ip n {\\n chain o {\\n type nat hook output priority -100;\\n ip daddr 10.96.0.1 dnat to 10.9.0.2\\n }\\n}\\n' | nft -f -`,
      );
      // To .2 directly (twice), to .2 through a "Service" (DNAT), from .1 to .3 and .4 (kept).
      await sh(
        ns,
        "for p in 1 2; do echo x > /dev/udp/10.9.0.2/500$p; done; echo y > /dev/udp/10.96.0.1/6000; " +
          "echo z > /dev/udp/10.9.0.3/7000; echo z > /dev/udp/10.9.0.4/7000",
      );
      assert.equal((await entries(ns)).length, 5, (await entries(ns)).join("\n"));
      assert.equal(await conntrackFlushAddress("10.9.0.2", (f) => withNetns(ns, f)), 3);
      const left = await entries(ns);
      assert.equal(left.length, 2);
      assert.ok(left.every((l) => !l.includes("10.9.0.2") && !l.includes("10.96.0.1")), left.join("\n"));
      assert.equal(await conntrackFlushAddress("10.9.0.2", (f) => withNetns(ns, f)), 0, "nothing left: fine");
      // Several at once: one walk of the table.
      await sh(ns, "for a in 5 6 7; do echo q > /dev/udp/10.9.0.$a/9000; done");
      assert.equal(
        await conntrackFlushAddresses(
          ["10.9.0.3", "10.9.0.5", "10.9.0.6", "10.9.0.99"],
          (f) => withNetns(ns, f),
        ),
        3,
      );
      assert.deepEqual((await entries(ns)).map((l) => l.match(/dst=(\S+)/)![1]).sort(), [
        "10.9.0.4",
        "10.9.0.7",
      ]);
    });
  },
});
