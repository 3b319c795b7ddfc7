/**
 * CNI latency (issue 15): weft's CNI mode against Debian's `/usr/lib/cni/bridge` + `host-local` with the
 * equivalent config (what flannel's plugin renders for bridge), in the same run, the same node namespace,
 * calls alternating so both see the same machine load. Prints, in one run:
 *
 * - ADD and DEL medians and the weft/Debian ratios (goal ≤ 1.5) with 1, 50 and 250 pods already attached
 *   to each plugin's bridge, and weft's ADD at 250 over its ADD at 1 (goal ≤ 1.1: flat as the node fills);
 * - weft's own ADD work: the time weft logs from its first line to its answer, i.e. without Deno's start-up
 *   (goal ≤ 5 ms), with the phases of `WEFT_CNI_TRACE`;
 * - start-up: weft VERSION against an empty Deno script (goal ≤ empty + 10 ms) and host-local VERSION;
 * - the floor of a thin client into a running agent: a Deno process that connects to a local socket,
 *   sends a request and reads the answer, against a server in this process that answers at once (what
 *   such a design could reach at best, before the agent does any work);
 * - the first ADD and DEL with an empty Deno cache.
 *
 * weft runs the way the README runs it from source, `deno run -A main.ts` (no compiled binary can be
 * built here: `deno compile` downloads its `denort` runtime). `--weft "<command line>"` measures another
 * build (a compiled binary, other flags). `--csv FILE` writes every median as `level,plugin,op,median_ms,
 * p90_ms,n` (BENCHMARKS.md's plot is made from it with bench/plot_cni.gp).
 *
 * `--before "<command line>"` adds another build to the same loop (the tree before a change, in-process).
 *
 * Run: `deno run -A bench/cni_latency.ts [iterations] [--levels 1,50,250] [--csv out.csv] [--weft "…"]
 * [--before "…"]`.
 * Needs root.
 *
 * @module
 */
import { netnsCreate, netnsDelete, withNetns } from "../ffi/mod.ts";
import { runIn } from "../src/lab/lab.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const SERVER = new URL("../src/cni/agent_server.ts", import.meta.url).pathname;
const DEBIAN = "/usr/lib/cni";
const args = Deno.args;
const opt = (name: string) => (args.indexOf(name) >= 0 ? args[args.indexOf(name) + 1] : undefined);
const WEFT = opt("--weft")?.split(" ") ?? [Deno.execPath(), "run", "-A", MAIN];
/** Another weft build measured in the same loop (e.g. the tree before a change), in-process. */
const BEFORE = opt("--before")?.split(" ");
const ITER = Number(args.find((a, i) => /^\d+$/.test(a) && !args[i - 1]?.startsWith("--")) ?? 20);
const LEVELS = (opt("--levels") ?? "1,50,250").split(",").map(Number);
const CSV = opt("--csv");
const WARMUP = 3;
/** Filler pods share namespaces (the node side is what fills up), this many per namespace. */
const FILL_PER_NS = 25;

interface Call {
  code: number;
  ms: number;
  stdout: string;
  stderr: string;
}

async function call(netns: string | undefined, cmd: string[], env: Record<string, string>, stdin: string) {
  const t0 = performance.now();
  const r = await runIn(netns, cmd, { env, stdin, clearEnv: true });
  return { ...r, ms: performance.now() - t0 } as Call;
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))] ?? NaN;
}

const med = (xs: number[]) => quantile(xs, 0.5);

function cniEnv(
  command: string,
  id: string,
  netns: string,
  ifname = "eth0",
  extra: Record<string, string> = {},
) {
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/root",
    ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
    CNI_COMMAND: command,
    CNI_CONTAINERID: id,
    CNI_NETNS: netns,
    CNI_IFNAME: ifname,
    CNI_PATH: DEBIAN,
    CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod",
    WEFT_CNI_TRACE: "1",
    ...extra,
  };
}

/** weft's log line: total in-plugin time and its phases. */
function inPlugin(stderr: string): { ms: number; phases: Record<string, number> } | undefined {
  const m = / in ([\d.]+) ms \[([^\]]*);/.exec(stderr);
  if (!m) return undefined;
  const phases: Record<string, number> = {};
  for (const p of m[2]!.split(", ")) {
    const sp = p.lastIndexOf(" ");
    phases[p.slice(0, sp)] = Number(p.slice(sp + 1));
  }
  return { ms: Number(m[1]), phases };
}

interface Plugin {
  cmd: string[];
  conf: string;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function fail(what: string, r: Call): never {
  throw new Error(`${what} failed (exit ${r.code}): ${r.stdout}${r.stderr}`);
}

/**
 * Floor of a thin client: a Deno process that connects to a unix socket, sends its environment and reads
 * one answer from a server in this process that does no work. Returns the probe and a stop function.
 */
function thinClientFloor(dir: string): { probe: () => Promise<number>; stop: () => Promise<void> } {
  const path = `${dir}/thin.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const serve = (async () => {
    for await (const conn of listener) {
      (async () => {
        const buf = new Uint8Array(4096);
        await conn.read(buf);
        await conn.write(new TextEncoder().encode('{"cniVersion":"1.0.0","ips":[]}\n'));
        conn.close();
      })().catch(() => {});
    }
  })().catch(() => {});
  Deno.writeTextFileSync(
    `${dir}/thin.ts`,
    `const c = await Deno.connect({ transport: "unix", path: ${JSON.stringify(path)} });
     await c.write(new TextEncoder().encode(JSON.stringify({ env: Deno.env.toObject() })));
     const b = new Uint8Array(4096); const k = await c.read(b);
     Deno.stdout.writeSync(b.subarray(0, k ?? 0)); c.close();`,
  );
  return {
    probe: async () => {
      const r = await call(
        undefined,
        [Deno.execPath(), "run", "-A", `${dir}/thin.ts`],
        cniEnv("ADD", "x", ""),
        "",
      );
      if (r.code !== 0) fail("thin client", r);
      return r.ms;
    },
    stop: async () => {
      try {
        listener.close();
      } catch { /* closed before */ }
      await serve;
    },
  };
}

interface Row {
  level: number;
  plugin: string;
  op: string;
  xs: number[];
}

async function main(): Promise<void> {
  if (Deno.uid() !== 0) throw new Error("needs root (network namespaces)");
  const tag = `wtst-bench${Math.floor(Math.random() * 1e6).toString(36)}`;
  const node = `${tag}-node`;
  const dir = await Deno.makeTempDir({ prefix: "weft-cni-bench-" });
  const probes = Array.from({ length: 4 }, (_, i) => `${tag}-probe${i}`);
  const maxLevel = Math.max(...LEVELS);
  const fillNs = Array.from({ length: Math.ceil(maxLevel / FILL_PER_NS) }, (_, i) => `${tag}-fill${i}`);
  for (const ns of [node, ...probes, ...fillNs]) netnsCreate(ns);
  const cleanups: (() => void)[] = [];
  try {
    Deno.writeTextFileSync(
      `${dir}/subnet.env`,
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.40.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    );
    // kube-flannel's entry for weft; for Debian, what flannel's plugin renders from it for bridge.
    const weftConf = {
      cniVersion: "1.0.0",
      name: "cbr0",
      type: "flannel",
      subnetFile: `${dir}/subnet.env`,
      dataDir: `${dir}/flannel`,
      delegate: { hairpinMode: true, isDefaultGateway: true, ipam: { dataDir: `${dir}/networks` } },
    };
    // The agent's CNI server, as `weft agent` runs it: in the node namespace, socket beside subnet.env.
    const server = withNetns(node, () =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", SERVER, `${dir}/weft-cni.sock`],
        stdout: "null",
        stderr: "null",
      }).spawn());
    const stopServer = () => {
      try {
        server.kill("SIGTERM");
      } catch { /* gone */ }
    };
    cleanups.push(stopServer);
    for (let i = 0; i < 100 && !exists(`${dir}/weft-cni.sock`); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const plugins: Record<string, Plugin> = {
      // In-process: the thin call turned off.
      weft: { cmd: WEFT, conf: JSON.stringify({ ...weftConf, agentSocket: "" }) },
      "weft via agent": { cmd: WEFT, conf: JSON.stringify(weftConf) },
      ...(BEFORE
        ? { "weft before": { cmd: BEFORE, conf: JSON.stringify({ ...weftConf, agentSocket: "" }) } }
        : {}),
      debian: {
        cmd: [`${DEBIAN}/bridge`],
        conf: JSON.stringify({
          cniVersion: "1.0.0",
          name: "cbr1",
          type: "bridge",
          bridge: "cni1",
          mtu: 1450,
          ipMasq: false,
          isGateway: true,
          isDefaultGateway: true,
          hairpinMode: true,
          ipam: {
            type: "host-local",
            ranges: [[{ subnet: "10.244.41.0/24" }]],
            routes: [{ dst: "10.244.0.0/16" }],
            dataDir: `${dir}/networks`,
          },
        }),
      },
    };
    const names = Object.keys(plugins);
    const rows: Row[] = [];
    const add = (level: number, plugin: string, op: string, x: number) => {
      let r = rows.find((r) => r.level === level && r.plugin === plugin && r.op === op);
      if (!r) rows.push(r = { level, plugin, op, xs: [] });
      r.xs.push(x);
    };
    const phaseSums: Record<string, Record<string, number[]>> = {};

    // Cold: the very first weft ADD/DEL with an empty DENO_DIR (nothing transpiled or code-cached yet).
    const cold: { add?: number; del?: number } = {};
    if (opt("--weft") === undefined) {
      const netns = `/run/netns/${probes[0]}`;
      const p = plugins.weft!;
      const a = await call(
        node,
        p.cmd,
        cniEnv("ADD", "cold", netns, "eth0", { DENO_DIR: `${dir}/deno-cold` }),
        p.conf,
      );
      if (a.code !== 0) fail("weft cold ADD", a);
      const d = await call(
        node,
        p.cmd,
        cniEnv("DEL", "cold", netns, "eth0", { DENO_DIR: `${dir}/deno-cold2` }),
        p.conf,
      );
      if (d.code !== 0) fail("weft cold DEL", d);
      Object.assign(cold, { add: a.ms, del: d.ms });
    }

    // Start-up alone, timed in the same loop as the first level's calls (same machine load): VERSION,
    // an empty Deno script, host-local VERSION, and the thin-client floor.
    Deno.writeTextFileSync(`${dir}/empty.ts`, "");
    const floor = thinClientFloor(dir);
    cleanups.push(() => void floor.stop());
    const startup: Record<string, () => Promise<number>> = {};
    for (
      const [k, cmd] of Object.entries({
        "weft VERSION": WEFT,
        "empty Deno script": [Deno.execPath(), "run", `${dir}/empty.ts`],
        "host-local VERSION": [`${DEBIAN}/host-local`],
      })
    ) {
      startup[k] = async () => {
        const r = await call(undefined, cmd, cniEnv("VERSION", "", ""), '{"cniVersion":"1.0.0"}');
        if (r.code !== 0) fail(k, r);
        return r.ms;
      };
    }
    startup["thin client floor"] = floor.probe;

    // Fill each bridge to `level` pods, then time probe ADD+DEL pairs, alternating plugins.
    const filled: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
    const t0 = performance.now();
    for (const level of LEVELS) {
      // The weft variants share one bridge and one store: only the in-process one fills them.
      for (const name of names.filter((n) => n === "weft" || n === "debian")) {
        const p = plugins[name]!;
        for (; filled[name]! < level; filled[name]!++) {
          const i = filled[name]!;
          const ns = `/run/netns/${fillNs[Math.floor(i / FILL_PER_NS)]}`;
          const r = await call(
            node,
            p.cmd,
            cniEnv("ADD", `fill-${name}-${i}`, ns, `${name[0]}${i % FILL_PER_NS}`),
            p.conf,
          );
          if (r.code !== 0) fail(`${name} filler ADD ${i}`, r);
        }
      }
      for (let i = 0; i < WARMUP + ITER; i++) {
        for (const name of i % 2 ? names : [...names].reverse()) {
          const p = plugins[name]!;
          const netns = `/run/netns/${probes[i % probes.length]}`;
          const id = `probe-${name.replaceAll(" ", "-")}-${level}-${i}`;
          const a = await call(node, p.cmd, cniEnv("ADD", id, netns), p.conf);
          if (a.code !== 0) fail(`${name} ADD`, a);
          const d = await call(node, p.cmd, cniEnv("DEL", id, netns), p.conf);
          if (d.code !== 0) fail(`${name} DEL`, d);
          if (i < WARMUP) continue;
          add(level, name, "ADD", a.ms);
          add(level, name, "DEL", d.ms);
          const ai = inPlugin(a.stderr), di = inPlugin(d.stderr);
          if (ai) {
            add(level, name, "ADD in-plugin", ai.ms);
            if (level === LEVELS[0]) {
              const ph = phaseSums[name] ??= {};
              for (const [k, v] of Object.entries(ai.phases)) (ph[k] ??= []).push(v);
            }
          }
          if (di) add(level, name, "DEL in-plugin", di.ms);
        }
        // The empty script at every level too: the machine's load drifts between levels, and the ADD
        // growth is also read relative to it.
        const e = await startup["empty Deno script"]!();
        if (i >= WARMUP) add(level, "empty Deno script", "run", e);
        if (level !== LEVELS[0]) continue;
        const keys = Object.keys(startup);
        for (const k of i % 2 ? keys : keys.reverse()) {
          const ms = await startup[k]!();
          if (i >= WARMUP) add(0, k, k === "thin client floor" ? "request" : "VERSION", ms);
        }
      }
    }
    const measureSecs = (performance.now() - t0) / 1000;

    await floor.stop();
    stopServer();
    await server.status;
    report(rows, phaseSums, cold, measureSecs);
    if (CSV) {
      const lines = ["level,plugin,op,median_ms,p90_ms,n"];
      for (const r of rows) {
        lines.push(
          `${r.level},${r.plugin},${r.op},${med(r.xs).toFixed(2)},${
            quantile(r.xs, 0.9).toFixed(2)
          },${r.xs.length}`,
        );
      }
      Deno.writeTextFileSync(CSV, lines.join("\n") + "\n");
      console.log(`\nwrote ${CSV}`);
    }
  } finally {
    for (const c of cleanups) c();
    for (const ns of [...probes, ...fillNs, node]) netnsDelete(ns);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function report(
  rows: Row[],
  phases: Record<string, Record<string, number[]>>,
  cold: { add?: number; del?: number },
  secs: number,
): void {
  const get = (level: number, plugin: string, op: string) =>
    rows.find((r) => r.level === level && r.plugin === plugin && r.op === op)?.xs ?? [];
  const f = (x: number) => x.toFixed(1).padStart(7);
  const line = (a: string, b: string, xs: number[]) =>
    console.log(
      `${a.padStart(13)}  ${b.padEnd(32)} ${f(med(xs))}   ${xs.length > 1 ? f(quantile(xs, 0.9)) : ""}`,
    );
  console.log(
    `CNI latency: ${ITER} timed calls per figure after ${WARMUP} warm-up, same namespaces, alternating`,
  );
  console.log(
    `weft command: ${WEFT.join(" ")}; load average ${Deno.loadavg().map((x) => x.toFixed(1)).join(" ")}\n`,
  );
  console.log("pods attached  call                               median ms    p90 ms");
  for (const r of rows.filter((r) => r.level > 0)) {
    line(String(r.level), `${r.plugin === "debian" ? "bridge+host-local" : r.plugin} ${r.op}`, r.xs);
  }
  for (const r of rows.filter((r) => r.level === 0)) line("", `${r.plugin} ${r.op}`, r.xs);
  if (cold.add !== undefined) {
    line("", "weft ADD, empty Deno cache", [cold.add]);
    line("", "weft DEL, empty Deno cache", [cold.del!]);
  }
  for (const [plugin, ph] of Object.entries(phases)) {
    const text = Object.entries(ph).map(([k, v]) => `${k} ${med(v).toFixed(1)}`).join(", ");
    console.log(`\n${plugin} ADD phases at ${LEVELS[0]} pod(s), medians ms: ${text}`);
  }
  console.log("\nratios (medians):");
  const lo = LEVELS[0]!, hi = LEVELS[LEVELS.length - 1]!;
  for (const w of ["weft", "weft via agent", ...(BEFORE ? ["weft before"] : [])]) {
    for (const level of LEVELS) {
      const ra = med(get(level, w, "ADD")) / med(get(level, "debian", "ADD"));
      const rd = med(get(level, w, "DEL")) / med(get(level, "debian", "DEL"));
      console.log(
        `  ${w}, ${level} pods: /Debian ADD ${ra.toFixed(2)}, DEL ${rd.toFixed(2)} (goal ≤ 1.5 each)`,
      );
    }
  }
  // The machine's load drifts between levels: the empty script, timed at every level, shows by how much.
  const drift = med(get(hi, "empty Deno script", "run")) / med(get(lo, "empty Deno script", "run"));
  for (const plugin of ["weft", "weft via agent", ...(BEFORE ? ["weft before"] : []), "debian"]) {
    const g = med(get(hi, plugin, "ADD")) / med(get(lo, plugin, "ADD"));
    const goal = plugin === "debian" ? "" : " (goal ≤ 1.1)";
    console.log(
      `  ${plugin} ADD at ${hi} pods / at ${lo}: ${g.toFixed(2)}${goal}; ${
        (g / drift).toFixed(2)
      } after the ` +
        `empty script's drift (×${drift.toFixed(2)})`,
    );
  }
  for (const w of ["weft", "weft via agent"]) {
    const own = med(get(lo, w, "ADD in-plugin"));
    console.log(`  ${w}: own ADD work (its log line's time, ${lo} pod) ${own.toFixed(1)} ms (goal ≤ 5 ms)`);
  }
  const v = med(get(0, "weft VERSION", "VERSION")), e = med(get(0, "empty Deno script", "VERSION"));
  console.log(
    `  weft start-up (VERSION) ${v.toFixed(1)} ms = empty Deno script ${e.toFixed(1)} ms + ${
      (v - e).toFixed(1)
    } ms ` +
      "(goal ≤ +10 ms)",
  );
  const thin = med(get(0, "thin client floor", "request"));
  console.log(
    `  thin-call floor (process, connect, one round trip, no work) ${
      thin.toFixed(1)
    } ms; weft ADD via agent ` +
      `${med(get(lo, "weft via agent", "ADD")).toFixed(1)} ms, in-process ${
        med(get(lo, "weft", "ADD")).toFixed(1)
      } ms`,
  );
  console.log(`  (timed section took ${secs.toFixed(0)} s)`);
}

if (import.meta.main) await main();
