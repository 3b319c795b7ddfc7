/** deploy/kube-weft-netpol.yml grants exactly what `weft agent --network-policy` reads, no more, no less. */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { withNetns } from "../ffi/mod.ts";
import { KubeClient } from "../src/kube/client.ts";
import { PolicyEnforcer } from "../src/policy/enforcer.ts";
import { type AuthzAttributes, startKubeApiServer } from "./helpers/kube_api_server.ts";
import { withScratchNetns } from "./helpers/scratch_netns.ts";
import { requireRoot } from "./helpers/topology.ts";

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
