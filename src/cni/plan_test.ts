import assert from "node:assert/strict";
import { formatNet } from "../net/ip.ts";
import { plansFromText } from "./plan.ts";
import { CniError } from "./types.ts";

const PATH = "/run/flannel/subnet.env";
const tail = "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

Deno.test("plansFromText() plans IPv4 then IPv6 with the first host as gateway and the cluster network", () => {
  const plans = plansFromText(
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\n" +
      `FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\n${tail}`,
    PATH,
  );
  assert.deepEqual(
    plans.map((p) => [p.family, formatNet(p.subnet), p.gateway, p.network && formatNet(p.network), p.range]),
    [[4, "10.244.3.0/24", "10.244.3.1", "10.244.0.0/16", 0], [
      6,
      "fd00:10:244:3::/64",
      "fd00:10:244:3::1",
      "fd00:10:244::/56",
      1,
    ]],
  );
});

Deno.test("plansFromText() refuses a subnet outside its network, of the wrong family or too small, naming the key", () => {
  const bad: [string, RegExp][] = [
    [
      `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.9.0.1/24\n`,
      /FLANNEL_SUBNET=10\.9\.0\.1\/24 lies outside FLANNEL_NETWORK=10\.244\.0\.0\/16/,
    ],
    [`FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.0.0.1/8\n`, /lies outside/],
    [`FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=fd00::1/64\n`, /must be an IPv4 subnet/],
    [`FLANNEL_NETWORK=fd00::/16\nFLANNEL_SUBNET=10.244.3.1/24\n`, /FLANNEL_NETWORK=fd00::\/16 must be IPv4/],
    [
      `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/31\n`,
      /leaves no address for a pod \(at most \/30\)/,
    ],
    [
      `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:99::1/64\n`,
      /FLANNEL_IPV6_SUBNET=fd00:99::1\/64 lies outside/,
    ],
    [`FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=nonsense\n`, /FLANNEL_SUBNET=nonsense/],
  ];
  for (const [text, msg] of bad) {
    assert.throws(() => plansFromText(text + tail, PATH), (e) => {
      assert.ok(e instanceof CniError, String(e));
      assert.equal(e.code, 7);
      assert.match(e.message, msg);
      assert.ok(e.message.startsWith(PATH), "names the file");
      return true;
    });
  }
});

Deno.test("plansFromText() accepts the whole network as the node subnet (cni0 decides whether it fits)", () => {
  const [p] = plansFromText(`FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.0.1/16\n${tail}`, PATH);
  assert.equal(p!.gateway, "10.244.0.1");
});
