/** The deployment artifacts parse and hold what a cluster operator expects. */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";

const DEPLOY = new URL("../deploy/", import.meta.url);

Deno.test("deploy/kube-weft.yml parses as YAML with the expected kinds and installs the binary as flannel", async () => {
  const text = await Deno.readTextFile(new URL("kube-weft.yml", DEPLOY));
  const docs = parseAllDocuments(text).map((d) => {
    assert.equal(d.errors.length, 0, String(d.errors[0]));
    return d.toJS() as Record<string, unknown>;
  }).filter(Boolean);
  const kinds = docs.map((d) => d.kind);
  assert.deepEqual(kinds, [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "DaemonSet",
  ]);
  const cm = docs.find((d) => d.kind === "ConfigMap") as { data: Record<string, string> };
  const net = JSON.parse(cm.data["net-conf.json"]!);
  assert.equal(net.Network, "10.244.0.0/16");
  const conflist = JSON.parse(cm.data["cni-conf.json"]!);
  assert.equal(conflist.plugins[0].type, "flannel");
  const ds = docs.find((d) => d.kind === "DaemonSet") as {
    spec: {
      template: {
        spec: Record<string, unknown> & {
          containers: { command: string[]; securityContext: { capabilities: { add: string[] } } }[];
          initContainers: { args: string[] }[];
        };
      };
    };
  };
  const pod = ds.spec.template.spec;
  assert.equal(pod.hostNetwork, true);
  assert.deepEqual(pod.containers[0]!.command, ["/usr/local/bin/weft", "agent"]);
  assert.ok(pod.containers[0]!.securityContext.capabilities.add.includes("NET_ADMIN"));
  assert.match(pod.initContainers[0]!.args.join(" "), /\/opt\/cni\/bin\/flannel/);
});

Deno.test("deploy/weft.service runs the agent and restarts it", async () => {
  const text = await Deno.readTextFile(new URL("weft.service", DEPLOY));
  assert.match(text, /^ExecStart=\/usr\/local\/bin\/weft agent$/m);
  assert.match(text, /^Restart=always$/m);
  assert.match(text, /^\[Install\]$/m);
});
