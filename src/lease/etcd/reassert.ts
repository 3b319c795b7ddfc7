/**
 * Defending the own lease: when somebody else overwrites this node's key (another PublicIP, another
 * VtepMAC — peers would send this node's pod traffic elsewhere), the node writes its own value back,
 * under the same key (the same subnet), and says so. flanneld neither notices nor reasserts.
 *
 * Overwritten, not re-created: a put over the key keeps its create revision, a delete and a new create
 * change it. A key with another create revision was given up and taken by a new owner (the allocation
 * hands out free subnets), so the node re-acquires elsewhere instead of fighting; a key deleted is not
 * recreated here either (that is the lease keeper's re-acquisition, which takes the same subnet when it
 * is free). The write is a compare-and-put on the value seen, so a second change racing it is read and
 * judged again. The reasserted lease keeps its create revision, so it stays the older one in conflicts
 * (lease_filter.ts).
 *
 * @module
 */
import { log } from "../../log.ts";
import { type Lease, type LeaseAttrs, leaseAttrsJSON, parseLeaseAttrs, vtepMac } from "../lease.ts";
import type { Registry, RegistryEntry } from "./registry.ts";
import { quoteForLog } from "../validate.ts";

const logger = log("subnet", "own");

/** What {@linkcode reassertOwnLease} found and did. */
export type ReassertOutcome =
  /** The key holds this node's value: nothing to do. */
  | { outcome: "intact" }
  /** The key is gone (deleted or expired): the keeper re-acquires. */
  | { outcome: "gone" }
  /** The key held another value; this node's value is back, as `lease` (a new store lease id). */
  | { outcome: "reasserted"; lease: Lease; overwritten: string };

/** Who overwrote the lease, in a few words (`PublicIP 192.168.77.66, VtepMAC …`), or the raw value. */
export function describeValue(value: string): string {
  let a: LeaseAttrs;
  try {
    a = parseLeaseAttrs(value);
  } catch {
    return `value ${quoteForLog(value, 80)}`;
  }
  const mac = vtepMac(a.BackendData);
  return `PublicIP ${quoteForLog(String(a.PublicIP), 60)}${
    typeof mac === "string" ? `, VtepMAC ${quoteForLog(mac, 40)}` : ""
  }, BackendType ${quoteForLog(String(a.BackendType), 20)}`;
}

function sameValue(stored: string, ours: LeaseAttrs): boolean {
  try {
    return leaseAttrsJSON(parseLeaseAttrs(stored)) === leaseAttrsJSON(ours);
  } catch {
    return false;
  }
}

function toOwnLease(own: Lease, e: RegistryEntry): Lease {
  const l: Lease = { ...own, attrs: own.attrs };
  delete l.expiration;
  delete l.etcdLeaseId;
  if (e.expiration) l.expiration = e.expiration;
  if (e.leaseId) l.etcdLeaseId = e.leaseId;
  if (e.createRevision !== undefined) l.createOrder = e.createRevision;
  return l;
}

/**
 * Checks the own key and writes `own`'s value back when another value is there. A lease with a TTL is
 * re-put with a fresh TTL (`ttlSeconds`), a reservation stays a reservation. Throws on store errors
 * (the caller retries at the next resync).
 */
export async function reassertOwnLease(
  registry: Registry,
  own: Lease,
  ttlSeconds: number,
): Promise<ReassertOutcome> {
  const value = leaseAttrsJSON(own.attrs);
  for (let attempt = 0; attempt < 3; attempt++) {
    const cur = await registry.getSubnet(own.key);
    if (!cur) return { outcome: "gone" };
    if (sameValue(cur.value, own.attrs)) return { outcome: "intact" };
    // Deleted and created again (another create revision): a new owner took a free subnet, as the
    // allocation allows — not an overwrite. This node re-acquires elsewhere instead of fighting.
    if (
      own.createOrder !== undefined && cur.createRevision !== undefined &&
      cur.createRevision !== own.createOrder
    ) {
      return { outcome: "gone" };
    }
    const overwritten = describeValue(cur.value);
    if (!own.etcdLeaseId) {
      // A reservation has no lease to compare-and-put with; a plain put keeps it a reservation.
      await registry.reserveSubnet(own.key, value);
      logger.warn("own reservation {key} was overwritten ({by}): wrote this node's value back", {
        key: own.key,
        by: overwritten,
      });
      return { outcome: "reasserted", lease: toOwnLease(own, { key: own.key, value }), overwritten };
    }
    const e = await registry.renewSubnet(own.key, value, ttlSeconds, cur.value, own.etcdLeaseId);
    if (e) {
      logger.warn("own lease {key} was overwritten ({by}): wrote this node's value back", {
        key: own.key,
        by: overwritten,
      });
      return { outcome: "reasserted", lease: toOwnLease(own, e), overwritten };
    }
    // Changed again between the read and the write: look again.
  }
  throw new Error(`own lease ${own.key}: its value keeps changing; reasserting it again at the next resync`);
}
