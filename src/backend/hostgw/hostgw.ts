/**
 * The host-gw backend: a route to each remote subnet via the peer's PublicIP on the external interface
 * (and, dual-stack, to each remote IPv6 subnet via its PublicIPv6).
 * Needs every node on one L2 segment; refuses to start when the public IP is not the interface's own
 * (behind NAT the peers could not route to it).
 *
 * @module
 */
import type { Entry } from "../../datapath/entries.ts";
import type { DeviceChange } from "../../datapath/reconciler.ts";
import type { ExternalInterface } from "../../net/iface.ts";
import type { Lease } from "../../lease/lease.ts";
import type { Backend } from "../backend.ts";
import { routeViaPeer } from "../route_via.ts";

/** The host-gw backend. */
export class HostGwBackend implements Backend {
  readonly type = "host-gw";
  readonly mtu: number;

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

  /** host-gw has no device of its own; its routes do not depend on the own lease. */
  ensureDevice(_lease: Lease): DeviceChange {
    return "unchanged"; // routes only, on the external interface weft does not own
  }

  ownedDevices(): number[] {
    return [];
  }

  /** A route via the peer's PublicIP (and one via its PublicIPv6, dual-stack). */
  entriesFor(lease: Lease): Entry[] | undefined {
    const out: Entry[] = [];
    if (this.#v4 && lease.subnet) out.push(routeViaPeer(lease.subnet, lease.attrs.PublicIP, this.ext.index));
    if (this.#v6 && lease.ipv6Subnet && lease.attrs.PublicIPv6) {
      out.push(routeViaPeer(lease.ipv6Subnet, lease.attrs.PublicIPv6, this.ext.index));
    }
    return out.length ? out : undefined;
  }
}
