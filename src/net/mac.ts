/**
 * MAC addresses weft makes up itself: the VXLAN device's VTEP MAC and the CNI bridge's MAC.
 *
 * @module
 */

/**
 * A random MAC that is unicast (I/G bit 0) and locally administered (U/L bit 1), so it can never equal a
 * vendor-assigned address or be taken for a multicast group, e.g. `"4a:0f:9c:21:d3:70"`.
 */
export function randomMac(): string {
  const b = crypto.getRandomValues(new Uint8Array(6));
  b[0] = (b[0]! & 0xfe) | 0x02;
  let out = "";
  for (let i = 0; i < 6; i++) out += (i ? ":" : "") + (b[i]! < 16 ? "0" : "") + b[i]!.toString(16);
  return out;
}
