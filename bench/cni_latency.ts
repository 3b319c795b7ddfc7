/**
 * CNI ADD and DEL latency: weft's CNI mode against Debian's `/usr/lib/cni/bridge` + `host-local` with
 * the equivalent config (what flannel's plugin renders for bridge), same run, same node namespace, same
 * pod namespaces, calls alternating so both see the same machine load. Prints medians, p90s and the
 * weft/Debian ratio (goal ≤ 1.5).
 *
 * weft runs as `deno run -A main.ts` (no compiled binary here), measured four ways:
 * - warm: Deno's module cache (transpiled sources, V8 code cache) already filled — every call but the
 *   first after an install or upgrade;
 * - warm with `--no-npm`: the CNI path needs no npm package, and skipping Deno's npm resolver set-up
 *   (deno.json lists the agent's npm dependencies) saves ~10 ms per call;
 * - cold: the first call with an empty DENO_DIR (everything transpiled on the spot);
 * - in-plugin: the time weft itself logs for the command, i.e. without Deno's start-up.
 * Plus VERSION (start-up only) for weft, an empty Deno script and host-local.
 *
 * Run: `deno run -A bench/cni_latency.ts [iterations] [--weft "<command line>"]` (default 30; `--weft`
 * measures another build, e.g. a compiled binary). Needs root.
 *
 * @module
 */
import { netnsCreate, netnsDelete } from "../ffi/mod.ts";
import { runIn } from "../src/lab/lab.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const DEBIAN = "/usr/lib/cni";
const wi = Deno.args.indexOf("--weft");
const WEFT = wi >= 0 ? Deno.args[wi + 1]!.split(" ") : [Deno.execPath(), "run", "-A", MAIN];
const WEFT_NO_NPM = [Deno.execPath(), "run", "-A", "--no-npm", MAIN];
const ITER = Number(Deno.args.find((a, i) => /^\d+$/.test(a) && Deno.args[i - 1] !== "--weft") ?? 30);

interface Call {
  code: number;
  ms: number;
  stdout: string;
  stderr: string;
}

async function call(
  netns: string | undefined,
  cmd: string[],
  env: Record<string, string>,
  stdin: string,
): Promise<Call> {
  const t0 = performance.now();
  const r = await runIn(netns, cmd, { env, stdin });
  return { ...r, ms: performance.now() - t0 };
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))] ?? NaN;
}

function cniEnv(command: string, id: string, netns: string, extra: Record<string, string> = {}) {
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/root",
    ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
    CNI_COMMAND: command,
    CNI_CONTAINERID: id,
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_PATH: DEBIAN,
    CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod",
    ...extra,
  };
}

function inPluginMs(stderr: string): number | undefined {
  const m = / in ([\d.]+) ms/.exec(stderr);
  return m ? Number(m[1]) : undefined;
}

async function main(): Promise<void> {
  if (Deno.uid() !== 0) throw new Error("needs root (network namespaces)");
  const tag = `wtst-bench${Math.floor(Math.random() * 1e6).toString(36)}`;
  const node = `${tag}-node`;
  const dir = await Deno.makeTempDir({ prefix: "weft-cni-bench-" });
  const pods = Array.from({ length: 4 }, (_, i) => `${tag}-pod${i}`);
  netnsCreate(node);
  for (const p of pods) netnsCreate(p);
  try {
    Deno.writeTextFileSync(
      `${dir}/subnet.env`,
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.40.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    );
    // kube-flannel's entry for weft; for Debian, what flannel's plugin renders from it for bridge.
    const weftConf = JSON.stringify({
      cniVersion: "1.0.0",
      name: "cbr0",
      type: "flannel",
      subnetFile: `${dir}/subnet.env`,
      dataDir: `${dir}/flannel`,
      delegate: { hairpinMode: true, isDefaultGateway: true, ipam: { dataDir: `${dir}/networks` } },
    });
    const debConf = JSON.stringify({
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
    });
    const plugins = {
      weft: { cmd: WEFT, conf: weftConf },
      ...(wi < 0 ? { "weft --no-npm": { cmd: WEFT_NO_NPM, conf: weftConf } } : {}),
      debian: { cmd: [`${DEBIAN}/bridge`], conf: debConf },
    } as Record<string, { cmd: string[]; conf: string }>;
    type Name = string;
    const results: Record<Name, { add: number[]; del: number[]; addIn: number[]; delIn: number[] }> = {};
    for (const k of Object.keys(plugins)) results[k] = { add: [], del: [], addIn: [], delIn: [] };

    // Cold: the very first weft ADD/DEL with an empty DENO_DIR (nothing transpiled or code-cached yet).
    const coldDir = `${dir}/deno-cold`;
    const cold: { add?: number; del?: number } = {};
    if (wi < 0) {
      const netns = `/run/netns/${pods[0]}`;
      const add = await call(node, WEFT, cniEnv("ADD", "cold", netns, { DENO_DIR: coldDir }), weftConf);
      if (add.code !== 0) throw new Error(`weft cold ADD failed: ${add.stdout}${add.stderr}`);
      cold.add = add.ms;
      const del = await call(
        node,
        WEFT,
        cniEnv("DEL", "cold", netns, { DENO_DIR: `${coldDir}-del` }),
        weftConf,
      );
      if (del.code !== 0) throw new Error(`weft cold DEL failed: ${del.stdout}${del.stderr}`);
      cold.del = del.ms;
    }

    const warmup = 3;
    for (let i = 0; i < warmup + ITER; i++) {
      const names = Object.keys(plugins);
      const order: Name[] = i % 2 ? names : [...names].reverse();
      for (const name of order) {
        const p = plugins[name]!;
        const netns = `/run/netns/${pods[i % pods.length]}`;
        const id = `${name.replace(/[^A-Za-z0-9]+/g, "-")}-${i}`;
        const add = await call(node, p.cmd, cniEnv("ADD", id, netns), p.conf);
        if (add.code !== 0) throw new Error(`${name} ADD failed: ${add.stdout}${add.stderr}`);
        const del = await call(node, p.cmd, cniEnv("DEL", id, netns), p.conf);
        if (del.code !== 0) throw new Error(`${name} DEL failed: ${del.stdout}${del.stderr}`);
        if (i < warmup) continue;
        results[name]!.add.push(add.ms);
        results[name]!.del.push(del.ms);
        const ai = inPluginMs(add.stderr), di = inPluginMs(del.stderr);
        if (ai !== undefined) results[name]!.addIn.push(ai);
        if (di !== undefined) results[name]!.delIn.push(di);
      }
    }

    // Start-up alone: VERSION.
    Deno.writeTextFileSync(`${dir}/empty.ts`, "");
    const vcmds: Record<string, string[]> = {
      "weft VERSION": WEFT,
      ...(wi < 0 ? { "weft --no-npm VERSION": WEFT_NO_NPM } : {}),
      "deno empty script": [Deno.execPath(), "run", `${dir}/empty.ts`],
      "host-local VERSION": [`${DEBIAN}/host-local`],
    };
    const version: Record<string, number[]> = Object.fromEntries(Object.keys(vcmds).map((k) => [k, []]));
    for (let i = 0; i < ITER; i++) {
      for (const [k, cmd] of Object.entries(vcmds)) {
        const r = await call(
          undefined,
          cmd,
          { ...cniEnv("VERSION", "", ""), CNI_COMMAND: "VERSION" },
          '{"cniVersion":"1.0.0"}',
        );
        version[k]!.push(r.ms);
      }
    }

    const f = (x: number) => x.toFixed(1).padStart(7);
    console.log(
      `CNI latency, ${ITER} iterations after ${warmup} warm-up, same node/pod namespaces, alternating`,
    );
    console.log(`weft command: ${WEFT.join(" ")}\n`);
    console.log("                         median ms    p90 ms");
    for (const name of Object.keys(plugins)) {
      const r = results[name]!;
      const label = name === "debian" ? "bridge+host-local" : name;
      console.log(`${`${label} ADD`.padEnd(24)} ${f(quantile(r.add, 0.5))}   ${f(quantile(r.add, 0.9))}`);
      console.log(`${`${label} DEL`.padEnd(24)} ${f(quantile(r.del, 0.5))}   ${f(quantile(r.del, 0.9))}`);
    }
    const w = results.weft!, d = results.debian!;
    if (w.addIn.length) {
      console.log(
        `${"weft ADD in-plugin".padEnd(24)} ${f(quantile(w.addIn, 0.5))}   ${f(quantile(w.addIn, 0.9))}`,
      );
      console.log(
        `${"weft DEL in-plugin".padEnd(24)} ${f(quantile(w.delIn, 0.5))}   ${f(quantile(w.delIn, 0.9))}`,
      );
    }
    if (cold.add !== undefined) {
      console.log(`${"weft ADD cold cache".padEnd(24)} ${f(cold.add)}   (first call, empty DENO_DIR)`);
      console.log(`${"weft DEL cold cache".padEnd(24)} ${f(cold.del!)}   (first call, empty DENO_DIR)`);
    }
    for (const [k, xs] of Object.entries(version)) {
      console.log(`${k.padEnd(24)} ${f(quantile(xs, 0.5))}   ${f(quantile(xs, 0.9))}`);
    }
    const ratios = (x: typeof w) => {
      const ra = quantile(x.add, 0.5) / quantile(d.add, 0.5);
      const rd = quantile(x.del, 0.5) / quantile(d.del, 0.5);
      const rt = (quantile(x.add, 0.5) + quantile(x.del, 0.5)) /
        (quantile(d.add, 0.5) + quantile(d.del, 0.5));
      return `ADD ${ra.toFixed(2)}, DEL ${rd.toFixed(2)}, ADD+DEL ${rt.toFixed(2)}`;
    };
    console.log("");
    for (const name of Object.keys(plugins).filter((n) => n !== "debian")) {
      console.log(`ratio ${name}/Debian (medians): ${ratios(results[name]!)} (goal ≤ 1.5)`);
    }
    if (w.addIn.length) {
      const startup = quantile(version["weft VERSION"]!, 0.5);
      const ri = quantile(w.addIn, 0.5) / quantile(d.add, 0.5);
      console.log(
        `weft's own ADD work vs Debian's whole ADD: ${ri.toFixed(2)}; weft start-up (VERSION) ${
          startup.toFixed(1)
        } ms ` +
          `of which an empty Deno script is ${quantile(version["deno empty script"]!, 0.5).toFixed(1)} ms`,
      );
    }
  } finally {
    for (const p of pods) netnsDelete(p);
    netnsDelete(node);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
