import assert from "node:assert/strict";
import { withNetns } from "../../ffi/mod.ts";
import { withScratchNetns } from "../../tests/helpers/scratch_netns.ts";
import { parseNet } from "../net/ip.ts";
import {
  detectIptablesMode,
  findBinary,
  Iptables,
  type IptablesFamily,
  type IptablesMode,
} from "./iptables.ts";
import { FWD_JUMP, planIptables } from "./iptables_rules.ts";

const ROOT = Deno.uid() === 0;
const HAVE = (mode: IptablesMode) => !!findBinary(`iptables-${mode}-restore`);

const NETS: Record<
  IptablesFamily,
  { network: ReturnType<typeof parseNet>; podSubnet: ReturnType<typeof parseNet> }
> = {
  4: { network: parseNet("10.244.0.0/16"), podSubnet: parseNet("10.244.3.0/24") },
  6: { network: parseNet("fd00:10:244::/56"), podSubnet: parseNet("fd00:10:244:3::/64") },
};

/** Runs a command inside `ns` (iptables only ever in namespaces the test made). */
function inNs(ns: string, cmd: string[]): void {
  const out = withNetns(
    ns,
    () => new Deno.Command(cmd[0]!, { args: cmd.slice(1), stderr: "piped" }).outputSync(),
  );
  if (!out.success) throw new Error(`${cmd.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
}

for (const mode of ["nft", "legacy"] as const) {
  for (const fam of [4, 6] as const) {
    Deno.test({
      name:
        `Iptables(${mode}, ${fam}): a plan applied reads back as iptables-save prints it, so the next plan is empty`,
      ignore: !ROOT || !HAVE(mode),
      async fn() {
        await withScratchNetns(`ipt${mode[0]}${fam}`, async (ns) => {
          const bin = `${fam === 6 ? "ip6tables" : "iptables"}-${mode}`;
          // A hostile host: FORWARD policy DROP and a catch-all REJECT already there.
          inNs(ns, [bin, "-P", "FORWARD", "DROP"]);
          inNs(ns, [bin, "-A", "FORWARD", "-j", "REJECT"]);
          const ipt = new Iptables(mode, fam, ns);
          const want = { masq: "present", forward: "present", fullyRandom: true } as const;
          const plan = planIptables(await ipt.save(), NETS[fam], want);
          assert.notEqual(plan.payload, "");
          await ipt.restore(plan.payload);
          const after = await ipt.save();
          assert.deepEqual(planIptables(after, NETS[fam], want), { payload: "", why: [] });
          const fwd = after.get("filter")!.get("FORWARD")!;
          assert.equal(fwd.rules[0], FWD_JUMP, "weft's jump is FORWARD's first rule, before the REJECT");
          assert.equal(fwd.policy, "DROP", "the host's policy is left as it is");
          assert.equal(ipt.writes, 1);
        });
      },
    });
  }
}

Deno.test({
  name: "detectIptablesMode() picks the backend holding the host's rules, nft when neither holds any",
  ignore: !ROOT || !HAVE("nft") || !HAVE("legacy"),
  async fn(t) {
    await t.step("fresh namespace: nft", async () => {
      await withScratchNetns("iptd", async (ns) => {
        assert.equal((await detectIptablesMode(ns)).mode, "nft");
      });
    });
    await t.step("rules in iptables-legacy: legacy", async () => {
      await withScratchNetns("iptd", async (ns) => {
        inNs(ns, ["iptables-legacy", "-A", "FORWARD", "-j", "REJECT"]);
        const d = await detectIptablesMode(ns);
        assert.equal(d.mode, "legacy", d.reason);
      });
    });
    await t.step("the kubelet's hint chain in iptables-nft wins over legacy rules", async () => {
      await withScratchNetns("iptd", async (ns) => {
        inNs(ns, ["iptables-legacy", "-A", "FORWARD", "-j", "REJECT"]);
        inNs(ns, ["iptables-nft", "-t", "mangle", "-N", "KUBE-IPTABLES-HINT"]);
        assert.equal((await detectIptablesMode(ns)).mode, "nft");
      });
    });
  },
});
