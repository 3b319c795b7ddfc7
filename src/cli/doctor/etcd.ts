/**
 * `weft doctor`'s etcd checks, through the agent's own etcd client (src/lease/etcd: the same TLS files,
 * username and password, the same error explanations), so the doctor sees etcd as the agent does: etcd
 * answers, the network config is there, this node's lease (named by subnet.env) exists, and the clocks
 * agree (etcd's HTTP `Date`, asked with the same CA and client certificate).
 *
 * @module
 */
import type { SubnetEnv } from "../../config/subnet_env.ts";
import { type EtcdOptions, explainEtcdError } from "../../lease/etcd/options.ts";
import { subnetKey } from "../../lease/lease.ts";
import type { Finding } from "./finding.ts";

/** What the etcd checks need. */
export interface EtcdCheckOptions {
  /** The connection, as the agent's flags give it. */
  etcd: EtcdOptions;
  /**
   * The endpoints are flanneld's default, not given by a flag, variable or env file: an etcd that does
   * not answer there is no failure (the node may run in kube mode, or the doctor was not told).
   */
  defaulted: boolean;
  /** Largest clock difference with etcd that is fine, in seconds. */
  maxSkewSeconds: number;
  /** `fetch` for the clock probe (tests may pass their own). */
  fetch?: typeof fetch;
}

const TIMEOUT_MS = 3000;

/** What the connection uses, for messages: "TLS, client certificate, user flannel". */
function described(o: EtcdOptions): string {
  const parts = [
    o.endpoints.some((e) => e.startsWith("https://")) ? "TLS" : "plain HTTP",
    ...(o.certFile ? ["client certificate"] : []),
    ...(o.username ? [`user ${o.username}`] : []),
  ];
  return parts.join(", ");
}

/** etcd's clock against ours, from the `Date` of `/version`; undefined when it cannot be asked. */
async function clockSkew(o: EtcdCheckOptions): Promise<number | undefined> {
  const ep = o.etcd.endpoints[0]?.replace(/\/$/, "");
  if (!ep) return undefined;
  const read = (f?: string) => f ? Deno.readTextFileSync(f) : undefined;
  let client: Deno.HttpClient | undefined;
  try {
    if (ep.startsWith("https://")) {
      const ca = read(o.etcd.caFile), cert = read(o.etcd.certFile), key = read(o.etcd.keyFile);
      client = Deno.createHttpClient({
        ...(ca ? { caCerts: [ca] } : {}),
        ...(cert && key ? { cert, key } : {}),
      });
    }
    const before = Date.now();
    const res = await (o.fetch ?? fetch)(`${ep}/version`, {
      signal: AbortSignal.timeout(TIMEOUT_MS),
      ...(client ? { client } : {}),
    });
    await res.body?.cancel();
    const date = res.headers.get("date");
    return date ? Math.abs(Date.parse(date) - (before + Date.now()) / 2) / 1000 : undefined;
  } catch {
    return undefined;
  } finally {
    client?.close();
  }
}

function skewFinding(skew: number, max: number): Finding {
  // The HTTP Date header has one-second resolution.
  return skew > max
    ? {
      id: "clock_skew",
      status: "warn",
      message: `clock differs from etcd's host by ~${skew.toFixed(1)} s: lease expiry times are misjudged`,
      fix: "enable time sync (systemd-timesyncd or chrony)",
    }
    : { id: "clock_skew", status: "ok", message: `clock within ~${Math.ceil(skew)} s of etcd's host` };
}

/** The node's lease (named by subnet.env) in etcd. */
async function leaseFinding(
  reg: { getSubnet(key: string): Promise<{ value: string } | undefined> },
  prefix: string,
  env: SubnetEnv,
): Promise<Finding> {
  const key = subnetKey(env.subnet, env.ipv6Subnet);
  const entry = await reg.getSubnet(key);
  if (!entry) {
    return {
      id: "lease",
      status: "fail",
      message: `subnet.env names ${key} but etcd has no lease ${prefix}/subnets/${key}: stale subnet.env`,
      fix: "restart the agent; it re-acquires a lease and rewrites subnet.env",
    };
  }
  let holder = "";
  try {
    holder = ` (PublicIP ${(JSON.parse(entry.value) as { PublicIP?: string }).PublicIP})`;
  } catch { /* the lease checks of `weft leases` report values that do not parse */ }
  return { id: "lease", status: "ok", message: `lease ${prefix}/subnets/${key} exists${holder}` };
}

/** etcd answers, the config and the node's lease are there, and the clocks agree. */
export async function checkEtcd(o: EtcdCheckOptions, env: SubnetEnv | undefined): Promise<Finding[]> {
  const { openEtcdRegistry } = await import("../../lease/etcd/mod.ts");
  const where = o.etcd.endpoints.join(",");
  const out: Finding[] = [];
  let reg;
  try {
    reg = await openEtcdRegistry({ ...o.etcd, timeoutMs: TIMEOUT_MS });
    const config = await reg.getConfig();
    out.push({ id: "etcd", status: "ok", message: `etcd answers at ${where} (${described(o.etcd)})` });
    out.push(
      config === undefined
        ? {
          id: "net_config",
          status: "fail",
          message: `no network config at ${o.etcd.prefix}/config: agents wait for it`,
          fix: "weft config set net-conf.json (with the same --etcd-* flags)",
        }
        : { id: "net_config", status: "ok", message: `network config at ${o.etcd.prefix}/config` },
    );
    if (env?.subnet) out.push(await leaseFinding(reg, o.etcd.prefix, env));
  } catch (err) {
    const why = explainEtcdError(err, o.etcd);
    if (!out.length) {
      return [
        o.defaulted ? { id: "etcd", status: "skip", message: `no etcd at the default ${where} (${why})` } : {
          id: "etcd",
          status: "fail",
          message: why,
          fix: "check --etcd-endpoints and the TLS/auth flags (as the agent has them), etcd and the firewall",
        },
      ];
    }
    out.push({ id: "lease", status: "skip", message: `cannot read the lease: ${why}` });
  } finally {
    await reg?.close();
  }
  const skew = await clockSkew(o);
  if (skew !== undefined) out.push(skewFinding(skew, o.maxSkewSeconds));
  return out;
}
