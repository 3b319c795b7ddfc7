/**
 * The node's own state, kept as it should be for the current lease: the backend's device, subnet.env
 * and the masquerade/forward rules. One {@linkcode NodeState.ensure} installs them for a new lease and
 * repairs them on every resync, as the reconciler repairs the peers' entries; the rules also have their
 * own pass every `--iptables-resync` ({@linkcode HostRules.run}).
 *
 * @module
 */
import type { Backend } from "../backend/backend.ts";
import type { NetworkConfig } from "../config/net_conf.ts";
import { formatSubnetEnv, type SubnetEnv, writeSubnetEnv } from "../config/subnet_env.ts";
import { HostRules } from "../datapath/host_rules.ts";
import type { MasqNets } from "../datapath/masq.ts";
import type { DeviceChange } from "../datapath/reconciler.ts";
import { log } from "../log.ts";
import type { Lease } from "../lease/lease.ts";
import type { AgentStatus } from "./status.ts";

const logger = log("agent");

/** Writes subnet.env when it is missing or differs; returns what it did. */
function ensureSubnetEnv(path: string, env: SubnetEnv): "unchanged" | "written" {
  const want = formatSubnetEnv(env);
  try {
    if (Deno.readTextFileSync(path) === want) return "unchanged";
  } catch { /* missing: write it */ }
  writeSubnetEnv(path, env);
  return "written";
}

/** What the node state is told (flanneld's flags). */
export interface NodeStateOptions {
  /** subnet.env path. */
  subnetFile: string;
  /** `--ip-masq`. */
  ipMasq: boolean;
  /** MASQUERADE `--random-fully` (false with `--ip-masq-fully-random-disable`). */
  ipMasqFullyRandom: boolean;
  /** `--iptables-forward-rules`. */
  iptablesForwardRules: boolean;
  /** Period of the rules' own pass, seconds (`--iptables-resync`). */
  iptablesResyncSeconds: number;
}

/** Device, subnet.env and rules of this node. */
export class NodeState {
  /** The masquerade/forward rules (their own pass runs every `--iptables-resync`). */
  readonly rules: HostRules;

  /**
   * @param backend the node's backend (its device)
   * @param cfg the network config
   * @param opts where subnet.env goes, and the rules' flags
   * @param status where the outcome is reported
   * @param overlays names of the devices peers' traffic comes through (for the host firewall check)
   */
  constructor(
    private readonly backend: Backend,
    private readonly cfg: NetworkConfig,
    private readonly opts: NodeStateOptions,
    private readonly status: AgentStatus,
    overlays: () => string[] = () => [],
  ) {
    this.rules = new HostRules({
      nftables: cfg.enableNFTables,
      ipMasq: opts.ipMasq,
      fullyRandom: opts.ipMasqFullyRandom,
      forwardRules: opts.iptablesForwardRules,
    }, overlays);
    this.rules.onPass = (st) => {
      status.rulesOk = st.ok;
      status.counters.rulesRepaired = st.repaired;
    };
    status.hostRules = () => this.rules.state;
  }

  /** The rules' own pass every `--iptables-resync` seconds, until `signal` aborts. */
  run(signal: AbortSignal): Promise<void> {
    return this.rules.run(this.opts.iptablesResyncSeconds, signal);
  }

  /**
   * Makes device, subnet.env and rules match `lease`. `newLease` says the lease just changed, so
   * rewriting is expected and no drift. Returns what the device took, or undefined when it could not
   * be ensured (logged; the next resync tries again). subnet.env and rules do not depend on the device.
   */
  ensure(lease: Lease, newLease = false): DeviceChange | undefined {
    let change: DeviceChange | undefined;
    try {
      change = this.backend.ensureDevice(lease);
    } catch (err) {
      logger.error("device: {error}", { error: (err as Error).message });
    }
    this.#subnetEnv(lease, newLease);
    this.#rules(lease);
    return change;
  }

  /**
   * Removes subnet.env while the lease is lost (`status.leaseLost`): the CNI plugin then answers "try
   * again later" instead of handing out addresses of a subnet that may be another node's now.
   */
  withdraw(): void {
    try {
      Deno.removeSync(this.opts.subnetFile);
      logger.warn("{file} withdrawn: {why}", {
        file: this.opts.subnetFile,
        why: this.status.leaseLost ?? "",
      });
    } catch { /* already gone */ }
    this.status.subnetEnvWritten = false;
  }

  #subnetEnv(l: Lease, expected: boolean): void {
    if (this.status.leaseLost) return this.withdraw();
    const { cfg } = this;
    const env: SubnetEnv = {
      ...(cfg.network ? { network: cfg.network } : {}),
      ...(l.subnet ? { subnet: l.subnet } : {}),
      ...(cfg.ipv6Network && l.ipv6Subnet ? { ipv6Network: cfg.ipv6Network, ipv6Subnet: l.ipv6Subnet } : {}),
      mtu: this.backend.mtu,
      ipMasq: this.opts.ipMasq,
    };
    try {
      const did = ensureSubnetEnv(this.opts.subnetFile, env);
      if (did === "written" && this.status.subnetEnvWritten && !expected) {
        this.status.counters.subnetEnvRewritten++;
        logger.warn("{file} was missing or altered: rewrote it", { file: this.opts.subnetFile });
      }
      this.status.subnetEnvWritten = true;
    } catch (err) {
      logger.error("writing {file}: {error}", { file: this.opts.subnetFile, error: (err as Error).message });
    }
  }

  #rules(l: Lease): void {
    const { cfg } = this;
    const nets: MasqNets[] = [
      ...(cfg.network && l.subnet ? [{ network: cfg.network, podSubnet: l.subnet }] : []),
      ...(cfg.ipv6Network && l.ipv6Subnet ? [{ network: cfg.ipv6Network, podSubnet: l.ipv6Subnet }] : []),
    ];
    if (!nets.length) {
      this.status.rulesOk = true;
      return;
    }
    this.rules.want(nets);
  }
}
