/**
 * The test API server (tests/helpers/kube_api_server.ts) driven by the real `kubectl` (v1.32 here; apt's
 * `kubernetes-client` elsewhere): if kubectl gets, annotates, patches the status subresource, watches,
 * pages, selects and reads errors from it as from a real kube-apiserver, the weft tests built on it
 * test against the real server's behaviour.
 */
import assert from "node:assert/strict";
import { type KubeApiServer, startKubeApiServer } from "./helpers/kube_api_server.ts";
import { hasBinary, skipUnless } from "./helpers/skip.ts";

const HAVE_KUBECTL = hasBinary("kubectl");
/** kubectl's minor version (`kubectl patch --subresource` came in 1.24; Debian 12's is 1.20). */
const KUBECTL_MINOR = HAVE_KUBECTL ? kubectlMinor() : 0;

function kubectlMinor(): number {
  const out = new Deno.Command("kubectl", {
    args: ["version", "--client", "-o", "json"],
    stdout: "piped",
    stderr: "null",
  })
    .outputSync();
  try {
    return parseInt(JSON.parse(new TextDecoder().decode(out.stdout)).clientVersion.minor, 10);
  } catch {
    return 0;
  }
}
const TOKEN = "test-admin-token";

async function kubectl(kc: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command("kubectl", {
    args: [`--kubeconfig=${kc}`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

function node(name: string, extra: Record<string, unknown> = {}) {
  return {
    metadata: { name, labels: { "kubernetes.io/hostname": name } },
    spec: { podCIDR: "10.244.1.0/24", podCIDRs: ["10.244.1.0/24"] },
    status: { conditions: [{ type: "Ready", status: "True", reason: "KubeletReady" }] },
    ...extra,
  };
}

/** GETs a watch and returns its first `n` events (or fewer if the stream ends). */
async function watchEvents(s: KubeApiServer, query: string, n: number, ms = 30_000) {
  const client = Deno.createHttpClient({ caCerts: [s.caPem!] });
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), ms);
  const events: { type: string; object: Record<string, unknown> }[] = [];
  try {
    const r = await fetch(`${s.url}/api/v1/nodes?watch=true&${query}`, {
      client,
      signal: ctrl.signal,
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(r.status, 200);
    let buf = "";
    const dec = new TextDecoder();
    for await (const chunk of r.body!) {
      buf += dec.decode(chunk, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        events.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
        if (events.length >= n) {
          ctrl.abort();
          return events;
        }
      }
    }
  } catch (err) {
    if (!ctrl.signal.aborted) throw err;
  } finally {
    clearTimeout(timer);
    client.close();
  }
  return events;
}

Deno.test({
  name: "the test API server answers kubectl as kube-apiserver does",
  ignore: skipUnless(HAVE_KUBECTL, "kubectl is not on the PATH"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const denied = new Set<string>();
    await using s = await startKubeApiServer({
      tls: true,
      tokens: { [TOKEN]: "admin", "flannel-token": "system:serviceaccount:kube-flannel:flannel" },
      authorize: (a) =>
        !denied.has(`${a.user}:${a.verb}:${a.resource}${a.subresource ? "/" + a.subresource : ""}`),
      bookmarkMs: 200,
    });
    const Node = s.store.kindByName("Node");
    const dir = await Deno.makeTempDir({ prefix: "weft-kubectl-" });
    const kc = `${dir}/kubeconfig`;
    await s.writeKubeconfig(kc, { token: TOKEN });
    for (const n of ["n1", "n2", "n3"]) s.store.create(Node, "", node(n));
    try {
      await t.step("kubectl get lists nodes in the server's table and gets one as JSON", async () => {
        const r = await kubectl(kc, ["get", "nodes"]);
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, /^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION\n/);
        assert.match(r.out, /\nn1\s+Ready\s+<none>\s+\d+s/);
        const j = JSON.parse((await kubectl(kc, ["get", "node", "n2", "-o", "json"])).out);
        assert.equal(j.kind, "Node");
        assert.equal(j.apiVersion, "v1");
        assert.equal(j.spec.podCIDR, "10.244.1.0/24");
        assert.match(j.metadata.uid, /^[0-9a-f-]{36}$/);
      });

      await t.step("kubectl get pages with --chunk-size and selects by label", async () => {
        const r = await kubectl(kc, ["get", "nodes", "--chunk-size=1", "-o", "name", "-v=6"]);
        assert.equal(r.code, 0, r.err);
        assert.deepEqual(r.out.trim().split("\n"), ["node/n1", "node/n2", "node/n3"]);
        assert.equal((r.err.match(/continue=/g) ?? []).length, 2, "two follow-up pages");
        const sel = await kubectl(kc, [
          "get",
          "nodes",
          "-l",
          "kubernetes.io/hostname in (n1,n3)",
          "-o",
          "name",
        ]);
        assert.deepEqual(sel.out.trim().split("\n"), ["node/n1", "node/n3"]);
        const not = await kubectl(kc, ["get", "nodes", "-l", "kubernetes.io/hostname!=n1", "-o", "name"]);
        assert.deepEqual(not.out.trim().split("\n"), ["node/n2", "node/n3"]);
      });

      await t.step("namespaced pods: kubectl selects them by spec.nodeName and metadata.name", async () => {
        const Ns = s.store.kindByName("Namespace"), Pod = s.store.kindByName("Pod");
        for (const ns of ["a", "b"]) s.store.create(Ns, "", { metadata: { name: ns } });
        const pod = (name: string, node: string) => ({
          metadata: { name, labels: { app: name.split("-")[0]! } },
          spec: { nodeName: node, containers: [{ name: "c", image: "i" }] },
        });
        s.store.create(Pod, "a", pod("web-1", "n1"));
        s.store.create(Pod, "a", pod("web-2", "n2"));
        s.store.create(Pod, "b", pod("db-1", "n1"));
        const onN1 = await kubectl(kc, [
          "get",
          "pods",
          "-A",
          "--field-selector",
          "spec.nodeName=n1",
          "-o",
          "name",
        ]);
        assert.equal(onN1.code, 0, onN1.err);
        assert.deepEqual(onN1.out.trim().split("\n").sort(), ["pod/db-1", "pod/web-1"]);
        const inA = await kubectl(kc, [
          "get",
          "pods",
          "-n",
          "a",
          "-l",
          "app=web",
          "--field-selector",
          "metadata.name!=web-1",
          "-o",
          "name",
        ]);
        assert.deepEqual(inA.out.trim().split("\n"), ["pod/web-2"]);
        // kubectl create sends protobuf, which this server does not speak: it says so as the real one would.
        const proto = await kubectl(kc, ["create", "namespace", "c"]);
        assert.match(proto.err, /UnsupportedMediaType|unknown format/);
        const bad = await kubectl(kc, ["get", "pods", "-A", "--field-selector", "spec.bogus=1"]);
        assert.notEqual(bad.code, 0);
        assert.match(bad.err, /field label not supported: spec.bogus/);
      });

      await t.step(
        "kubectl annotate sends a merge patch; re-annotating the same value writes nothing",
        async () => {
          const before = s.store.get(Node, "", "n1").metadata as Record<string, string>;
          const r = await kubectl(kc, ["annotate", "node", "n1", "example.com/a=1"]);
          assert.equal(r.code, 0, r.err);
          const last = s.requests.findLast((q) => q.method === "PATCH")!;
          assert.equal(last.path, "/api/v1/nodes/n1");
          assert.equal(last.contentType, "application/merge-patch+json");
          const after = s.store.get(Node, "", "n1").metadata as Record<string, unknown>;
          assert.deepEqual(after.annotations, { "example.com/a": "1" });
          assert.ok(Number(after.resourceVersion) > Number(before.resourceVersion));
          const again = await kubectl(kc, ["annotate", "--overwrite", "node", "n1", "example.com/a=1"]);
          assert.equal(again.code, 0, again.err);
          assert.equal(
            (s.store.get(Node, "", "n1").metadata as Record<string, unknown>).resourceVersion,
            after.resourceVersion,
          );
          const clash = await kubectl(kc, ["annotate", "node", "n1", "example.com/a=2"]);
          assert.notEqual(clash.code, 0);
          assert.match(clash.err, /already has a value \(1\)/);
        },
      );

      await t.step({
        name: "kubectl patch --subresource=status merges conditions by type, applies metadata, keeps spec",
        ignore: skipUnless(
          KUBECTL_MINOR >= 24,
          `kubectl 1.${KUBECTL_MINOR} is older than 1.24 (no --subresource)`,
        ),
        fn: async () => {
          const r = await kubectl(kc, [
            "patch",
            "node",
            "n1",
            "--subresource=status",
            "-p",
            JSON.stringify({
              metadata: { annotations: { "flannel.alpha.coreos.com/public-ip": "192.168.1.1" } },
              spec: { unschedulable: true },
              status: {
                conditions: [{ type: "NetworkUnavailable", status: "False", reason: "FlannelIsUp" }],
              },
            }),
          ]);
          assert.equal(r.code, 0, r.err);
          const last = s.requests.findLast((q) => q.method === "PATCH")!;
          assert.equal(last.path, "/api/v1/nodes/n1/status");
          assert.equal(last.contentType, "application/strategic-merge-patch+json");
          const n = s.store.get(Node, "", "n1") as Record<string, Record<string, unknown>>;
          assert.deepEqual((n.status!.conditions as { type: string }[]).map((c) => c.type), [
            "Ready",
            "NetworkUnavailable",
          ]);
          assert.equal(
            (n.metadata!.annotations as Record<string, string>)["flannel.alpha.coreos.com/public-ip"],
            "192.168.1.1",
          );
          assert.equal(n.spec!.unschedulable, undefined, "the status subresource keeps spec");
        },
      });

      await t.step("a patch of the main resource keeps status; json and merge patches apply", async () => {
        const main = await kubectl(kc, [
          "patch",
          "node",
          "n2",
          "-p",
          '{"spec":{"taints":[{"key":"k","effect":"NoSchedule"}]},"status":{"conditions":[]}}',
        ]);
        assert.equal(main.code, 0, main.err);
        const n = s.store.get(Node, "", "n2") as Record<string, Record<string, unknown>>;
        assert.equal((n.status!.conditions as unknown[]).length, 1, "the main resource keeps status");
        assert.deepEqual(n.spec!.taints, [{ key: "k", effect: "NoSchedule" }]);
        const jp = await kubectl(kc, [
          "patch",
          "node",
          "n2",
          "--type=json",
          "-p",
          '[{"op":"add","path":"/metadata/labels/x","value":"y"},{"op":"remove","path":"/spec/taints/0"}]',
        ]);
        assert.equal(jp.code, 0, jp.err);
        const n2 = s.store.get(Node, "", "n2") as Record<string, Record<string, unknown>>;
        assert.equal((n2.metadata!.labels as Record<string, string>).x, "y");
        assert.deepEqual(n2.spec!.taints, []);
        const bad = await kubectl(kc, [
          "patch",
          "node",
          "n2",
          "--type=json",
          "-p",
          '[{"op":"remove","path":"/nope"}]',
        ]);
        assert.notEqual(bad.code, 0);
        assert.match(bad.err, /Invalid|missing path/);
        const podCidr = await kubectl(kc, [
          "patch",
          "node",
          "n2",
          "--type=merge",
          "-p",
          '{"spec":{"podCIDR":"10.9.0.0/24"}}',
        ]);
        assert.notEqual(podCidr.code, 0);
        assert.match(podCidr.err, /may not change podCIDR/);
      });

      await t.step("errors come back as Status objects kubectl prints: 404, 409, 401, 403", async () => {
        const nf = await kubectl(kc, ["get", "node", "nope"]);
        assert.equal(nf.code, 1);
        assert.match(nf.err, /Error from server \(NotFound\): nodes "nope" not found/);
        const rv = (s.store.get(Node, "", "n3").metadata as Record<string, string>).resourceVersion!;
        s.store.update(Node, "", "n3", {
          ...s.store.get(Node, "", "n3"),
          metadata: { name: "n3", labels: { z: "1" } },
        });
        const stale = await kubectl(kc, [
          "patch",
          "node",
          "n3",
          "--type=merge",
          "-p",
          JSON.stringify({ metadata: { resourceVersion: rv, labels: { z: "2" } } }),
        ]);
        assert.equal(stale.code, 1);
        assert.match(
          stale.err,
          /Conflict.*Operation cannot be fulfilled on nodes "n3": the object has been modified/,
        );
        const bad = `${dir}/bad-kubeconfig`;
        await s.writeKubeconfig(bad, { token: "wrong" });
        const unauth = await kubectl(bad, ["get", "nodes"]);
        assert.equal(unauth.code, 1);
        assert.match(unauth.err, /You must be logged in to the server \(Unauthorized\)/);
        const fl = `${dir}/flannel-kubeconfig`;
        await s.writeKubeconfig(fl, { token: "flannel-token" });
        denied.add("system:serviceaccount:kube-flannel:flannel:patch:nodes/status");
        denied.add("system:serviceaccount:kube-flannel:flannel:patch:nodes");
        // kubectl < 1.24 has no --subresource: it is refused patching the node itself then.
        const forbidden = await kubectl(
          fl,
          KUBECTL_MINOR >= 24
            ? [
              "patch",
              "node",
              "n3",
              "--subresource=status",
              "-p",
              '{"metadata":{"annotations":{"a/b":"c"}}}',
            ]
            : ["annotate", "node", "n3", "a/b=c"],
        );
        assert.equal(forbidden.code, 1);
        assert.match(
          forbidden.err,
          /Error from server \(Forbidden\): nodes "n3" is forbidden: User "system:serviceaccount:kube-flannel:flannel" cannot patch resource "nodes(\/status)?" in API group "" at the cluster scope/,
        );
        // SelfSubjectAccessReview (kubectl's `auth can-i` sends protobuf, which this server does not speak).
        const client = Deno.createHttpClient({ caCerts: [s.caPem!] });
        const review = async (verb: string, subresource: string) => {
          const r = await fetch(`${s.url}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews`, {
            client,
            method: "POST",
            headers: { authorization: "Bearer flannel-token", "content-type": "application/json" },
            body: JSON.stringify({
              apiVersion: "authorization.k8s.io/v1",
              kind: "SelfSubjectAccessReview",
              spec: { resourceAttributes: { verb, resource: "nodes", subresource, name: "n3" } },
            }),
          });
          assert.equal(r.status, 201);
          return (await r.json()).status.allowed;
        };
        assert.equal(await review("patch", "status"), false);
        assert.equal(await review("list", ""), true);
        client.close();
      });

      await t.step("kubectl get -w prints a node added while it watches", async () => {
        const child = new Deno.Command("kubectl", {
          args: [`--kubeconfig=${kc}`, "get", "nodes", "-w", "-o", "name"],
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        let out = "";
        const dec = new TextDecoder();
        const reader = child.stdout.getReader();
        const until = async (re: RegExp) => {
          const end = Date.now() + 30_000;
          while (!re.test(out) && Date.now() < end) {
            const { value, done } = await reader.read();
            if (done) break;
            out += dec.decode(value, { stream: true });
          }
          return re.test(out);
        };
        try {
          assert.ok(await until(/node\/n3\n/), `initial list: ${out}`);
          const end = Date.now() + 30_000;
          while (s.openWatches < 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
          assert.equal(s.openWatches, 1, "kubectl holds a watch open");
          s.store.create(Node, "", node("n4"));
          assert.ok(await until(/node\/n4\n/), `the new node arrives: ${out}`);
        } finally {
          child.kill();
          reader.releaseLock();
          await child.stdout.cancel().catch(() => {});
          await child.stderr.cancel().catch(() => {});
          await child.status;
        }
      });

      await t.step(
        "a watch replays from its resourceVersion, bookmarks, and says 410 Expired past the history",
        async () => {
          const rv = s.store.resourceVersion;
          s.store.delete(Node, "", "n4");
          const ev = await watchEvents(s, `resourceVersion=${rv}&allowWatchBookmarks=true`, 2);
          assert.equal(ev[0]!.type, "DELETED");
          assert.equal((ev[0]!.object.metadata as Record<string, string>).name, "n4");
          assert.equal(ev[1]!.type, "BOOKMARK");
          assert.equal(
            (ev[1]!.object.metadata as Record<string, string>).resourceVersion,
            String(s.store.resourceVersion),
          );
          s.store.compact();
          const gone = await watchEvents(s, `resourceVersion=${rv}`, 1);
          assert.equal(gone[0]!.type, "ERROR");
          assert.equal(gone[0]!.object.kind, "Status");
          assert.equal(gone[0]!.object.code, 410);
          assert.equal(gone[0]!.object.reason, "Expired");
          assert.match(String(gone[0]!.object.message), /too old resource version/);
        },
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
