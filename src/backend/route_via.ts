/**
 * The route host-gw installs for every peer, and vxlan with DirectRouting for peers on its own L2:
 * the peer's subnet via its public address on the external interface (flannel's shared route network).
 *
 * @module
 */
import type { Entry } from "../datapath/entries.ts";
import { formatNet, type IPNet } from "../net/ip.ts";

/** `subnet via gateway dev <ifindex>`. */
export function routeViaPeer(subnet: IPNet, gateway: string, dev: number): Entry {
  return { kind: "route", spec: { dst: formatNet(subnet), gateway, dev } };
}
