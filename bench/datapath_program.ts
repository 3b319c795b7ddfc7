/**
 * Programs N flannel-style vxlan peers (route + permanent neighbour + FDB entry each) into a fresh
 * namespace through weft's FFI layer, and — same run, same kind of namespace — through `ip -batch` and
 * `bridge -batch` (process start-up included). Prints both times and the FFI/ip ratio per N, and the time
 * to read everything back through FFI.
 *
 * Run: `deno run -A bench/datapath_program.ts [N…]` (default 1000 5000). Needs root.
 *
 * @module
 */
import { Netlink, netnsCreate, netnsDelete } from "../ffi/mod.ts";

const counts = Deno.args.length ? Deno.args.map(Number) : [1000, 5000];

function peer(i: number) {
  const hi = 10 + (i >> 8), lo = i & 255;
  return {
    subnet: `10.${hi}.${lo}.0/24`,
    netAddr: `10.${hi}.${lo}.0`,
    mac: `0a:00:00:00:${(i >> 8).toString(16).padStart(2, "0")}:${lo.toString(16).padStart(2, "0")}`,
    pub: `192.168.${100 + (i >> 8)}.${lo === 0 ? 254 : lo}`,
  };
}

function setup(ns: string): number {
  netnsCreate(ns);
  using nl = Netlink.open({ netns: ns });
  const br = nl.linkAddBridge({ name: "eth0" });
  nl.linkSetUp(br.index);
  nl.addrReplace(br.index, "192.168.99.1/16");
  const vx = nl.linkAddVxlan({ name: "flannel.1", vni: 1, local: "192.168.99.1", dev: br.index, mtu: 1450 });
  nl.addrReplace(vx.index, "10.9.0.0/32");
  nl.linkSetUp(vx.index);
  return vx.index;
}

function viaFfi(ns: string, n: number): { programMs: number; readMs: number } {
  const dev = setup(ns);
  using nl = Netlink.open({ netns: ns });
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const p = peer(i);
    nl.neighReplace({ dev, ip: p.netAddr, mac: p.mac });
    nl.fdbReplace({ dev, mac: p.mac, dst: p.pub });
    nl.routeReplace({ dst: p.subnet, gateway: p.netAddr, dev, onlink: true });
  }
  const programMs = performance.now() - t0;
  const t1 = performance.now();
  const routes = nl.routeList({ protocol: 87 }).length,
    neighs = nl.neighList({ dev }).filter((x) => x.state & 0x80).length,
    fdbs = nl.fdbList({ dev }).length;
  const readMs = performance.now() - t1;
  if (routes !== n || neighs !== n || fdbs !== n) {
    throw new Error(`FFI programmed ${routes}/${neighs}/${fdbs} of ${n}`);
  }
  return { programMs, readMs };
}

async function viaIpBatch(ns: string, n: number): Promise<number> {
  setup(ns);
  const neigh: string[] = [], route: string[] = [], fdb: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = peer(i);
    neigh.push(`neigh replace ${p.netAddr} lladdr ${p.mac} dev flannel.1 nud permanent`);
    fdb.push(`fdb replace ${p.mac} dev flannel.1 dst ${p.pub} self permanent`);
    route.push(`route replace ${p.subnet} via ${p.netAddr} dev flannel.1 onlink proto 87`);
  }
  const run = async (tool: string, lines: string[]) => {
    const child = new Deno.Command(tool, {
      args: ["-n", ns, "-batch", "-"],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(lines.join("\n") + "\n"));
    await w.close();
    const out = await child.output();
    if (out.code !== 0) throw new Error(`${tool} -batch failed: ${new TextDecoder().decode(out.stderr)}`);
  };
  const t0 = performance.now();
  await run("ip", neigh);
  await run("bridge", fdb);
  await run("ip", route);
  return performance.now() - t0;
}

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error("bench/datapath_program.ts needs root (it builds network namespaces)");
    Deno.exit(1);
  }
  const id = Math.floor(Math.random() * 1e6).toString(36);
  console.log("peers  ffi_ms  ip_batch_ms  ratio(ffi/ip)  ffi_readback_ms");
  for (const n of counts) {
    const a = `wbench-${id}-ffi${n}`, b = `wbench-${id}-ip${n}`;
    try {
      // Warm the FFI path (library load, JIT) on a small set first, as a long-running agent would be.
      viaFfi(`${a}w`, 50);
      netnsDelete(`${a}w`);
      const ffi = viaFfi(a, n);
      const ip = await viaIpBatch(b, n);
      console.log(
        `${String(n).padStart(5)}  ${ffi.programMs.toFixed(1).padStart(6)}  ${ip.toFixed(1).padStart(11)}  ${
          (ffi.programMs / ip).toFixed(2).padStart(13)
        }  ${ffi.readMs.toFixed(1).padStart(15)}`,
      );
    } finally {
      netnsDelete(`${a}w`);
      netnsDelete(a);
      netnsDelete(b);
    }
  }
}
