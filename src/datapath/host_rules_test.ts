import assert from "node:assert/strict";
import { withNetns } from "../../ffi/mod.ts";
import { withScratchNetns } from "../../tests/helpers/scratch_netns.ts";
import { findBinary } from "./iptables.ts";

const ROOT = Deno.uid() === 0;
const READY = ROOT && !!findBinary("iptables-nft-restore") && !!findBinary("nft");
const HOST_RULES = new URL("./host_rules.ts", import.meta.url).href;
const IP = new URL("../net/ip.ts", import.meta.url).href;

/** One HostRules pass inside `ns` (a process of its own: a pass spawns iptables and awaits it). */
async function pass(ns: string, opts: Record<string, boolean>, subnet = "10.244.3.0/24"): Promise<string> {
  const code = `
    import { HostRules } from "${HOST_RULES}";
    import { parseNet } from "${IP}";
    const r = new HostRules(${JSON.stringify(opts)}, () => ["flannel.1"]);
    r.want([{ network: parseNet("10.244.0.0/16"), podSubnet: parseNet("${subnet}") }]);
    await r.pass();
    console.log(JSON.stringify(r.state));`;
  const out = await withNetns(
    ns,
    () =>
      new Deno.Command(Deno.execPath(), { args: ["eval", code], stdout: "piped", stderr: "piped" }).spawn(),
  ).output();
  const dec = new TextDecoder();
  assert.ok(out.success, dec.decode(out.stderr));
  return dec.decode(out.stdout);
}

async function run(ns: string, cmd: string[], stdin?: string): Promise<string> {
  const child = withNetns(ns, () =>
    new Deno.Command(cmd[0]!, {
      args: cmd.slice(1),
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn());
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  if (!out.success) throw new Error(`${cmd.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

const STALE_FLANNELD = `*nat
:FLANNEL-POSTRTG - [0:0]
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -s 10.244.9.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN
COMMIT
`;

Deno.test({
  name:
    "HostRules in iptables mode: flanneld's chain of another lease rewritten, weft's and flanneld's nftables tables removed",
  ignore: !READY,
  async fn() {
    await withScratchNetns("hr", async (ns) => {
      await run(ns, ["iptables-nft-restore", "--noflush"], STALE_FLANNELD);
      await run(ns, ["nft", "-f", "-"], "table ip weft {}\ntable ip flannel-ipv4 {}\n");
      const st = JSON.parse(
        await pass(ns, { nftables: false, ipMasq: true, fullyRandom: false, forwardRules: false }),
      );
      assert.equal(st.mode, "iptables-nft");
      assert.equal(st.ok, true, st.error);
      const nat = await run(ns, ["iptables-nft-save", "-t", "nat"]);
      assert.match(nat, /-A FLANNEL-POSTRTG -s 10\.244\.3\.0\/24 -d 10\.244\.0\.0\/16 .* -j RETURN/);
      assert.doesNotMatch(nat, /10\.244\.9\.0/);
      assert.match(nat, /-j MASQUERADE\n/, "--ip-masq-fully-random-disable");
      const filter = await run(ns, ["iptables-nft-save", "-t", "filter"]);
      assert.doesNotMatch(filter, /FLANNEL-FWD/, "--iptables-forward-rules=false");
      const tables = await run(ns, ["nft", "list", "tables"]);
      assert.doesNotMatch(tables, /table ip (weft|flannel-ipv4)\b/);
    });
  },
});

Deno.test({
  name:
    "HostRules in nftables mode: weft's table, flanneld's FLANNEL-POSTRTG and nftables table removed, FLANNEL-FWD only where FORWARD drops",
  ignore: !READY,
  async fn() {
    await withScratchNetns("hr", async (ns) => {
      await run(ns, ["iptables-nft-restore", "--noflush"], STALE_FLANNELD);
      await run(ns, ["nft", "-f", "-"], "table ip flannel-ipv4 {}\n");
      const st = JSON.parse(
        await pass(ns, { nftables: true, ipMasq: true, fullyRandom: true, forwardRules: true }),
      );
      assert.equal(st.mode, "nftables");
      assert.equal(st.ok, true, st.error);
      assert.match(await run(ns, ["nft", "list", "table", "ip", "weft"]), /masquerade fully-random/);
      const save = await run(ns, ["iptables-nft-save"]);
      assert.doesNotMatch(save, /FLANNEL-POSTRTG/);
      assert.doesNotMatch(save, /FLANNEL-FWD/, "FORWARD accepts everything here: nothing to add");
      assert.doesNotMatch(await run(ns, ["nft", "list", "tables"]), /flannel-ipv4/);
      await run(ns, ["iptables-nft", "-P", "FORWARD", "DROP"]);
      await pass(ns, { nftables: true, ipMasq: true, fullyRandom: true, forwardRules: true });
      const fwd = (await run(ns, ["iptables-nft-save", "-t", "filter"])).split("\n").filter((l) =>
        l.startsWith("-A FORWARD")
      );
      assert.deepEqual(fwd, ['-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD']);
    });
  },
});
