/**
 * The backend interface (flannel's Backend/Network split, adapted to the reconciler): a backend prepares
 * its device for the node's lease, says what to publish in the lease, and turns remote leases into
 * datapath entries. Backends never talk to etcd.
 *
 * @module
 */
import type { DatapathBackend } from "../datapath/reconciler.ts";
import type { Lease } from "../subnet/lease.ts";

/** A backend bound to one node. */
export interface Backend extends DatapathBackend {
  /** MTU for pods (FLANNEL_MTU). */
  readonly mtu: number;
  /** BackendData to publish in the node's lease. */
  backendData(): unknown;
  /** BackendV6Data to publish in a dual-stack lease (undefined: none, as host-gw). */
  backendV6Data?(): unknown;
  /** Binds the backend to the node's (new) lease: the device address follows the lease. */
  setLease(lease: Lease): void;
}

/** A locally administered, unicast random MAC. */
export function randomMac(): string {
  const b = crypto.getRandomValues(new Uint8Array(6));
  b[0] = (b[0]! & 0xfe) | 0x02;
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}
