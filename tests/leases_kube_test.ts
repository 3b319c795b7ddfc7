/**
 * `weft leases` lists by address, and in kube mode every node: the peers, and each node that is no peer
 * with why (no agent has published it, no podCIDR, an annotation that does not parse), plus the leases
 * every agent refuses with the rule — against the test API server, as `weft leases --kube-subnet-mgr`
 * runs it.
 */
import assert from "node:assert/strict";
import { kubeLeaseRows } from "../src/cli/kube_leases.ts";
import { type LeaseRow, leaseTable, sortLeaseRows } from "../src/cli/lease_table.ts";
import { loadKubeconfig } from "../src/kube/config.ts";
import { startKubeApiServer } from "./helpers/kube_api_server.ts";

const P = "flannel.alpha.coreos.com/";

function node(name: string, cidr: string | undefined, annotations?: Record<string, string>) {
  return {
    metadata: { name, ...(annotations ? { annotations } : {}) },
    spec: cidr ? { podCIDR: cidr, podCIDRs: [cidr] } : {},
  };
}

function flannelAnnotations(ip: string, mac: string): Record<string, string> {
  return {
    [`${P}kube-subnet-manager`]: "true",
    [`${P}backend-type`]: "vxlan",
    [`${P}public-ip`]: ip,
    [`${P}backend-data`]: JSON.stringify({ VNI: 1, VtepMAC: mac }),
  };
}

const row = (subnet: string | null, extra: Partial<LeaseRow> = {}): LeaseRow => ({
  key: subnet?.replace("/", "-") ?? "garbage",
  subnet,
  ipv6Subnet: null,
  publicIP: "192.168.1.1",
  publicIPv6: null,
  backendType: "vxlan",
  backendData: null,
  ttlSeconds: 60,
  etcdLeaseId: "1",
  status: "ok",
  ...extra,
});

Deno.test("sortLeaseRows() orders by address, not by text: 10.244.8.0/24 before 10.244.32.0/24", () => {
  const rows = [
    row("10.244.32.0/24"),
    row(null),
    row("10.244.8.0/24"),
    row("10.244.100.0/24"),
    row("9.0.0.0/24"),
  ];
  assert.deepEqual(sortLeaseRows(rows).map((r) => r.subnet), [
    "9.0.0.0/24",
    "10.244.8.0/24",
    "10.244.32.0/24",
    "10.244.100.0/24",
    null,
  ]);
  const table = leaseTable(sortLeaseRows(rows)).split("\n");
  assert.match(table[2]!, /^10\.244\.8\.0\/24 /);
  assert.match(table[5]!, /^"garbage"/, "a key that does not parse comes last");
});

Deno.test({
  name: "weft leases --kube-subnet-mgr lists every node, and says why one is no peer",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using s = await startKubeApiServer({ tls: true, tokens: { t: "weft" } });
    const Node = s.store.kindByName("Node");
    const dir = await Deno.makeTempDir({ prefix: "weft-leases-kube-" });
    try {
      await s.writeKubeconfig(`${dir}/kubeconfig`, { token: "t" });
      const netConf = `${dir}/net-conf.json`;
      Deno.writeTextFileSync(
        netConf,
        JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } }),
      );
      s.store.create(
        Node,
        "",
        node("a-32", "10.244.32.0/24", flannelAnnotations("192.168.1.32", "0a:00:00:00:00:32")),
      );
      s.store.create(
        Node,
        "",
        node("b-8", "10.244.8.0/24", flannelAnnotations("192.168.1.8", "0a:00:00:00:00:08")),
      );
      s.store.create(Node, "", node("fresh", "10.244.9.0/24")); // kubelet registered it, no agent yet
      s.store.create(Node, "", node("nocidr", undefined));
      s.store.create(
        Node,
        "",
        node("badip", "10.244.10.0/24", flannelAnnotations("nope", "0a:00:00:00:00:10")),
      );
      s.store.create(
        Node,
        "",
        node("outside", "10.99.1.0/24", flannelAnnotations("192.168.1.99", "0a:00:00:00:00:99")),
      );
      const opts = { conn: await loadKubeconfig(`${dir}/kubeconfig`), netConfPath: netConf };
      const rows = sortLeaseRows(await kubeLeaseRows(opts));
      assert.deepEqual(rows.map((r) => [r.node, r.subnet, r.status]), [
        ["outside", "10.99.1.0/24", "subnet_outside_network"],
        ["b-8", "10.244.8.0/24", "ok"],
        ["fresh", "10.244.9.0/24", "not_a_peer"],
        ["a-32", "10.244.32.0/24", "ok"],
        ["badip", null, "annotation_invalid"],
        ["nocidr", null, "no_pod_cidr"],
      ]);
      assert.match(rows[2]!.reason!, /no weft agent or flanneld has published this node/);
      assert.match(rows[4]!.reason!, /node "badip": invalid IP "nope"/);
      const table = leaseTable(rows).split("\n");
      assert.match(table[0]!, /^NODE\s+SUBNET\s+PUBLIC IP\s+BACKEND\s+VTEP MAC\s+STATUS$/);
      assert.match(table[1]!, /^outside .* rejected: subnet_outside_network$/);
      assert.match(table[3]!, /^fresh\s+10\.244\.9\.0\/24\s+not a peer: no flannel annotations$/);
      assert.match(table[6]!, /^nocidr .*not a peer: no_pod_cidr$/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
