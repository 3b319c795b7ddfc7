import assert from "node:assert/strict";
import { Command } from "@commander-js/extra-typings";
import {
  AGENT_COMMAND_FLAGS,
  type AgentCliOptions as AgentOptions,
  type AgentFlagValues,
  agentOptionsFrom,
  registerAgent,
} from "./agent.ts";
import { goArgs, parseFlags } from "./flags.ts";

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

/** The flag values commander hands `weft agent`'s action for `args` and `env` (undefined: it refused them). */
async function commanderValues(args: string[], env: Record<string, string>): Promise<unknown> {
  const program = new Command("weft").exitOverride().configureOutput({
    writeOut: () => {},
    writeErr: () => {},
  });
  registerAgent(program as unknown as Command);
  const agent = program.commands.find((c) => c.name() === "agent")!.exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {} });
  let got: unknown;
  agent.action((...a: unknown[]) => void (got = { ...(a[0] as object) }));
  try {
    await program.parseAsync(goArgs(program as unknown as Command, ["agent", ...args], (k) => env[k]), {
      from: "user",
    });
  } catch {
    return undefined;
  }
  return got;
}

Deno.test("a plain `weft agent` command line reads the same without commander as with it", async () => {
  const cases: [string[], Record<string, string>][] = [
    [[], {}],
    [["--kube-subnet-mgr", "--kubeconfig-file=/k", "--iface=eth0", "--iface", "10.0.0.5", "-ip-masq"], {}],
    [["-etcd-endpoints", "http://a:2379", "-v", "3", "--iface-regex=^en", "--iface-regex=^eth"], {}],
    [["-v"], {}],
    [["-v=0", "--verbose=false", "--log-json", "--healthz-port=0x10", "--ip-masq=F"], {}],
    [["--network-policy", "--kube-subnet-mgr", "--policy-log-drops=true"], {}],
    [["--iface=a,b"], { FLANNELD_IFACE: "c", FLANNELD_IP_MASQ: "true", FLANNELD_V: "2" }],
    [[], {
      FLANNELD_SUBNET_LEASE_RENEW_MARGIN: "0o17",
      FLANNELD_KUBE_SUBNET_MGR: "1",
      FLANNELD_PUBLIC_IP: "",
    }],
    [["--version"], {}],
    [["--public-ip=1.2.3.4", "--public-ip=5.6.7.8", "--etcd-prefix="], {}],
    [["-vmodule=x=2", "-log_backtrace_at", "main.go:1"], {}],
  ];
  for (const [args, env] of cases) {
    const without = parseFlags(AGENT_COMMAND_FLAGS, args, (k) => env[k]);
    assert.ok(without, `read without commander: ${args.join(" ")}`);
    assert.deepEqual(without, await commanderValues(args, env), `${args.join(" ")} ${JSON.stringify(env)}`);
  }
  // What only commander answers goes to it: help, a stray argument, `--`, a flag the agent lacks.
  for (const args of [["--help"], ["-h"], ["stray"], ["--", "x"], ["--no-such-flag"], ["--ip-masq", "x"]]) {
    assert.equal(parseFlags(AGENT_COMMAND_FLAGS, args, () => undefined), undefined, args.join(" "));
  }
  // A bad value is refused the same way on both paths (goArgs and parseFlags share the reading).
  assert.throws(
    () => parseFlags(AGENT_COMMAND_FLAGS, ["--ip-masq=maybe"], () => undefined),
    /must be true or false/,
  );
});
