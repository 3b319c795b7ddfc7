/**
 * The host-gw backend: a route to each remote subnet via the peer's PublicIP on the external interface
 * (and, dual-stack, to each remote IPv6 subnet via its PublicIPv6).
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

  readonly #v4: boolean;
  readonly #v6: boolean;

  /** Binds to `ext`; throws when its public IP (of a family served) is not on it. */
  constructor(private readonly ext: ExternalInterface, families: { ipv4?: boolean; ipv6?: boolean } = {}) {
    this.#v4 = families.ipv4 ?? true;
    this.#v6 = families.ipv6 ?? false;
    if (this.#v6 && !(ext.cidrs6 ?? []).some((c) => c.split("/")[0] === ext.publicIPv6)) {
      throw new Error(
        `host-gw: EnableIPv6 is set but the public IPv6 ${ext.publicIPv6 ?? "(none)"} is not a global ` +
          `address of ${ext.name}; host-gw needs the nodes on one L2 network without NAT`,
      );
    }
    if (this.#v4 && !ext.cidrs.some((c) => c.split("/")[0] === ext.publicIP)) {
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
    const out: Entry[] = [];
    if (this.#v4 && lease.subnet) {
      out.push({
        kind: "route",
        spec: { dst: formatNet(lease.subnet), gateway: lease.attrs.PublicIP, dev: this.ext.index },
      });
    }
    if (this.#v6 && lease.ipv6Subnet && lease.attrs.PublicIPv6) {
      out.push({
        kind: "route",
        spec: { dst: formatNet(lease.ipv6Subnet), gateway: lease.attrs.PublicIPv6, dev: this.ext.index },
      });
    }
    return out.length ? out : undefined;
  }
}
