import assert from "node:assert/strict";
import { withScratchNetns } from "../../tests/helpers/scratch_netns.ts";
import { parseNet } from "../net/ip.ts";
import { blackholes, LAST_RESORT_METRIC } from "./blackhole.ts";
import { NetlinkKernel } from "./kernel.ts";
import { Reconciler } from "./reconciler.ts";

const none = { entriesFor: () => undefined, ownedDevices: () => [] };

Deno.test({
  name:
    "the reconciler keeps the own subnet's blackhole route beside the bridge's, and moves it with the lease",
  ignore: Deno.uid() !== 0,
  fn: () =>
    withScratchNetns("bh", (_ns, nl) => {
      // The pod bridge holds the subnet's first address first: its connected route is there already.
      const br = nl.linkAddBridge({ name: "cni0" });
      nl.addrReplace(br.index, "10.244.3.1/24");
      nl.linkSetUp(br.index);
      let lease = { subnet: parseNet("10.244.3.0/24"), ipv6Subnet: parseNet("fd00:10:244:3::/64") };
      const r = new Reconciler(none, new NetlinkKernel(nl), [
        parseNet("10.244.0.0/16"),
        parseNet("fd00:10:244::/56"),
      ], blackholes({ ipBlackholeRoute: true }, () => lease));
      const blackholesIn = () =>
        nl.routeList({}).filter((x) => x.type === "blackhole").map((x) =>
          `${x.dst} ${x.metric} ${x.protocol}`
        )
          .sort();

      assert.ok(r.fullPass());
      assert.deepEqual(blackholesIn(), [
        `10.244.3.0/24 ${LAST_RESORT_METRIC} 87`,
        `fd00:10:244:3::/64 ${LAST_RESORT_METRIC} 87`,
      ]);
      assert.ok(
        nl.routeList({ family: 4 }).some((x) => x.dst === "10.244.3.0/24" && x.index === br.index),
        "bridge's kept",
      );
      assert.equal(nl.routeGet("10.244.3.9").index, br.index, "pods behind the bridge stay reachable");
      assert.equal(r.stats.driftRepaired, 0, "installing is not drift");

      nl.routeDelete({ dst: "10.244.3.0/24", type: "blackhole", protocol: 87 });
      assert.ok(r.fullPass());
      assert.equal(blackholesIn().length, 2, "re-added");
      assert.equal(r.stats.driftRepaired, 1);

      lease = { subnet: parseNet("10.244.7.0/24"), ipv6Subnet: parseNet("fd00:10:244:7::/64") };
      assert.ok(r.fullPass());
      assert.deepEqual(blackholesIn(), [
        `10.244.7.0/24 ${LAST_RESORT_METRIC} 87`,
        `fd00:10:244:7::/64 ${LAST_RESORT_METRIC} 87`,
      ], "the old lease's pruned");
      assert.equal(r.stats.driftRepaired, 1, "a new lease's route is no drift");
      assert.equal(r.stats.errors, 0);
    }),
});

Deno.test("blackholes() is empty without --ip-blackhole-route", () => {
  const lease = { subnet: parseNet("10.244.3.0/24") };
  assert.deepEqual(blackholes({ ipBlackholeRoute: false }, () => lease)(), []);
  assert.equal(blackholes({ ipBlackholeRoute: true }, () => lease)().length, 1);
});
