/**
 * `weft status`: the local node as its agent sees it — lease, expiry, peers programmed vs leases known,
 * drift repaired, readiness — read from the agent's health endpoint (`/readyz`, `/metrics`).
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { parsePrometheusText } from "../agent/prometheus.ts";
import { CliError } from "./errors.ts";
import { AGENT_FLAGS } from "./agent_flags.ts";
import { addEnvFileFlag } from "./env_file.ts";
import { addFlags, FLAG_SYNTAX_HELP } from "./flags.ts";

/** The exposition reader lives beside the one writer (src/agent/prometheus.ts). */
export { type ParsedSample as Sample, parsePrometheusText } from "../agent/prometheus.ts";

/** What `weft status` reports. */
export interface NodeStatus {
  /** The health endpoint asked. */
  endpoint: string;
  /** /readyz answered 200. */
  ready: boolean;
  /** /readyz's body (why not ready). */
  readyDetail: string;
  /** Every weft_* sample, by name (labels folded into the name). */
  metrics: Record<string, number>;
  /** Leases the agent refuses now (`weft_lease_rejected`), with the rule each breaks. */
  rejected?: { key: string; reason: string }[];
  /** Why a ready agent is degraded (its lease store unreachable since …), if it is. */
  degraded?: string;
}

/** `1h 2m`, `3m 12s`, `40s`. */
function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${s}s`;
}

/**
 * Why an agent is degraded, from its metrics: the lease store (`weft_store_up{store}`) unreachable since
 * `weft_store_unreachable_since_timestamp_seconds`. The datapath keeps forwarding meanwhile, but no lease
 * is renewed and no peer change is seen.
 */
export function degradedReason(metrics: Record<string, number>, now = Date.now()): string | undefined {
  const up = Object.entries(metrics).find(([k]) => k.startsWith("weft_store_up"));
  if (!up || up[1] !== 0) return undefined;
  const store = /store=([^,}]+)/.exec(up[0])?.[1] ?? "the lease store";
  const name = store === "kube" ? "the Kubernetes API" : store;
  const since = metrics["weft_store_unreachable_since_timestamp_seconds"] ?? 0;
  const when = since > 0
    ? ` since ${new Date(since * 1000).toISOString()} (${duration(now / 1000 - since)})`
    : "";
  return `${name} unreachable${when}: the datapath keeps forwarding as programmed; leases are neither ` +
    "renewed nor watched until it answers";
}

/** Asks the agent at `endpoint` (e.g. `http://127.0.0.1:8471`). */
export async function fetchStatus(endpoint: string): Promise<NodeStatus> {
  const base = endpoint.replace(/\/$/, "");
  const ready = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(3000) });
  const readyDetail = (await ready.text()).trim();
  const metricsRes = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(3000) });
  const metrics: Record<string, number> = {};
  const rejected: { key: string; reason: string }[] = [];
  for (const s of parsePrometheusText(await metricsRes.text())) {
    if (!s.name.startsWith("weft_")) continue;
    if (s.name === "weft_lease_rejected") {
      rejected.push({ key: s.labels.key ?? "", reason: s.labels.reason ?? "" });
      continue;
    }
    const labels = Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(",");
    metrics[labels ? `${s.name}{${labels}}` : s.name] = s.value;
  }
  const degraded = degradedReason(metrics);
  return {
    endpoint: base,
    ready: ready.status === 200,
    readyDetail,
    metrics,
    rejected,
    ...(degraded ? { degraded } : {}),
  };
}

/** The "rejected" lines: how many leases are refused now and since start, and each one with its rule. */
function rejectedLines(st: NodeStatus): string[] {
  const total = Object.entries(st.metrics).filter(([k]) => k.startsWith("weft_leases_rejected_total"))
    .reduce((n, [, v]) => n + v, 0);
  const now = st.rejected ?? [];
  if (!now.length && !total) return [];
  const lines = [`rejected    ${now.length} leases now, ${total} rejections since start`];
  for (const r of now) lines.push(`  ${JSON.stringify(r.key)} ${r.reason}`);
  return lines;
}

/** Formats a status for people. */
export function formatStatus(st: NodeStatus): string {
  const ready = !st.ready ? `no (${st.readyDetail})` : st.degraded ? `degraded: ${st.degraded}` : "yes";
  const lines = [`agent       ${st.endpoint}`, `ready       ${ready}`];
  const get = (prefix: string) => Object.entries(st.metrics).find(([k]) => k.startsWith(prefix));
  const lease = Object.keys(st.metrics).find((k) => k.startsWith("weft_lease_info{"));
  if (lease) lines.push(`lease       ${lease.slice("weft_lease_info{".length, -1)}`);
  const expiry = get("weft_lease_expiry_timestamp_seconds");
  if (expiry && expiry[1] > 0) {
    const left = expiry[1] - Date.now() / 1000;
    lines.push(`expires     ${new Date(expiry[1] * 1000).toISOString()} (in ${(left / 3600).toFixed(1)} h)`);
  }
  const known = get("weft_leases_known");
  const programmed = get("weft_peers_programmed");
  if (known || programmed) {
    lines.push(`peers       ${programmed?.[1] ?? "?"} programmed / ${known?.[1] ?? "?"} leases known`);
  }
  const drift = get("weft_drift_repaired_total");
  if (drift) lines.push(`drift       ${drift[1]} entries repaired`);
  lines.push(...rejectedLines(st));
  lines.push("", "metrics:");
  for (const [k, v] of Object.entries(st.metrics).sort()) lines.push(`  ${k} ${v}`);
  return lines.join("\n");
}

/**
 * The agent's health flags, read as the agent reads them (flag, FLANNELD_* variable, the unit's env
 * file); without them, where weft's manifests put the endpoint (127.0.0.1:8471).
 */
const STATUS_FLAGS = AGENT_FLAGS.filter((f) => f.name === "healthz-ip" || f.name === "healthz-port").map((
  f,
) => ({
  ...f,
  default: f.name === "healthz-ip" ? "127.0.0.1" : "8471",
  help: f.name === "healthz-ip" ? "the agent's health address" : "the agent's health port",
}));

/** Registers `weft status`. */
export function registerStatus(program: Command): void {
  const cmd = program.command("status")
    .description("this node's lease, peers, drift repairs and readiness, from the local agent")
    .addHelpText("after", FLAG_SYNTAX_HELP);
  addEnvFileFlag(addFlags(cmd, STATUS_FLAGS))
    .option("--json", "print JSON")
    .action(async (flags) => {
      const opts = flags as typeof flags & { healthzIp: string; healthzPort: string };
      // The agent's 0.0.0.0 (every address) is reached on the loopback.
      const ip = opts.healthzIp === "0.0.0.0"
        ? "127.0.0.1"
        : opts.healthzIp === "::"
        ? "::1"
        : opts.healthzIp;
      const host = ip.includes(":") ? `[${ip}]` : ip;
      let st: NodeStatus;
      try {
        st = await fetchStatus(`http://${host}:${opts.healthzPort}`);
      } catch (err) {
        throw new CliError(
          `cannot reach the agent at ${host}:${opts.healthzPort} (${(err as Error).message}); ` +
            "is `weft agent` running with --healthz-port?",
        );
      }
      console.log(opts.json ? JSON.stringify(st, null, 2) : formatStatus(st));
      if (!st.ready) Deno.exitCode = 3;
      else if (st.degraded) Deno.exitCode = 4;
    });
}
