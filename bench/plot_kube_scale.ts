/**
 * Renders bench/kube_scale.ts's CSV as a PNG with gnuplot (apt `gnuplot-nox`), in the style of
 * bench/plot_agent_scale.ts: start → all routes, CPU under heartbeat churn and RSS against the number of
 * Nodes, weft beside flanneld (both measured in the same run), with the issue's goals as points (half
 * flanneld's start and churn CPU; half its RSS at 5000 Nodes) and the runtime floors (Deno with weft's
 * Kubernetes client loaded; loaded and watching one Node) under the RSS.
 *
 * Run: `deno run -A bench/plot_kube_scale.ts [FILE.csv] [--out FILE.png]`
 * (default: bench/results/kube_scale.csv → bench/results/kube_scale.png).
 *
 * @module
 */
import { parseCsv } from "./plot_agent_scale.ts";

/** The gnuplot program drawing `rows` into `out`, data files under `dir`. */
export function gnuplotScript(rows: Record<string, string>[], out: string, dir: string): string {
  const data = (name: string, cols: string[], f?: (r: Record<string, string>) => string[]) => {
    const path = `${dir}/${name}.dat`;
    const lines = rows.filter((r) => cols.every((c) => r[c] !== "" && r[c] !== undefined))
      .map((r) => (f ? f(r) : cols.map((c) => r[c]!)).join(" "));
    Deno.writeTextFileSync(path, lines.join("\n") + "\n");
    return `'${path}'`;
  };
  const half = (col: string) => (r: Record<string, string>) => [r.nodes!, String(Number(r[col]) / 2)];
  const panel = (title: string, ylabel: string, weft: string, flanneld: string, extra: string[] = []) =>
    [
      `set title '${title}'`,
      `set ylabel '${ylabel}'`,
      "set yrange [0:*]",
      `plot ${
        [
          `${data(`w_${weft}`, ["nodes", weft])} using 1:2 with linespoints lw 2 pt 7 title 'weft'`,
          `${
            data(`f_${flanneld}`, ["nodes", flanneld])
          } using 1:2 with linespoints lw 2 pt 5 title 'flanneld v0.20.2'`,
          ...extra,
        ].join(", \\\n  ")
      }`,
    ].join("\n");
  const goal = (col: string, only5000 = false) =>
    `${
      data(`g_${col}${only5000 ? "_5000" : ""}`, ["nodes", col], (r) =>
        only5000 && r.nodes !== "5000" ? ["", ""] : half(col)(r))
    } using 1:2 with points pt 3 ps 2 lw 2 title 'goal: ½ flanneld${only5000 ? " (5000)" : ""}'`;
  return [
    `set terminal pngcairo size 1500,500 font 'sans,10'`,
    `set output '${out}'`,
    "set multiplot layout 1,3 title 'kube mode vs number of realistic Nodes (about 13 KB each; medians, same run, noisy shared 2-core machine)'",
    "set xlabel 'Nodes'",
    "set key top left box opaque",
    "set grid",
    panel("start → all routes in the kernel", "seconds", "weft_start_s", "flanneld_start_s", [
      goal("flanneld_start_s"),
    ]),
    panel("CPU under 200 heartbeats/s for 30 s", "CPU seconds", "weft_churn_cpu_s", "flanneld_churn_cpu_s", [
      goal("flanneld_churn_cpu_s"),
    ]),
    panel("RSS, settled", "MB", "weft_rss_mb", "flanneld_rss_mb", [
      goal("flanneld_rss_mb", true),
      `${
        data("floor", ["nodes", "client_floor_mb"])
      } using 1:2 with lines dt 2 lw 2 lc rgb 'gray40' title 'Deno + weft kube client loaded'`,
      `${
        data("wfloor", ["nodes", "client_watching_floor_mb"])
      } using 1:2 with lines dt 3 lw 2 lc rgb 'black' title '… and watching one Node (TLS)'`,
    ]),
    "unset multiplot",
  ].join("\n");
}

if (import.meta.main) {
  const args = [...Deno.args];
  const o = args.indexOf("--out");
  const out = o >= 0 ? args.splice(o, 2)[1]! : new URL("results/kube_scale.png", import.meta.url).pathname;
  const csv = args[0] ?? new URL("results/kube_scale.csv", import.meta.url).pathname;
  const rows = parseCsv(await Deno.readTextFile(csv)).map((r) =>
    Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v ?? ""]))
  );
  const dir = await Deno.makeTempDir({ prefix: "weft-plot-kube-" });
  try {
    const script = gnuplotScript(rows, out, dir);
    const r = await new Deno.Command("gnuplot", { stdin: "piped", stderr: "piped" }).spawn();
    const w = r.stdin.getWriter();
    await w.write(new TextEncoder().encode(script));
    await w.close();
    const res = await r.output();
    if (!res.success) throw new Error(`gnuplot: ${new TextDecoder().decode(res.stderr)}`);
    console.log(`wrote ${out}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
