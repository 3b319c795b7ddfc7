import assert from "node:assert/strict";
import { envName, envValue, parseBool } from "./flags.ts";

Deno.test("parseBool() accepts what Go's strconv.ParseBool accepts", () => {
  for (const v of ["1", "t", "T", "true", "TRUE", "True"]) assert.equal(parseBool("--x", v), true);
  for (const v of ["0", "f", "F", "false", "FALSE", "False"]) assert.equal(parseBool("--x", v), false);
  assert.equal(parseBool("--x", true), true);
  assert.equal(parseBool("--x", undefined), false);
  assert.throws(() => parseBool("--x", "yes"), /--x yes: must be true or false/);
});

Deno.test("envName() maps a flag to flanneld's variable", () => {
  assert.equal(envName("--etcd-endpoints"), "FLANNELD_ETCD_ENDPOINTS");
  assert.equal(envName("etcd-cafile"), "FLANNELD_ETCD_CAFILE");
  assert.equal(envName("-log_backtrace_at"), "FLANNELD_LOG_BACKTRACE_AT");
});

Deno.test("envValue() treats an empty variable as unset, as flagutil does", () => {
  const env = { FLANNELD_IFACE: "eth1", FLANNELD_IP_MASQ: "" } as Record<string, string>;
  assert.equal(envValue("--iface", (k) => env[k]), "eth1");
  assert.equal(envValue("--ip-masq", (k) => env[k]), undefined);
  assert.equal(envValue("--public-ip", (k) => env[k]), undefined);
});
