import assert from "node:assert/strict";
import { parseNetworkConfig } from "../../config/net_conf.ts";
import { formatNet, parseNet } from "../../net/ip.ts";
import {
  annotationChanges,
  annotationKeys,
  type KubeNode,
  nodeToLease,
  ownAnnotations,
  ownSubnets,
  PodCidrError,
  storedPublicIPs,
} from "./node_lease.ts";

const FIXTURE = JSON.parse(
  Deno.readTextFileSync(new URL("./testdata/flannel_node.json", import.meta.url)),
) as KubeNode;
const CFG = parseNetworkConfig(JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } }));
const DUAL = parseNetworkConfig(JSON.stringify({
  Network: "10.244.0.0/16",
  EnableIPv6: true,
  IPv6Network: "fd00:10:244::/56",
  Backend: { Type: "vxlan" },
}));
const KEYS = annotationKeys();
const P = "flannel.alpha.coreos.com/";

function node(name: string, spec: KubeNode["spec"], annotations: Record<string, string> = {}): KubeNode {
  return { metadata: { name, annotations }, ...(spec ? { spec } : {}) };
}

Deno.test("annotationKeys() follows flannel's prefix rules", () => {
  assert.equal(annotationKeys().backendData, `${P}backend-data`);
  assert.equal(annotationKeys("example.com/net").publicIP, "example.com/net-public-ip");
  assert.equal(annotationKeys("example.com/net-").publicIP, "example.com/net-public-ip");
  assert.equal(annotationKeys("example.com/").subnetKubeManaged, "example.com/kube-subnet-manager");
  assert.throws(() => annotationKeys("a/b/c"), /at most one "\/"/);
  assert.throws(() => annotationKeys("NotADomain"), /--kube-annotation-prefix NotADomain/);
});

Deno.test("a node annotated by flanneld reads as a lease with flannel's attributes", () => {
  const l = nodeToLease(FIXTURE, KEYS, CFG)!;
  assert.equal(l.key, "10.244.9.0-24");
  assert.equal(l.node, "flannel-node");
  assert.equal(formatNet(l.subnet!), "10.244.9.0/24");
  assert.deepEqual(l.attrs, {
    PublicIP: "192.168.77.19",
    PublicIPv6: null,
    BackendType: "vxlan",
    BackendData: { VNI: 1, VtepMAC: "c6:d2:32:6f:8f:44" },
  });
  assert.equal(l.createOrder, Date.parse("2026-11-01T10:00:00Z"), "older nodes win conflicts on every agent");
});

Deno.test("weft's own annotations equal flanneld's, key by key, for the same attributes", () => {
  const bare: KubeNode = { ...FIXTURE, metadata: { ...FIXTURE.metadata, annotations: {} } };
  const want = ownAnnotations(bare, {
    PublicIP: "192.168.77.19",
    PublicIPv6: null,
    BackendType: "vxlan",
    BackendData: { VNI: 1, VtepMAC: "c6:d2:32:6f:8f:44" },
  }, KEYS);
  const flannels = Object.fromEntries(
    Object.entries(FIXTURE.metadata.annotations!).filter(([k]) => k.startsWith(P)),
  );
  assert.deepEqual(want, flannels);
  assert.deepEqual(annotationChanges(FIXTURE, want), {}, "nothing to patch on a node flanneld annotated");
  // And what weft writes reads back as the same lease through flannel's rules.
  const back = nodeToLease({ ...bare, metadata: { ...bare.metadata, annotations: want } }, KEYS, CFG)!;
  assert.deepEqual(back.attrs, nodeToLease(FIXTURE, KEYS, CFG)!.attrs);
});

Deno.test("public-ip-overwrite is published instead of the detected IP; only differing keys are patched", () => {
  const n = node("a", { podCIDR: "10.244.1.0/24" }, {
    [`${P}public-ip-overwrite`]: "203.0.113.7",
    [`${P}backend-type`]: "vxlan",
  });
  const want = ownAnnotations(n, {
    PublicIP: "192.168.77.11",
    BackendType: "vxlan",
    BackendData: { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:ff" },
  }, KEYS);
  assert.equal(want[`${P}public-ip`], "203.0.113.7");
  assert.deepEqual(Object.keys(annotationChanges(n, want)).sort(), [
    `${P}backend-data`,
    `${P}kube-subnet-manager`,
    `${P}public-ip`,
  ]);
});

Deno.test("host-gw writes backend-data null, and IPv6 keys only with an IPv6 address", () => {
  const want = ownAnnotations(node("a", {}), { PublicIP: "192.168.77.11", BackendType: "host-gw" }, KEYS);
  assert.deepEqual(want, {
    [`${P}backend-type`]: "host-gw",
    [`${P}backend-data`]: "null",
    [`${P}public-ip`]: "192.168.77.11",
    [`${P}kube-subnet-manager`]: "true",
  });
  const dual = ownAnnotations(node("a", {}), {
    PublicIP: "192.168.77.11",
    PublicIPv6: "fd00::11",
    BackendType: "vxlan",
    BackendData: { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:01" },
    BackendV6Data: { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:02" },
  }, KEYS);
  assert.equal(dual[`${P}backend-v6-data`], '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"}');
  assert.equal(dual[`${P}public-ipv6`], "fd00::11");
});

Deno.test("dual-stack: podCIDRs give both subnets, and peers read both families", () => {
  const n = node("d", { podCIDR: "10.244.4.0/24", podCIDRs: ["10.244.4.0/24", "fd00:10:244:4::/64"] }, {
    [`${P}kube-subnet-manager`]: "true",
    [`${P}backend-type`]: "vxlan",
    [`${P}public-ip`]: "192.168.77.14",
    [`${P}public-ipv6`]: "fd00::14",
    [`${P}backend-data`]: '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}',
    [`${P}backend-v6-data`]: '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"}',
  });
  const own = ownSubnets(n, DUAL);
  assert.equal(formatNet(own.subnet!), "10.244.4.0/24");
  assert.equal(formatNet(own.ipv6Subnet!), "fd00:10:244:4::/64");
  const l = nodeToLease(n, KEYS, DUAL)!;
  assert.equal(l.key, "10.244.4.0-24&fd00:10:244:4::-64");
  assert.equal(l.attrs.PublicIPv6, "fd00::14");
  assert.deepEqual(l.attrs.BackendV6Data, { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:02" });
  assert.throws(() => ownSubnets(node("v4only", { podCIDR: "10.244.5.0/24" }), DUAL), /no IPv6 pod CIDR/);
});

Deno.test("nodes without the kube-subnet-manager annotation are not peers; malformed ones say what is wrong", () => {
  assert.equal(nodeToLease(node("x", { podCIDR: "10.244.1.0/24" }), KEYS, CFG), undefined);
  assert.throws(
    () =>
      nodeToLease(
        node("y", { podCIDR: "10.244.1.0/24" }, {
          [`${P}kube-subnet-manager`]: "true",
          [`${P}public-ip`]: "nope",
        }),
        KEYS,
        CFG,
      ),
    /not an IP|nope/,
  );
  assert.throws(
    () =>
      nodeToLease(
        node("z", { podCIDRs: ["10.244.1.0/24", "fd00::/64", "10.244.2.0/24"] }, {
          [`${P}kube-subnet-manager`]: "true",
        }),
        KEYS,
        CFG,
      ),
    /node "z": spec.podCIDRs has 3 entries/,
  );
});

Deno.test("the own podCIDR must be assigned and inside Network, with errors that say what to set", () => {
  assert.throws(() => ownSubnets(node("n0", {}), CFG, "/etc/kube-flannel/net-conf.json"), (e: Error) => {
    assert.ok(e instanceof PodCidrError);
    assert.match(e.message, /node "n0" pod cidr not assigned/);
    assert.match(e.message, /--allocate-node-cidrs=true and --cluster-cidr=10\.244\.0\.0\/16/);
    return true;
  });
  assert.throws(
    () => ownSubnets(node("n1", { podCIDR: "10.32.1.0/24" }), CFG, "/etc/kube-flannel/net-conf.json"),
    /node "n1" podCIDR 10\.32\.1\.0\/24 is not inside Network 10\.244\.0\.0\/16 of \/etc\/kube-flannel\/net-conf\.json: kube-controller-manager's --cluster-cidr/,
  );
  assert.equal(formatNet(ownSubnets(node("n2", { podCIDR: "10.244.2.0/24" }), CFG).subnet!), "10.244.2.0/24");
  // A podCIDR larger than SubnetLen is fine in kube mode (flannel ignores SubnetLen there).
  assert.deepEqual(
    ownSubnets(node("n3", { podCIDR: "10.244.64.0/20" }), CFG).subnet,
    parseNet("10.244.64.0/20"),
  );
});

Deno.test("node-public-ip annotations are read as the stored public IPs", () => {
  const n = node("s", {}, { [`${P}node-public-ip`]: "198.51.100.4" });
  assert.deepEqual(storedPublicIPs(n, KEYS), { ipv4: "198.51.100.4" });
  assert.deepEqual(storedPublicIPs(FIXTURE, KEYS), {});
});
