import assert from "node:assert/strict";
import { Command } from "@commander-js/extra-typings";
import {
  type AgentCliOptions as AgentOptions,
  type AgentFlagValues,
  agentOptionsFrom,
  registerAgent,
} from "./agent.ts";
import { goArgs } from "./flags.ts";

/** Parses `weft agent <args>` as `weft` does (Go syntax, `FLANNELD_*` from `env`), without running it. */
async function parse(args: string[], env: Record<string, string> = {}): Promise<AgentOptions> {
  const program = new Command("weft").exitOverride();
  registerAgent(program as unknown as Command);
  const agent = program.commands.find((c) => c.name() === "agent")!.exitOverride();
  let got: AgentOptions | undefined;
  agent.action((...args: unknown[]) => {
    got = agentOptionsFrom(args[0] as AgentFlagValues, new AbortController().signal);
  });
  await program.parseAsync(goArgs(program as unknown as Command, ["agent", ...args], (k) => env[k]), {
    from: "user",
  });
  return got!;
}

Deno.test("weft agent takes flanneld's flags", async () => {
  const o = await parse([
    "--etcd-endpoints=http://10.0.0.1:2379,http://10.0.0.2:2379",
    "--etcd-prefix=/my/net/",
    "--iface=eth1",
    "--iface",
    "10.0.0.5",
    "--iface-regex=^en",
    "--public-ip=203.0.113.4",
    "--public-ipv6=2001:DB8:0:0::4",
    "--ip-masq",
    "--subnet-file=/tmp/x.env",
    "--subnet-lease-renew-margin=30",
    "--healthz-ip=127.0.0.1",
    "--healthz-port=8471",
    "--resync-interval=2",
  ]);
  assert.deepEqual(o.etcd.endpoints, ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]);
  assert.equal(o.etcd.prefix, "/my/net");
  assert.deepEqual(o.iface, ["eth1", "10.0.0.5"]);
  assert.deepEqual(o.ifaceRegex, ["^en"]);
  assert.equal(o.publicIP, "203.0.113.4");
  assert.equal(o.publicIPv6, "2001:db8::4", "canonical spelling, as leases carry it");
  assert.equal(o.ipMasq, true);
  assert.equal(o.subnetFile, "/tmp/x.env");
  assert.equal(o.renewMarginSeconds, 1800);
  assert.deepEqual(o.healthz, { hostname: "127.0.0.1", port: 8471 });
  assert.equal(o.resyncSeconds, 2);
});

Deno.test("weft agent has flanneld's defaults: no masquerade, /run/flannel/subnet.env, 60 min margin, 10 s resync", async () => {
  const o = await parse([]);
  assert.deepEqual(o.etcd.endpoints, ["http://127.0.0.1:2379"]);
  assert.equal(o.etcd.prefix, "/coreos.com/network");
  assert.equal(o.ipMasq, false);
  assert.equal(o.subnetFile, "/run/flannel/subnet.env");
  assert.equal(o.renewMarginSeconds, 3600);
  assert.equal(o.leaseTtlSeconds, 86400);
  assert.equal(o.healthz.port, 0, "health endpoint off unless asked for, as in flanneld");
  assert.equal(o.resyncSeconds, 10);
  assert.deepEqual(o.iface, []);
});

Deno.test("weft agent reads every flag from FLANNELD_* variables, flags winning", async () => {
  const env = {
    FLANNELD_ETCD_ENDPOINTS: "http://10.9.9.9:2379",
    FLANNELD_IFACE: "eth2,eth3",
    FLANNELD_IP_MASQ: "true",
    FLANNELD_SUBNET_FILE: "/tmp/env.env",
    FLANNELD_HEALTHZ_PORT: "9999",
    FLANNELD_RESYNC_INTERVAL: "3",
  };
  const o = await parse([], env);
  assert.deepEqual(o.etcd.endpoints, ["http://10.9.9.9:2379"]);
  assert.deepEqual(o.iface, ["eth2", "eth3"]);
  assert.equal(o.ipMasq, true);
  assert.equal(o.subnetFile, "/tmp/env.env");
  assert.equal(o.healthz.port, 9999);
  assert.equal(o.resyncSeconds, 3);
  const flags = await parse(["--ip-masq=false", "--resync-interval=5"], env);
  assert.equal(flags.ipMasq, false);
  assert.equal(flags.resyncSeconds, 5);
});

Deno.test("weft agent rejects a malformed number or boolean with the flag's name", async () => {
  await assert.rejects(parse(["--resync-interval=soon"]), /--resync-interval soon: must be a number/);
  await assert.rejects(parse(["--healthz-port=-1"]), /--healthz-port -1/);
  await assert.rejects(parse(["--ip-masq=maybe"]), /--ip-masq maybe: must be true or false/);
  await assert.rejects(
    parse(["--public-ipv6=10.0.0.1"]),
    /--public-ipv6 10\.0\.0\.1: must be an IPv6 address/,
  );
  await assert.rejects(parse(["--public-ipv6=fd00::zz"]), /--public-ipv6 fd00::zz: not an IP address/);
});
