/**
 * The agent's HTTP endpoint: `/healthz` (alive), `/readyz` (lease held, datapath applied, subnet.env
 * written: 200, else 503 with the reason), `/metrics` (Prometheus text), on the hardened server of
 * http_server.ts (connection cap, header and idle timeouts, accept errors survived and counted).
 *
 * The flag's default address stays flanneld's `0.0.0.0` (scrapers written for flanneld find it), but the
 * shipped DaemonSets bind it to the node's own address (the pod IP with hostNetwork), where the cluster's
 * Prometheus and kubelet's probes reach it, and not the cni0 or overlay addresses (README, "Metrics and
 * monitoring"). The server is off unless `--healthz-port` is set, serves read-only data, and is bounded
 * (see http_server.ts), so no client can hurt the agent through it.
 *
 * @module
 */
import { type HttpServer, type HttpServerOptions, serveHttp } from "./http_server.ts";
import type { MetricsText } from "./metrics.ts";

/** Starts the server; returns it (shut it down with `shutdown()`). */
export function serveHealth(
  opts: HttpServerOptions,
  readiness: () => { ready: boolean; why: string },
  metrics: MetricsText,
): HttpServer {
  return serveHttp(opts, (req) => {
    if (req.path === "/healthz") return { status: 200, body: "ok\n" };
    if (req.path === "/readyz") {
      const r = readiness();
      return { status: r.ready ? 200 : 503, body: `${r.ready ? "ready" : r.why}\n` };
    }
    if (req.path === "/metrics") {
      return { status: 200, headers: { "Content-Type": metrics.contentType }, body: metrics.metrics() };
    }
    return { status: 404, body: "not found\n" };
  });
}
