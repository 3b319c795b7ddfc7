/**
 * Programs N flannel-style vxlan peers (permanent neighbour + FDB entry + onlink route each) into a fresh
 * namespace through weft's FFI layer with plain routes (`route replace SUBNET via GW dev flannel.1 onlink`,
 * what flanneld and `ip` do), through the agent's kernel layer (src/datapath/kernel.ts: each route through
 * a next-hop object, src/datapath/nexthop_routes.ts), and — same run, same kind of namespace — through
 * `ip -batch` and `bridge -batch` with plain routes (process start-up included). Prints the three times
 * and the ratios to `ip` per N, and the time to read everything back (routes + neighbours + FDB) with FFI
 * and with `ip`.
 *
 * Run: `deno run -A bench/datapath_program.ts [N…] [--rounds R] [--csv FILE]` (default 1000 5000, 5 rounds;
 * the CSV holds the medians, for bench/plot_datapath_program.gp). Needs root.
 *
 * Method, because a 2-core machine is noisy: every round programs a fresh namespace each way, the order
 * of the two alternates between rounds, and the medians are compared. No namespace is deleted until the
 * end: the kernel tears a deleted namespace down asynchronously (flushing thousands of routes under the
 * RTNL lock), which would slow whichever measurement runs next.
 *
 * @module
 */
import { Netlink, netnsCreate, netnsDelete, netnsList, WEFT_ROUTE_PROTOCOL } from "../ffi/mod.ts";
import { NetlinkKernel } from "../src/datapath/kernel.ts";
import { runIn } from "../src/lab/lab.ts";
import { BenchArgs } from "./args.ts";

/** One remote node as flannel's vxlan backend programs it. */
interface Peer {
  subnet: string;
  netAddr: string;
  mac: string;
  pub: string;
}

function peer(i: number): Peer {
  const hi = 10 + (i >> 8), lo = i & 255;
  return {
    subnet: `10.${hi}.${lo}.0/24`,
    netAddr: `10.${hi}.${lo}.0`,
    mac: `0a:00:00:00:${(i >> 8).toString(16).padStart(2, "0")}:${lo.toString(16).padStart(2, "0")}`,
    pub: `192.168.${100 + (i >> 8)}.${lo === 0 ? 254 : lo}`,
  };
}

const PREFIX = `wbench-${Math.floor(Math.random() * 36 ** 4).toString(36)}-`;
const made: string[] = [];

function cleanup(): void {
  for (const ns of made.splice(0)) netnsDelete(ns);
}
globalThis.addEventListener("unload", cleanup);

/** A fresh namespace with an underlay `eth0` (a bridge: no dummy here) and `flannel.1`, as the agent makes. */
function setup(tag: string): { ns: string; dev: number } {
  const ns = `${PREFIX}${tag}`;
  netnsCreate(ns);
  made.push(ns);
  using nl = Netlink.open({ netns: ns });
  const br = nl.linkAddBridge({ name: "eth0" });
  nl.linkSetUp(br.index);
  nl.addrReplace(br.index, "192.168.99.1/16");
  const vx = nl.linkAddVxlan({
    name: "flannel.1",
    vni: 1,
    local: "192.168.99.1",
    dev: br.index,
    port: 8472,
    mtu: 1450,
  });
  nl.addrReplace(vx.index, "10.9.0.0/32");
  nl.linkSetUp(vx.index);
  return { ns, dev: vx.index };
}

/** Programs `peers` through FFI (one handle, as the agent keeps one); returns ms. */
function programFfi(ns: string, dev: number, peers: Peer[]): number {
  using nl = Netlink.open({ netns: ns });
  const t0 = performance.now();
  for (const p of peers) {
    nl.neighReplace({ dev, ip: p.netAddr, mac: p.mac });
    nl.fdbReplace({ dev, mac: p.mac, dst: p.pub });
    nl.routeReplace({ dst: p.subnet, gateway: p.netAddr, dev, onlink: true });
  }
  return performance.now() - t0;
}

/** Programs `peers` as the agent does (its kernel layer: routes through next-hop objects); returns ms. */
function programAgent(ns: string, dev: number, peers: Peer[]): number {
  using nl = Netlink.open({ netns: ns });
  const kernel = new NetlinkKernel(nl);
  kernel.read(new Set([dev])); // the agent's first full pass reads the (empty) tables first
  const t0 = performance.now();
  // As the agent's full pass does: every peer's entries in one applyMany (neighbour and FDB entries in
  // batches, then the routes).
  const errors = kernel.applyMany(peers.map((p) => [
    { kind: "neigh", spec: { dev, ip: p.netAddr, mac: p.mac } },
    { kind: "fdb", spec: { dev, mac: p.mac, dst: p.pub } },
    { kind: "route", spec: { dst: p.subnet, gateway: p.netAddr, dev, onlink: true } },
  ]));
  const ms = performance.now() - t0;
  const failed = errors.find(Boolean);
  if (failed) throw failed;
  if (!kernel.nexthops.enabled) throw new Error("the kernel took no next-hop objects");
  return ms;
}

/** Reads everything back through FFI and checks the counts; returns ms. */
function readFfi(ns: string, dev: number, n: number): number {
  using nl = Netlink.open({ netns: ns });
  const t0 = performance.now();
  const routes = nl.routeList({ protocol: WEFT_ROUTE_PROTOCOL }).length;
  const neighs = nl.neighList({ dev }).filter((x) => x.state & 0x80).length;
  const fdbs = nl.fdbList({ dev }).length;
  const ms = performance.now() - t0;
  if (routes !== n || neighs !== n || fdbs !== n) {
    throw new Error(`FFI read back ${routes} routes, ${neighs} neighbours, ${fdbs} FDB entries of ${n}`);
  }
  return ms;
}

async function run(tool: string, args: string[], stdin?: string): Promise<string> {
  const r = await runIn(undefined, [tool, ...args], stdin === undefined ? {} : { stdin });
  if (r.code !== 0) throw new Error(`${tool} ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

/** The three batch scripts (built before the clock starts, as the FFI side's peer list is). */
function batches(peers: Peer[]): { neigh: string; fdb: string; route: string } {
  const neigh: string[] = [], fdb: string[] = [], route: string[] = [];
  for (const p of peers) {
    neigh.push(`neigh replace ${p.netAddr} lladdr ${p.mac} dev flannel.1 nud permanent`);
    fdb.push(`fdb replace ${p.mac} dev flannel.1 dst ${p.pub} self permanent`);
    route.push(
      `route replace ${p.subnet} via ${p.netAddr} dev flannel.1 onlink proto ${WEFT_ROUTE_PROTOCOL}`,
    );
  }
  const join = (l: string[]) => l.join("\n") + "\n";
  return { neigh: join(neigh), fdb: join(fdb), route: join(route) };
}

/** Programs through `ip -batch` + `bridge -batch` (spawning included), in the agent's order; ms. */
async function programIp(ns: string, b: ReturnType<typeof batches>): Promise<number> {
  const t0 = performance.now();
  await run("ip", ["-n", ns, "-batch", "-"], b.neigh);
  await run("bridge", ["-n", ns, "-batch", "-"], b.fdb);
  await run("ip", ["-n", ns, "-batch", "-"], b.route);
  return performance.now() - t0;
}

/** Reads everything back with `ip -j` / `bridge -j`, one after the other (spawning and JSON parsing included); ms. */
async function readIp(ns: string, n: number): Promise<number> {
  const t0 = performance.now();
  const r = await run("ip", ["-n", ns, "-j", "route", "show", "proto", String(WEFT_ROUTE_PROTOCOL)]);
  const nb = await run("ip", ["-n", ns, "-j", "neigh", "show", "dev", "flannel.1", "nud", "permanent"]);
  const f = await run("bridge", ["-n", ns, "-j", "fdb", "show", "dev", "flannel.1"]);
  const counts = [JSON.parse(r).length, JSON.parse(nb).length, JSON.parse(f).length];
  const ms = performance.now() - t0;
  // The bridge also lists the device's own all-zero entries, so FDB is "at least n".
  if (counts[0] !== n || counts[1] !== n || counts[2] < n) {
    throw new Error(`ip read back ${counts.join("/")} of ${n}`);
  }
  return ms;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function machine(): string {
  const cores = navigator.hardwareConcurrency;
  const kernel = Deno.osRelease();
  let libnl = "?";
  try {
    const dir = "/usr/lib/x86_64-linux-gnu";
    const f = [...Deno.readDirSync(Deno.build.arch === "aarch64" ? "/usr/lib/aarch64-linux-gnu" : dir)]
      .find((e) => /^libnl-route-3\.so\.200\.\d+/.test(e.name));
    if (f) libnl = f.name.replace("libnl-route-3.so.", "");
  } catch { /* unknown */ }
  return `${cores} cores, kernel ${kernel}, Deno ${Deno.version.deno}, libnl-route ${libnl}`;
}

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error("bench/datapath_program.ts needs root (it builds network namespaces)");
    Deno.exit(1);
  }
  const args = new BenchArgs(Deno.args);
  const rounds = Number(args.take("--rounds") ?? 5);
  const csvFile = args.take("--csv");
  const counts = args.rest.length ? args.rest.map(Number) : [1000, 5000];
  if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > 60000) || !(rounds >= 1)) {
    console.error("usage: datapath_program.ts [N…] [--rounds R] [--csv FILE]   (1 ≤ N ≤ 60000)");
    Deno.exit(2);
  }
  const csv = ["peers,rounds,ffi_ms,agent_ms,ip_batch_ms,ffi_read_ms,ip_read_ms"];
  try {
    console.log(`# ${machine()}; ${rounds} rounds per N, medians (min in brackets)`);
    // Warm both paths (library load and JIT; the ip/bridge binaries into the page cache), as in a
    // long-running agent.
    {
      const w = setup("warm");
      const few = Array.from({ length: 50 }, (_, i) => peer(i));
      programFfi(w.ns, w.dev, few);
      readFfi(w.ns, w.dev, 50);
      const wa = setup("warmagent");
      programAgent(wa.ns, wa.dev, few);
      const wi = setup("warmip");
      await programIp(wi.ns, batches(few));
      await readIp(wi.ns, 50);
    }
    console.log(
      "peers  ffi_ms          agent_ms        ip_batch_ms     ffi/ip agent/ip  ffi_read_ms     ip_read_ms",
    );
    for (const n of counts) {
      const peers = Array.from({ length: n }, (_, i) => peer(i));
      const script = batches(peers);
      const ffi: number[] = [], agent: number[] = [], ip: number[] = [];
      const ffiRead: number[] = [], ipRead: number[] = [];
      for (let r = 0; r < rounds; r++) {
        const doFfi = () => {
          const s = setup(`f${n}r${r}`);
          ffi.push(programFfi(s.ns, s.dev, peers));
          ffiRead.push(readFfi(s.ns, s.dev, n));
          const a = setup(`a${n}r${r}`);
          agent.push(programAgent(a.ns, a.dev, peers));
          readFfi(a.ns, a.dev, n);
        };
        const doIp = async () => {
          const s = setup(`i${n}r${r}`);
          ip.push(await programIp(s.ns, script));
          ipRead.push(await readIp(s.ns, n));
        };
        if (r % 2 === 0) {
          doFfi();
          await doIp();
        } else {
          await doIp();
          doFfi();
        }
      }
      const fmt = (xs: number[]) => `${median(xs).toFixed(1)} [${Math.min(...xs).toFixed(1)}]`.padEnd(16);
      const ratio = (xs: number[]) => (median(xs) / median(ip)).toFixed(2).padEnd(7);
      console.log(
        `${String(n).padStart(5)}  ${fmt(ffi)}${fmt(agent)}${fmt(ip)}${ratio(ffi)}${ratio(agent)}  ${
          fmt(ffiRead)
        }${fmt(ipRead)}`,
      );
      csv.push(
        [n, rounds, ...[ffi, agent, ip, ffiRead, ipRead].map((xs) => median(xs).toFixed(1))].join(","),
      );
    }
    if (csvFile) {
      Deno.writeTextFileSync(csvFile, csv.join("\n") + "\n");
      console.log(`wrote ${csvFile}`);
    }
  } finally {
    cleanup();
    const left = netnsList().filter((n) => n.startsWith(PREFIX));
    if (left.length) console.error(`leftover namespaces: ${left.join(" ")}`);
  }
}
