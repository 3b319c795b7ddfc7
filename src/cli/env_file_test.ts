import assert from "node:assert/strict";
import { envFileArg, loadEnvFileFor, parseEnvFile } from "./env_file.ts";

Deno.test("parseEnvFile() reads a systemd EnvironmentFile: comments, quotes, escapes, continuations", () => {
  const vars = parseEnvFile(
    [
      "# weft's settings",
      "; also a comment",
      "",
      "FLANNELD_ETCD_ENDPOINTS=https://10.0.0.10:2379",
      "  FLANNELD_IFACE = eth0  ",
      "FLANNELD_IFACE_REGEX='^en[0-9]{1,2}$'",
      'FLANNELD_ETCD_PASSWORD="p\\"w \\\\ d"',
      "FLANNELD_PUBLIC_IP=10.0.0.\\",
      "5",
      "FLANNELD_IP_MASQ=",
    ].join("\n"),
  );
  assert.deepEqual(Object.fromEntries(vars), {
    FLANNELD_ETCD_ENDPOINTS: "https://10.0.0.10:2379",
    FLANNELD_IFACE: "eth0",
    FLANNELD_IFACE_REGEX: "^en[0-9]{1,2}$",
    FLANNELD_ETCD_PASSWORD: 'p"w \\ d',
    FLANNELD_PUBLIC_IP: "10.0.0.5",
    FLANNELD_IP_MASQ: "",
  });
  assert.throws(
    () => parseEnvFile("export FLANNELD_IFACE=eth0", "/etc/default/weft"),
    /\/etc\/default\/weft:1: not KEY=VALUE/,
  );
  assert.throws(() => parseEnvFile('A="open', "f"), /f:1: unterminated "/);
});

Deno.test("envFileArg() finds --env-file in either syntax, not after --", () => {
  assert.equal(envFileArg(["status", "--env-file=/a"]), "/a");
  assert.equal(envFileArg(["doctor", "-env-file", "/b", "--json"]), "/b");
  assert.equal(envFileArg(["leases", "--", "--env-file=/c"]), undefined);
});

Deno.test("loadEnvFileFor() sets what the environment lacks, for the commands that read it", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/weft`;
  await Deno.writeTextFile(file, "FLANNELD_HEALTHZ_PORT=9123\nFLANNELD_SUBNET_FILE=/from/file\n");
  const vars = new Map([["FLANNELD_SUBNET_FILE", "/from/env"]]);
  const env = {
    get: (k: string) => vars.get(k),
    set: (k: string, v: string) => void vars.set(k, v),
  } as unknown as typeof Deno.env;
  assert.deepEqual(loadEnvFileFor(["status", `--env-file=${file}`], env), ["FLANNELD_HEALTHZ_PORT"]);
  assert.equal(vars.get("FLANNELD_HEALTHZ_PORT"), "9123");
  assert.equal(vars.get("FLANNELD_SUBNET_FILE"), "/from/env", "the environment wins, as under systemd");
  assert.deepEqual(loadEnvFileFor(["agent", `--env-file=${file}`], env), [], "the agent never reads it");
  vars.set("WEFT_ENV_FILE", `${dir}/missing`);
  assert.throws(() => loadEnvFileFor(["doctor"], env), /env file .*missing: /, "a named file must exist");
  await Deno.remove(dir, { recursive: true });
});
