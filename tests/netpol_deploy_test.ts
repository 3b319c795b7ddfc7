/**
 * deploy/kube-weft-netpol.yml grants exactly what `weft agent --network-policy` reads, no more, no less;
 * deploy/kube-weft-netpol-patch.yml turns policy on in kube-weft.yml's DaemonSet with br_netfilter set up
 * by a privileged init container.
 */
import assert from "node:assert/strict";
import { parse, parseAllDocuments } from "yaml";
import { runIn } from "../src/lab/lab.ts";
import { applyJsonPatch, type Json } from "./helpers/kube_patch.ts";
import { withNetns } from "../ffi/mod.ts";
import { KubeClient } from "../src/kube/client.ts";
import { PolicyEnforcer } from "../src/policy/enforcer.ts";
import { type AuthzAttributes, startKubeApiServer } from "./helpers/kube_api_server.ts";
import { withScratchNetns } from "./helpers/scratch_netns.ts";
import { requireRoot } from "./helpers/topology.ts";
import { PRIVATE_MOUNTS_SH } from "./helpers/private_mounts.ts";

type Doc = Record<string, unknown>;
interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

async function docs(): Promise<Doc[]> {
  const text = await Deno.readTextFile(new URL("../deploy/kube-weft-netpol.yml", import.meta.url));
  return parseAllDocuments(text).map((d) => {
    assert.equal(d.errors.length, 0, String(d.errors[0]));
    return d.toJS() as Doc;
  }).filter(Boolean);
}

Deno.test("kube-weft-netpol.yml binds its ClusterRole to kube-weft.yml's service account", async () => {
  const d = await docs();
  assert.deepEqual(d.map((x) => x.kind), ["ClusterRole", "ClusterRoleBinding"]);
  const binding = d[1] as { roleRef: { name: string }; subjects: unknown[] };
  assert.equal(binding.roleRef.name, (d[0] as { metadata: { name: string } }).metadata.name);
  assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: "weft", namespace: "kube-weft" }]);
});

Deno.test({
  name: "the network-policy ClusterRole grants exactly the verbs the policy part uses",
  ignore: requireRoot(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const rules = ((await docs())[0] as { rules: Rule[] }).rules;
    const granted = new Set(
      rules.flatMap((r) =>
        r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${v} ${g}/${res}`)))
      ),
    );
    const used = new Set<string>(), refused: string[] = [];
    const user = "system:serviceaccount:kube-weft:weft";
    const authorize = (a: AuthzAttributes) => {
      const what = `${a.verb} ${a.group}/${a.resource}${a.subresource ? `/${a.subresource}` : ""}`;
      const ok = a.user === user && granted.has(what);
      ok ? used.add(what) : refused.push(what);
      return ok;
    };
    await using s = await startKubeApiServer({ tokens: { "sa-token": user }, authorize, bookmarkMs: 200 });
    s.store.create(s.store.kindByName("Namespace"), "", { metadata: { name: "x" } });
    const client = new KubeClient({ server: s.url, token: "sa-token", source: "test" });
    await withScratchNetns("npd", async (ns) => {
      const e = new PolicyEnforcer(client, { nodeName: "self", inNetns: (f) => withNetns(ns, f) });
      const stop = new AbortController();
      const running = e.run(stop.signal);
      // Until it installed the table and opened its watches: every granted verb used (or 30 s).
      const end = Date.now() + 30_000;
      while ((e.stats.updates === 0 || [...granted].some((g) => !used.has(g))) && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 20));
      }
      stop.abort();
      await running;
      assert.equal(e.stats.updates, 1, "listed everything and installed");
    });
    client.close();
    assert.deepEqual(refused, [], "nothing the policy part did was refused");
    assert.deepEqual([...used].sort(), [...granted].sort(), "every granted verb is used");
  },
});

/** kube-weft.yml's DaemonSet with kube-weft-netpol-patch.yml applied (the JSON patch `kubectl patch` applies). */
async function patchedDaemonSet(): Promise<Doc> {
  const base = parseAllDocuments(await Deno.readTextFile(new URL("../deploy/kube-weft.yml", import.meta.url)))
    .map((d) => d.toJS() as Doc).find((d) => d?.kind === "DaemonSet")!;
  const ops = parse(await Deno.readTextFile(PATCH)) as Json;
  return applyJsonPatch(base as Json, ops) as Doc;
}

const PATCH = new URL("../deploy/kube-weft-netpol-patch.yml", import.meta.url);

interface PodSpec {
  initContainers: {
    name: string;
    args: string[];
    securityContext?: { privileged?: boolean };
    volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  }[];
  containers: { args: string[]; securityContext?: { privileged?: boolean } }[];
  volumes: { name: string; hostPath?: { path: string } }[];
}

Deno.test("kube-weft-netpol-patch.yml: a privileged init container sets br_netfilter up; the agent stays unprivileged", async () => {
  const spec = ((await patchedDaemonSet()).spec as { template: { spec: PodSpec } }).template.spec;
  const init = spec.initContainers.find((c) => c.name === "br-netfilter")!;
  assert.equal(init.securityContext?.privileged, true);
  assert.match(init.args[0]!, /modprobe br_netfilter/);
  assert.match(init.args[0]!, /bridge-nf-call-iptables/);
  assert.match(init.args[0]!, /bridge-nf-call-ip6tables/);
  assert.deepEqual(init.volumeMounts, [{ name: "lib-modules", mountPath: "/lib/modules", readOnly: true }]);
  assert.deepEqual(spec.volumes.find((v) => v.name === "lib-modules")?.hostPath, { path: "/lib/modules" });
  const agent = spec.containers[0]!;
  assert.ok(agent.args.includes("--network-policy"));
  assert.ok(agent.args.includes("--ip-masq"), "--network-policy needs --ip-masq");
  assert.notEqual(agent.securityContext?.privileged, true, "the agent itself stays unprivileged");
});

Deno.test({
  name:
    "kube-weft-netpol-patch.yml applies with the real kubectl, and its init container's script sets the switches",
  ignore: requireRoot(),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "weft-netpol-patch-" });
    try {
      const base = parseAllDocuments(
        await Deno.readTextFile(new URL("../deploy/kube-weft.yml", import.meta.url)),
      )
        .map((d) => d.toJS() as Doc).find((d) => d?.kind === "DaemonSet")!;
      await Deno.writeTextFile(`${dir}/ds.json`, JSON.stringify(base));
      const out = await new Deno.Command("kubectl", {
        args: [
          "patch",
          "--local",
          "-f",
          `${dir}/ds.json`,
          "--type=json",
          "--patch-file",
          PATCH.pathname,
          "-o",
          "json",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      const viaKubectl = JSON.parse(new TextDecoder().decode(out.stdout)) as Doc;
      const spec = (viaKubectl.spec as { template: { spec: PodSpec } }).template.spec;
      assert.deepEqual(
        spec,
        ((await patchedDaemonSet()).spec as { template: { spec: PodSpec } }).template.spec,
      );
      // The script, in a namespace whose switches are off (the host before the init container ran).
      const script = spec.initContainers.find((c) => c.name === "br-netfilter")!.args[0]!;
      await withScratchNetns("npp", async (ns) => {
        const keys = ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"];
        withNetns(ns, () => keys.forEach((k) => Deno.writeTextFileSync(`/proc/sys/net/bridge/${k}`, "0")));
        const r = await runIn(ns, ["sh", "-c", script]);
        assert.equal(r.code, 0, r.stderr);
        for (const k of keys) {
          assert.equal(
            withNetns(ns, () => Deno.readTextFileSync(`/proc/sys/net/bridge/${k}`).trim()),
            "1",
            k,
          );
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "where /proc/sys is read-only (the agent's unprivileged container), br_netfilter is reported, not fatal",
  ignore: requireRoot(),
  async fn() {
    await withScratchNetns("npr", async (ns) => {
      withNetns(ns, () => Deno.writeTextFileSync("/proc/sys/net/bridge/bridge-nf-call-iptables", "0"));
      const mod = new URL("../src/policy/br_netfilter.ts", import.meta.url).href;
      const code = `const { checkBridgeNetfilter } = await import(${JSON.stringify(mod)});
        console.log(JSON.stringify(checkBridgeNetfilter(true)));`;
      const r = await runIn(ns, [
        ...PRIVATE_MOUNTS_SH,
        'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$@"',
        "sh",
        Deno.execPath(),
        "eval",
        code,
      ]);
      assert.equal(r.code, 0, r.stderr);
      const s = JSON.parse(r.stdout) as { ok: boolean; problem: string };
      assert.equal(s.ok, false);
      assert.match(s.problem, /net\.bridge\.bridge-nf-call-iptables is 0 and cannot be set from here/);
      assert.match(s.problem, /kube-weft-netpol\.yml's init container/);
    });
  },
});
