import assert from "node:assert/strict";
import { Command } from "@commander-js/extra-typings";
import type { LeaseSource } from "../lease/source.ts";
import { registerAgent } from "./agent.ts";
import { CliError } from "./errors.ts";
import { goArgs } from "./flags.ts";
import { networkPolicyFrom, policyFlagValues } from "./policy_flags.ts";

/** `weft agent <args>`'s parsed options (as `weft` parses them, `FLANNELD_*` from `env`), without running it. */
async function flagsOf(args: string[], env: Record<string, string> = {}): Promise<object> {
  const program = new Command("weft").exitOverride();
  registerAgent(program as unknown as Command);
  const agent = program.commands.find((c) => c.name() === "agent")!.exitOverride();
  let got: object | undefined;
  agent.action((...a: unknown[]) => void (got = a[0] as object));
  await program.parseAsync(goArgs(program as unknown as Command, ["agent", ...args], (k) => env[k]), {
    from: "user",
  });
  return got!;
}

const kubeSource = {
  kind: "kube",
  client: { list() {}, watch() {} },
  nodeName: "node-7",
} as unknown as LeaseSource;

Deno.test("network policy is off by default", async () => {
  assert.equal(networkPolicyFrom(policyFlagValues(await flagsOf([])), true), undefined);
});

Deno.test("--network-policy in kube mode takes the API client and node name from the kube lease source", async () => {
  for (
    const [args, env] of [
      [["--kube-subnet-mgr", "--network-policy", "--policy-log-drops"], {}],
      [["--kube-subnet-mgr"], { FLANNELD_NETWORK_POLICY: "true", FLANNELD_POLICY_LOG_DROPS: "1" }],
    ] as const
  ) {
    const make = networkPolicyFrom(policyFlagValues(await flagsOf([...args], env)), true)!;
    const o = make(kubeSource);
    assert.equal(o.nodeName, "node-7");
    assert.equal(o.client, (kubeSource as unknown as { client: unknown }).client);
    assert.equal(o.logDrops, true);
  }
  const quiet = networkPolicyFrom(policyFlagValues(await flagsOf(["--network-policy=true"])), true)!;
  assert.equal(quiet(kubeSource).logDrops, false);
  assert.equal(
    networkPolicyFrom(policyFlagValues(await flagsOf(["--network-policy=false"])), true),
    undefined,
  );
});

Deno.test("--network-policy without --kube-subnet-mgr is refused, naming both flags", async () => {
  const v = policyFlagValues(await flagsOf(["--network-policy"]));
  assert.throws(
    () => networkPolicyFrom(v, false),
    (e: unknown) =>
      e instanceof CliError && e.code === 2 && /--network-policy needs --kube-subnet-mgr/.test(e.message),
  );
  const logOnly = policyFlagValues(await flagsOf(["--kube-subnet-mgr", "--policy-log-drops"]));
  assert.throws(() => networkPolicyFrom(logOnly, true), /--policy-log-drops needs --network-policy/);
  assert.throws(
    () => networkPolicyFrom(policyFlagValues({ networkPolicy: "maybe", policyLogDrops: "false" }), true),
    /--network-policy maybe: must be true or false/,
  );
});
