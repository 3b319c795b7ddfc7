/**
 * The network-policy datapath with the rules compiled by src/policy and installed directly as the
 * `inet weft-policy` table in both nodes of a real two-node weft cluster (namespaces, etcd, `weft
 * agent`s), probed with real TCP and UDP connections between the nine pods: counters, the pods' own
 * node, drop logging, the harness's negative control, and catalog cases over host-gw. (The whole
 * catalog runs through the agent and the API in tests/netpol_agent_test.ts; NETPOL_CASES=<regex> runs
 * catalog cases here too.)
 */
import assert from "node:assert/strict";
import { withNetns } from "../ffi/mod.ts";
import { comboChain } from "../src/policy/nft_render.ts";
import { listPolicyTable } from "../src/policy/nft_table.ts";
import { waitReady } from "./helpers/agent.ts";
import { haveEtcd } from "./helpers/etcd.ts";
import { basePods, CASES, type NetpolCase, policy } from "./helpers/netpol_cases.ts";
import { DirectDriver } from "./helpers/netpol_direct.ts";
import { NetpolMatrix } from "./helpers/netpol_matrix.ts";
import { Reachability } from "./helpers/netpol_reach.ts";
import { requireRoot, skipUnless } from "./helpers/topology.ts";

const base = () => basePods().map((p) => ({ key: `${p.ns}/${p.name}`, node: p.node }));
const ignore = requireRoot() || skipUnless(haveEtcd(), "etcd is not installed: the netpol matrix is skipped");

Deno.test({
  name:
    "netpol datapath (vxlan, rules installed directly): counters, the own node, drop log, negative control",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using m = await NetpolMatrix.create({ backend: "vxlan", pods: base() });
    const driver = new DirectDriver();
    // The catalog runs through the agent and the API in tests/netpol_agent_test.ts; here, with the rules
    // installed directly, only when asked: NETPOL_CASES=<regex> (e.g. "." for all, while developing).
    const asked = Deno.env.get("NETPOL_CASES");
    const only = asked === undefined ? undefined : new RegExp(asked);
    for (const kase of CASES.filter((k) => only?.test(k.name))) {
      await t.step(kase.name, async () => {
        const t0 = performance.now();
        const failures = await m.runCase(kase, driver);
        console.log(`    ${kase.name}: ${Math.round(performance.now() - t0)} ms`);
        assert.deepEqual(failures, [], failures.join("\n\n"));
      });
    }

    await t.step("allow-rule counters count the connections they let in", async () => {
      const cluster = m.newCluster();
      cluster.apply({
        put: policy("x", "from-y", {
          podSelector: { matchLabels: { pod: "a" } },
          ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }], ports: [{ port: 80 }] }],
        }),
      });
      await driver.sync(cluster, m);
      const xa = m.pods.get("x/a")!;
      const rule = "x/from-y ingress[0] ip tcp/80";
      const before = (await driver.counters(m, xa.node)).get("pol-in/x/from-y")!;
      assert.deepEqual(before.get(rule), { packets: 0, bytes: 0 });
      const dropsBefore = (await driver.counters(m, xa.node)).get("drops-in4")?.get(xa.ip)?.packets ?? 0;
      // 3 allowed connections from each y pod, 2 denied ones from z/a.
      for (const from of ["y/a", "y/b", "y/c"]) {
        for (let i = 0; i < 3; i++) {
          assert.equal(await m.probeOnce(from, "x/a", { proto: "tcp", port: 80 }, 10_000), true);
        }
      }
      for (let i = 0; i < 2; i++) {
        assert.equal(await m.probeOnce("z/a", "x/a", { proto: "tcp", port: 80 }, 300), false);
      }
      const after = await driver.counters(m, xa.node);
      // Only the first packet of a connection is judged: one SYN per connection.
      assert.equal(after.get("pol-in/x/from-y")!.get(rule)!.packets, 9);
      assert.ok(
        after.get("drops-in4")!.get(xa.ip)!.packets - dropsBefore >= 2,
        "z/a's SYNs (and retries) are counted as x/a's drops",
      );
    });

    await t.step(
      "a pod's own node always reaches it and is reached by it; another node is judged",
      async () => {
        const cluster = m.newCluster();
        cluster.apply({
          put: policy("x", "deny-all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }),
        });
        await driver.sync(cluster, m);
        const xa = m.pods.get("x/a")!; // on node 0
        const own = `node-${xa.node}`, other = `node-${1 - xa.node}`;
        await m.ensureNodeProber(0);
        await m.ensureNodeProber(1);
        for (const tg of [{ proto: "tcp", port: 80 }, { proto: "udp", port: 81 }] as const) {
          // kubelet's probes come from the node itself (source: its cni0 address): never judged.
          assert.equal(await m.probeOnce(own, "x/a", tg, 10_000), true, `${own} -> x/a ${tg.proto}`);
          assert.equal(await m.probeOnce("x/a", own, tg, 10_000), true, `x/a -> ${own} ${tg.proto}`);
          // Another node is just another address: x/a isolated both ways.
          assert.equal(await m.probeOnce(other, "x/a", tg, 500), false, `${other} -> x/a ${tg.proto}`);
          assert.equal(await m.probeOnce("x/a", other, tg, 500), false, `x/a -> ${other} ${tg.proto}`);
          // An unrestricted pod (y/b, on node 1) reaches node 0 and is reached from it.
          assert.equal(await m.probeOnce("y/b", "node-0", tg, 10_000), true, `y/b -> node-0 ${tg.proto}`);
          assert.equal(await m.probeOnce("node-0", "y/b", tg, 10_000), true, `node-0 -> y/b ${tg.proto}`);
        }
        await driver.sync(m.newCluster(), m);
      },
    );

    await t.step("--policy-log-drops logs drops at a limited rate; every drop is still counted", async () => {
      const logging = new DirectDriver({ logDrops: true });
      const cluster = m.newCluster();
      cluster.apply({ put: policy("x", "deny-a", { podSelector: { matchLabels: { pod: "a" } } }) });
      await logging.sync(cluster, m);
      const xa = m.pods.get("x/a")!;
      const combo = comboChain("ingress", ["x/deny-a"]);
      // Counters carry over from the table this one replaced: count the difference.
      const before = await logging.counters(m, xa.node);
      const was = (c: typeof before, set: string, key: string) => c.get(set)?.get(key)?.packets ?? 0;
      const t0 = performance.now();
      const results = await Promise.all(
        Array.from({ length: 60 }, () => m.probeOnce("y/b", "x/a", { proto: "udp", port: 80 }, 300)),
      );
      const seconds = (performance.now() - t0) / 1000;
      assert.ok(results.every((r) => r === false));
      const c = await logging.counters(m, xa.node);
      const delta = (set: string, k: string) => was(c, set, k) - was(before, set, k);
      assert.equal(delta("drops-in4", xa.ip), 60, "one datagram per probe, all dropped");
      const logged = delta(combo, "drop log ip");
      assert.ok(
        logged >= 10 && logged <= 10 + Math.ceil(5 * seconds) + 1,
        `${logged} logged in ${seconds} s`,
      );
      driver.reset(); // back to the plain tables, replaced whole
      await driver.sync(m.newCluster(), m);
    });

    await t.step(
      "the harness reports a table that differs from the expected one (negative control)",
      async () => {
        const wrong: NetpolCase = {
          name: "wrong on purpose",
          steps: () => [{
            title: "no policy, but y/b -> x/a expected blocked",
            apply: [],
            expect: (p) => new Reachability(p, true).expect("y/b", "x/a", false),
          }],
        };
        const failures = await m.runCase(wrong, driver, [{ proto: "udp", port: 80 }]);
        assert.equal(failures.length, 1, failures.join("\n"));
        assert.match(failures[0]!, /^udp\/80 /m);
        assert.match(failures[0]!, /^y\/b +\.! /m, `y/b -> x/a is shown open where blocked was expected`);
      },
    );
  },
});

Deno.test({
  name: "netpol matrix (host-gw): cross-node and same-node traffic is judged with host-gw routes too",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using m = await NetpolMatrix.create({ backend: "host-gw", pods: base() });
    const driver = new DirectDriver();
    const pick = [
      "default-deny egress stops every pod of the namespace from sending",
      "podSelector and namespaceSelector in one peer are ANDed",
      "ipBlock with except (egress): x/a reaches the pod network but one pod",
      "named port (ingress): only the pod's port named serve-81-tcp",
    ];
    for (const kase of CASES.filter((k) => pick.includes(k.name))) {
      await t.step(kase.name, async () => {
        const failures = await m.runCase(kase, driver);
        assert.deepEqual(failures, [], failures.join("\n\n"));
      });
    }

    await t.step("an agent started without --network-policy removes a policy table left behind", async () => {
      const cluster = m.newCluster();
      cluster.apply({ put: policy("x", "deny", { podSelector: {} }) });
      await driver.sync(cluster, m);
      const a = m.agents[0]!;
      assert.notEqual(withNetns(a.node.netns, () => listPolicyTable()), undefined);
      await a.stop();
      a.start();
      await waitReady(a, 60_000);
      assert.equal(withNetns(a.node.netns, () => listPolicyTable()), undefined);
      assert.match(
        Deno.readTextFileSync(a.logFile),
        /network policy is off: removed the table inet weft-policy/,
      );
    });
  },
});
