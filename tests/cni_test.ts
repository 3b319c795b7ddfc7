/**
 * weft's CNI mode as kubelet uses it: every spec version, every error path, concurrency, crashes.
 */
import assert from "node:assert/strict";
import { Netlink, netnsCreate, netnsDelete, withNetns } from "../ffi/mod.ts";
import { runIn } from "../src/cli/lab.ts";
import { cni, cniCommand, cniEnv } from "./helpers/cni.ts";
import { uniqueNetnsName } from "./helpers/names.ts";
import { ROOT } from "./helpers/topology.ts";

const VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

interface Lab extends AsyncDisposable {
  node: string;
  dir: string;
  conf(version: string, extra?: Record<string, unknown>): Record<string, unknown>;
  pod(): string;
}

async function lab(subnet = "10.244.7"): Promise<Lab> {
  const node = uniqueNetnsName("cn");
  const dir = await Deno.makeTempDir({ prefix: "weft-cni-" });
  netnsCreate(node);
  withNetns(node, () => Deno.writeTextFileSync("/proc/sys/net/ipv4/ip_forward", "1"));
  await Deno.writeTextFile(
    `${dir}/subnet.env`,
    `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=${subnet}.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n`,
  );
  const pods: string[] = [];
  return {
    node,
    dir,
    conf: (version, extra = {}) => ({
      cniVersion: version,
      name: "cbr0",
      type: "flannel",
      subnetFile: `${dir}/subnet.env`,
      dataDir: `${dir}/flannel`,
      delegate: { hairpinMode: true, isDefaultGateway: true, ipam: { dataDir: `${dir}/networks` } },
      ...extra,
    }),
    pod() {
      const p = uniqueNetnsName("pod");
      netnsCreate(p);
      pods.push(p);
      return p;
    },
    async [Symbol.asyncDispose]() {
      for (const p of pods) netnsDelete(p);
      netnsDelete(node);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

function storeFiles(dir: string): string[] {
  try {
    return [...Deno.readDirSync(`${dir}/networks/cbr0`)].map((e) => e.name).filter((n) => /^\d/.test(n));
  } catch {
    return [];
  }
}

Deno.test({
  name: "CNI ADD, CHECK and DEL give each spec version's result shape and leave nothing behind",
  ignore: !ROOT,
  async fn(t) {
    await using l = await lab();
    for (const v of VERSIONS) {
      await t.step(`spec ${v}`, async () => {
        const pod = l.pod();
        const env = {
          containerId: `ctr-${v.replaceAll(".", "")}`,
          netns: `/run/netns/${pod}`,
          ifname: "eth0",
        };
        const add = await cni(l.node, { command: "ADD", ...env }, l.conf(v));
        assert.equal(add.code, 0, add.stdout + add.stderr);
        const r = add.out!;
        assert.equal(r.cniVersion, v);
        const ips = r.ips as { address: string; gateway: string; version?: string; interface: number }[];
        assert.equal(ips.length, 1);
        assert.match(ips[0]!.address, /^10\.244\.7\.\d+\/24$/);
        assert.equal(ips[0]!.gateway, "10.244.7.1");
        if (v.startsWith("0.")) assert.equal(ips[0]!.version, "4");
        else assert.equal(ips[0]!.version, undefined);
        const ifs = r.interfaces as { name: string; sandbox?: string; mtu?: number }[];
        assert.equal(ifs[ips[0]!.interface]!.name, "eth0");
        assert.equal(ifs[ips[0]!.interface]!.sandbox, env.netns);
        if (v === "1.1.0") assert.equal(ifs[2]!.mtu, 1450);
        assert.deepEqual(r.routes, [{ dst: "0.0.0.0/0", gw: "10.244.7.1" }]);
        // The pod reaches its gateway.
        const ping = await runIn(pod, ["ping", "-c", "1", "-W", "2", "10.244.7.1"]);
        assert.equal(ping.code, 0, ping.stdout);
        if (v !== "0.3.0" && v !== "0.3.1") {
          const check = await cni(l.node, { command: "CHECK", ...env }, l.conf(v, { prevResult: r }));
          assert.equal(check.code, 0, check.stdout);
        }
        const del = await cni(l.node, { command: "DEL", ...env }, l.conf(v));
        assert.equal(del.code, 0, del.stdout);
        assert.deepEqual(storeFiles(l.dir), []);
        using nl = Netlink.open({ netns: pod });
        assert.equal(nl.linkGet("eth0"), undefined, "the container interface is gone");
        // DEL again, and DEL with an empty CNI_NETNS (containerd's ctr does that), still succeed.
        assert.equal((await cni(l.node, { command: "DEL", ...env }, l.conf(v))).code, 0);
        assert.equal((await cni(l.node, { command: "DEL", ...env, netns: "" }, l.conf(v))).code, 0);
      });
    }
  },
});

Deno.test({
  name: "CNI errors are the spec's JSON on stdout with the right codes",
  ignore: !ROOT,
  async fn(t) {
    await using l = await lab();
    const pod = l.pod();
    const env = { containerId: "errs", netns: `/run/netns/${pod}`, ifname: "eth0" };
    const cases: { name: string; code: number; call: () => ReturnType<typeof cni>; msg: RegExp }[] = [
      {
        name: "bad JSON",
        code: 6,
        msg: /decode/,
        call: () => cni(l.node, { command: "ADD", ...env }, "{not json"),
      },
      {
        name: "missing CNI_CONTAINERID",
        code: 4,
        msg: /CNI_CONTAINERID/,
        call: () => cni(l.node, { command: "ADD", netns: env.netns, ifname: "eth0" }, l.conf("1.0.0")),
      },
      {
        name: "container id that could escape the store",
        code: 4,
        msg: /CNI_CONTAINERID/,
        call: () => cni(l.node, { command: "ADD", ...env, containerId: "../../etc" }, l.conf("1.0.0")),
      },
      {
        name: "missing CNI_NETNS on ADD",
        code: 4,
        msg: /CNI_NETNS/,
        call: () => cni(l.node, { command: "ADD", containerId: "x", ifname: "eth0" }, l.conf("1.0.0")),
      },
      {
        name: "unknown CNI_COMMAND",
        code: 4,
        msg: /CNI_COMMAND/,
        call: () => cni(l.node, { command: "FROB", ...env }, l.conf("1.0.0")),
      },
      {
        name: "unsupported version",
        code: 1,
        msg: /incompatible CNI version 9\.9\.9/,
        call: () => cni(l.node, { command: "ADD", ...env }, l.conf("9.9.9")),
      },
      {
        name: "bad config field",
        code: 7,
        msg: /mtu/,
        call: () => cni(l.node, { command: "ADD", ...env }, l.conf("1.0.0", { delegate: { mtu: "big" } })),
      },
      {
        name: "missing subnet.env",
        code: 11,
        msg: /has not written it yet/,
        call: () =>
          cni(l.node, { command: "ADD", ...env }, l.conf("1.0.0", { subnetFile: `${l.dir}/nope.env` })),
      },
      {
        name: "STATUS without subnet.env",
        code: 50,
        msg: /not ready/,
        call: () => cni(l.node, { command: "STATUS" }, l.conf("1.1.0", { subnetFile: `${l.dir}/nope.env` })),
      },
    ];
    for (const c of cases) {
      await t.step(`${c.name} → code ${c.code}`, async () => {
        const r = await c.call();
        assert.notEqual(r.code, 0);
        assert.equal(r.out?.code, c.code, r.stdout);
        assert.match(String(r.out?.msg), c.msg);
      });
    }
    await t.step("STATUS with subnet.env succeeds; VERSION lists every version", async () => {
      assert.equal((await cni(l.node, { command: "STATUS" }, l.conf("1.1.0"))).code, 0);
      const v = await cni(l.node, { command: "VERSION" }, { cniVersion: "1.0.0" });
      assert.deepEqual(v.out?.supportedVersions, VERSIONS);
    });
    await t.step("nothing was allocated by the failed calls", () => {
      assert.deepEqual(storeFiles(l.dir), []);
    });
  },
});

Deno.test({
  name: "50 parallel ADDs on one node get 50 distinct IPs; 50 DELs empty the store",
  ignore: !ROOT,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using l = await lab("10.244.8");
    const pods = Array.from({ length: 50 }, () => l.pod());
    const t0 = performance.now();
    const adds = await Promise.all(
      pods.map((p, i) =>
        cni(
          l.node,
          { command: "ADD", containerId: `par${i}`, netns: `/run/netns/${p}`, ifname: "eth0" },
          l.conf("1.0.0"),
        )
      ),
    );
    const ms = performance.now() - t0;
    for (const a of adds) assert.equal(a.code, 0, a.stdout);
    const ips = adds.map((a) => (a.out!.ips as { address: string }[])[0]!.address);
    assert.equal(new Set(ips).size, 50, "distinct IPs");
    assert.equal(storeFiles(l.dir).length, 50);
    console.log(`  50 parallel ADDs in ${ms.toFixed(0)} ms`);
    const dels = await Promise.all(
      pods.map((p, i) =>
        cni(
          l.node,
          { command: "DEL", containerId: `par${i}`, netns: `/run/netns/${p}`, ifname: "eth0" },
          l.conf("1.0.0"),
        )
      ),
    );
    for (const d of dels) assert.equal(d.code, 0, d.stdout);
    assert.deepEqual(storeFiles(l.dir), []);
  },
});

Deno.test({
  name: "a plugin killed mid-ADD leaves nothing that GC does not free",
  ignore: !ROOT,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using l = await lab("10.244.9");
    const keep = l.pod();
    const kept = await cni(l.node, {
      command: "ADD",
      containerId: "keeper",
      netns: `/run/netns/${keep}`,
      ifname: "eth0",
    }, l.conf("1.1.0"));
    assert.equal(kept.code, 0);
    // Kill ADDs at different moments.
    let killed = 0;
    for (const delay of [40, 60, 80, 100, 120]) {
      const pod = l.pod();
      const child = withNetns(l.node, () =>
        new Deno.Command(cniCommand()[0]!, {
          args: cniCommand().slice(1),
          env: cniEnv({
            command: "ADD",
            containerId: `victim${delay}`,
            netns: `/run/netns/${pod}`,
            ifname: "eth0",
          }),
          clearEnv: true,
          stdin: "piped",
          stdout: "null",
          stderr: "null",
        }).spawn());
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(JSON.stringify(l.conf("1.1.0"))));
      await w.close();
      await new Promise((r) => setTimeout(r, delay));
      try {
        child.kill("SIGKILL");
        killed++;
      } catch { /* already done */ }
      await child.status;
    }
    const before = storeFiles(l.dir).length;
    const gc = await cni(
      l.node,
      { command: "GC" },
      l.conf("1.1.0", { "cni.dev/valid-attachments": [{ containerID: "keeper", ifname: "eth0" }] }),
    );
    assert.equal(gc.code, 0, gc.stdout);
    const after = storeFiles(l.dir);
    const keeperIP = (kept.out!.ips as { address: string }[])[0]!.address.split("/")[0];
    assert.deepEqual(after, [keeperIP], `before GC ${before} allocations, after GC only the valid one`);
    console.log(`  ${killed} ADDs killed mid-flight, ${before} allocations before GC, ${after.length} after`);
  },
});
