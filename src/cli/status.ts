/**
 * `weft status`: the local node as its agent sees it — lease, expiry, peers programmed vs leases known,
 * drift repaired, readiness — read from the agent's health endpoint (`/readyz`, `/metrics`).
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { parsePrometheusText } from "../agent/prometheus.ts";
import { CliError } from "./errors.ts";

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
  return { endpoint: base, ready: ready.status === 200, readyDetail, metrics, rejected };
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
  const lines = [`agent       ${st.endpoint}`, `ready       ${st.ready ? "yes" : `no (${st.readyDetail})`}`];
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

/** Registers `weft status`. */
export function registerStatus(program: Command): void {
  program.command("status")
    .description("this node's lease, peers, drift repairs and readiness, from the local agent")
    .option("--healthz-ip <ip>", "agent health address", Deno.env.get("FLANNELD_HEALTHZ_IP") ?? "127.0.0.1")
    .option("--healthz-port <port>", "agent health port", Deno.env.get("FLANNELD_HEALTHZ_PORT") ?? "8471")
    .option("--json", "print JSON")
    .action(async (opts) => {
      const host = opts.healthzIp.includes(":") ? `[${opts.healthzIp}]` : opts.healthzIp;
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
    });
}
