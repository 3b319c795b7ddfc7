/**
 * `weft doctor`: checks this node the way a support engineer would and prints each finding with a fix.
 * Exit code 0 when nothing failed, 1 otherwise. It reads the agent's configuration as the agent does:
 * the same flags and `FLANNELD_*` variables, the unit's env file (env_file.ts), and etcd through the
 * agent's client (TLS, username and password).
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { DEFAULT_SUBNET_FILE } from "../../config/subnet_env.ts";
import { type Finding, runDoctor } from "./checks.ts";
import { AGENT_FLAGS } from "../agent_flags.ts";
import { addEnvFileFlag } from "../env_file.ts";
import { addEtcdFlags, etcdFlagValues, etcdOptionsFrom } from "../etcd_flags.ts";
import { addFlags, FLAG_SYNTAX_HELP } from "../flags.ts";
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

/** The agent's flags the doctor reads (same names, syntax and FLANNELD_* variables as the agent's). */
const DOCTOR_FLAGS = AGENT_FLAGS.filter((f) => f.name === "subnet-file");

/** Registers `weft doctor`. */
export function registerDoctor(program: Command): void {
  const cmd = program.command("doctor")
    .description(
      "check this node (sysctls, MTUs, offloads, subnet.env, etcd or the Kubernetes API) and suggest fixes",
    )
    .addHelpText("after", FLAG_SYNTAX_HELP);
  addEnvFileFlag(addFlags(addKubeFlags(addEtcdFlags(cmd)), DOCTOR_FLAGS))
    .option("--vni <n>", "VXLAN VNI (device flannel.<VNI>)", "1")
    .option("--port <n>", "VXLAN UDP port", "8472")
    .option("--max-skew <seconds>", "largest acceptable clock difference with etcd", "2")
    .option("--json", "print the findings as JSON")
    .option("--preflight", "only check that every library and helper binary each backend needs loads")
    .action(async (opts, command) => {
      if (opts.preflight) {
        const { runPreflight } = await import("./preflight.ts");
        const found = runPreflight();
        console.log(opts.json ? JSON.stringify({ findings: found }, null, 2) : formatFindings(found));
        if (found.some((f) => f.status === "fail")) Deno.exitCode = 1;
        return;
      }
      const kf = kubeFlagValues(opts);
      const kube = kubeMode(kf);
      const findings = await runDoctor({
        subnetFile: (opts as { subnetFile?: string }).subnetFile ?? DEFAULT_SUBNET_FILE,
        // In kube mode leases are in the API, not etcd; otherwise etcd through the agent's own client.
        ...(kube ? {} : {
          etcd: {
            etcd: etcdOptionsFrom(etcdFlagValues(opts)),
            defaulted: command.getOptionValueSource("etcdEndpoints") === "default",
            maxSkewSeconds: Number(opts.maxSkew),
          },
        }),
        vni: Number(opts.vni),
        port: Number(opts.port),
      });
      if (kube) {
        const k = await kubeOptionsFrom(kf);
        const { checkKube } = await import("./kube.ts");
        findings.push(
          ...await checkKube({ ...k, netConfPath: k.netConfPath!, annotationPrefix: k.annotationPrefix! }),
        );
      }
      console.log(opts.json ? JSON.stringify({ findings }, null, 2) : formatFindings(findings));
      if (findings.some((f) => f.status === "fail")) Deno.exitCode = 1;
    });
}
