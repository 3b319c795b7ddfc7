/**
 * `weft doctor`: checks this node the way a support engineer would and prints each finding with a fix.
 * Exit code 0 when nothing failed, 1 otherwise.
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { DEFAULT_SUBNET_FILE } from "../../config/subnet_env.ts";
import { type Finding, runDoctor } from "./checks.ts";
import { envValue } from "../flags.ts";
import { addKubeFlags, kubeFlagValues, kubeMode, kubeOptionsFrom } from "../kube_flags.ts";

const MARK: Record<Finding["status"], string> = { ok: "✓", warn: "!", fail: "✗", skip: "-" };

/** Formats findings as the human-readable report. */
export function formatFindings(findings: Finding[]): string {
  const lines = findings.map((f) => {
    const head = `${MARK[f.status]} ${f.id.padEnd(12)} ${f.message}`;
    return f.fix && (f.status === "fail" || f.status === "warn") ? `${head}\n    fix: ${f.fix}` : head;
  });
  const count = (s: Finding["status"]) => findings.filter((f) => f.status === s).length;
  lines.push(
    "",
    `${count("ok")} ok, ${count("warn")} warnings, ${count("fail")} failures, ${count("skip")} skipped`,
  );
  return lines.join("\n");
}

/** Registers `weft doctor`. */
export function registerDoctor(program: Command): void {
  addKubeFlags(program.command("doctor"))
    .description(
      "check this node (sysctls, MTUs, offloads, subnet.env, etcd or the Kubernetes API) and suggest fixes",
    )
    .option(
      "--subnet-file <path>",
      "subnet.env to check",
      envValue("--subnet-file") ?? DEFAULT_SUBNET_FILE,
    )
    .option(
      "--etcd-endpoints <urls>",
      "comma-separated etcd endpoints (empty: skip etcd checks)",
      envValue("--etcd-endpoints") ?? "",
    )
    .option(
      "--etcd-prefix <prefix>",
      "etcd key prefix",
      envValue("--etcd-prefix") ?? "/coreos.com/network",
    )
    .option("--vni <n>", "VXLAN VNI (device flannel.<VNI>)", "1")
    .option("--port <n>", "VXLAN UDP port", "8472")
    .option("--max-skew <seconds>", "largest acceptable clock difference with etcd", "2")
    .option("--json", "print the findings as JSON")
    .action(async (opts) => {
      const findings = await runDoctor({
        subnetFile: opts.subnetFile,
        etcdEndpoints: opts.etcdEndpoints.split(",").map((s) => s.trim()).filter(Boolean),
        etcdPrefix: opts.etcdPrefix.replace(/\/$/, ""),
        vni: Number(opts.vni),
        port: Number(opts.port),
        maxSkewSeconds: Number(opts.maxSkew),
      });
      const kf = kubeFlagValues(opts);
      if (kubeMode(kf)) {
        const kube = await kubeOptionsFrom(kf);
        const { checkKube } = await import("./kube.ts");
        findings.push(
          ...await checkKube({
            ...kube,
            netConfPath: kube.netConfPath!,
            annotationPrefix: kube.annotationPrefix!,
          }),
        );
      }
      console.log(opts.json ? JSON.stringify({ findings }, null, 2) : formatFindings(findings));
      if (findings.some((f) => f.status === "fail")) Deno.exitCode = 1;
    });
}
