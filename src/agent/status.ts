/**
 * What the agent knows about itself, in one place: the lease, whether the lease store answers, what is
 * in place (device, subnet.env, rules, first datapath pass) and the counters. Readiness and the metrics
 * are read from it; the owners (start-up, node state, peer sync, store health) write to it.
 *
 * @module
 */
import type { HostRulesState } from "../datapath/host_rules.ts";
import type { ReconcileStats } from "../datapath/reconciler.ts";
import type { ForwarderStats } from "../backend/backend.ts";
import { formatNet } from "../net/ip.ts";
import type { Lease } from "../lease/lease.ts";
import type { RejectedLease } from "../lease/lease_filter.ts";
import type { LeaseRule } from "../lease/validate.ts";
import type { HttpServerStats } from "./http_server.ts";
import type { AgentCounters, AgentView } from "./metrics.ts";

/** Whether subnet.env is where the agent writes it (unknown path: no). */
function subnetEnvPresent(path: string | undefined): boolean {
  if (!path) return false;
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** The agent's state as its owners report it. */
export class AgentStatus {
  /** The own lease, once acquired. */
  lease: Lease | undefined;
  /** The backend type, once chosen. */
  backendType = "";
  #storeUp = false;
  #storeSince = new Date();
  /** subnet.env's path, once known (the metrics check it is there). */
  subnetFile: string | undefined;
  /** The store answers but refuses the agent (credentials, RBAC): what to fix. */
  storeRefused: string | undefined;
  /** Why start-up is still waiting for its lease (the last failed store call). */
  waiting: string | undefined;
  /** Why the own lease is gone now (Kubernetes: the Node was deleted); subnet.env is withdrawn meanwhile. */
  leaseLost: string | undefined;
  /** subnet.env written at least once. */
  subnetEnvWritten = false;
  /** Masquerade/forward rules as they should be. */
  rulesOk = false;
  /** The first full datapath pass after the first complete list of leases is done. */
  datapathApplied = false;
  /** Counters kept outside the reconciler. */
  readonly counters: AgentCounters = { rulesRepaired: 0, subnetEnvRewritten: 0, leaseReacquired: 0 };
  /** Reconciler counters, once it exists. */
  stats: () => ReconcileStats | undefined = () => undefined;
  /** Leases of other nodes wanted now. */
  leasesKnown: () => number = () => 0;
  /** Lease renewals so far. */
  renewals: () => number = () => 0;
  /** The backend's packet loop counters (udp), if it runs one. */
  forwarder: () => ForwarderStats | undefined = () => undefined;
  /** Times the own value was written back over somebody else's. */
  reasserted: () => number = () => 0;
  /** Routes refused because the destination holds a route weft does not own. */
  routesRefused: () => number = () => 0;
  /** Leases refused (per rule since start, and now). */
  rejected: () => { total: ReadonlyMap<LeaseRule, number>; current: RejectedLease[] } = () => ({
    total: new Map(),
    current: [],
  });
  /** The health server's counters. */
  http: () => HttpServerStats | undefined = () => undefined;
  /** The masquerade/forward rules: where they live, writes, what on the host drops pod traffic. */
  hostRules: () => HostRulesState | undefined = () => undefined;
  /** With `--network-policy`: whether the first policy rule set is installed. */
  policyEnforced: () => boolean = () => true;

  /** @param storeKind the lease store's kind (`etcd`, `kube`) */
  constructor(readonly storeKind = "etcd") {}

  /** Whether the lease store answered last time. */
  get storeUp(): boolean {
    return this.#storeUp;
  }

  /** Records the store's last answer (or failure); a change starts a new "since". */
  set storeUp(up: boolean) {
    if (up === this.#storeUp) return;
    this.#storeUp = up;
    this.#storeSince = new Date();
  }

  /** Since when the store has been unreachable (it has not answered yet: since the agent started). */
  get storeDownSince(): Date | undefined {
    return this.#storeUp ? undefined : this.#storeSince;
  }

  /** Ready when every part is in place; otherwise the first missing part. */
  readiness(): { ready: boolean; why: string } {
    if (this.storeRefused) return { ready: false, why: this.storeRefused };
    if (!this.lease) {
      return { ready: false, why: this.waiting ? `no lease yet: ${this.waiting}` : "no lease yet" };
    }
    if (this.leaseLost) return { ready: false, why: this.leaseLost };
    if (!this.datapathApplied) return { ready: false, why: "datapath not applied yet" };
    if (!this.subnetEnvWritten) return { ready: false, why: "subnet.env not written" };
    if (!this.rulesOk) return { ready: false, why: "masquerade/forward rules not installed" };
    if (!this.policyEnforced()) return { ready: false, why: "network policies not enforced yet" };
    return { ready: true, why: "" };
  }

  /** The view the metrics read at scrape time. */
  view(): AgentView {
    return {
      stats: () => this.stats(),
      leasesKnown: () => this.leasesKnown(),
      lease: () => {
        const l = this.lease;
        if (!l?.subnet) return undefined;
        return {
          subnet: formatNet(l.subnet),
          publicIP: l.attrs.PublicIP,
          backend: this.backendType,
          ...(l.expiration ? { expiresAt: l.expiration } : {}),
        };
      },
      storeUp: () => this.storeUp,
      storeDownSince: () => this.storeDownSince,
      store: () => this.storeKind,
      backend: () => this.backendType,
      subnetEnvPresent: () => subnetEnvPresent(this.subnetFile),
      ready: () => this.readiness().ready,
      renewals: () => this.renewals(),
      forwarder: () => this.forwarder(),
      counters: () => this.counters,
      reasserted: () => this.reasserted(),
      routesRefused: () => this.routesRefused(),
      rejected: () => this.rejected(),
      http: () => this.http(),
      hostRules: () => this.hostRules(),
    };
  }
}
