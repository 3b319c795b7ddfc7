import assert from "node:assert/strict";
import { parseNetworkConfig } from "../../config/net_conf.ts";
import { clusterVerdicts } from "./verdicts.ts";

const value = (ip: string, mac: string) =>
  JSON.stringify({ PublicIP: ip, BackendType: "vxlan", BackendData: { VNI: 1, VtepMAC: mac } });

Deno.test("clusterVerdicts() judges every entry: parse errors, cluster rules, the younger side of a conflict", () => {
  const entries = [
    { key: "10.244.3.0-24", value: value("192.168.1.3", "02:00:00:00:00:03"), createRevision: 5 },
    { key: "10.244.3.0-24&fd00::-64", value: value("192.168.1.4", "02:00:00:00:00:04"), createRevision: 9 },
    { key: "10.244.0.0-16", value: value("192.168.1.5", "02:00:00:00:00:05"), createRevision: 6 },
    { key: "10.244.6.0-24", value: value("127.0.0.1", "02:00:00:00:00:06"), createRevision: 7 },
    { key: "junk", value: "x", createRevision: 8 },
  ];
  const cfg = parseNetworkConfig(JSON.stringify({ Network: "10.244.0.0/16" }));
  const got = clusterVerdicts(entries, cfg).map((v) => [v.entry.key, v.rejection?.rule ?? "ok"]);
  assert.deepEqual(got, [
    ["10.244.3.0-24", "ok"],
    ["10.244.3.0-24&fd00::-64", "subnet_conflict"],
    ["10.244.0.0-16", "subnet_wrong_length"],
    ["10.244.6.0-24", "public_ip_loopback"],
    ["junk", "key_unparseable"],
  ]);
  // Without a network config only what does not parse is known.
  const bare = clusterVerdicts(entries, undefined).map((v) => v.rejection?.rule ?? "ok");
  assert.deepEqual(bare, ["ok", "ok", "ok", "ok", "key_unparseable"]);
});
