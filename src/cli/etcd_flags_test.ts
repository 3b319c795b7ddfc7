import assert from "node:assert/strict";
import { Command } from "@commander-js/extra-typings";
import { goArgs } from "./flags.ts";
import { addEtcdFlags, type EtcdFlagValues, etcdFlagValues, etcdOptionsFrom } from "./etcd_flags.ts";

/** Parses `weft test <args>` as `weft` does (`FLANNELD_*` from `env`) and returns the etcd flag values. */
async function parse(args: string[], env: Record<string, string> = {}): Promise<EtcdFlagValues> {
  let got: EtcdFlagValues | undefined;
  const program = new Command("weft").exitOverride();
  addEtcdFlags(program.command("test").exitOverride()).action((flags) => {
    got = etcdFlagValues(flags);
  });
  await program.parseAsync(goArgs(program, ["test", ...args], (k) => env[k]), { from: "user" });
  return got!;
}

Deno.test("addEtcdFlags() takes flanneld's seven etcd flags", async () => {
  const v = await parse([
    "--etcd-endpoints=https://10.0.0.1:2379, https://10.0.0.2:2379",
    "--etcd-prefix=/my/net/",
    "--etcd-cafile=/ca.pem",
    "--etcd-certfile=/c.pem",
    "--etcd-keyfile=/k.pem",
    "--etcd-username=flannel",
    "--etcd-password=s3cret",
  ]);
  assert.deepEqual(etcdOptionsFrom(v), {
    endpoints: ["https://10.0.0.1:2379", "https://10.0.0.2:2379"],
    prefix: "/my/net",
    caFile: "/ca.pem",
    certFile: "/c.pem",
    keyFile: "/k.pem",
    username: "flannel",
    password: "s3cret",
  });
});

Deno.test("addEtcdFlags() defaults to flanneld's endpoint and prefix and leaves empty options out", async () => {
  assert.deepEqual(etcdOptionsFrom(await parse([])), {
    endpoints: ["http://127.0.0.1:2379"],
    prefix: "/coreos.com/network",
  });
});

Deno.test("addEtcdFlags() reads FLANNELD_* variables, and a flag on the command line wins", async () => {
  const env = {
    FLANNELD_ETCD_ENDPOINTS: "http://10.9.9.9:2379",
    FLANNELD_ETCD_PREFIX: "/env/net",
    FLANNELD_ETCD_CAFILE: "/env/ca.pem",
    FLANNELD_ETCD_CERTFILE: "/env/c.pem",
    FLANNELD_ETCD_KEYFILE: "/env/k.pem",
    FLANNELD_ETCD_USERNAME: "envuser",
    FLANNELD_ETCD_PASSWORD: "envpw",
  };
  const fromEnv = etcdOptionsFrom(await parse([], env));
  assert.deepEqual(fromEnv, {
    endpoints: ["http://10.9.9.9:2379"],
    prefix: "/env/net",
    caFile: "/env/ca.pem",
    certFile: "/env/c.pem",
    keyFile: "/env/k.pem",
    username: "envuser",
    password: "envpw",
  });
  const flagWins = etcdOptionsFrom(await parse(["--etcd-prefix=/flag/net", "--etcd-password=flagpw"], env));
  assert.equal(flagWins.prefix, "/flag/net");
  assert.equal(flagWins.password, "flagpw");
  assert.equal(flagWins.username, "envuser");
});

Deno.test("addEtcdFlags() help names the variables but never prints a password from the environment", () => {
  Deno.env.set("FLANNELD_ETCD_PASSWORD", "do-not-print-me");
  try {
    const help = addEtcdFlags(new Command("test")).helpInformation();
    assert.match(help, /FLANNELD_ETCD_PASSWORD/);
    assert.match(help, /FLANNELD_ETCD_ENDPOINTS/);
    assert.doesNotMatch(help, /do-not-print-me/);
  } finally {
    Deno.env.delete("FLANNELD_ETCD_PASSWORD");
  }
});
