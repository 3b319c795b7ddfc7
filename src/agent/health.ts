/**
 * The agent's HTTP endpoint: `/healthz` (alive), `/readyz` (lease held, datapath applied, subnet.env
 * written: 200, else 503 with the reason), `/metrics` (Prometheus text).
 *
 * @module
 */
import type client from "prom-client";

/** Starts the server; returns it (shut it down with `shutdown()`). */
export function serveHealth(
  opts: { hostname: string; port: number },
  readiness: () => { ready: boolean; why: string },
  metrics: client.Registry,
): Deno.HttpServer {
  return Deno.serve({ hostname: opts.hostname, port: opts.port, onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/healthz") return new Response("ok\n");
    if (path === "/readyz") {
      const r = readiness();
      return new Response(`${r.ready ? "ready" : r.why}\n`, { status: r.ready ? 200 : 503 });
    }
    if (path === "/metrics") {
      return new Response(await metrics.metrics(), { headers: { "content-type": metrics.contentType } });
    }
    return new Response("not found\n", { status: 404 });
  });
}
