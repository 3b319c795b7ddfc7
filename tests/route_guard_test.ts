/**
 * The route guard against a real kernel (a scratch namespace): weft's route operations never replace or
 * delete a route of another protocol — connected, static, DHCP, any metric — and its own routes are
 * still added, replaced and deleted as before.
 */
import assert from "node:assert/strict";
import type { Netlink } from "../ffi/mod.ts";
import { NetlinkKernel } from "../src/datapath/kernel.ts";
import { RouteRefusedError } from "../src/datapath/route_guard.ts";
import { requireRoot } from "./helpers/topology.ts";
import { iprouteJson, withScratchNetns } from "./helpers/scratch_netns.ts";

/** A veth `d0` (peer `d1`, both up) holding 192.168.91.1/24 and fd00:91::1/64, a static and a DHCP route. */
/** `ip -n ns …`; throws with its stderr when it fails. */
async function ipIn(ns: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("ip", { args: ["-n", ns, ...args], stderr: "piped" }).output();
  if (!out.success) throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
}

async function setup(ns: string, nl: Netlink): Promise<number> {
  const run = (...args: string[]) => ipIn(ns, ...args);
  await run("link", "add", "d0", "type", "veth", "peer", "name", "d1");
  await run("link", "set", "d1", "up");
  await run("link", "set", "d0", "up");
  await run("addr", "add", "192.168.91.1/24", "dev", "d0");
  await run("addr", "add", "fd00:91::1/64", "dev", "d0", "nodad");
  await run("route", "add", "10.99.0.0/24", "via", "192.168.91.254", "proto", "static");
  await run("route", "add", "10.98.0.0/24", "via", "192.168.91.254", "proto", "dhcp", "metric", "100");
  return nl.linkGet("d0")!.index;
}

async function routesTo(ns: string, dst: string): Promise<{ protocol: string; gateway?: string }[]> {
  const all = await iprouteJson(ns, "ip", "route", "show", "table", "main");
  const six = await iprouteJson(ns, "ip", "-6", "route", "show", "table", "main");
  return [...all, ...six]
    .filter((r) => r.dst === dst || (r.dst as string)?.replace(/\/(32|128)$/, "") === dst)
    .map((r) => ({ protocol: String(r.protocol), ...(r.gateway ? { gateway: String(r.gateway) } : {}) }));
}

Deno.test({
  name: "NetlinkKernel never replaces a connected, static or DHCP route (any metric), and reports it",
  ignore: requireRoot(),
  async fn() {
    await withScratchNetns("rg", async (ns, nl) => {
      const dev = await setup(ns, nl);
      const k = new NetlinkKernel(nl);
      const want = (dst: string) => ({ kind: "route" as const, spec: { dst, gateway: "192.168.91.7", dev } });
      for (const dst of ["192.168.91.0/24", "10.99.0.0/24", "10.98.0.0/24"]) {
        const before = await routesTo(ns, dst);
        assert.throws(() => k.apply(want(dst)), (e) => e instanceof RouteRefusedError && e.dst === dst, dst);
        assert.deepEqual(await routesTo(ns, dst), before, `${dst} untouched`);
      }
      // IPv6: the connected route has metric 256, weft's would get 1024 — still refused.
      assert.throws(
        () => k.apply({ kind: "route", spec: { dst: "fd00:91::/64", gateway: "fd00:91::7", dev } }),
        RouteRefusedError,
      );
      assert.deepEqual((await routesTo(ns, "fd00:91::/64")).map((r) => r.protocol), ["kernel"]);
      assert.equal(k.routes.refused, 4);
      // Refused again (a retry) without counting it twice.
      assert.throws(() => k.apply(want("10.99.0.0/24")), RouteRefusedError);
      assert.equal(k.routes.refused, 4);
      assert.match(
        new RouteRefusedError("10.99.0.0/24", k.routes.foreignAt("10.99.0.0/24")!).message,
        /route 10\.99\.0\.0\/24 refused: the destination holds a route of protocol static via 192\.168\.91\.254/,
      );
    });
  },
});

Deno.test({
  name: "NetlinkKernel deletes only its own routes: a delete of a foreign destination leaves it in place",
  ignore: requireRoot(),
  async fn() {
    await withScratchNetns("rg", async (ns, nl) => {
      const dev = await setup(ns, nl);
      const k = new NetlinkKernel(nl);
      for (const dst of ["192.168.91.0/24", "10.99.0.0/24", "10.98.0.0/24"]) {
        const before = await routesTo(ns, dst);
        k.remove({ kind: "route", spec: { dst, dev } });
        assert.deepEqual(await routesTo(ns, dst), before, `${dst} still there`);
      }
    });
  },
});

Deno.test({
  name: "NetlinkKernel still adds, replaces and deletes its own routes (protocol 87)",
  ignore: requireRoot(),
  async fn() {
    await withScratchNetns("rg", async (ns, nl) => {
      const dev = await setup(ns, nl);
      const k = new NetlinkKernel(nl);
      const r = (gateway: string) => ({
        kind: "route" as const,
        spec: { dst: "10.244.3.0/24", gateway, dev },
      });
      k.apply(r("192.168.91.7"));
      assert.deepEqual(await routesTo(ns, "10.244.3.0/24"), [{ protocol: "87", gateway: "192.168.91.7" }]);
      k.apply(r("192.168.91.8")); // a changed lease: replaced in place
      assert.deepEqual(await routesTo(ns, "10.244.3.0/24"), [{ protocol: "87", gateway: "192.168.91.8" }]);
      // A fresh handle (an agent restart) finds its route and replaces it too.
      const k2 = new NetlinkKernel(nl);
      k2.apply(r("192.168.91.9"));
      assert.deepEqual(await routesTo(ns, "10.244.3.0/24"), [{ protocol: "87", gateway: "192.168.91.9" }]);
      assert.equal(k2.read(new Set()).routes.map((x) => x.dst).join(), "10.244.3.0/24");
      k2.remove(r("192.168.91.9"));
      assert.deepEqual(await routesTo(ns, "10.244.3.0/24"), []);
      assert.equal(k2.routes.refused, 0);
    });
  },
});

Deno.test({
  name: "NetlinkKernel: a foreign route added after the last read is found on EEXIST and not replaced",
  ignore: requireRoot(),
  async fn() {
    await withScratchNetns("rg", async (ns, nl) => {
      const dev = await setup(ns, nl);
      const k = new NetlinkKernel(nl);
      k.read(new Set()); // the cache is filled now
      const add = await new Deno.Command("ip", {
        args: ["-n", ns, "route", "add", "10.244.5.0/24", "via", "192.168.91.254", "proto", "static"],
      }).output();
      assert.ok(add.success);
      assert.throws(
        () => k.apply({ kind: "route", spec: { dst: "10.244.5.0/24", gateway: "192.168.91.7", dev } }),
        RouteRefusedError,
      );
      assert.deepEqual(await routesTo(ns, "10.244.5.0/24"), [{
        protocol: "static",
        gateway: "192.168.91.254",
      }]);
    });
  },
});

Deno.test({
  name:
    "NetlinkKernel adopts flanneld's route (protocol boot, the very next hop weft wants) and refuses any other",
  ignore: requireRoot(),
  async fn() {
    await withScratchNetns("rg", async (ns, nl) => {
      const dev = await setup(ns, nl);
      const ip = (...args: string[]) => ipIn(ns, ...args);
      // As flanneld programs a peer (it sets no protocol: the kernel says boot).
      await ip("route", "add", "10.244.6.0/24", "via", "192.168.91.7", "dev", "d0", "proto", "boot");
      await ip("route", "add", "10.244.7.0/24", "via", "192.168.91.8", "dev", "d0", "proto", "boot");
      const k = new NetlinkKernel(nl);
      k.apply({ kind: "route", spec: { dst: "10.244.6.0/24", gateway: "192.168.91.7", dev } });
      assert.deepEqual(await routesTo(ns, "10.244.6.0/24"), [{ protocol: "87", gateway: "192.168.91.7" }]);
      assert.throws(
        () => k.apply({ kind: "route", spec: { dst: "10.244.7.0/24", gateway: "192.168.91.9", dev } }),
        RouteRefusedError,
        "another next hop than the one there is not flanneld's route for this lease",
      );
      // (ip -j leaves the protocol out when it is boot.)
      assert.deepEqual(await routesTo(ns, "10.244.7.0/24"), [{
        protocol: "undefined",
        gateway: "192.168.91.8",
      }]);
      assert.equal(k.routes.refused, 1);
      // Adopted routes are weft's from then on: removed with the lease.
      k.remove({ kind: "route", spec: { dst: "10.244.6.0/24", dev } });
      assert.deepEqual(await routesTo(ns, "10.244.6.0/24"), []);
    });
  },
});

Deno.test({
  name:
    "NetlinkKernel.applyMany() decides as apply() does: batched where plain, refused, adopted or looked at again where not",
  ignore: requireRoot(),
  async fn() {
    await withScratchNetns("rg", async (ns, nl) => {
      const dev = await setup(ns, nl);
      const ip = (...args: string[]) => ipIn(ns, ...args);
      await ip("route", "add", "10.97.0.0/24", "via", "192.168.91.8", "dev", "d0", "proto", "boot"); // flanneld's
      const k = new NetlinkKernel(nl);
      k.read(new Set([dev])); // the full pass reads first: the guard knows the table as it is now
      // Behind the guard's back: weft's own route (a previous run's), which a planned add meets as EEXIST.
      await ip("route", "add", "10.95.0.0/24", "via", "192.168.91.9", "proto", "87");
      const route = (dst: string, gateway = "192.168.91.7") => ({
        kind: "route" as const,
        spec: { dst, gateway, dev },
      });
      const errors = k.applyMany([
        [{ kind: "neigh", spec: { dev, ip: "10.96.0.1", mac: "0a:00:00:00:00:01" } }, route("10.96.0.0/24")],
        [route("10.99.0.0/24")], // static: refused
        [route("10.97.0.0/24", "192.168.91.8")], // flanneld's: adopted
        [route("10.95.0.0/24")], // EEXIST, then replaced
        [
          { kind: "neigh", spec: { dev: 9999, ip: "10.94.0.1", mac: "0a:00:00:00:00:02" } },
          route("10.94.0.0/24"),
        ],
      ]);
      assert.deepEqual(errors.map((e) => e?.name), [
        undefined,
        "RouteRefusedError",
        undefined,
        undefined,
        "NetlinkError",
      ]);
      assert.match(errors[4]!.message, /neighbour replace 10\.94\.0\.1 .*ENODEV/);
      assert.deepEqual(await routesTo(ns, "10.99.0.0/24"), [{
        protocol: "static",
        gateway: "192.168.91.254",
      }]);
      assert.deepEqual(await routesTo(ns, "10.94.0.0/24"), [], "no route after its neighbour failed");
      const expected: [string, string][] = [
        ["10.96.0.0/24", "192.168.91.7"], // batched
        ["10.97.0.0/24", "192.168.91.8"], // adopted
        ["10.95.0.0/24", "192.168.91.7"], // looked at again, replaced
      ];
      for (const [dst, gw] of expected) {
        const r = (await iprouteJson(ns, "ip", "route", "show", dst))[0]!;
        assert.deepEqual([r.protocol, r.gateway, typeof r.nhid], ["87", gw, "number"], dst);
      }
      assert.deepEqual(nl.nexthopList().map((n) => n.gateway).sort(), [
        "192.168.91.7",
        "192.168.91.7",
        "192.168.91.8",
      ]);
      // Now weft's: a second applyMany replaces them in the batch, no refusal counted twice.
      const again = k.applyMany([[route("10.96.0.0/24", "192.168.91.6")], [route("10.99.0.0/24")]]);
      assert.deepEqual(again.map((e) => e?.name), [undefined, "RouteRefusedError"]);
      assert.equal(
        (await iprouteJson(ns, "ip", "route", "show", "10.96.0.0/24"))[0]!.gateway,
        "192.168.91.6",
      );
      assert.equal(k.routes.refused, 1);
    });
  },
});
