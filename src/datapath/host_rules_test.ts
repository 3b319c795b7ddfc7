import assert from "node:assert/strict";
import { withNetns } from "../../ffi/mod.ts";
import { withScratchNetns } from "../../tests/helpers/scratch_netns.ts";
import { findBinary } from "./iptables.ts";
import { requireRoot, skipUnless } from "../../tests/helpers/skip.ts";

const ROOT = Deno.uid() === 0;
const READY = ROOT && !!findBinary("iptables-nft-restore") && !!findBinary("nft");
const HOST_RULES = new URL("./host_rules.ts", import.meta.url).href;
const IP = new URL("../net/ip.ts", import.meta.url).href;

/**
 * Runs `code` with `deno eval` inside `ns` (a process of its own: a pass spawns iptables and awaits it);
 * returns its stdout.
 */
async function evalIn(ns: string, code: string): Promise<string> {
  const out = await withNetns(
    ns,
    () =>
      new Deno.Command(Deno.execPath(), { args: ["eval", code], stdout: "piped", stderr: "piped" }).spawn(),
  ).output();
  const dec = new TextDecoder();
  assert.ok(out.success, dec.decode(out.stderr));
  return dec.decode(out.stdout);
}

/** One HostRules pass inside `ns`; its state as JSON. */
function pass(ns: string, opts: Record<string, boolean>, subnet = "10.244.3.0/24"): Promise<string> {
  return evalIn(
    ns,
    `
    import { HostRules } from "${HOST_RULES}";
    import { parseNet } from "${IP}";
    const r = new HostRules(${JSON.stringify(opts)}, () => ["flannel.1"]);
    r.want([{ network: parseNet("10.244.0.0/16"), podSubnet: parseNet("${subnet}") }]);
    await r.pass();
    console.log(JSON.stringify(r.state));`,
  );
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
  ignore: requireRoot() ||
    skipUnless(READY, "iptables-nft-restore or nft is not installed (apt: iptables nftables)"),
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
  ignore: requireRoot() ||
    skipUnless(READY, "iptables-nft-restore or nft is not installed (apt: iptables nftables)"),
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

Deno.test({
  name:
    "HostRules at rest reads nothing while nftables' generation stands; a change by anyone is read and repaired; iptables-legacy in play is read every pass",
  ignore: requireRoot() ||
    skipUnless(
      READY && !!findBinary("iptables-legacy"),
      "iptables-nft-restore, iptables-legacy or nft is not installed (apt: iptables nftables)",
    ),
  async fn() {
    await withScratchNetns("hr", async (ns) => {
      await run(ns, ["iptables-nft", "-P", "FORWARD", "DROP"]);
      const code = `
        import { HostRules } from "${HOST_RULES}";
        import { parseNet } from "${IP}";
        const r = new HostRules({ nftables: false, ipMasq: true, fullyRandom: true, forwardRules: true }, () => ["flannel.1"]);
        r.want([{ network: parseNet("10.244.0.0/16"), podSubnet: parseNet("10.244.3.0/24") }]);
        await r.pass();
        const sh = (...a) => new Deno.Command(a[0], { args: a.slice(1), stdout: "null", stderr: "null" }).outputSync();
        const at = () => ({ ...r.state, blockers: undefined });
        const out = { first: at() };
        await r.pass(); // the first pass wrote: this one reads once more and settles
        out.settled = at();
        for (let i = 0; i < 5; i++) await r.pass();
        out.rest = at();
        sh("iptables-nft", "-D", "FORWARD", "-m", "comment", "--comment", "flanneld forward", "-j", "FLANNEL-FWD");
        await r.pass();
        out.repaired = at();
        await r.pass();
        out.after = at();
        sh("iptables-legacy", "-t", "filter", "-S");
        for (let i = 0; i < 3; i++) await r.pass();
        out.legacy = at();
        console.log(JSON.stringify(out));`;
      const s = JSON.parse(await evalIn(ns, code));
      assert.equal(s.first.ok, true, s.first.error);
      assert.ok(s.first.writes >= 1, "FLANNEL-FWD written ahead of the DROP policy");
      assert.equal(s.settled.writes, s.first.writes, "nothing more to write");
      assert.equal(s.settled.reads, 2);
      assert.deepEqual(
        [s.rest.passes - s.settled.passes, s.rest.reads - s.settled.reads, s.rest.writes - s.settled.writes],
        [5, 0, 0],
        "five passes at rest: no read, no write",
      );
      assert.deepEqual(
        [
          s.repaired.reads - s.rest.reads,
          s.repaired.writes - s.rest.writes,
          s.repaired.repaired - s.rest.repaired,
        ],
        [1, 1, 1],
        "the jump deleted through iptables-nft: read, written back, counted as a repair",
      );
      assert.equal(s.after.reads - s.repaired.reads, 1, "after its own write a pass reads once more");
      assert.equal(
        s.legacy.reads - s.after.reads,
        3,
        "iptables-legacy's filter table exists: every pass reads",
      );
      assert.equal(s.legacy.writes, s.repaired.writes, "and finds nothing to write");
      const fwd = (await run(ns, ["iptables-nft-save", "-t", "filter"])).split("\n").filter((l) =>
        l.startsWith("-A FORWARD")
      );
      assert.deepEqual(fwd, ['-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD']);
    });
  },
});
