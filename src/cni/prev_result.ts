/**
 * A chained plugin's `prevResult`, checked against the spec's result shape before ADD passes it on or
 * CHECK compares the container against it: anything else is code 7 naming the field, never a TypeError
 * (`{"ips": [null]}` once crashed CHECK with code 101).
 *
 * @module
 */
import { tryParseIP } from "../net/ip.ts";
import { CNI_ERR, CniError, type Result, type ResultInterface, type ResultIP } from "./types.ts";

function bad(path: string, what: string, v: unknown): never {
  let shown: string;
  try {
    shown = JSON.stringify(v) ?? String(v);
  } catch {
    shown = String(v);
  }
  if (shown.length > 80) shown = `${shown.slice(0, 77)}...`;
  throw new CniError(
    CNI_ERR.INVALID_CONFIG,
    `config: prevResult${path ? `.${path}` : ""} must be ${what}, not ${shown}`,
  );
}

function obj(v: unknown, path: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) bad(path, "an object", v);
  return v as Record<string, unknown>;
}

function list(o: Record<string, unknown>, key: string): unknown[] {
  const v = o[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) bad(key, "a list", v);
  return v;
}

function str(o: Record<string, unknown>, key: string, path: string, required: boolean): string | undefined {
  const v = o[key];
  if (v === undefined || (v === null && !required)) {
    if (required) bad(`${path}.${key}`, "a string", v);
    return undefined;
  }
  if (typeof v !== "string") bad(`${path}.${key}`, "a string", v);
  return v;
}

function cidr(v: string, path: string): string {
  const slash = v.indexOf("/");
  const prefix = Number(v.slice(slash + 1));
  const ip = slash > 0 ? tryParseIP(v.slice(0, slash)) : undefined;
  if (!ip || !/^\d{1,3}$/.test(v.slice(slash + 1)) || prefix > (ip.family === 4 ? 32 : 128)) {
    bad(path, "an address with a prefix (e.g. 10.244.3.5/24)", v);
  }
  return v;
}

function ipAddr(v: string, path: string): string {
  if (!tryParseIP(v)) bad(path, "an IP address", v);
  return v;
}

/** Checks `prevResult` (any supported version's shape) and returns it as weft's 1.x-shaped result. */
export function parsePrevResult(v: unknown): Result {
  const o = obj(v, "");
  const interfaces: ResultInterface[] = list(o, "interfaces").map((x, i) => {
    const p = `interfaces[${i}]`;
    const e = obj(x, p);
    const out: ResultInterface = { name: str(e, "name", p, true)!, mac: str(e, "mac", p, false) ?? "" };
    if (e.mtu !== undefined && e.mtu !== null) {
      if (typeof e.mtu !== "number" || !Number.isInteger(e.mtu) || e.mtu < 0) {
        bad(`${p}.mtu`, "an integer", e.mtu);
      }
      out.mtu = e.mtu;
    }
    const sandbox = str(e, "sandbox", p, false);
    if (sandbox !== undefined) out.sandbox = sandbox;
    return out;
  });
  const ips: ResultIP[] = list(o, "ips").map((x, i) => {
    const p = `ips[${i}]`;
    const e = obj(x, p);
    const out: ResultIP = { address: cidr(str(e, "address", p, true)!, `${p}.address`) };
    const gw = str(e, "gateway", p, false);
    if (gw !== undefined) out.gateway = ipAddr(gw, `${p}.gateway`);
    if (e.interface !== undefined && e.interface !== null) {
      const n = e.interface;
      if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n >= Math.max(interfaces.length, 1)) {
        bad(`${p}.interface`, `an index into interfaces (0–${Math.max(interfaces.length - 1, 0)})`, n);
      }
      out.interface = n;
    }
    return out;
  });
  const routes = list(o, "routes").map((x, i) => {
    const p = `routes[${i}]`;
    const e = obj(x, p);
    const r: { dst: string; gw?: string } = { dst: cidr(str(e, "dst", p, true)!, `${p}.dst`) };
    const gw = str(e, "gw", p, false);
    if (gw !== undefined) r.gw = ipAddr(gw, `${p}.gw`);
    return r;
  });
  const dns = o.dns === undefined || o.dns === null ? {} : obj(o.dns, "dns");
  return { interfaces, ips, routes, dns };
}
