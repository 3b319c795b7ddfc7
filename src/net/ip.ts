/**
 * IP addresses and networks for the rest of weft. The module itself is ffi/ip.ts: netlink takes and
 * returns addresses as bytes, so the address model sits below the FFI layer, which imports nothing from
 * src/. Everything above imports it from here.
 *
 * @module
 */
export * from "../../ffi/ip.ts";
