/**
 * Every flag of flanneld v0.28.9 is accepted by `weft agent` in Go's syntax and through its
 * `FLANNELD_*` variable, with the value flanneld would give it.
 */
import assert from "node:assert/strict";
import { Command } from "@commander-js/extra-typings";
import { AGENT_FLAGS, type AgentCliOptions, type AgentFlagValues, agentOptionsFrom } from "./agent_flags.ts";
import { registerAgent } from "./agent.ts";
import { ETCD_FLAGS } from "./etcd_flags.ts";
import { type FlagKind, goArgs } from "./flags.ts";
import { KUBE_FLAGS, kubeFlagValues, type KubeSettings, kubeSettingsFrom } from "./kube_flags.ts";

/**
 * flanneld v0.28.9's flags and their Go kinds, as data. Source: flannel's main.go at tag v0.28.9,
 * `init()` (`flannelFlags.StringVar/IntVar/BoolVar` and `flannelFlags.Var` of a `flagSlice`), and the
 * three klog flags it copies (`copyFlag("v")`, `copyFlag("vmodule")`, `copyFlag("log_backtrace_at")`:
 * klog's `Level`, `moduleSpec` and `traceLocation` values); read with
 * `git --git-dir=/work/.mirror/flannel-io+flannel/repo show v0.28.9:main.go`.
 */
const FLANNELD_V0_28_9_FLAGS: [name: string, goKind: string][] = [
  ["etcd-endpoints", "string"],
  ["etcd-prefix", "string"],
  ["etcd-keyfile", "string"],
  ["etcd-certfile", "string"],
  ["etcd-cafile", "string"],
  ["etcd-username", "string"],
  ["etcd-password", "string"],
  ["iface", "flagSlice"],
  ["iface-regex", "flagSlice"],
  ["iface-can-reach", "string"],
  ["subnet-file", "string"],
  ["public-ip", "string"],
  ["public-ipv6", "string"],
  ["subnet-lease-renew-margin", "int"],
  ["ip-masq", "bool"],
  ["ip-masq-fully-random-disable", "bool"],
  ["kube-subnet-mgr", "bool"],
  ["kube-api-url", "string"],
  ["kube-annotation-prefix", "string"],
  ["kubeconfig-file", "string"],
  ["version", "bool"],
  ["healthz-ip", "string"],
  ["healthz-port", "int"],
  ["iptables-resync", "int"],
  ["iptables-forward-rules", "bool"],
  ["ip-blackhole-route", "bool"],
  ["net-config-path", "string"],
  ["set-node-network-unavailable", "bool"],
  ["v", "klog.Level"],
  ["vmodule", "klog.moduleSpec"],
  ["log_backtrace_at", "klog.traceLocation"],
];

/** What weft's flag kind for each of Go's is. */
const KIND_OF_GO: Record<string, FlagKind> = {
  "string": "string",
  "int": "int",
  "bool": "bool",
  "flagSlice": "list",
  "klog.Level": "int",
  "klog.moduleSpec": "string",
  "klog.traceLocation": "string",
};

/** Everything the flags turn into: the agent's options and the kube settings. */
interface Parsed {
  agent: AgentCliOptions;
  kube: KubeSettings;
}

/** Parses `weft agent <args>` exactly as `weft` does, with `env` as the environment. */
async function parse(args: string[], env: Record<string, string> = {}): Promise<Parsed> {
  const program = new Command("weft").exitOverride();
  registerAgent(program as unknown as Command);
  const agent = program.commands.find((c) => c.name() === "agent")!.exitOverride()
    .configureOutput({ writeErr: () => {} });
  let got: Parsed | undefined;
  agent.action((...a: unknown[]) => {
    const flags = a[0] as AgentFlagValues;
    got = {
      agent: agentOptionsFrom(flags, new AbortController().signal),
      kube: kubeSettingsFrom(kubeFlagValues(flags)),
    };
  });
  await program.parseAsync(goArgs(program as unknown as Command, ["agent", ...args], (k) => env[k]), {
    from: "user",
  });
  return got!;
}

/** A value flag: a sample value and where it lands. */
interface ValueCase {
  value: string;
  got: (p: Parsed) => unknown;
  want: unknown;
}

const VALUES: Record<string, ValueCase> = {
  "etcd-endpoints": {
    value: "http://10.1.1.1:2379,http://10.1.1.2:2379",
    got: (p) => p.agent.etcd.endpoints,
    want: ["http://10.1.1.1:2379", "http://10.1.1.2:2379"],
  },
  "etcd-prefix": { value: "/my/net", got: (p) => p.agent.etcd.prefix, want: "/my/net" },
  "etcd-keyfile": { value: "/k.pem", got: (p) => p.agent.etcd.keyFile, want: "/k.pem" },
  "etcd-certfile": { value: "/c.pem", got: (p) => p.agent.etcd.certFile, want: "/c.pem" },
  "etcd-cafile": { value: "/ca.pem", got: (p) => p.agent.etcd.caFile, want: "/ca.pem" },
  "etcd-username": { value: "flannel", got: (p) => p.agent.etcd.username, want: "flannel" },
  "etcd-password": { value: "-s3cret", got: (p) => p.agent.etcd.password, want: "-s3cret" },
  "iface": { value: "eth9", got: (p) => p.agent.iface, want: ["eth9"] },
  // A comma inside a regex stays (flanneld never splits a flag's value).
  "iface-regex": { value: "^en[0-9]{1,2}$", got: (p) => p.agent.ifaceRegex, want: ["^en[0-9]{1,2}$"] },
  "iface-can-reach": { value: "192.0.2.7", got: (p) => p.agent.ifaceCanReach, want: "192.0.2.7" },
  "subnet-file": { value: "/tmp/s.env", got: (p) => p.agent.subnetFile, want: "/tmp/s.env" },
  "public-ip": { value: "203.0.113.9", got: (p) => p.agent.publicIP, want: "203.0.113.9" },
  "public-ipv6": { value: "2001:DB8::9", got: (p) => p.agent.publicIPv6, want: "2001:db8::9" },
  "subnet-lease-renew-margin": { value: "30", got: (p) => p.agent.renewMarginSeconds, want: 1800 },
  "kube-api-url": {
    value: "https://10.0.0.1:6443",
    got: (p) => p.kube.apiUrl,
    want: "https://10.0.0.1:6443",
  },
  "kube-annotation-prefix": {
    value: "example.com/net",
    got: (p) => p.kube.annotationPrefix,
    want: "example.com/net",
  },
  "kubeconfig-file": { value: "/etc/k.conf", got: (p) => p.kube.kubeconfig, want: "/etc/k.conf" },
  "healthz-ip": { value: "127.0.0.2", got: (p) => p.agent.healthz.hostname, want: "127.0.0.2" },
  "healthz-port": { value: "8471", got: (p) => p.agent.healthz.port, want: 8471 },
  "iptables-resync": { value: "7", got: (p) => p.agent.iptablesResyncSeconds, want: 7 },
  "net-config-path": { value: "/etc/n.json", got: (p) => p.kube.netConfPath, want: "/etc/n.json" },
  "v": { value: "2", got: (p) => p.agent.logLevel, want: "debug" },
  "vmodule": {
    value: "agent=3",
    got: (p) =>
      p.agent.warnings.some((w) => /^-vmodule=agent=3 has no effect: .*klog's verbosity per Go/.test(w)),
    want: true,
  },
  "log_backtrace_at": {
    value: "main.go:42",
    got: (p) =>
      p.agent.warnings.some((w) => /^-log_backtrace_at=main\.go:42 has no effect: .*Go stack/.test(w)),
    want: true,
  },
};

/** A boolean flag: where it lands, and whether flanneld reads it from the environment. */
const BOOLS: Record<string, { got: (p: Parsed) => boolean; env?: false }> = {
  "ip-masq": { got: (p) => p.agent.ipMasq },
  "ip-masq-fully-random-disable": { got: (p) => !p.agent.ipMasqFullyRandom },
  "kube-subnet-mgr": { got: (p) => p.kube.enabled },
  // flanneld looks at -version before it reads its variables: FLANNELD_VERSION does nothing.
  "version": { got: (p) => p.agent.version, env: false },
  "iptables-forward-rules": { got: (p) => p.agent.iptablesForwardRules },
  "ip-blackhole-route": { got: (p) => p.agent.ipBlackholeRoute },
  "set-node-network-unavailable": { got: (p) => p.kube.setNodeNetworkUnavailable },
};

const envOf = (name: string) => `FLANNELD_${name.replace(/-/g, "_").toUpperCase()}`;

Deno.test("weft agent declares every flanneld v0.28.9 flag, with Go's kind", () => {
  const specs = new Map([...ETCD_FLAGS, ...KUBE_FLAGS, ...AGENT_FLAGS].map((s) => [s.name, s]));
  for (const [name, goKind] of FLANNELD_V0_28_9_FLAGS) {
    const spec = specs.get(name);
    assert.ok(spec, `-${name} is declared`);
    assert.equal(spec.kind, KIND_OF_GO[goKind], `-${name} is a ${goKind}`);
    assert.notEqual(spec.origin, "weft", `-${name} is marked as flanneld's in --help`);
    const sample = goKind === "bool" ? BOOLS[name] : VALUES[name];
    assert.ok(sample, `-${name} has a case below`);
  }
});

for (const [name, goKind] of FLANNELD_V0_28_9_FLAGS.filter(([, k]) => k !== "bool")) {
  Deno.test(`-${name} (${goKind}) as -${name}=v, --${name} v, -${name} v, --${name}=v and ${envOf(name)}`, async () => {
    const c = VALUES[name]!;
    for (
      const [args, env] of [
        [[`-${name}=${c.value}`], {}],
        [[`--${name}`, c.value], {}],
        [[`-${name}`, c.value], {}],
        [[`--${name}=${c.value}`], {}],
        [[], { [envOf(name)]: c.value }],
      ] as [string[], Record<string, string>][]
    ) {
      assert.deepEqual(c.got(await parse(args, env)), c.want, `${args.join(" ")} ${JSON.stringify(env)}`);
    }
  });
}

for (const [name] of FLANNELD_V0_28_9_FLAGS.filter(([, k]) => k === "bool")) {
  Deno.test(`-${name} (bool) as -${name}, -${name}=false, --${name}, --${name}=false and ${envOf(name)}`, async () => {
    const c = BOOLS[name]!;
    for (
      const [args, want] of [[[`-${name}`], true], [[`--${name}`], true], [[`-${name}=true`], true]] as const
    ) {
      assert.equal(c.got(await parse([...args])), want, args.join(" "));
    }
    for (const args of [[`-${name}=false`], [`--${name}=false`], [`-${name}=0`], [`--${name}=F`]]) {
      assert.equal(c.got(await parse(args)), false, args.join(" "));
    }
    const fromEnv = (v: string) => parse([], { [envOf(name)]: v }).then(c.got);
    if (c.env === false) {
      assert.equal(await fromEnv("true"), false, `${envOf(name)} is not read`);
    } else {
      assert.equal(await fromEnv("true"), true, `${envOf(name)}=true`);
      assert.equal(await fromEnv("1"), true, `${envOf(name)}=1`);
      assert.equal(await fromEnv("false"), false, `${envOf(name)}=false`);
      assert.equal(await fromEnv("f"), false, `${envOf(name)}=f`);
      // The command line wins over the variable, as with flagutil.SetFlagsFromEnv.
      assert.equal(c.got(await parse([`-${name}=false`], { [envOf(name)]: "true" })), false);
    }
  });
}

Deno.test("weft agent has flanneld's defaults for the flags flanneld v0.28 added", async () => {
  const { agent, kube } = await parse([]);
  assert.equal(agent.ipMasqFullyRandom, true);
  assert.equal(agent.iptablesResyncSeconds, 5);
  assert.equal(agent.iptablesForwardRules, true);
  assert.equal(agent.ipBlackholeRoute, false);
  assert.equal(agent.ifaceCanReach, undefined);
  assert.equal(agent.version, false);
  assert.equal(agent.logLevel, "info");
  assert.deepEqual(agent.warnings, []);
  assert.equal(kube.setNodeNetworkUnavailable, true);
  assert.equal(kube.annotationPrefix, "flannel.alpha.coreos.com");
});

Deno.test("Go's syntax: integers in any base, -v levels, -v alone, repeated lists, -- ends the flags", async () => {
  assert.equal((await parse(["-healthz-port=0x1F90"])).agent.healthz.port, 8080);
  assert.equal((await parse(["-subnet-lease-renew-margin", "0o36"])).agent.renewMarginSeconds, 1800);
  assert.equal((await parse(["-v=5"])).agent.logLevel, "trace");
  assert.equal((await parse(["-v", "0"])).agent.logLevel, "info");
  assert.equal(
    (await parse(["-v=1", "--log-level=warning"])).agent.logLevel,
    "debug",
    "the most verbose wins",
  );
  assert.equal((await parse(["-v"])).agent.logLevel, "debug", "-v alone is weft's --verbose");
  assert.equal((await parse(["-v", "-iface=eth0"])).agent.logLevel, "debug");
  assert.deepEqual((await parse(["-iface=eth0", "--iface", "10.0.0.5", "-iface=a,b"])).agent.iface, [
    "eth0",
    "10.0.0.5",
    "a",
    "b",
  ]);
  assert.deepEqual((await parse(["-iface-regex=^a", "-iface-regex", "^b"])).agent.ifaceRegex, ["^a", "^b"]);
  assert.equal((await parse([], { FLANNELD_IP_MASQ: "" })).agent.ipMasq, false, "an empty variable is unset");
  assert.equal(
    (await parse([], { FLANNELD_SET_NODE_NETWORK_UNAVAILABLE: "" })).kube.setNodeNetworkUnavailable,
    true,
    "an empty variable leaves the default, never false",
  );
});

Deno.test("bad values are refused with the flag's or the variable's name, exit code 2", async () => {
  const refused = async (args: string[], env: Record<string, string>, re: RegExp) => {
    await assert.rejects(
      parse(args, env),
      (e: Error & { code?: number }) => re.test(e.message) && e.code === 2,
    );
  };
  await refused(["-ip-masq=yes"], {}, /-ip-masq yes: must be true or false/);
  await refused([], { FLANNELD_IP_MASQ: "yes" }, /FLANNELD_IP_MASQ yes: must be true or false/);
  await refused(["-healthz-port=80a"], {}, /-healthz-port 80a: must be an integer/);
  await refused([], { FLANNELD_IPTABLES_RESYNC: "5s" }, /FLANNELD_IPTABLES_RESYNC 5s: must be an integer/);
  await refused(["-healthz-port"], {}, /flag needs an argument: -healthz-port/);
  await refused(["-v=high"], {}, /-v high: must be a verbosity level/);
  await refused(
    ["-ip-masq", "false"],
    {},
    /-ip-masq false: a boolean flag takes its value as -ip-masq=false/,
  );
  await refused(
    ["-subnet-lease-renew-margin=1440"],
    {},
    /--subnet-lease-renew-margin 1440: must be a number ≥ 1 and ≤ 1439/,
  );
  await refused(["-iptables-resync=0"], {}, /--iptables-resync 0: must be a number ≥ 1/);
  await refused(["-iface-can-reach=gateway"], {}, /--iface-can-reach gateway: not an IP address/);
  await refused(["-iface-regex=(eth"], {}, /--iface-regex \(eth: /);
});

Deno.test("an unknown flag and a stray argument stop weft agent (flanneld would ignore what follows)", async () => {
  await assert.rejects(parse(["-no-such-flag"]), /unknown option/);
  await assert.rejects(parse(["-ip-masq", "eth0"]), /too many arguments|unexpected/);
});
