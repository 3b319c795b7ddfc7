/** The deployment artifacts parse and hold what a cluster operator expects. */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { parseCniConfig } from "../src/cni/config.ts";
import { KubeLeaseSource } from "../src/lease/kube/lease_source.ts";
import { type AuthzAttributes, startKubeApiServer } from "./helpers/kube_api_server.ts";

const DEPLOY = new URL("../deploy/", import.meta.url);

type Doc = Record<string, unknown>;
interface PodSpec {
  hostNetwork: boolean;
  serviceAccountName: string;
  containers: {
    command: string[];
    args: string[];
    env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
    securityContext: { capabilities: { add: string[] } };
    volumeMounts: { name: string; mountPath: string }[];
  }[];
  initContainers: { args: string[] }[];
}

async function manifest(name: string): Promise<Doc[]> {
  const text = await Deno.readTextFile(new URL(name, DEPLOY));
  return parseAllDocuments(text).map((d) => {
    assert.equal(d.errors.length, 0, String(d.errors[0]));
    return d.toJS() as Doc;
  }).filter(Boolean);
}

function podOf(docs: Doc[]): PodSpec {
  return (docs.find((d) => d.kind === "DaemonSet") as { spec: { template: { spec: PodSpec } } }).spec.template
    .spec;
}

function configMap(docs: Doc[]): Record<string, string> {
  return (docs.find((d) => d.kind === "ConfigMap") as { data: Record<string, string> }).data;
}

/** The conflist as libcni hands the flannel plugin its config: the plugin object plus cniVersion and name. */
function assertConflistIsReadByCniMode(text: string) {
  const conflist = JSON.parse(text);
  const plugin = conflist.plugins[0];
  assert.equal(plugin.type, "flannel");
  const cfg = parseCniConfig(
    JSON.stringify({ ...plugin, cniVersion: conflist.cniVersion, name: conflist.name }),
  );
  assert.equal(cfg.type, "flannel");
  assert.equal(cfg.name, "cbr0");
  assert.equal(cfg.bridge, "cni0");
  assert.equal(cfg.hairpinMode, true);
  assert.equal(cfg.isDefaultGateway, true);
  assert.equal(cfg.subnetFile, "/run/flannel/subnet.env");
}

Deno.test("deploy/kube-weft.yml is kube-flannel.yml's shape with weft in kube mode", async () => {
  const docs = await manifest("kube-weft.yml");
  assert.deepEqual(docs.map((d) => d.kind), [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "DaemonSet",
  ]);
  const data = configMap(docs);
  assert.equal(JSON.parse(data["net-conf.json"]!).Network, "10.244.0.0/16");
  assertConflistIsReadByCniMode(data["cni-conf.json"]!);
  const pod = podOf(docs);
  const c = pod.containers[0]!;
  assert.equal(pod.hostNetwork, true);
  assert.deepEqual(c.command, ["/usr/local/bin/weft", "agent"]);
  assert.ok(c.args.includes("--kube-subnet-mgr") && c.args.includes("--ip-masq"));
  assert.deepEqual(
    c.env?.find((e) => e.name === "NODE_NAME")?.valueFrom?.fieldRef?.fieldPath,
    "spec.nodeName",
  );
  // The ConfigMap is mounted where --net-config-path looks by default.
  assert.ok(c.volumeMounts.some((m) => m.name === "weft-cfg" && m.mountPath === "/etc/kube-flannel/"));
  assert.ok(c.securityContext.capabilities.add.includes("NET_ADMIN"));
  assert.match(pod.initContainers[0]!.args.join(" "), /\/opt\/cni\/bin\/flannel/);
  assert.match(pod.initContainers[1]!.args.join(" "), /\/etc\/cni\/net.d\/10-flannel.conflist/);
  const binding = docs.find((d) => d.kind === "ClusterRoleBinding") as {
    subjects: { name: string; namespace: string }[];
  };
  assert.deepEqual(binding.subjects[0], {
    kind: "ServiceAccount",
    name: pod.serviceAccountName,
    namespace: "kube-weft",
  });
});

Deno.test({
  name: "kube-weft.yml's ClusterRole grants exactly the verbs a kube-mode agent uses, no more, no less",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const docs = await manifest("kube-weft.yml");
    const rules = (docs.find((d) => d.kind === "ClusterRole") as {
      rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
    }).rules;
    const granted = new Set(
      rules.flatMap((r) => r.resources.flatMap((res) => r.verbs.map((v) => `${v} ${res}`))),
    );
    const used = new Set<string>(), refused: string[] = [];
    const user = "system:serviceaccount:kube-weft:weft";
    const authorize = (a: AuthzAttributes) => {
      const what = `${a.verb} ${a.resource}${a.subresource ? `/${a.subresource}` : ""}`;
      const ok = a.user === user && a.group === "" && granted.has(what);
      if (ok) used.add(what);
      else refused.push(what);
      return ok;
    };
    await using s = await startKubeApiServer({ tokens: { "sa-token": user }, authorize, bookmarkMs: 200 });
    const Node = s.store.kindByName("Node");
    s.store.create(Node, "", { metadata: { name: "self" }, spec: { podCIDR: "10.244.1.0/24" } });
    s.store.create(Node, "", {
      metadata: {
        name: "peer",
        annotations: {
          "flannel.alpha.coreos.com/kube-subnet-manager": "true",
          "flannel.alpha.coreos.com/backend-type": "vxlan",
          "flannel.alpha.coreos.com/public-ip": "192.168.77.12",
          "flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"0a:00:00:00:00:02"}',
        },
      },
      spec: { podCIDR: "10.244.2.0/24" },
    });
    const dir = await Deno.makeTempDir({ prefix: "weft-deploy-" });
    await Deno.writeTextFile(`${dir}/net-conf.json`, configMap(docs)["net-conf.json"]!);
    const env: Record<string, string> = { NODE_NAME: "self" };
    const src = await KubeLeaseSource.open({
      conn: { server: s.url, token: "sa-token", source: "test" },
      netConfPath: `${dir}/net-conf.json`,
      env: (k) => env[k],
    });
    const stop = new AbortController();
    try {
      const cfg = await src.getNetworkConfig();
      await src.storedPublicIPs();
      const attrs = {
        PublicIP: "192.168.77.11",
        BackendType: "vxlan",
        BackendData: { VNI: 1, VtepMAC: "0a:00:00:00:00:01" },
      };
      const lease = await src.acquireLease(cfg, attrs);
      const synced = Promise.withResolvers<void>();
      const watching = src.watchLeases(() => {}, { signal: stop.signal, onSync: () => synced.resolve() });
      await synced.promise;
      const keeper = src.keepLease(cfg, attrs, lease);
      const keeping = keeper.run(stop.signal);
      keeper.datapathReady?.(); // the condition: patch nodes/status
      src.configFingerprint();
      // Until the keeper and the watch have made their calls: every granted verb used (or 30 s).
      const end = Date.now() + 30_000;
      while ([...granted].some((g) => !used.has(g)) && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 20));
      }
      stop.abort();
      await Promise.all([watching, keeping]);
    } finally {
      stop.abort();
      await src.close();
      await Deno.remove(dir, { recursive: true });
    }
    assert.deepEqual(refused, [], "nothing the agent did was refused");
    assert.deepEqual([...used].sort(), [...granted].sort(), "every granted verb is used");
  },
});

Deno.test("deploy/kube-weft-etcd.yml keeps the etcd variant: etcd flags, no Kubernetes API access", async () => {
  const docs = await manifest("kube-weft-etcd.yml");
  // The etcd-mode agent never calls the API: no ClusterRole (kube-weft.yml's `weft` is the only one) and
  // no service account token.
  assert.deepEqual(docs.map((d) => d.kind), ["Namespace", "ServiceAccount", "ConfigMap", "DaemonSet"]);
  assert.equal((docs[1] as { automountServiceAccountToken?: boolean }).automountServiceAccountToken, false);
  assertConflistIsReadByCniMode(configMap(docs)["cni-conf.json"]!);
  const pod = podOf(docs);
  const c = pod.containers[0]!;
  assert.ok(!c.args.includes("--kube-subnet-mgr"));
  assert.ok(c.env?.some((e) => e.name === "FLANNELD_ETCD_ENDPOINTS"));
  assert.match(pod.initContainers[0]!.args.join(" "), /\/opt\/cni\/bin\/flannel/);
});

Deno.test("deploy/weft.service runs the agent and restarts it", async () => {
  const text = await Deno.readTextFile(new URL("weft.service", DEPLOY));
  assert.match(text, /^ExecStart=\/usr\/local\/bin\/weft agent$/m);
  assert.match(text, /^Restart=always$/m);
  assert.match(text, /^\[Install\]$/m);
  // The agent sends READY=1 once ready (tests/systemd_notify_test.ts): ordering after it means something.
  assert.match(text, /^Type=notify$/m);
  assert.match(text, /^Before=.*kubelet\.service/m);
});
