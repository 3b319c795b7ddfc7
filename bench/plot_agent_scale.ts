/**
 * Renders bench/agent_scale.ts's CSV as a PNG with gnuplot (apt `gnuplot-nox`): RSS, start → all
 * routes and CPU seconds against the number of peers, one line per CSV given (e.g. before and after a
 * change), with the references of the last CSV (`ip -batch`, empty Deno, Deno + npm:etcd3) and
 * flanneld's figures (shared/ANCHORS.md §7) as points.
 *
 * Run: `deno run -A bench/plot_agent_scale.ts [LABEL=]FILE.csv… [--out FILE.png]`
 * (default: bench/results/agent_scale.csv → bench/results/agent_scale.png).
 *
 * @module
 */

/** One CSV of bench/agent_scale.ts, as rows of named columns. */
export function parseCsv(text: string): Record<string, string>[] {
  const [head, ...lines] = text.trim().split("\n");
  const cols = head!.split(",");
  return lines.map((l) => Object.fromEntries(l.split(",").map((v, i) => [cols[i]!, v])));
}

/** The gnuplot program drawing `series` (label → rows) into `out`, data files under `dir`. */
export function gnuplotScript(
  series: [string, Record<string, string>[]][],
  out: string,
  dir: string,
): string {
  const files: string[] = [];
  const data = (name: string, rows: Record<string, string>[], cols: string[]) => {
    const path = `${dir}/${name}.dat`;
    const lines = rows.filter((r) => cols.every((c) => r[c] !== "" && r[c] !== undefined))
      .map((r) => cols.map((c) => r[c]).join(" "));
    Deno.writeTextFileSync(path, lines.join("\n") + "\n");
    files.push(path);
    return `'${path}'`;
  };
  const ref = series.at(-1)![1];
  // The issue's goals as points: flanneld's figure times the allowed ratio, where the issue sets one.
  const goals: Record<string, Record<number, number>> = {
    flanneld_rss_mb: { 5000: 1.5 },
    flanneld_start_s: { 1000: 0.5, 5000: 0.3 },
    flanneld_cpu_s: { 5000: 0.5 },
  };
  const goalRows = (flanneld: string) =>
    ref.filter((r) => goals[flanneld]![Number(r.peers)] !== undefined && r[flanneld])
      .map((r) => ({
        peers: r.peers!,
        goal: String(Number(r[flanneld]) * goals[flanneld]![Number(r.peers)]!),
      }));
  const panel = (title: string, ylabel: string, col: string, refs: [string, string][], flanneld: string) => {
    const plots = series.map(([label, rows], i) =>
      `${
        data(`s${i}_${col}`, rows, ["peers", col])
      } using 1:2 with linespoints lw 2 pt 7 title 'weft: ${label}'`
    );
    for (const [rcol, rlabel] of refs) {
      plots.push(
        `${data(`ref_${rcol}`, ref, ["peers", rcol])} using 1:2 with linespoints dt 2 title '${rlabel}'`,
      );
    }
    plots.push(
      `${
        data(`fl_${flanneld}`, ref, ["peers", flanneld])
      } using 1:2 with points pt 5 ps 1.5 title 'flanneld v0.20.2 (same method)'`,
      `${
        data(`goal_${flanneld}`, goalRows(flanneld), ["peers", "goal"])
      } using 1:2 with points pt 3 ps 2 lw 2 ` +
        `title 'goal (issue 15)'`,
    );
    return [
      `set title '${title}'`,
      `set ylabel '${ylabel}'`,
      "set yrange [0:*]",
      `plot ${plots.join(", \\\n  ")}`,
    ].join("\n");
  };
  return [
    `set terminal pngcairo size 1500,500 font 'sans,10'`,
    `set output '${out}'`,
    "set multiplot layout 1,3 title 'weft agent vs number of peers (medians; noisy shared 2-core machine)'",
    "set xlabel 'peers'",
    "set key top left box opaque",
    "set grid",
    "set xrange [0:10500]",
    "set offsets 0, 0, graph 0.6, 0",
    panel("RSS, settled", "MB", "agent_rss_mb", [
      ["empty_deno_rss_mb", "empty Deno script"],
      ["deno_etcd3_rss_mb", "Deno + import npm:etcd3"],
      ["ip_batch_rss_mb", "ip -batch (peak)"],
    ], "flanneld_rss_mb"),
    panel(
      "start → all routes in the kernel",
      "s",
      "agent_start_s",
      [["ip_batch_s", "ip/bridge -batch"]],
      "flanneld_start_s",
    ),
    panel(
      "CPU seconds to all routes",
      "s",
      "agent_cpu_s",
      [["ip_batch_cpu_s", "ip/bridge -batch"]],
      "flanneld_cpu_s",
    ),
    "unset multiplot",
  ].join("\n");
}

if (import.meta.main) {
  const args = [...Deno.args];
  const oi = args.indexOf("--out");
  let out = new URL("results/agent_scale.png", import.meta.url).pathname;
  if (oi >= 0) {
    out = args[oi + 1]!;
    args.splice(oi, 2);
  }
  if (!args.length) args.push(new URL("results/agent_scale.csv", import.meta.url).pathname);
  const series: [string, Record<string, string>[]][] = args.map((a) => {
    const eq = a.indexOf("=");
    const [label, file] = eq > 0
      ? [a.slice(0, eq), a.slice(eq + 1)]
      : [a.split("/").at(-1)!.replace(/\.csv$/, ""), a];
    return [label, parseCsv(Deno.readTextFileSync(file))];
  });
  const dir = await Deno.makeTempDir({ prefix: "weft-plot-" });
  try {
    const script = gnuplotScript(series, out, dir);
    const r = new Deno.Command("gnuplot", { stdin: "piped", stdout: "inherit", stderr: "piped" }).spawn();
    const w = r.stdin.getWriter();
    await w.write(new TextEncoder().encode(script + "\n"));
    await w.close();
    const res = await r.output();
    if (res.code !== 0) {
      console.error(
        `gnuplot failed (install it: apt-get install gnuplot-nox):\n${new TextDecoder().decode(res.stderr)}`,
      );
      Deno.exit(1);
    }
    console.log(`wrote ${out}`);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
