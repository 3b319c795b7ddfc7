/**
 * The node's side of lease guarding: what the node-specific lease rules see of it (its subnets, its
 * addresses, its VTEP MACs, read again at each full pass), and what it does when the store shows another
 * value under its own key (somebody overwrote it): log it and have the keeper write the own value back.
 *
 * @module
 */
import type { Netlink } from "../../ffi/mod.ts";
import { log } from "../log.ts";
import type { IPNet } from "../net/ip.ts";
import { type Lease, type LeaseAttrs, leaseAttrsJSON, vtepMac } from "../lease/lease.ts";
import type { OwnLeaseKeeper } from "../lease/source.ts";
import type { NodeFacts } from "../lease/validate.ts";
import { readNodeFacts } from "./node_facts.ts";

const logger = log("agent");

/** Reads this node's facts for the lease rules: `lease()` is the current own lease. */
export function nodeFactsOf(nl: Netlink, attrs: LeaseAttrs, lease: () => Lease | undefined): () => NodeFacts {
  const vtepMacs = [vtepMac(attrs.BackendData), vtepMac(attrs.BackendV6Data)]
    .filter((m): m is string => typeof m === "string");
  return () => {
    const l = lease();
    return readNodeFacts(nl, {
      subnets: [l?.subnet, l?.ipv6Subnet].filter((n): n is IPNet => !!n),
      vtepMacs,
    });
  };
}

/**
 * Handles a change of the own key seen by the watch: deleted → the keeper re-acquires; another value
 * (another PublicIP, another MAC, garbage) → logged and the keeper writes the own value back.
 */
export function onOwnLeaseChange(
  keeper: Pick<OwnLeaseKeeper, "lease" | "poke">,
  kind: string,
): (type: "added" | "removed", seen: Lease) => void {
  return (type, seen) => {
    if (type === "removed") {
      logger.warn("own lease {key} was deleted in the {kind} store: re-acquiring", { key: seen.key, kind });
    } else if (leaseAttrsJSON(seen.attrs) !== leaseAttrsJSON(keeper.lease.attrs)) {
      logger.warn("own lease {key} was overwritten in the {kind} store (PublicIP {ip}): writing it back", {
        key: seen.key,
        kind,
        ip: seen.attrs.PublicIP,
      });
    } else {
      return; // our own write (a renewal, or the value written back)
    }
    keeper.poke();
  };
}
