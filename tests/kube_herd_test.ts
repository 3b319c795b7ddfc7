/**
 * Ten agents' lease stores (KubeLeaseSource: list, watch, keeper — the agent's whole API side, each with
 * its own client and credentials) against one test API server that restarts: their reconnections spread
 * over the back-off window (full jitter, 0.8 s → 30 s, the production ceilings) instead of arriving in
 * lock-step, the server sees a bounded number of requests and no LIST, and every agent converges on a
 * change made after the restart. bench/kube_herd.ts does the same with 50 agent processes.
 */
import assert from "node:assert/strict";
import type { LeaseEvent } from "../src/lease/lease.ts";
import { KubeLeaseSource } from "../src/lease/kube/lease_source.ts";
import { loadKubeconfig } from "../src/kube/config.ts";
import { startKubeApiServer } from "./helpers/kube_api_server.ts";
import { realisticNode } from "./helpers/kube_nodes.ts";

const AGENTS = 10;
const ATTRS = (i: number) => ({
  PublicIP: `192.168.77.${20 + i}`,
  PublicIPv6: null,
  BackendType: "vxlan",
  BackendData: { VNI: 1, VtepMAC: `0a:00:00:00:00:${(16 + i).toString(16)}` },
});

async function until(what: string, pred: () => boolean, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test({
  name:
    "10 agents and an API server restart: reconnections spread out, no LIST, bounded requests, all converge",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const tokens = Object.fromEntries([...Array(AGENTS).keys()].map((i) => [`t${i}`, `agent-${i}`]));
    await using s = await startKubeApiServer({ tls: true, tokens, bookmarkMs: 1000, historySize: 1000 });
    const Node = s.store.kindByName("Node");
    const dir = await Deno.makeTempDir({ prefix: "weft-kube-herd-" });
    await Deno.writeTextFile(
      `${dir}/net-conf.json`,
      '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}',
    );
    const stop = new AbortController();
    const sources: KubeLeaseSource[] = [];
    const seen: Set<string>[] = [];
    const running: Promise<void>[] = [];
    try {
      for (let i = 0; i < AGENTS; i++) {
        s.store.create(
          Node,
          "",
          realisticNode({
            name: `n${i}`,
            podCIDR: `10.244.${i + 1}.0/24`,
            internalIP: `192.168.77.${20 + i}`,
          }),
        );
      }
      for (let i = 0; i < AGENTS; i++) {
        await s.writeKubeconfig(`${dir}/kc${i}`, { token: `t${i}` });
        const src = await KubeLeaseSource.open({
          conn: await loadKubeconfig(`${dir}/kc${i}`),
          nodeName: `n${i}`,
          netConfPath: `${dir}/net-conf.json`,
          bookmarkIntervalMs: 1000,
        });
        sources.push(src);
        const cfg = await src.getNetworkConfig();
        await src.listLeases();
        const lease = await src.acquireLease(cfg, ATTRS(i));
        const mine = new Set<string>();
        seen.push(mine);
        running.push(
          src.watchLeases((b: LeaseEvent[]) => {
            for (const e of b) e.type === "added" ? mine.add(e.lease.key) : mine.delete(e.lease.key);
          }, { signal: stop.signal, ownKey: () => lease.key }),
        );
        const keeper = src.keepLease(cfg, ATTRS(i), lease);
        running.push(keeper.run(stop.signal));
        keeper.datapathReady!();
      }
      await until("every agent sees the 9 others", () => seen.every((m) => m.size === AGENTS - 1));
      await until("one watch each", () => s.openWatches === AGENTS);

      const mark = s.mark();
      const attempts0 = sources.map((x) => x.client.stats.watch);
      await s.stop();
      await new Promise((r) => setTimeout(r, 3000));
      s.start();
      const upAt = Date.now();
      await until(
        "every agent watches again",
        () =>
          [...Array(AGENTS).keys()].every((i) =>
            s.count({ user: `agent-${i}`, verb: "watch", status: 200 }, mark) > 0
          ),
      );
      // When each agent came back, ms after the server did.
      const back = [...Array(AGENTS).keys()].map((i) =>
        s.requests.find((r) => r.seq > mark && r.user === `agent-${i}` && r.status === 200)!.at - upAt
      ).sort((a, b) => a - b);
      const attempts = sources.map((x, i) => x.client.stats.watch - attempts0[i]!);
      console.log(
        `  back after the restart (ms): ${back.join(" ")}; watch attempts per agent: ${attempts.join(" ")}`,
      );
      assert.ok(back.at(-1)! - back[0]! >= 300, `reconnections in lock-step: ${back}`);
      assert.ok(attempts.every((a) => a >= 1 && a <= 15), `attempts per agent: ${attempts}`);
      assert.equal(s.count({ verb: "list" }, mark), 0, "no LIST: every watch resumed");
      assert.ok(
        s.count({}, mark) <= 2 * AGENTS,
        `requests after the restart: ${JSON.stringify(s.counts(mark))}`,
      );

      s.store.create(
        Node,
        "",
        realisticNode({
          name: "late",
          podCIDR: "10.244.99.0/24",
          internalIP: "192.168.77.99",
          flannel: { publicIP: "192.168.77.99", vtepMac: "0a:00:00:00:00:99" },
        }),
      );
      await until(
        "every agent sees the node made after the restart",
        () => seen.every((m) => m.has("10.244.99.0-24")),
      );
    } finally {
      stop.abort();
      await Promise.all(running);
      for (const x of sources) await x.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
