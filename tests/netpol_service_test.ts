/**
 * Services are judged as the pod they lead to: the conformance matrix probed through each pod's Service
 * IP, with the Service programmed in the node namespaces the way each kube-proxy mode does it
 * (tests/helpers/netpol_services.ts) — iptables and nftables DNAT in prerouting/output, and IPVS, which
 * this kernel cannot load (no ip_vs module), emulated for UDP by a process that takes the packet in
 * locally and re-sends it with the client's source. Every table must equal the one the pods' own
 * addresses give (the catalog's, written by hand).
 *
 * The IPVS step also shows why weft judges in postrouting: the re-sent packet never meets the forward
 * hook (a counter there stays at zero) and is still dropped by the client's egress policy — while the
 * same table hooked on forward (weft's layout before) lets it through.
 */
import assert from "node:assert/strict";
import { nftRun, withNetns } from "../ffi/mod.ts";
import { renderTable } from "../src/policy/nft_render.ts";
import { haveEtcd } from "./helpers/etcd.ts";
import { basePods, CASES, policy } from "./helpers/netpol_cases.ts";
import { DirectDriver } from "./helpers/netpol_direct.ts";
import { NetpolMatrix } from "./helpers/netpol_matrix.ts";
import type { Target } from "./helpers/netpol_reach.ts";
import { Services } from "./helpers/netpol_services.ts";
import { requireRoot, skipUnless } from "./helpers/topology.ts";

const TCP80: Target = { proto: "tcp", port: 80 }, UDP80: Target = { proto: "udp", port: 80 };
const UDP81: Target = { proto: "udp", port: 81 };

const PICK = [
  "default-deny ingress isolates every pod of the namespace",
  "default-deny egress stops every pod of the namespace from sending",
  "podSelector: x/a accepts only from pods labelled pod=b of its namespace",
  "ipBlock with except (egress): x/a reaches the pod network but one pod",
  "named port (ingress): only the pod's port named serve-81-tcp",
];

Deno.test({
  name: "Service IPs: the matrix through kube-proxy's iptables, nftables and (emulated) IPVS paths",
  ignore: requireRoot() || skipUnless(haveEtcd(), "etcd is not installed: the Service matrix is skipped"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using m = await NetpolMatrix.create({
      backend: "vxlan",
      pods: basePods().map((p) => ({ key: `${p.ns}/${p.name}`, node: p.node })),
    });
    const driver = new DirectDriver();
    for (const mode of ["iptables", "nftables", "ipvs"] as const) {
      await t.step(mode, async (t) => {
        await using svc = await Services.install(m, mode);
        // IPVS is emulated for UDP only; the others carry both protocols.
        const targets = mode === "ipvs" ? [UDP80, UDP81] : [TCP80, UDP81];
        for (const kase of CASES.filter((k) => PICK.includes(k.name))) {
          await t.step(kase.name, async () => {
            const failures = await m.runCase(kase, driver, targets, (to) => svc.vip(to));
            assert.deepEqual(failures, [], failures.join("\n\n"));
          });
        }
        if (mode !== "ipvs") return;
        await t.step("the IPVS path never meets forward; postrouting judges it", async () => {
          const xa = m.pods.get("x/a")!; // the client, on node 0
          const node = m.topo.nodes[xa.node]!.netns;
          withNetns(node, () =>
            nftRun(
              `table inet wtst-forward {\n chain f {\n  type filter hook forward priority -300; policy accept;\n` +
                `  ip saddr ${xa.ip} udp dport 80 counter\n }\n}\n`,
            ));
          const seen = () =>
            Number(withNetns(node, () => nftRun("list table inet wtst-forward")).match(/packets (\d+)/)![1]);
          try {
            const open = m.newCluster();
            await driver.sync(open, m);
            assert.equal(
              await m.probeOnce("x/a", "y/b", UDP80, 3000, svc.vip("y/b")),
              true,
              "through the Service",
            );
            const closed = m.newCluster();
            closed.apply({
              put: policy("x", "deny-out", {
                podSelector: { matchLabels: { pod: "a" } },
                policyTypes: ["Egress"],
              }),
            });
            await driver.sync(closed, m);
            const before = (await driver.counters(m, xa.node)).get("drops-out4")?.get(xa.ip)?.packets ?? 0;
            assert.equal(
              await m.probeOnce("x/a", "y/b", UDP80, 500, svc.vip("y/b")),
              false,
              "x/a's egress policy applies",
            );
            const after = (await driver.counters(m, xa.node)).get("drops-out4")?.get(xa.ip)?.packets ?? 0;
            assert.ok(after > before, "dropped in postrouting, counted as x/a's");
            assert.equal(seen(), 0, "neither packet met the forward hook");
            // The same table on the forward hook (weft's layout before) lets the IPVS path through.
            const spec = driver.table(m, xa.node).table.installed!;
            withNetns(node, () => nftRun(renderTable(spec).replaceAll("hook postrouting", "hook forward")));
            assert.equal(
              await m.probeOnce("x/a", "y/b", UDP80, 3000, svc.vip("y/b")),
              true,
              "judged on forward only, x/a's egress policy is bypassed",
            );
            driver.reset();
          } finally {
            withNetns(node, () => nftRun("delete table inet wtst-forward\n"));
            await driver.sync(m.newCluster(), m);
          }
        });
      });
    }
  },
});
