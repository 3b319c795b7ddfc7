/**
 * Hostile and broken input to weft's CNI mode (issue 12): a subnet.env outside its network or differing
 * from cni0, DEL with an unusable CNI_NETNS, a malformed prevResult, GC without its list, an unusable
 * disk. Each is refused with the spec's code and a reason, and none of it disturbs the pod already
 * running on the node: it pings its gateway (cni0, in the node namespace) throughout, and cni0 keeps
 * its address.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { cni, type CniCall, type CniCallEnv, type CniLab, cniLab, nsExec } from "./helpers/cni.ts";
import { ROOT } from "./helpers/topology.ts";
import { skipUnless } from "./helpers/skip.ts";

const BRIDGE = "/usr/lib/cni/bridge";
const HAVE_BRIDGE = (() => {
  try {
    return Deno.statSync(BRIDGE).isFile;
  } catch {
    return false;
  }
})();

const base = (p: string) => p.slice(p.lastIndexOf("/") + 1);

/** A pod pinging its gateway every 50 ms for the whole test; `stop()` returns sent/received. */
/**
 * A pod pinging its gateway every 50 ms while a test does hostile things beside it. {@linkcode stop}
 * waits (30 s at most) until an echo sent after the work is answered and at least `minReplies` were,
 * so the figures mean something however fast the machine ran the work, then lists the echoes left
 * unanswered before the last reply: a cut at any moment shows as a gap in the sequence numbers.
 */
function steadyPing(podPath: string, gateway: string) {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", base(podPath), "ping", "-n", "-i", "0.05", "-W", "1", gateway],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const answered = new Set<number>();
  const reading = (async () => {
    let rest = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop()!;
      for (const line of lines) {
        const m = /bytes from .*icmp_seq=(\d+)/.exec(line);
        if (m) answered.add(Number(m[1]));
      }
    }
  })();
  const last = () => Math.max(0, ...answered);
  return {
    async stop(minReplies = 20): Promise<{ replies: number; last: number; lost: number[] }> {
      const mark = last();
      const deadline = Date.now() + 30_000;
      while (answered.size < minReplies || last() <= mark) {
        if (Date.now() > deadline) {
          child.kill("SIGKILL");
          throw new Error(
            `no reply after the work within 30 s: ${answered.size} replies, the last #${last()}`,
          );
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      child.kill("SIGINT");
      await child.status;
      await reading;
      await child.stderr.cancel();
      const lost = [];
      for (let seq = 1; seq <= last(); seq++) if (!answered.has(seq)) lost.push(seq);
      return { replies: answered.size, last: last(), lost };
    },
  };
}

async function pingsOnce(podPath: string, gateway: string): Promise<boolean> {
  return (await nsExec(base(podPath), ["ping", "-n", "-c", "1", "-W", "2", gateway])).code === 0;
}

function cni0Addrs(lab: CniLab): string[] {
  using nl = Netlink.open({ netns: lab.node });
  return nl.addrList("cni0", 4).map((a) => a.cidr);
}

function refused(r: CniCall, code: number, msg: RegExp): void {
  assert.notEqual(r.code, 0, "non-zero exit");
  assert.equal(r.out?.code, code, r.stdout + r.stderr);
  assert.match(String(r.out?.msg), msg);
}

Deno.test({
  name:
    "hostile subnet.env, prevResult, GC and disk input is refused with its code while a pod keeps pinging",
  ignore: !ROOT,
  async fn(t) {
    await using lab = await cniLab({ net: "10.244.32" });
    const gw = "10.244.32.1";
    const steadyPod = lab.pod();
    const steadyEnv = { containerId: "steady", netns: steadyPod, ifname: "eth0" };
    const add = await cni(lab.node, { command: "ADD", ...steadyEnv }, lab.conf("1.1.0"));
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const steadyIP = (add.out!.ips as { address: string }[])[0]!.address.split("/")[0]!;
    assert.ok(await pingsOnce(steadyPod, gw), "the running pod reaches its gateway");
    const ping = steadyPing(steadyPod, gw);
    const addWith = (subnetEnv: string, extra: Record<string, unknown> = {}, id = "newcomer") => {
      const path = `${lab.dir}/${id}-${Math.random().toString(36).slice(2, 8)}.env`;
      Deno.writeTextFileSync(path, subnetEnv);
      return cni(
        lab.node,
        { command: "ADD", containerId: id, netns: lab.pod(), ifname: "eth0" },
        lab.conf("1.1.0", { subnetFile: path, ...extra }),
      );
    };
    const tail = "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";
    const cases: { name: string; text: string; code: number; msg: RegExp }[] = [
      {
        name: "FLANNEL_SUBNET outside FLANNEL_NETWORK",
        text: `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.9.0.1/24\n${tail}`,
        code: 7,
        msg: /FLANNEL_SUBNET=10\.9\.0\.1\/24 lies outside FLANNEL_NETWORK=10\.244\.0\.0\/16/,
      },
      {
        name: "FLANNEL_SUBNET as large as the whole cluster network plus more",
        text: `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.0.0.1/8\n${tail}`,
        code: 7,
        msg: /lies outside/,
      },
      {
        name: "an IPv6 FLANNEL_SUBNET",
        text: `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=fd00::1/64\n${tail}`,
        code: 7,
        msg: /must be an IPv4 subnet/,
      },
      {
        name: "a /31 FLANNEL_SUBNET (no room for a pod)",
        text: `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.32.0/31\n${tail}`,
        code: 7,
        msg: /leaves no address for a pod/,
      },
      {
        name: "an unparseable FLANNEL_SUBNET",
        text: `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=banana\n${tail}`,
        code: 7,
        msg: /FLANNEL_SUBNET=banana/,
      },
      {
        name: "another subnet of the network while a pod uses cni0's",
        text: `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.33.1/24\n${tail}`,
        code: 11,
        msg: /cni0 holds 10\.244\.32\.1\/24 but subnet\.env says the gateway is 10\.244\.33\.1\/24.*1 pod/,
      },
    ];
    for (const c of cases) {
      await t.step(`ADD with ${c.name} → code ${c.code}, cni0 untouched`, async () => {
        refused(await addWith(c.text), c.code, c.msg);
        assert.deepEqual(cni0Addrs(lab), [`${gw}/24`], "cni0 keeps its address");
        assert.deepEqual(lab.allocated(), [steadyIP], "nothing allocated");
        assert.ok(await pingsOnce(steadyPod, gw), "the running pod still reaches its gateway");
      });
    }
    await t.step("ADD with subnet.env unreadable (a directory) → code 5", async () => {
      Deno.mkdirSync(`${lab.dir}/dir.env`);
      const r = await cni(
        lab.node,
        { command: "ADD", containerId: "newcomer", netns: lab.pod(), ifname: "eth0" },
        lab.conf("1.1.0", { subnetFile: `${lab.dir}/dir.env` }),
      );
      refused(r, 5, /cannot read .*dir\.env/);
    });
    await t.step("ADD with the IPAM store under a plain file → code 5, nothing made", async () => {
      Deno.writeTextFileSync(`${lab.dir}/plain`, "");
      const pod = lab.pod();
      const r = await cni(
        lab.node,
        { command: "ADD", containerId: "diskless", netns: pod, ifname: "eth0" },
        lab.conf("1.1.0", { delegate: { ipam: { dataDir: `${lab.dir}/plain/networks` } } }),
      );
      refused(r, 5, /IPAM store: .*plain\/networks/);
      using nl = Netlink.open({ netns: base(pod) });
      assert.equal(nl.linkGet("eth0"), undefined, "no interface in the pod");
    });
    const check = (prevResult: unknown) =>
      cni(lab.node, { command: "CHECK", ...steadyEnv }, lab.conf("1.1.0", { prevResult }));
    const badPrev: [string, unknown, RegExp][] = [
      ["ips: [null]", { ips: [null] }, /prevResult\.ips\[0\] must be an object, not null/],
      [
        "an address that is a number",
        { ips: [{ address: 5 }] },
        /prevResult\.ips\[0\]\.address must be a string/,
      ],
      ["an address without prefix", { ips: [{ address: steadyIP }] }, /with a prefix/],
      ["interfaces that are a string", { interfaces: "eth0" }, /prevResult\.interfaces must be a list/],
      ["an interface index out of range", {
        interfaces: [{ name: "eth0" }],
        ips: [{ address: `${steadyIP}/24`, interface: 7 }],
      }, /interface must be an index/],
      ["a route without dst", { routes: [{ gw }] }, /prevResult\.routes\[0\]\.dst must be a string/],
      ["a prevResult that is a list", [1], /prevResult must be an object/],
    ];
    for (const [name, prev, msg] of badPrev) {
      await t.step(`CHECK with prevResult ${name} → code 7, not a crash`, async () => {
        refused(await check(prev), 7, msg);
      });
    }
    await t.step("CHECK with a well-formed prevResult of the pod passes", async () => {
      const r = await check({ cniVersion: "1.1.0", interfaces: add.out!.interfaces, ips: add.out!.ips });
      assert.equal(r.code, 0, r.stdout + r.stderr);
    });
    await t.step("GC without cni.dev/valid-attachments → code 7, nothing freed", async () => {
      refused(await cni(lab.node, { command: "GC" }, lab.conf("1.1.0")), 7, /valid-attachments/);
      refused(
        await cni(lab.node, { command: "GC" }, lab.conf("1.1.0", { "cni.dev/valid-attachments": "all" })),
        7,
        /must be a list/,
      );
      assert.deepEqual(lab.allocated(), [steadyIP]);
    });
    await t.step("GC with the older cni.dev/attachments keeps the pods it names", async () => {
      const r = await cni(
        lab.node,
        { command: "GC" },
        lab.conf("1.1.0", { "cni.dev/attachments": [{ containerID: "steady", ifname: "eth0" }] }),
      );
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(lab.allocated(), [steadyIP]);
    });
    await t.step("the pod pinged its gateway the whole time", async () => {
      const { replies, last, lost } = await ping.stop();
      assert.deepEqual(lost, [], `echoes unanswered before the last reply (#${last}, ${replies} replies)`);
      assert.deepEqual(cni0Addrs(lab), [`${gw}/24`]);
    });
  },
});

Deno.test({
  name: "DEL of a weft pod with an unusable CNI_NETNS still removes everything, veth first",
  ignore: !ROOT,
  async fn(t) {
    await using lab = await cniLab({ net: "10.244.34" });
    const gw = "10.244.34.1";
    const steadyPod = lab.pod();
    const steady = await cni(
      lab.node,
      { command: "ADD", containerId: "steady", netns: steadyPod, ifname: "eth0" },
      lab.conf("1.0.0"),
    );
    assert.equal(steady.code, 0, steady.stdout);
    const ping = steadyPing(steadyPod, gw);
    Deno.writeTextFileSync(`${lab.dir}/not-a-netns`, "");
    Deno.symlinkSync(`${lab.dir}/nowhere`, `${lab.dir}/dangling`);
    Deno.mkdirSync(`${lab.dir}/a-dir`);
    for (const bad of ["not-a-netns", "dangling", "a-dir"]) {
      await t.step(`CNI_NETNS is ${bad}`, async () => {
        const pod = lab.pod();
        const id = `victim-${bad}`;
        const add = await cni(
          lab.node,
          { command: "ADD", containerId: id, netns: pod, ifname: "eth0" },
          lab.conf("1.0.0"),
        );
        assert.equal(add.code, 0, add.stdout);
        const hostVeth = (add.out!.interfaces as { name: string }[])[1]!.name;
        const del = await cni(
          lab.node,
          { command: "DEL", containerId: id, netns: `${lab.dir}/${bad}`, ifname: "eth0" },
          lab.conf("1.0.0"),
        );
        assert.equal(del.code, 0, del.stdout + del.stderr);
        using nl = Netlink.open({ netns: lab.node });
        assert.equal(nl.linkGet(hostVeth), undefined, "veth removed by its derived name");
        using podNl = Netlink.open({ netns: base(pod) });
        assert.equal(podNl.linkGet("eth0"), undefined, "and its container end with it");
        assert.equal(lab.allocated().length, 1, "only the steady pod's address is left");
        assert.throws(() => Deno.statSync(`${lab.dir}/flannel/${id}`), Deno.errors.NotFound);
        const again = await cni(
          lab.node,
          { command: "DEL", containerId: id, netns: `${lab.dir}/${bad}`, ifname: "eth0" },
          lab.conf("1.0.0"),
        );
        assert.equal(again.code, 0, `a second DEL is fine too: ${again.stdout}`);
      });
    }
    await t.step("the running pod pinged its gateway throughout", async () => {
      const { replies, last, lost } = await ping.stop(10);
      assert.deepEqual(lost, [], `echoes unanswered before the last reply (#${last}, ${replies} replies)`);
    });
  },
});

Deno.test({
  name:
    "DEL of a pod weft cannot name (flannel's bridge added it) with an unusable CNI_NETNS keeps its IP while its veth lives",
  ignore: !ROOT || skipUnless(HAVE_BRIDGE, `${BRIDGE} not installed (apt: containernetworking-plugins)`),
  async fn() {
    await using lab = await cniLab({ net: "10.244.35" });
    const gw = "10.244.35.1";
    const pod = lab.pod();
    // What flannel's plugin renders, saves under dataDir/<containerID>, and hands to bridge.
    const rendered = {
      cniVersion: "0.3.1",
      name: "cbr0",
      type: "bridge",
      hairpinMode: true,
      isDefaultGateway: true,
      isGateway: true,
      ipMasq: false,
      mtu: 1450,
      ipam: {
        type: "host-local",
        ranges: [[{ subnet: "10.244.35.0/24" }]],
        routes: [{ dst: "10.244.0.0/16" }],
        dataDir: `${lab.dir}/networks`,
      },
    };
    const env: CniCallEnv = { command: "DEL", containerId: "foreign", netns: pod, ifname: "eth0" };
    const add = await cni(lab.node, { ...env, command: "ADD" }, rendered, [BRIDGE]);
    assert.equal(add.code, 0, add.stdout + add.stderr);
    Deno.mkdirSync(`${lab.dir}/flannel`, { recursive: true });
    Deno.writeTextFileSync(`${lab.dir}/flannel/foreign`, JSON.stringify(rendered));
    const ip = lab.allocated()[0]!;
    assert.ok(await pingsOnce(pod, gw));
    Deno.writeTextFileSync(`${lab.dir}/not-a-netns`, "");
    const del = await cni(lab.node, { ...env, netns: `${lab.dir}/not-a-netns` }, lab.conf("0.3.1"));
    refused(del, 4, /CNI_NETNS .*not-a-netns is not a network namespace.*addresses are kept/);
    assert.deepEqual(lab.allocated(), [ip], "the IP stays allocated");
    assert.ok(Deno.statSync(`${lab.dir}/flannel/foreign`).isFile, "the saved config stays, for the retry");
    assert.ok(await pingsOnce(pod, gw), "the pod's veth is alive and in use");
    // A later ADD cannot hand out the address that is still in use.
    const next = await cni(
      lab.node,
      { command: "ADD", containerId: "next", netns: lab.pod(), ifname: "eth0" },
      lab.conf("0.3.1"),
    );
    assert.equal(next.code, 0, next.stdout);
    assert.notEqual((next.out!.ips as { address: string }[])[0]!.address.split("/")[0], ip);
    // The retry with the real namespace finishes the job.
    const retry = await cni(lab.node, env, lab.conf("0.3.1"));
    assert.equal(retry.code, 0, retry.stdout + retry.stderr);
    assert.equal(lab.allocated().includes(ip), false, "freed now");
    using nl = Netlink.open({ netns: base(pod) });
    assert.equal(nl.linkGet("eth0"), undefined, "the pod's interface is gone");
  },
});
