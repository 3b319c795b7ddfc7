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
 * Not covered here: a container on a second node pinging this one across the overlay needs the agent
 * running on both nodes (see tests/agent_e2e_test.ts and `weft demo`).
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { cniLab, MAIN } from "./helpers/cni.ts";
import { ROOT } from "./helpers/topology.ts";

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
  const end = Date.now() + 15_000;
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

Deno.test({
  name: "containerd's ctr run --cni gets addresses from weft: containers ping the gateway and each other",
  ignore: !READY,
  sanitizeResources: false,
  async fn() {
    // containerd 1.6's shims put their sockets under /run/containerd/s whatever the config says; remove
    // that folder again afterwards if this test is what created it (and it is empty).
    const hadRunDir = have("/run/containerd");
    await using _runDir = {
      [Symbol.asyncDispose]: async () => {
        if (hadRunDir) return;
        for (const d of ["/run/containerd/s", "/run/containerd"]) await Deno.remove(d).catch(() => {});
      },
    };
    await using lab = await cniLab({ net: "10.244.30" });
    const dir = lab.dir;
    const rootfs = makeRootfs(dir);
    for (const d of ["net.d", "bin", "etc-up", "etc-work", "fifo", "runc"]) Deno.mkdirSync(`${dir}/${d}`);
    // kube-flannel's conflist, with weft's files moved into the temp dir.
    const conflist = {
      name: "cbr0",
      cniVersion: "0.3.1",
      plugins: [
        {
          type: "flannel",
          subnetFile: `${dir}/subnet.env`,
          dataDir: `${dir}/flannel`,
          logFile: `${dir}/weft-cni.log`,
          delegate: { hairpinMode: true, isDefaultGateway: true, ipam: { dataDir: `${dir}/networks` } },
        },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    };
    Deno.writeTextFileSync(`${dir}/net.d/10-flannel.conflist`, JSON.stringify(conflist));
    Deno.writeTextFileSync(`${dir}/bin/flannel`, `#!/bin/sh\nexec ${Deno.execPath()} run -A ${MAIN}\n`, {
      mode: 0o755,
    });
    Deno.chmodSync(`${dir}/bin/flannel`, 0o755);
    Deno.symlinkSync("/usr/lib/cni/portmap", `${dir}/bin/portmap`);
    await using ctd = await startContainerd(dir);

    const setup = [
      `mount -t overlay overlay -o lowerdir=/etc,upperdir=${dir}/etc-up,workdir=${dir}/etc-work /etc`,
      `mkdir -p /etc/cni/net.d && mount --bind ${dir}/net.d /etc/cni/net.d`,
      `mount -t tmpfs tmpfs /opt && mkdir -p /opt/cni/bin && mount --bind ${dir}/bin /opt/cni/bin`,
    ].join(" && ");
    const ctr = (id: string, script: string) =>
      new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          lab.node,
          "sh",
          "-c",
          `${setup} && exec ctr --address ${ctd.socket} run --rm --cni --fifo-dir ${dir}/fifo ` +
          `--runc-root ${dir}/runc --rootfs ${rootfs} ${id} /bin/sh -c '${script}'`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).spawn();

    // Container A: show its address, ping the gateway, stay up a while for B.
    const a = ctr("weft-a", "ip -4 addr show eth0; ping -c 2 -W 2 10.244.30.1 && echo GW-OK; sleep 6");
    // Wait for A's allocation to show up in weft's store; that address is what B pings.
    let aIP = "";
    for (const end = Date.now() + 20_000; !aIP && Date.now() < end;) {
      aIP = lab.allocated()[0] ?? "";
      if (!aIP) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(aIP, "container A got an address in weft's store");
    const b = await ctr("weft-b", `ping -c 2 -W 2 ${aIP} && echo PEER-OK`).output();
    const aOut = await a.output();
    const dec = new TextDecoder();
    const aText = dec.decode(aOut.stdout);
    const bText = dec.decode(b.stdout);
    const ctx = `A: ${aText}${dec.decode(aOut.stderr)}\nB: ${bText}${dec.decode(b.stderr)}`;
    assert.equal(aOut.code, 0, ctx);
    assert.equal(b.code, 0, ctx);
    assert.match(aText, new RegExp(`inet ${aIP.replaceAll(".", "\\.")}/24`), "A's eth0 has weft's address");
    assert.match(aText, /mtu 1450/, "and FLANNEL_MTU");
    assert.match(aText, /GW-OK/, "A pings the gateway");
    assert.match(bText, /PEER-OK/, "B pings A over cni0");
    // ctr --rm ran DEL (with an empty CNI_NETNS): nothing is left.
    const log = Deno.readTextFileSync(`${dir}/weft-cni.log`);
    assert.match(log, /ADD default-weft-a\/eth0: 10\.244\.30\.\d+\/24/);
    assert.match(log, /DEL default-weft-a\/eth0: freed/);
    assert.match(log, /DEL default-weft-b\/eth0: freed/);
    assert.deepEqual(lab.allocated(), [], "every address freed");
    assert.deepEqual([...Deno.readDirSync(`${dir}/flannel`)], [], "no saved config left");
    using nl = Netlink.open({ netns: lab.node });
    const br = nl.linkGet("cni0")!;
    assert.deepEqual(nl.linkList().filter((l) => l.master === br.index), [], "no veth left on cni0");
    assert.equal(have("/etc/cni"), false, "the host's /etc was not touched");
  },
});
