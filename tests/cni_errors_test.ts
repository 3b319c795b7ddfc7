/**
 * Every error path of weft's CNI mode answers the spec's error JSON on stdout (where libcni reads it),
 * with the right code, a message that says what is wrong, a non-zero exit, a log line on stderr, and
 * nothing allocated.
 */
import assert from "node:assert/strict";
import { cni, type CniCallEnv, cniLab } from "./helpers/cni.ts";
import { ROOT } from "./helpers/topology.ts";

Deno.test({
  name: "every CNI error is the spec's JSON on stdout with its code, and nothing is allocated",
  ignore: !ROOT,
  async fn(t) {
    await using lab = await cniLab({ net: "10.244.20" });
    const pod = lab.pod();
    const ok: CniCallEnv = { command: "ADD", containerId: "errs", netns: pod, ifname: "eth0" };
    const v1 = lab.conf("1.0.0");
    const noEnv = `${lab.dir}/nope.env`;
    Deno.writeTextFileSync(`${lab.dir}/empty.env`, "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n");
    const cases: {
      name: string;
      code: number;
      env: CniCallEnv;
      conf: string | Record<string, unknown>;
      msg: RegExp;
    }[] = [
      { name: "bad JSON", code: 6, env: ok, conf: "{not json", msg: /decode/ },
      {
        name: "a JSON array instead of an object",
        code: 6,
        env: ok,
        conf: "[1,2]",
        msg: /not a JSON object/,
      },
      {
        name: "missing CNI_CONTAINERID",
        code: 4,
        env: { ...ok, containerId: undefined },
        conf: v1,
        msg: /CNI_CONTAINERID is required/,
      },
      {
        name: "a CNI_CONTAINERID that could escape the store",
        code: 4,
        env: { ...ok, containerId: "../../etc" },
        conf: v1,
        msg: /CNI_CONTAINERID/,
      },
      {
        name: "missing CNI_IFNAME",
        code: 4,
        env: { ...ok, ifname: undefined },
        conf: v1,
        msg: /CNI_IFNAME is required/,
      },
      {
        name: "a CNI_IFNAME with a slash",
        code: 4,
        env: { ...ok, ifname: "../x" },
        conf: v1,
        msg: /CNI_IFNAME/,
      },
      {
        name: "a CNI_IFNAME longer than 15",
        code: 4,
        env: { ...ok, ifname: "eth0123456789abc" },
        conf: v1,
        msg: /CNI_IFNAME/,
      },
      {
        name: "missing CNI_NETNS on ADD",
        code: 4,
        env: { ...ok, netns: undefined },
        conf: v1,
        msg: /CNI_NETNS is required/,
      },
      { name: "missing CNI_COMMAND", code: 4, env: { ...ok, command: "" }, conf: v1, msg: /CNI_COMMAND/ },
      {
        name: "unknown CNI_COMMAND",
        code: 4,
        env: { ...ok, command: "FROB" },
        conf: v1,
        msg: /CNI_COMMAND "FROB"/,
      },
      {
        name: "malformed CNI_ARGS",
        code: 4,
        env: { ...ok, args: "IgnoreUnknown=1;oops" },
        conf: v1,
        msg: /CNI_ARGS/,
      },
      {
        name: "unsupported version",
        code: 1,
        env: ok,
        conf: lab.conf("9.9.9"),
        msg: /incompatible CNI version 9\.9\.9/,
      },
      {
        name: "CHECK on a 0.3.1 config",
        code: 1,
        env: { ...ok, command: "CHECK" },
        conf: lab.conf("0.3.1"),
        msg: /does not allow CHECK/,
      },
      { name: "GC on a 1.0.0 config", code: 1, env: { command: "GC" }, conf: v1, msg: /does not allow GC/ },
      {
        name: "missing cniVersion",
        code: 7,
        env: ok,
        conf: lab.conf("1.0.0", { cniVersion: undefined }),
        msg: /cniVersion is required/,
      },
      {
        name: "a network name with a slash",
        code: 7,
        env: ok,
        conf: lab.conf("1.0.0", { name: "../x" }),
        msg: /name/,
      },
      {
        name: "an MTU that is a string",
        code: 7,
        env: ok,
        conf: lab.conf("1.0.0", { delegate: { mtu: "big" } }),
        msg: /mtu must be a number/,
      },
      {
        name: "a delegate weft cannot be",
        code: 7,
        env: ok,
        conf: lab.conf("1.0.0", { delegate: { type: "ipvlan" } }),
        msg: /delegate.type "ipvlan"/,
      },
      {
        name: "an IPAM type weft cannot be",
        code: 7,
        env: ok,
        conf: lab.conf("1.0.0", { delegate: { ipam: { type: "dhcp" } } }),
        msg: /ipam.type "dhcp"/,
      },
      {
        name: "missing subnet.env",
        code: 11,
        env: ok,
        conf: lab.conf("1.0.0", { subnetFile: noEnv }),
        msg: /agent is not ready.*does not exist/,
      },
      {
        name: "subnet.env without a subnet",
        code: 11,
        env: ok,
        conf: lab.conf("1.0.0", { subnetFile: `${lab.dir}/empty.env` }),
        msg: /agent is not ready/,
      },
      {
        name: "a netns that does not exist",
        code: 3,
        env: { ...ok, netns: "/run/netns/wtst-none" },
        conf: v1,
        msg: /does not exist/,
      },
      {
        name: "STATUS without subnet.env",
        code: 50,
        env: { command: "STATUS" },
        conf: lab.conf("1.1.0", { subnetFile: noEnv }),
        msg: /not ready/,
      },
    ];
    for (const c of cases) {
      await t.step(`${c.name} → code ${c.code}`, async () => {
        const r = await cni(lab.node, c.env, c.conf);
        assert.notEqual(r.code, 0, "non-zero exit");
        assert.equal(r.out?.code, c.code, r.stdout + r.stderr);
        assert.match(String(r.out?.msg), c.msg);
        assert.equal(typeof r.out?.cniVersion, "string");
        assert.match(r.stderr, new RegExp(`failed with code ${c.code}`), "logged on stderr too");
      });
    }
    await t.step(
      "STATUS with subnet.env succeeds; VERSION lists every version in the asked version",
      async () => {
        const status = await cni(lab.node, { command: "STATUS" }, lab.conf("1.1.0"));
        assert.equal(status.code, 0, status.stdout);
        const v = await cni(lab.node, { command: "VERSION" }, { cniVersion: "0.4.0" });
        assert.deepEqual(v.out, {
          cniVersion: "0.4.0",
          supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
        });
      },
    );
    await t.step("an error is answered in the config's version", async () => {
      const r = await cni(lab.node, ok, lab.conf("0.3.1", { subnetFile: noEnv }));
      assert.equal(r.out?.cniVersion, "0.3.1");
    });
    await t.step("nothing was allocated by the failed calls", () => {
      assert.deepEqual(lab.allocated(), []);
    });
  },
});
