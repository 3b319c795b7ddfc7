/**
 * The backend interface (flannel's Backend/Network split, adapted to the reconciler): a backend keeps
 * its device in shape for the node's lease, says what to publish in the lease, and turns remote leases
 * into datapath entries. Backends never talk to a lease store.
 *
 * @module
 */
import type { DatapathBackend, DeviceChange } from "../datapath/reconciler.ts";
import type { Lease } from "../lease/lease.ts";
import { log } from "../log.ts";

/** A backend bound to one node. */
export interface Backend extends DatapathBackend {
  /** Backend type as net-conf names it, e.g. `vxlan`. */
  readonly type: string;
  /**
   * The `BackendType` its leases carry, when it differs from `type` (flannel's udp leases carry none,
   * so theirs is `""`). Peers' leases of any other BackendType are not this backend's.
   */
  readonly leaseType?: string;
  /** MTU for pods (FLANNEL_MTU). */
  readonly mtu: number;
  /** BackendData to publish in the node's lease. */
  backendData(): unknown;
  /** BackendV6Data to publish in a dual-stack lease (undefined: none, as host-gw). */
  backendV6Data?(): unknown;
  /**
   * Makes the device match the node's `lease` (its address follows the lease); `created` means every
   * peer's entries must be replayed. Backends without a device answer `unchanged`.
   */
  ensureDevice(lease: Lease): DeviceChange;
  /** Stops what the backend runs besides kernel state (a forwarding loop, a helper process). */
  close?(): Promise<void>;
  /** Counters of a packet loop the backend runs in the agent (udp), once it runs. */
  forwarderStats?(): ForwarderStats | undefined;
}

/**
 * A filter of peers' leases for `backend`: true for those it serves; other backends' leases are logged
 * once each and skipped (a mixed cluster during a migration).
 */
export function leaseFilterFor(backend: Backend): (lease: Lease) => boolean {
  const logger = log("backend", backend.type);
  const want = backend.leaseType ?? backend.type;
  const ignored = new Set<string>();
  return (lease) => {
    if (lease.attrs.BackendType === want) return true;
    if (!ignored.has(lease.key)) {
      ignored.add(lease.key);
      logger.info("ignoring lease {key}: backend {type}, not {want}", {
        key: lease.key,
        type: lease.attrs.BackendType || "(none)",
        want: want || "(none)",
      });
    }
    return false;
  };
}

/** Counters of a packet loop a backend runs in the agent (udp's), exported as metrics. */
export interface ForwarderStats {
  /** Packets read from the TUN device and sent to a peer. */
  tunToUdp: number;
  /** Datagrams received and written into the TUN device. */
  udpToTun: number;
  /** Packets from the TUN device for a destination no peer's subnet holds. */
  droppedNoPeer: number;
  /** Packets that were not IPv4 (or shorter than an IPv4 header). */
  droppedMalformed: number;
  /** Packets whose TTL ran out. */
  droppedTtl: number;
  /** Sends that failed (socket buffer full, unreachable peer) and TUN writes that found the queue full. */
  sendErrors: number;
  /** ICMP "network unreachable" messages sent back for packets without a peer. */
  netUnreachableSent: number;
  /** Times the loop woke up from poll(). */
  wakeups: number;
}
