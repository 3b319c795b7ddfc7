/**
 * End to end in kube mode: real `weft agent --kube-subnet-mgr` processes in node namespaces against the
 * test Kubernetes API server (HTTPS, bearer token) listening in the underlay namespace. Leases are the
 * nodes' podCIDRs; the agents publish flannel's annotations; a node annotated exactly as flanneld does
 * is a peer. NetworkUnavailable=False is checked at the moment its PATCH reaches the server: subnet.env
 * and the routes of the peers known at start must be in place by then. Then: a quiet window with no
 * request but the open watches, nodes added and deleted, the API server stopped for 20 s under
 * `ping -i 0.01` (with nodes changed and the watch history compacted meanwhile: 410 → re-list), an agent
 * SIGKILLed under ping, credentials revoked (/readyz 503 with the cause) and restored. A second test runs
 * host-gw; a third changes a node's podCIDR under a running pod (subnet.env withdrawn, then rewritten;
 * ADD refuses old-range addresses; cni0 moves once the old pod is gone).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { Netlink, netnsCreate, netnsDelete } from "../ffi/mod.ts";
import { formatNet } from "../src/net/ip.ts";
import { readSubnetEnv, type SubnetEnv } from "../src/config/subnet_env.ts";
import {
  addPodBridge,
  agentHttp,
  type AgentProcess,
  metric,
  pingMatrix,
  pingWhile,
  startAgent,
  waitFor,
  waitReady,
  waitSubnetEnv,
} from "./helpers/agent.ts";
import { type KubeApiServer, type RequestRecord, startKubeApiServer } from "./helpers/kube_api_server.ts";
import { createTopology, ROOT, type Topology } from "./helpers/topology.ts";
import { cni } from "./helpers/cni.ts";
import { uniqueNetnsName } from "./helpers/names.ts";
import { runIn } from "../src/lab/lab.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
/** Set while a step wants the API server's RBAC to refuse patching nodes/status. */
const denyPatch = { value: false };

const P = "flannel.alpha.coreos.com/";
const TOKEN = "weft-sa-token";
const FIXTURE = JSON.parse(
  Deno.readTextFileSync(new URL("../src/lease/kube/testdata/flannel_node.json", import.meta.url)),
) as { metadata: { name: string; annotations: Record<string, string> }; spec: { podCIDR: string } };

type Obj = Record<string, unknown>;

/** The kernel's view of one vxlan peer on a node. */
function vxlanPeer(nl: Netlink, subnet: string, publicIP: string, mac?: string) {
  const vx = nl.linkGet("flannel.1");
  const net = subnet.split("/")[0]!;
  return {
    route: nl.routeList({ protocol: 87 }).some((r) => r.dst === subnet),
    neigh: !!vx && nl.neighList({ dev: vx.index }).some((n) => n.ip === net && (!mac || n.mac === mac)),
    fdb: !!vx && nl.fdbList({ dev: vx.index }).some((f) => f.dst === publicIP && (!mac || f.mac === mac)),
  };
}

function hasRoute(netns: string, subnet: string): boolean {
  using nl = Netlink.open({ netns });
  return nl.routeList({ protocol: 87 }).some((r) => r.dst === subnet);
}

/** A node as a weft/flannel node publishes itself (for peers that run no agent here). */
function annotatedNode(name: string, podCIDR: string, publicIP: string, mac: string): Obj {
  return {
    metadata: {
      name,
      annotations: {
        [`${P}kube-subnet-manager`]: "true",
        [`${P}backend-type`]: "vxlan",
        [`${P}public-ip`]: publicIP,
        [`${P}backend-data`]: JSON.stringify({ VNI: 1, VtepMAC: mac }),
      },
    },
    spec: { podCIDR, podCIDRs: [podCIDR] },
  };
}

/** Agents talk to a server whose bookmarks come every second: a watch silent 2 s is dead; short back-off. */
const AGENT_ENV = { WEFT_KUBE_BOOKMARK_SECONDS: "1", WEFT_KUBE_BACKOFF_MS: "200:2000" };

async function kubeCluster(
  topo: Topology,
  backend: "vxlan" | "host-gw",
  dir: string,
  onRequest?: (rec: RequestRecord) => void,
) {
  const tokens: Record<string, string> = { [TOKEN]: "system:serviceaccount:kube-weft:weft" };
  const api = await startKubeApiServer({
    netns: topo.underlay,
    hostname: topo.underlayIP,
    tls: true,
    tokens,
    authorize: (a) => !(denyPatch.value && a.verb === "patch"),
    bookmarkMs: 1000,
    historySize: 100,
    ...(onRequest ? { onRequest } : {}),
  });
  const Node = api.store.kindByName("Node");
  const kubeconfig = `${dir}/kubeconfig`;
  await api.writeKubeconfig(kubeconfig, { token: TOKEN });
  const netConf = `${dir}/net-conf.json`;
  await Deno.writeTextFile(netConf, JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: backend } }));
  topo.nodes.forEach((n, i) => {
    const cidr = `10.244.${10 + i}.0/24`;
    api.store.create(Node, "", {
      metadata: { name: `node-${i}`, labels: { "kubernetes.io/hostname": `node-${i}` } },
      spec: { podCIDR: cidr, podCIDRs: [cidr] },
      status: {
        addresses: [{ type: "InternalIP", address: n.ip }],
        conditions: [{ type: "Ready", status: "True", reason: "KubeletReady" }],
      },
    });
  });
  const start = (i: number, args: string[]) =>
    startAgent(topo.nodes[i]!, {
      kube: { kubeconfig, netConf, nodeName: `node-${i}` },
      dir,
      args,
      env: AGENT_ENV,
    });
  return { api, Node, start, tokens };
}

Deno.test({
  name:
    "weft agent --kube-subnet-mgr (vxlan, 3 nodes): podCIDR leases, flannel's annotations, outages, restarts",
  ignore: !ROOT,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using topo = await createTopology({ nodes: 3 });
    const dir = await Deno.makeTempDir({ prefix: "weft-kube-e2e-" });
    let api: KubeApiServer | undefined;
    const agents: AgentProcess[] = [];
    // At the moment a NetworkUnavailable=False PATCH arrives: is the node's subnet.env written, are the
    // routes of the peers that existed before it started (flannel-node, fake-a, fake-b) programmed?
    const conditionChecks: string[] = [];
    const onRequest = (r: RequestRecord) => {
      const m = r.path.match(/^\/api\/v1\/nodes\/node-(\d)\/status$/);
      if (!m || r.method !== "PATCH" || !r.body?.includes("NetworkUnavailable")) return;
      const n = topo.nodes[Number(m[1])]!;
      const env = (() => {
        try {
          return readSubnetEnv(`${dir}/${n.netns}.subnet.env`);
        } catch {
          return undefined;
        }
      })();
      const routes = ["10.244.9.0/24", "10.244.40.0/24", "10.244.41.0/24"].filter((s) =>
        hasRoute(n.netns, s)
      );
      conditionChecks.push(
        `node-${m[1]}: subnet.env ${env ? "written" : "MISSING"}, ${routes.length}/3 routes`,
      );
    };
    try {
      const c = await kubeCluster(topo, "vxlan", dir, onRequest);
      api = c.api;
      const { Node } = c;
      // A node flanneld runs on (its annotations exactly as flanneld writes them), and two more peers
      // that the outage step changes.
      api.store.create(Node, "", FIXTURE);
      api.store.create(
        Node,
        "",
        annotatedNode("fake-a", "10.244.40.0/24", "192.168.77.40", "0a:00:00:00:00:40"),
      );
      api.store.create(
        Node,
        "",
        annotatedNode("fake-b", "10.244.41.0/24", "192.168.77.41", "0a:00:00:00:00:41"),
      );
      const args = ["--resync-interval=2", "--ip-masq"];
      for (let i = 0; i < 3; i++) agents.push(c.start(i, args));
      const envs: SubnetEnv[] = [];
      for (const a of agents) envs.push(await waitSubnetEnv(a, 60_000));
      topo.nodes.forEach((n, i) => addPodBridge(n.netns, envs[i]!));
      await Promise.all(agents.map((a) => waitReady(a, 60_000)));

      await t.step("each node's lease is its podCIDR, in subnet.env", () => {
        envs.forEach((e, i) => assert.equal(formatNet(e.subnet!), `10.244.${10 + i}.0/24`));
        assert.equal(formatNet(envs[0]!.network!), "10.244.0.0/16");
      });

      await t.step(
        "NetworkUnavailable=False only once subnet.env is written and the datapath programmed",
        async () => {
          await waitFor("three conditions", 10_000, () => conditionChecks.length >= 3);
          assert.deepEqual(
            conditionChecks.sort(),
            [0, 1, 2].map((i) => `node-${i}: subnet.env written, 3/3 routes`),
          );
        },
      );

      await t.step(
        "quiet: 4 s (4 bookmark intervals) with 3 agents up cost 0 requests besides their open watches",
        async () => {
          await waitFor("three watches", 10_000, () => api!.openWatches === 3);
          const mark = api!.mark();
          await new Promise((r) => setTimeout(r, 4000));
          assert.deepEqual(api!.counts(mark), {});
          assert.equal(api!.openWatches, 3);
        },
      );

      await t.step(
        "the agents annotate their nodes as flanneld does, key by key, through nodes/status",
        () => {
          const flannelKeys = Object.keys(FIXTURE.metadata.annotations).filter((k) => k.startsWith(P)).sort();
          topo.nodes.forEach((n, i) => {
            const node = api!.store.get(Node, "", `node-${i}`) as {
              metadata: { annotations: Record<string, string> };
              status: { conditions: Record<string, string>[] };
            };
            const a = node.metadata.annotations;
            assert.deepEqual(Object.keys(a).filter((k) => k.startsWith(P)).sort(), flannelKeys);
            using nl = Netlink.open({ netns: n.netns });
            const mac = nl.linkGet("flannel.1")!.mac;
            assert.equal(a[`${P}backend-data`], `{"VNI":1,"VtepMAC":"${mac}"}`);
            assert.equal(a[`${P}backend-type`], "vxlan");
            assert.equal(a[`${P}public-ip`], n.ip);
            assert.equal(a[`${P}kube-subnet-manager`], "true");
            const cond = node.status.conditions.find((x) => x.type === "NetworkUnavailable")!;
            assert.deepEqual([cond.status, cond.reason, cond.message], [
              "False",
              "FlannelIsUp",
              "Flannel is running on this node",
            ]);
          });
          const patches = api!.requests.filter((r) => r.method === "PATCH");
          assert.ok(patches.length >= 6);
          for (const p of patches) {
            assert.match(p.path, /^\/api\/v1\/nodes\/node-\d\/status$/);
            assert.equal(p.contentType, "application/strategic-merge-patch+json");
          }
        },
      );

      await t.step("weft leases, status and doctor work in kube mode", async () => {
        const n0 = topo.nodes[0]!;
        const weft = (args: string[], env: Record<string, string> = {}) =>
          runIn(n0.netns, [Deno.execPath(), "run", "-A", "--no-check", MAIN, ...args], { env });
        const kubeArgs = [
          "--kube-subnet-mgr",
          `--kubeconfig-file=${dir}/kubeconfig`,
          `--net-config-path=${dir}/net-conf.json`,
        ];
        const leases = await weft(["leases", "--json", ...kubeArgs]);
        assert.equal(leases.code, 0, leases.stderr);
        const rows = JSON.parse(leases.stdout) as { node: string; subnet: string; publicIP: string }[];
        assert.deepEqual(
          rows.map((r) => `${r.node} ${r.subnet} ${r.publicIP}`).sort(),
          [
            "fake-a 10.244.40.0/24 192.168.77.40",
            "fake-b 10.244.41.0/24 192.168.77.41",
            "flannel-node 10.244.9.0/24 192.168.77.19",
            ...topo.nodes.map((n, i) => `node-${i} 10.244.${10 + i}.0/24 ${n.ip}`),
          ].sort(),
        );
        const table = await weft(["leases", ...kubeArgs]);
        assert.match(table.stdout, /^NODE\s+SUBNET\s+PUBLIC IP\s+BACKEND\s+VTEP MAC\s+STATUS\n/);
        const status = await weft(["status"]);
        assert.equal(status.code, 0, status.stderr);
        assert.match(status.stdout, /ready\s+yes/);
        assert.match(status.stdout, /lease\s+subnet=10\.244\.10\.0\/24/);
        const doctor = await weft(["doctor", "--json", ...kubeArgs], { NODE_NAME: "node-0" });
        const f = new Map(
          (JSON.parse(doctor.stdout).findings as { id: string; status: string; message: string }[]).map((
            x,
          ) => [x.id, x]),
        );
        for (const id of ["kube_api", "kube_node", "kube_podcidr", "kube_annotations", "kube_rbac"]) {
          assert.equal(f.get(id)?.status, "ok", `${id}: ${f.get(id)?.message}`);
        }
        // A node without podCIDR, and credentials RBAC refuses: the doctor says so.
        api!.store.create(Node, "", { metadata: { name: "bare" } });
        const bare = await weft(["doctor", "--json", ...kubeArgs], { NODE_NAME: "bare" });
        const fb = new Map(
          (JSON.parse(bare.stdout).findings as { id: string; status: string; message: string }[]).map((x) => [
            x.id,
            x,
          ]),
        );
        assert.equal(fb.get("kube_podcidr")?.status, "fail");
        assert.match(fb.get("kube_podcidr")!.message, /node "bare" pod cidr not assigned/);
        assert.equal(fb.get("kube_annotations")?.status, "warn");
        api!.store.delete(Node, "", "bare");
        denyPatch.value = true;
        const rbac = await weft(["doctor", "--json", ...kubeArgs], { NODE_NAME: "node-0" });
        denyPatch.value = false;
        const fr = (JSON.parse(rbac.stdout).findings as { id: string; status: string; message: string }[])
          .find((x) => x.id === "kube_rbac")!;
        assert.equal(fr.status, "fail");
        assert.match(fr.message, /RBAC refuses: patch nodes\/status/);
      });

      await t.step("pods on every node reach every other node across VXLAN", async () => {
        assert.deepEqual(await pingMatrix(topo, envs, 20_000), []);
      });

      await t.step("the node flanneld annotated is programmed as a peer: route, neighbour, FDB", async () => {
        const mac = JSON.parse(FIXTURE.metadata.annotations[`${P}backend-data`]!).VtepMAC;
        const ip = FIXTURE.metadata.annotations[`${P}public-ip`]!;
        for (const n of topo.nodes) {
          using nl = Netlink.open({ netns: n.netns });
          await waitFor("fixture peer", 10_000, () => {
            const p = vxlanPeer(nl, FIXTURE.spec.podCIDR, ip, mac);
            return p.route && p.neigh && p.fdb;
          });
        }
        assert.equal(await metric(agents[0]!, "weft_peers_programmed"), 5);
      });

      await t.step(
        "a node added is routed from the open watch, no re-list; a node deleted loses its routes",
        async () => {
          // A LIST is a GET of the collection without `watch`: none may be needed for the new node.
          const lists = () =>
            api!.requests.filter((r) =>
              r.method === "GET" && r.path === "/api/v1/nodes" && !/watch/.test(r.query)
            )
              .length;
          const listsBefore = lists();
          const t0 = performance.now();
          api!.store.create(
            Node,
            "",
            annotatedNode("node-new", "10.244.50.0/24", "192.168.77.50", "0a:00:00:00:00:50"),
          );
          await waitFor(
            "new node's route on node-0",
            30_000,
            () => hasRoute(topo.nodes[0]!.netns, "10.244.50.0/24"),
            5,
          );
          const ms = performance.now() - t0;
          console.log(`  node created → route on node-0 in ${ms.toFixed(0)} ms`);
          await waitFor(
            "all nodes",
            30_000,
            () => topo.nodes.every((n) => hasRoute(n.netns, "10.244.50.0/24")),
          );
          assert.equal(lists(), listsBefore, "routed from the watch's event: no LIST");
          api!.store.delete(Node, "", "node-new");
          // One pass deletes the route, then the neighbour, then the FDB entry: wait for all three, on every
          // node (reading right after the route went raced the neighbour's delete on a loaded machine).
          const gone = (netns: string) => {
            using nl = Netlink.open({ netns });
            const p = vxlanPeer(nl, "10.244.50.0/24", "192.168.77.50");
            return !p.route && !p.neigh && !p.fdb;
          };
          await waitFor(
            "route, neighbour and FDB gone everywhere",
            5000,
            () => topo.nodes.every((n) => gone(n.netns)),
            10,
          );
        },
      );

      await t.step(
        "API server down 20 s: no packet lost, changes made meanwhile (history compacted: 410) are applied after",
        async () => {
          const results = await pingWhile(topo, [[0, 1], [1, 2], [2, 0]], envs, async () => {
            await api!.stop();
            // Meanwhile (another API server replica, say): fake-a deleted, fake-c added, history compacted.
            api!.store.delete(Node, "", "fake-a");
            api!.store.create(
              Node,
              "",
              annotatedNode("fake-c", "10.244.42.0/24", "192.168.77.42", "0a:00:00:00:00:42"),
            );
            api!.store.compact();
            await waitFor(
              "agents notice the outage",
              15_000,
              async () => (await metric(agents[0]!, "weft_store_up")) === 0,
            );
            await new Promise((r) => setTimeout(r, 20_000));
            // The datapath stayed: every peer is still routed.
            for (const n of topo.nodes) {
              assert.ok(hasRoute(n.netns, "10.244.40.0/24"), "nothing removed while down");
            }
            api!.start();
            await waitFor("agents see the API again", 20_000, async () => {
              for (const a of agents) if ((await metric(a, "weft_store_up")) !== 1) return false;
              return true;
            });
            await waitFor(
              "re-listed everywhere",
              15_000,
              () =>
                topo.nodes.every((n) =>
                  !hasRoute(n.netns, "10.244.40.0/24") && hasRoute(n.netns, "10.244.42.0/24")
                ),
            );
          });
          for (const r of results) {
            console.log(
              `  ping ${r.from}→${r.to} across the outage: ${r.received}/${r.sent}, ${r.lost} lost`,
            );
            assert.equal(r.lost, 0);
          }
          // No stale or lost peer: exactly the nodes that exist now.
          for (const n of topo.nodes) {
            using nl = Netlink.open({ netns: n.netns });
            const routes = nl.routeList({ protocol: 87 }).map((r) => r.dst).filter((d) =>
              d?.startsWith("10.244.")
            )
              .sort();
            const want = [
              "10.244.10.0/24",
              "10.244.11.0/24",
              "10.244.12.0/24",
              "10.244.41.0/24",
              "10.244.42.0/24",
              "10.244.9.0/24",
            ]
              .filter((s) => !hasOwn(n.ip, s, topo)).sort();
            assert.deepEqual(routes, want, `routes on ${n.netns}`);
          }
        },
      );

      await t.step(
        "an agent SIGKILLed and restarted: 0 packets lost, no annotation rewritten, a node deleted while it was down is pruned",
        async () => {
          const patchesBefore = api!.requests.filter((r) => r.method === "PATCH").length;
          const rvBefore = (api!.store.get(Node, "", "node-1").metadata as Obj).resourceVersion;
          const results = await pingWhile(topo, [[0, 1], [1, 0], [1, 2]], envs, async () => {
            await agents[1]!.stop("SIGKILL");
            api!.store.delete(Node, "", "fake-b"); // while node-1's agent is down
            await new Promise((r) => setTimeout(r, 500));
            assert.ok(hasRoute(topo.nodes[1]!.netns, "10.244.41.0/24"), "nobody removed it yet on node-1");
            agents[1]!.start();
            await waitReady(agents[1]!, 60_000);
            await waitFor(
              "fake-b pruned on node-1",
              10_000,
              () => !hasRoute(topo.nodes[1]!.netns, "10.244.41.0/24"),
            );
          });
          for (const r of results) {
            console.log(
              `  ping ${r.from}→${r.to} across SIGKILL + restart: ${r.received}/${r.sent}, ${r.lost} lost`,
            );
            assert.equal(r.lost, 0);
          }
          assert.equal(
            api!.requests.filter((r) => r.method === "PATCH").length,
            patchesBefore,
            "nothing to patch",
          );
          assert.equal((api!.store.get(Node, "", "node-1").metadata as Obj).resourceVersion, rvBefore);
        },
      );

      await t.step(
        "credentials revoked: /readyz 503 with the cause; restored: ready again, without a restart",
        async () => {
          const pid = agents[2]!.pid;
          delete c.tokens[TOKEN];
          api!.closeWatches();
          const [code, body] = await waitFor("not ready", 15_000, async () => {
            const r = await agentHttp(agents[2]!, "/readyz");
            return r[0] === 503 ? r : undefined;
          });
          assert.equal(code, 503);
          assert.match(body, /refuses the agent's credentials .*Unauthorized/);
          c.tokens[TOKEN] = "system:serviceaccount:kube-weft:weft";
          await waitReady(agents[2]!, 15_000);
          assert.equal(agents[2]!.pid, pid, "the same process");
        },
      );
    } finally {
      for (const a of agents) await a.stop();
      await api?.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

/** Whether `subnet` is the own subnet of the node with underlay IP `ip` (nodes have no route to it). */
function hasOwn(ip: string, subnet: string, topo: Topology): boolean {
  const i = topo.nodes.findIndex((n) => n.ip === ip);
  return subnet === `10.244.${10 + i}.0/24`;
}

Deno.test({
  name: "weft agent --kube-subnet-mgr (host-gw, 2 nodes): annotations as flannel's host-gw, pods ping",
  ignore: !ROOT,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using topo = await createTopology({ nodes: 2 });
    const dir = await Deno.makeTempDir({ prefix: "weft-kube-hg-" });
    let api: KubeApiServer | undefined;
    const agents: AgentProcess[] = [];
    try {
      const c = await kubeCluster(topo, "host-gw", dir);
      api = c.api;
      for (let i = 0; i < 2; i++) agents.push(c.start(i, ["--resync-interval=2"]));
      const envs: SubnetEnv[] = [];
      for (const a of agents) envs.push(await waitSubnetEnv(a, 60_000));
      topo.nodes.forEach((n, i) => addPodBridge(n.netns, envs[i]!));
      await Promise.all(agents.map((a) => waitReady(a, 60_000)));
      const a =
        (api.store.get(c.Node, "", "node-0").metadata as { annotations: Record<string, string> }).annotations;
      assert.equal(a[`${P}backend-type`], "host-gw");
      assert.equal(a[`${P}backend-data`], "null");
      assert.equal(a[`${P}public-ip`], topo.nodes[0]!.ip);
      assert.deepEqual(await pingMatrix(topo, envs, 20_000), []);
      using nl = Netlink.open({ netns: topo.nodes[0]!.netns });
      const r = nl.routeList({ protocol: 87 }).find((x) => x.dst === "10.244.11.0/24");
      assert.equal(r?.gateway, topo.nodes[1]!.ip);
    } finally {
      for (const a of agents) await a.stop();
      await api?.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "the node's podCIDR changes under a running pod: subnet.env withdrawn then rewritten, no ADD outside the lease, cni0 moves once the pod is gone",
  ignore: !ROOT,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using topo = await createTopology({ nodes: 1 });
    const dir = await Deno.makeTempDir({ prefix: "weft-kube-cidr-" });
    let api: KubeApiServer | undefined;
    let agent: AgentProcess | undefined;
    const pods: string[] = [];
    try {
      const c = await kubeCluster(topo, "vxlan", dir);
      api = c.api;
      const node = topo.nodes[0]!;
      agent = c.start(0, ["--resync-interval=2"]);
      await waitSubnetEnv(agent, 60_000);
      await waitReady(agent, 60_000);
      const conf = {
        cniVersion: "1.0.0",
        name: "cbr0",
        type: "flannel",
        subnetFile: agent.subnetFile,
        dataDir: `${dir}/flannel`,
        delegate: { hairpinMode: true, isDefaultGateway: true, ipam: { dataDir: `${dir}/networks` } },
      };
      const pod = () => {
        const p = uniqueNetnsName("pod");
        netnsCreate(p);
        pods.push(p);
        return `/run/netns/${p}`;
      };
      const add = (id: string, netns: string) =>
        cni(node.netns, { command: "ADD", containerId: id, netns, ifname: "eth0" }, conf);
      const ipOf = (r: Awaited<ReturnType<typeof add>>) =>
        ((r.out?.ips as { address: string }[] | undefined)?.[0]?.address ?? "").split("/")[0]!;
      const cni0 = () => {
        using nl = Netlink.open({ netns: node.netns });
        return nl.addrList("cni0", 4).map((a) => a.cidr);
      };

      const first = await add("pod-a", pod());
      await t.step("a pod gets an address of the node's podCIDR", () => {
        assert.equal(first.code, 0, first.stdout + first.stderr);
        assert.match(ipOf(first), /^10\.244\.10\./);
      });

      await t.step(
        "the Node deleted: subnet.env withdrawn, /readyz says why, ADD answers try-again-later",
        async () => {
          api!.store.delete(c.Node, "", "node-0");
          await waitFor("subnet.env withdrawn", 15_000, () => !existsSync(agent!.subnetFile));
          const [code, body] = await agentHttp(agent!, "/readyz");
          assert.equal(code, 503);
          assert.match(body, /node "node-0" was deleted from the API/);
          const r = await add("pod-b", pod());
          assert.equal(r.out?.code, 11, r.stdout);
        },
      );

      await t.step(
        "back with another podCIDR: the new lease, announced, subnet.env rewritten, annotations and condition republished",
        async () => {
          api!.store.create(c.Node, "", {
            metadata: { name: "node-0" },
            spec: { podCIDR: "10.244.60.0/24", podCIDRs: ["10.244.60.0/24"] },
          });
          const env = await waitFor("subnet.env of the new lease", 15_000, () => {
            try {
              const e = readSubnetEnv(agent!.subnetFile);
              return formatNet(e.subnet!) === "10.244.60.0/24" ? e : undefined;
            } catch {
              return undefined;
            }
          });
          assert.equal(formatNet(env.network!), "10.244.0.0/16");
          await waitReady(agent!, 15_000);
          const n = api!.store.get(c.Node, "", "node-0") as {
            metadata: { annotations?: Record<string, string> };
            status?: { conditions?: { type: string; status: string }[] };
          };
          assert.equal(n.metadata.annotations?.[`${P}kube-subnet-manager`], "true");
          await waitFor("condition", 10_000, () => {
            const x = api!.store.get(c.Node, "", "node-0") as typeof n;
            return x.status?.conditions?.some((c) => c.type === "NetworkUnavailable" && c.status === "False");
          });
          const log = Deno.readTextFileSync(agent!.logFile);
          assert.match(log, /podCIDR changed from 10\.244\.10\.0\/24 to 10\.244\.60\.0\/24/);
          using nl = Netlink.open({ netns: node.netns });
          assert.deepEqual(nl.addrList("flannel.1", 4).map((a) => a.cidr), ["10.244.60.0/32"]);
        },
      );

      await t.step(
        "while the old pod runs, ADD refuses (code 11) rather than hand out an old-range address",
        async () => {
          const r = await add("pod-c", pod());
          assert.equal(r.out?.code, 11, r.stdout);
          assert.match(String(r.out?.msg), /cni0 holds 10\.244\.10\.1\/24 .* 1 pod/);
          assert.deepEqual(cni0(), ["10.244.10.1/24"]);
        },
      );

      await t.step(
        "the old pod deleted: the next ADD moves cni0 and gets an address of the new lease",
        async () => {
          const del = await cni(node.netns, {
            command: "DEL",
            containerId: "pod-a",
            netns: "",
            ifname: "eth0",
          }, conf);
          assert.equal(del.code, 0, del.stdout);
          const r = await add("pod-c", pod());
          assert.equal(r.code, 0, r.stdout + r.stderr);
          assert.match(ipOf(r), /^10\.244\.60\./);
          assert.deepEqual(cni0(), ["10.244.60.1/24"]);
        },
      );
    } finally {
      await agent?.stop();
      await api?.close();
      for (const p of pods) netnsDelete(p);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
