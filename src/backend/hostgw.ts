/**
 * The host-gw backend: a route to each remote subnet via the peer's PublicIP on the external interface.
 * Needs every node on one L2 segment; refuses to start when the public IP is not the interface's own
 * (behind NAT the peers could not route to it).
 *
 * @module
 */
import type { Entry } from "../datapath/entries.ts";
import type { DeviceChange } from "../datapath/reconciler.ts";
import { log } from "../log.ts";
import { formatNet } from "../net/ip.ts";
import type { Lease } from "../subnet/lease.ts";
import type { ExternalInterface } from "../agent/iface.ts";
import type { Backend } from "./backend.ts";

const logger = log("backend", "host-gw");

/** The host-gw backend. */
export class HostGwBackend implements Backend {
  readonly type = "host-gw";
  readonly mtu: number;
  #ignored = new Set<string>();

  /** Binds to `ext`; throws when its public IP is not on it. */
  constructor(private readonly ext: ExternalInterface) {
    if (!ext.cidrs.some((c) => c.split("/")[0] === ext.publicIP)) {
      throw new Error(
        `host-gw: the public IP ${ext.publicIP} is not an address of ${ext.name} (${
          ext.cidrs.join(", ")
        }); ` +
          "host-gw needs the nodes on one L2 network without NAT — use the vxlan backend instead",
      );
    }
    this.mtu = ext.mtu;
  }

  backendData(): unknown {
    return null;
  }

  /** Routes do not depend on the own lease. */
  setLease(_lease: Lease): void {}

  /** host-gw has no device of its own. */
  ensureDevice(): DeviceChange {
    return "unchanged"; // routes only, on the external interface weft does not own
  }

  ownedDevices(): number[] {
    return [];
  }

  /** A route via the peer's PublicIP; other backends' leases are ignored. */
  entriesFor(lease: Lease): Entry[] | undefined {
    if (lease.attrs.BackendType !== "host-gw") {
      if (!this.#ignored.has(lease.key)) {
        this.#ignored.add(lease.key);
        logger.info("ignoring lease {key}: backend {type}, not host-gw", {
          key: lease.key,
          type: lease.attrs.BackendType,
        });
      }
      return undefined;
    }
    if (!lease.subnet) return undefined;
    return [{
      kind: "route",
      spec: { dst: formatNet(lease.subnet), gateway: lease.attrs.PublicIP, dev: this.ext.index },
    }];
  }
}
