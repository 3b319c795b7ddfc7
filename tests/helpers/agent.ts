/**
 * Running real `weft agent` processes inside node namespaces for end-to-end tests, through main.ts (the
 * entry point the binary has).
 *
 * @module
 */
import { withNetns } from "../../ffi/mod.ts";
import { readSubnetEnv, type SubnetEnv } from "../../src/config/subnet_env.ts";
import { alive, runIn } from "../../src/cli/lab.ts";
import type { LabNode } from "../../src/cli/lab.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** A running agent. */
export interface AgentProcess {
  /** Its node. */
  node: LabNode;
  /** subnet.env path. */
  subnetFile: string;
  /** Health port (inside the node namespace, on 127.0.0.1). */
  healthPort: number;
  /** Current pid. */
  pid: number;
  /** Log file. */
  logFile: string;
  /** Stops it with `signal` and waits for it to exit. */
  stop(signal?: Deno.Signal): Promise<void>;
  /** Starts it again with the same arguments. */
  start(): void;
}

/** Starts an agent on `node` that talks to etcd at `etcd`. */
export function startAgent(
  node: LabNode,
  opts: { etcd: string; dir: string; args?: string[]; healthPort?: number },
): AgentProcess {
  const subnetFile = `${opts.dir}/${node.netns}.subnet.env`;
  const logFile = `${opts.dir}/${node.netns}.agent.log`;
  const healthPort = opts.healthPort ?? 8471;
  let child: Deno.ChildProcess | undefined;
  const args = [
    "run",
    "-A",
    "--no-check",
    MAIN,
    "agent",
    `--etcd-endpoints=${opts.etcd}`,
    `--iface=${node.iface}`,
    `--subnet-file=${subnetFile}`,
    "--healthz-ip=127.0.0.1",
    `--healthz-port=${healthPort}`,
    ...(opts.args ?? []),
  ];
  const agent: AgentProcess = {
    node,
    subnetFile,
    healthPort,
    logFile,
    pid: 0,
    start() {
      const log = Deno.openSync(logFile, { create: true, append: true });
      child = withNetns(
        node.netns,
        () =>
          new Deno.Command(Deno.execPath(), { args, stdin: "null", stdout: "piped", stderr: "piped" })
            .spawn(),
      );
      const pump = async (s: ReadableStream<Uint8Array>) => {
        for await (const c of s) log.writeSync(c);
      };
      Promise.all([pump(child.stdout), pump(child.stderr)]).catch(() => {}).finally(() => log.close());
      agent.pid = child.pid;
    },
    async stop(signal: Deno.Signal = "SIGTERM") {
      if (!child) return;
      const c = child;
      child = undefined;
      try {
        c.kill(signal);
      } catch { /* gone */ }
      const timer = setTimeout(() => {
        try {
          c.kill("SIGKILL");
        } catch { /* gone */ }
      }, 5000);
      await c.status;
      clearTimeout(timer);
    },
  };
  agent.start();
  return agent;
}

/** Waits until `probe` returns a value (polling every 100 ms). */
export async function waitFor<T>(
  what: string,
  ms: number,
  probe: () => Promise<T | undefined> | T | undefined,
): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `timed out after ${ms} ms waiting for ${what}${last ? ` (${(last as Error).message})` : ""}`,
  );
}

/** Waits for the agent's subnet.env. */
export function waitSubnetEnv(a: AgentProcess, ms = 20_000): Promise<SubnetEnv> {
  return waitFor(`${a.subnetFile}`, ms, () => {
    try {
      return readSubnetEnv(a.subnetFile);
    } catch {
      return undefined;
    }
  });
}

/** GETs a path of the agent's health endpoint from inside its node; returns [status, body]. */
export async function agentHttp(a: AgentProcess, path: string): Promise<[number, string]> {
  const r = await runIn(a.node.netns, [
    Deno.execPath(),
    "eval",
    `const r = await fetch("http://127.0.0.1:${a.healthPort}${path}"); console.log(r.status); console.log(await r.text());`,
  ]);
  if (r.code !== 0) throw new Error(`GET ${path}: ${r.stderr}`);
  const nl = r.stdout.indexOf("\n");
  return [Number(r.stdout.slice(0, nl)), r.stdout.slice(nl + 1)];
}

/** Whether a pid is running. */
export { alive };
