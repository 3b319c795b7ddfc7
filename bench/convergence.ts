/**
 * Convergence, scale and memory of one real `weft agent` with N simulated peers (vxlan leases written
 * straight to etcd), for N = 10, 100, 1000, 5000 (or the N given):
 *
 * - start → all N peers' routes in the kernel (wall time), agent CPU seconds and RSS at that point;
 * - one new lease put → its route in the kernel, p50/p99 over 100 events: the put goes through a
 *   long-lived etcd3 client (no process start in the measurement) and the route's arrival is seen by
 *   `ip -o monitor route` in the node namespace (the kernel's own notification, not a poll — an
 *   earlier 100 ms poll here quantised every latency to 0 or ~100 ms);
 * - CPU seconds of one full resync pass with N peers (agent CPU over an idle period of resyncs);
 * - agent RSS idle (no peers) for reference.
 *
 * Reference in the same run: the time the put itself takes until etcd acknowledges it (the floor of
 * any watch-driven reaction), and flanneld's figures measured on this kind of machine are quoted
 * in BENCHMARKS.md.
 *
 * Run: `deno run -A bench/convergence.ts [N…]`. Needs root.
 *
 * @module
 */
import { Netlink, withNetns } from "../ffi/mod.ts";
import { runIn } from "../src/lab/lab.ts";
import { leaseAttrsJSON } from "../src/lease/lease.ts";
import { createTopology } from "../tests/helpers/topology.ts";
import { startEtcd } from "../tests/helpers/etcd.ts";
import { agentHttp, startAgent, waitFor } from "../tests/helpers/agent.ts";

const PREFIX = "/coreos.com/network";
const counts = Deno.args.length ? Deno.args.map(Number) : [10, 100, 1000, 5000];
const CLK_TCK = 100;

/** CPU seconds (user + system) and RSS of a process, from /proc. */
export function procStats(pid: number): { cpu: number; rssMB: number } {
  // The agent runs as `deno run …` directly (no wrapper), so its pid is the agent.
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpu = (Number(f[11]) + Number(f[12])) / CLK_TCK;
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const rss = Number(status.match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) / 1024;
  return { cpu, rssMB: rss };
}

/** The i-th simulated vxlan peer lease: key `10.<100+hi>.<lo>.0-24`, its public IP and VTEP MAC. */
export function lease(i: number): { key: string; value: string } {
  const hi = i >> 8, lo = i & 255;
  return {
    key: `10.${100 + hi}.${lo}.0-24`,
    value: leaseAttrsJSON({
      PublicIP: `192.168.${80 + hi}.${lo === 0 ? 254 : lo}`,
      PublicIPv6: null,
      BackendType: "vxlan",
      BackendData: {
        VNI: 1,
        VtepMAC: `0a:00:00:00:${hi.toString(16).padStart(2, "0")}:${lo.toString(16).padStart(2, "0")}`,
      },
    }),
  };
}

const EVENTS = 100;
/**
 * `deno run` flags for the agent instead of the shipped V8_FLAGS, e.g.
 * `WEFT_BENCH_DENO_FLAGS=--v8-flags=--optimize-for-size` (an empty value runs with V8's defaults).
 */
const DENO_FLAGS = Deno.env.get("WEFT_BENCH_DENO_FLAGS")?.split(" ").filter(Boolean);

/** The lines of a child's output as they arrive (without their newline). */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string, void> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, nl);
      buf = buf.slice(nl + 1);
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** `ip -o monitor route` inside `netns`: resolves `next(dst)` with the time the kernel announced it. */
export function startRouteMonitor(netns: string) {
  const child = withNetns(
    netns,
    () =>
      new Deno.Command("ip", { args: ["-o", "monitor", "route"], stdout: "piped", stderr: "null" }).spawn(),
  );
  const waiting = new Map<string, (t: number) => void>();
  // `ip monitor` subscribes some time after it starts: a route added before would be missed. A sentinel
  // route (another protocol, outside every test network) tells when it listens.
  const SENTINEL = "198.51.100.254";
  const listening = Promise.withResolvers<void>();
  const reading = (async () => {
    for await (const line of lines(child.stdout)) {
      const at = performance.now();
      if (line.includes(SENTINEL)) listening.resolve();
      // "10.100.3.0/24 via 10.100.3.0 dev flannel.1 proto 87 onlink" — additions only.
      if (line.startsWith("Deleted") || !/ proto 87\b/.test(line)) continue;
      const dst = line.split(" ", 1)[0]!;
      waiting.get(dst)?.(at);
      waiting.delete(dst);
    }
  })();
  const sentinel = async (op: "replace" | "del") =>
    await runIn(netns, ["ip", "route", op, "blackhole", `${SENTINEL}/32`, "proto", "88"]);
  const ready = (async () => {
    for (let i = 0; i < 100; i++) {
      await sentinel("replace");
      await sentinel("del");
      const heard = await Promise.race([listening.promise.then(() => true), delay(50).then(() => false)]);
      if (heard) return;
    }
    throw new Error("ip monitor route never reported the sentinel route");
  })();
  return {
    /** Resolves once the monitor hears route changes. */
    ready,
    next(dst: string): Promise<number> {
      return new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`route ${dst} not announced in 10 s`)), 10_000);
        waiting.set(dst, (t) => {
          clearTimeout(timer);
          resolve(t);
        });
      });
    },
    async [Symbol.asyncDispose]() {
      child.kill("SIGTERM");
      await child.status;
      await reading.catch(() => {});
    },
  };
}

/**
 * A long-lived deno child inside the underlay (where etcd listens) that puts one key per stdin line
 * through weft's own etcd3 registry and answers "ok" once etcd acknowledged it.
 */
async function startPutter(netns: string, endpoint: string) {
  const code = `
    import { openEtcdRegistry } from "${new URL("../src/lease/etcd/mod.ts", import.meta.url).href}";
    const reg = await openEtcdRegistry({ endpoints: ["${endpoint}"], prefix: "${PREFIX}" });
    const enc = new TextEncoder();
    await Deno.stdout.write(enc.encode("ready\\n"));
    let buf = "";
    for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\\n")) >= 0) {
        const { key, value } = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        await reg.reserveSubnet(key.slice("${PREFIX}/subnets/".length), value);
        await Deno.stdout.write(enc.encode("ok\\n"));
      }
    }
    await reg.close();`;
  const child = withNetns(netns, () =>
    new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn());
  const writer = child.stdin.getWriter();
  const replies = lines(child.stdout);
  const readLine = async (): Promise<string> => {
    const r = await replies.next();
    if (r.done) throw new Error("the putter exited");
    return r.value;
  };
  if ((await readLine()) !== "ready") throw new Error("the putter did not start");
  return {
    async put(key: string, value: string): Promise<void> {
      await writer.write(new TextEncoder().encode(JSON.stringify({ key, value }) + "\n"));
      const ack = await readLine();
      if (ack !== "ok") throw new Error(`put failed: ${ack}`);
    },
    async [Symbol.asyncDispose]() {
      await writer.close().catch(() => {});
      await replies.return(undefined).catch(() => {});
      await child.status;
    },
  };
}

/** The p-th percentile of `xs` (nearest rank). */
export function pct(xs: number[], p: number): number {
  // Nearest rank: the smallest value with at least p % of the samples at or below it.
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)]!;
}

/** One etcd-mode measurement with `n` peers (see the module comment). */
export async function runOne(n: number): Promise<Record<string, string>> {
  await using topo = await createTopology({ nodes: 1 });
  await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
  const dir = await Deno.makeTempDir({ prefix: "weft-conv-" });
  // etcd lives in the underlay namespace, unreachable from here: leases are written by a small deno
  // child (etcd3 client, 200 puts in flight) started inside the underlay.
  const put = async (entries: { key: string; value: string }[]) => {
    const code = `
      import { openEtcdRegistry } from "${new URL("../src/lease/etcd/mod.ts", import.meta.url).href}";
      const reg = await openEtcdRegistry({ endpoints: ["${etcd.endpoint}"], prefix: "${PREFIX}" });
      const entries = JSON.parse(await new Response(Deno.stdin.readable).text());
      for (let i = 0; i < entries.length; i += 200) {
        await Promise.all(entries.slice(i, i + 200).map((e) => reg.reserveSubnet(e.key, e.value)));
      }
      await reg.close();`;
    const r = await runIn(topo.underlay, [Deno.execPath(), "eval", code], { stdin: JSON.stringify(entries) });
    if (r.code !== 0) throw new Error(`writing leases failed: ${r.stderr}`);
  };
  const cfg = await runIn(topo.underlay, [
    "etcdctl",
    `--endpoints=${etcd.endpoint}`,
    "put",
    `${PREFIX}/config`,
    '{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"vxlan"}}',
  ], {
    env: { ETCDCTL_API: "3", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
  });
  if (cfg.code !== 0) throw new Error(cfg.stderr);
  await put(Array.from({ length: n }, (_, i) => lease(i)));

  const node = topo.nodes[0]!;
  using nl = Netlink.open({ netns: node.netns });
  const t0 = performance.now();
  const agent = startAgent(node, {
    etcd: etcd.endpoint,
    dir,
    args: ["--resync-interval=2"],
    ...(DENO_FLAGS ? { denoFlags: DENO_FLAGS } : {}),
  });
  try {
    await waitFor(`${n} routes`, 120_000, () => nl.routeList({ protocol: 87 }).length >= n || undefined);
    const startMs = performance.now() - t0;
    const atStart = procStats(agent.pid);

    // Event latency: put one lease at a time, wait for the kernel to announce its route.
    await using monitor = startRouteMonitor(node.netns);
    await monitor.ready;
    await using putter = await startPutter(topo.underlay, etcd.endpoint);
    const lat: number[] = [];
    const putFloor: number[] = [];
    // Event 0 is the first after start-up (cold code paths in agent and putter, the putter's gRPC
    // connection): reported on its own, not mixed into the steady-state percentiles.
    let firstMs = 0;
    for (let k = 0; k <= EVENTS; k++) {
      const l = lease(n + k);
      const dst = l.key.replace("-", "/");
      const seen = monitor.next(dst);
      const p0 = performance.now();
      await putter.put(`${PREFIX}/subnets/${l.key}`, l.value);
      const acked = performance.now() - p0;
      const ms = (await seen) - p0;
      if (k === 0) {
        firstMs = ms;
        continue;
      }
      putFloor.push(acked);
      lat.push(ms);
    }

    if (Deno.env.get("WEFT_BENCH_VERBOSE")) {
      const [, text] = await agentHttp(agent, "/metrics");
      console.log(`  ${text.split("\n").filter((l) => /^(process_resident|weft_js_)/.test(l)).join(", ")}`);
      console.log(`  event latencies (ms, in order): ${lat.map((x) => x.toFixed(1)).join(" ")}`);
    }
    // Resync cost: agent CPU over 5 idle resync periods (2 s each) with n+EVENTS+1 peers.
    const c0 = procStats(agent.pid).cpu;
    await new Promise((r) => setTimeout(r, 10_000));
    const c1 = procStats(agent.pid);
    const perPass = (c1.cpu - c0) / 5;
    return {
      peers: String(n),
      start_to_all_routes_ms: startMs.toFixed(0),
      cpu_s_at_converged: atStart.cpu.toFixed(2),
      rss_mb: c1.rssMB.toFixed(0),
      event_p50_ms: pct(lat, 50).toFixed(1),
      event_p99_ms: pct(lat, 99).toFixed(1),
      event_max_ms: Math.max(...lat).toFixed(1),
      first_event_ms: firstMs.toFixed(1),
      put_ack_p50_ms: pct(putFloor, 50).toFixed(1),
      resync_cpu_s_per_pass: perPass.toFixed(3),
    };
  } finally {
    await agent.stop("SIGKILL");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error("bench/convergence.ts needs root");
    Deno.exit(1);
  }
  const rows: Record<string, string>[] = [];
  for (const n of counts) {
    const row = await runOne(n);
    rows.push(row);
    console.log(JSON.stringify(row));
  }
  const cols = Object.keys(rows[0]!);
  console.log("\n" + cols.join("  "));
  for (const r of rows) console.log(cols.map((c) => r[c]!.padStart(c.length)).join("  "));
}
