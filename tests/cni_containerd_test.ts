/**
 * A real CNI client: containerd's `ctr run --rm --cni`, with containerd started by the test (its own
 * root, state, socket and config in a temp dir) and a busybox-static rootfs directory (no image pull).
 *
 * `ctr --cni` (containerd 1.6) always reads /etc/cni/net.d and /opt/cni/bin. So ctr runs under
 * `ip netns exec <node>` — which already gives it a private mount namespace — with an overlay on /etc and
 * a tmpfs on /opt inside that namespace, holding kube-flannel's conflist (weft's temp paths added) and a
 * `flannel` wrapper that execs `deno run -A main.ts`, next to Debian's `portmap` (the conflist's second
 * plugin, which receives weft's result as prevResult). Nothing on the host's /etc or /opt changes.
 *
 * The second test adds the rest of the stack: two nodes on an underlay, etcd, `weft agent` on each
 * (vxlan), and a container on node 1 pinging a container on node 0 across the overlay.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { formatNet } from "../src/net/ip.ts";
import { cniLab, MAIN } from "./helpers/cni.ts";
import { type AgentProcess, startAgent, waitReady, waitSubnetEnv } from "./helpers/agent.ts";
import { putNetworkConfig, startEtcd } from "./helpers/etcd.ts";
import { createTopology, ROOT } from "./helpers/topology.ts";
import { skipUnless } from "./helpers/skip.ts";

function have(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

const TOOLS = [
  "/usr/bin/containerd",
  "/usr/bin/ctr",
  "/usr/sbin/runc",
  "/usr/bin/busybox",
  "/usr/lib/cni/portmap",
];
const READY = ROOT && TOOLS.every(have) && /\boverlay\b/.test(Deno.readTextFileSync("/proc/filesystems"));
const NOT_READY = ROOT
  ? `containerd's tools (${
    TOOLS.join(", ")
  }; apt: containerd busybox-static containernetworking-plugins) or the overlay filesystem are missing`
  : "not root";

interface Containerd extends AsyncDisposable {
  socket: string;
}

async function startContainerd(dir: string): Promise<Containerd> {
  const socket = `${dir}/containerd.sock`;
  Deno.writeTextFileSync(
    `${dir}/containerd.toml`,
    [
      "version = 2",
      `root = "${dir}/root"`,
      `state = "${dir}/state"`,
      // Only what `ctr run --rootfs` needs: no CRI (it would want /etc/cni and image pulls).
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      "[grpc]",
      `  address = "${socket}"`,
      "[ttrpc]",
      `  address = "${socket}.ttrpc"`,
      "[debug]",
      `  address = "${dir}/debug.sock"`,
      "",
    ].join("\n"),
  );
  const log = await Deno.open(`${dir}/containerd.log`, { write: true, create: true });
  const child = new Deno.Command("containerd", {
    args: ["--config", `${dir}/containerd.toml`],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  child.stderr.pipeTo(log.writable).catch(() => {});
  const end = Date.now() + 60_000;
  for (;;) {
    const v = await new Deno.Command("ctr", {
      args: ["--address", socket, "version"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    if (v.code === 0) break;
    if (Date.now() > end) {
      child.kill("SIGKILL");
      throw new Error(`containerd did not come up: ${Deno.readTextFileSync(`${dir}/containerd.log`)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    socket,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      const t = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      await child.status;
      clearTimeout(t);
    },
  };
}

/** A busybox-static rootfs directory. */
function makeRootfs(dir: string): string {
  const root = `${dir}/rootfs`;
  for (const d of ["bin", "proc", "dev", "sys", "tmp", "etc"]) {
    Deno.mkdirSync(`${root}/${d}`, { recursive: true });
  }
  Deno.copyFileSync("/usr/bin/busybox", `${root}/bin/busybox`);
  Deno.chmodSync(`${root}/bin/busybox`, 0o755);
  for (const a of ["sh", "ip", "ping", "sleep", "cat"]) Deno.symlinkSync("busybox", `${root}/bin/${a}`);
  return root;
}

/** One node's CNI setup for ctr: conflist dir, plugin dir with weft's wrapper, overlay work dirs. */
interface CtrNode {
  /** Node namespace. */
  netns: string;
  /** Per-node temp dir (also holds weft's IPAM store and saved configs). */
  dir: string;
}

/** kube-flannel's conflist, weft's files moved into `dir`; a `flannel` wrapper and `portmap`. */
function prepareNode(netns: string, dir: string, subnetFile: string): CtrNode {
  for (const d of ["net.d", "bin", "etc-up", "etc-work", "fifo", "runc"]) {
    Deno.mkdirSync(`${dir}/${d}`, { recursive: true });
  }
  const conflist = {
    name: "cbr0",
    cniVersion: "0.3.1",
    plugins: [
      {
        type: "flannel",
        subnetFile,
        dataDir: `${dir}/flannel`,
        logFile: `${dir}/weft-cni.log`,
        delegate: { hairpinMode: true, isDefaultGateway: true, ipam: { dataDir: `${dir}/networks` } },
      },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  };
  Deno.writeTextFileSync(`${dir}/net.d/10-flannel.conflist`, JSON.stringify(conflist));
  Deno.writeTextFileSync(`${dir}/bin/flannel`, `#!/bin/sh\nexec ${Deno.execPath()} run -A ${MAIN}\n`);
  Deno.chmodSync(`${dir}/bin/flannel`, 0o755);
  Deno.symlinkSync("/usr/lib/cni/portmap", `${dir}/bin/portmap`);
  return { netns, dir };
}

/** `ctr run --rm --cni` of `script` in a busybox container, CNI plugins run inside `node`. */
function ctrRun(
  node: CtrNode,
  socket: string,
  rootfs: string,
  id: string,
  script: string,
): Deno.ChildProcess {
  const d = node.dir;
  const setup = [
    `mount -t overlay overlay -o lowerdir=/etc,upperdir=${d}/etc-up,workdir=${d}/etc-work /etc`,
    `mkdir -p /etc/cni/net.d && mount --bind ${d}/net.d /etc/cni/net.d`,
    `mount -t tmpfs tmpfs /opt && mkdir -p /opt/cni/bin && mount --bind ${d}/bin /opt/cni/bin`,
  ].join(" && ");
  return new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      node.netns,
      "sh",
      "-c",
      `${setup} && exec ctr --address ${socket} run --rm --cni --fifo-dir ${d}/fifo ` +
      `--runc-root ${d}/runc --rootfs ${rootfs} ${id} /bin/sh -c '${script}'`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/**
 * A container's shell waiting (2 minutes at most) until the test creates `file` in the shared rootfs:
 * container A stays up exactly until B is done with it, not for a fixed time a loaded machine overruns.
 */
const untilFile = (file: string) =>
  `i=0; while [ ! -e ${file} ] && [ $i -lt 120 ]; do sleep 1; i=$((i+1)); done`;

/** Addresses in a node's weft IPAM store. */
function allocated(node: CtrNode): string[] {
  try {
    return [...Deno.readDirSync(`${node.dir}/networks/cbr0`)].map((e) => e.name).filter((n) =>
      /^\d+\./.test(n)
    );
  } catch {
    return [];
  }
}

async function waitAllocated(node: CtrNode, ms: number): Promise<string> {
  for (const end = Date.now() + ms; Date.now() < end;) {
    const ip = allocated(node)[0];
    if (ip) return ip;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no address allocated on ${node.netns} within ${ms} ms`);
}

/** containerd 1.6's shims put their sockets under /run/containerd/s whatever the config says. */
function runDirCleanup(): AsyncDisposable {
  const had = have("/run/containerd");
  return {
    [Symbol.asyncDispose]: async () => {
      if (had) return;
      for (const d of ["/run/containerd/s", "/run/containerd"]) await Deno.remove(d).catch(() => {});
    },
  };
}

const dec = new TextDecoder();
const text = (o: Deno.CommandOutput) => dec.decode(o.stdout) + dec.decode(o.stderr);

Deno.test({
  name: "containerd's ctr run --cni gets addresses from weft: containers ping the gateway and each other",
  ignore: skipUnless(READY, NOT_READY),
  sanitizeResources: false,
  async fn() {
    await using _run = runDirCleanup();
    await using lab = await cniLab({ net: "10.244.30" });
    const rootfs = makeRootfs(lab.dir);
    const node = prepareNode(lab.node, lab.dir, `${lab.dir}/subnet.env`);
    await using ctd = await startContainerd(lab.dir);

    // Container A: show its address, ping the gateway, stay up until B is done.
    const a = ctrRun(
      node,
      ctd.socket,
      rootfs,
      "weft-a",
      `ip -4 addr show eth0; ping -c 2 -W 2 10.244.30.1 && echo GW-OK; ${untilFile("/tmp/b-done")}`,
    );
    const aIP = await waitAllocated(node, 60_000);
    const b = await ctrRun(node, ctd.socket, rootfs, "weft-b", `ping -c 2 -W 2 ${aIP} && echo PEER-OK`)
      .output();
    Deno.writeTextFileSync(`${rootfs}/tmp/b-done`, "");
    const aOut = await a.output();
    const ctx = `A: ${text(aOut)}\nB: ${text(b)}`;
    assert.equal(aOut.code, 0, ctx);
    assert.equal(b.code, 0, ctx);
    const aText = dec.decode(aOut.stdout);
    assert.match(aText, new RegExp(`inet ${aIP.replaceAll(".", "\\.")}/24`), "A's eth0 has weft's address");
    assert.match(aText, /mtu 1450/, "and FLANNEL_MTU");
    assert.match(aText, /GW-OK/, "A pings the gateway");
    assert.match(dec.decode(b.stdout), /PEER-OK/, "B pings A over cni0");
    // ctr --rm ran DEL (with an empty CNI_NETNS): nothing is left.
    const log = Deno.readTextFileSync(`${lab.dir}/weft-cni.log`);
    assert.match(log, /ADD default-weft-a\/eth0: 10\.244\.30\.\d+\/24/);
    assert.match(log, /DEL default-weft-a\/eth0: freed/);
    assert.match(log, /DEL default-weft-b\/eth0: freed/);
    assert.deepEqual(allocated(node), [], "every address freed");
    assert.deepEqual([...Deno.readDirSync(`${lab.dir}/flannel`)], [], "no saved config left");
    using nl = Netlink.open({ netns: lab.node });
    const br = nl.linkGet("cni0")!;
    assert.deepEqual(nl.linkList().filter((l) => l.master === br.index), [], "no veth left on cni0");
    assert.equal(have("/etc/cni"), false, "the host's /etc was not touched");
  },
});

Deno.test({
  name: "with weft agents running, a container on another node pings the first across the vxlan overlay",
  ignore: skipUnless(READY, NOT_READY),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using _run = runDirCleanup();
    await using topo = await createTopology({ nodes: 2 });
    const dir = await Deno.makeTempDir({ prefix: "weft-ctr-e2e-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    const agents: AgentProcess[] = [];
    try {
      await putNetworkConfig(etcd.endpoint, { Network: "10.244.0.0/16", Backend: { Type: "vxlan" } }, {
        netns: topo.underlay,
      });
      for (const n of topo.nodes) {
        agents.push(startAgent(n, { etcd: etcd.endpoint, dir, args: ["--ip-masq"] }));
      }
      const envs = [await waitSubnetEnv(agents[0]!), await waitSubnetEnv(agents[1]!)];
      for (const a of agents) await waitReady(a);
      const rootfs = makeRootfs(dir);
      const nodes = topo.nodes.map((n, i) => prepareNode(n.netns, `${dir}/node${i}`, agents[i]!.subnetFile));
      await using ctd = await startContainerd(dir);

      const a = ctrRun(
        nodes[0]!,
        ctd.socket,
        rootfs,
        "weft-x0",
        `ip -4 addr show eth0; ${untilFile("/tmp/b-done")}`,
      );
      const aIP = await waitAllocated(nodes[0]!, 60_000);
      const b = await ctrRun(
        nodes[1]!,
        ctd.socket,
        rootfs,
        "weft-x1",
        `ip -4 addr show eth0; ping -c 3 -W 3 ${aIP} && echo OVERLAY-OK`,
      ).output();
      Deno.writeTextFileSync(`${rootfs}/tmp/b-done`, "");
      const aOut = await a.output();
      const ctx = `A: ${text(aOut)}\nB: ${text(b)}`;
      assert.equal(b.code, 0, ctx);
      assert.equal(aOut.code, 0, ctx);
      const inSubnet = (s: string, i: number) => {
        const net = envs[i]!.subnet!;
        const prefix = formatNet(net).split(".").slice(0, 3).join(".");
        return new RegExp(`inet ${prefix.replaceAll(".", "\\.")}\\.\\d+/${net.prefix}`).test(s);
      };
      assert.ok(inSubnet(dec.decode(aOut.stdout), 0), `A has an address of node 0's lease: ${ctx}`);
      assert.ok(inSubnet(dec.decode(b.stdout), 1), `B has an address of node 1's lease: ${ctx}`);
      assert.match(dec.decode(b.stdout), /OVERLAY-OK/, "B reaches A across the overlay");
      assert.deepEqual(allocated(nodes[0]!), [], "node 0's store is empty after ctr --rm");
      assert.deepEqual(allocated(nodes[1]!), [], "node 1's store is empty after ctr --rm");
    } finally {
      for (const a of agents) await a.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
