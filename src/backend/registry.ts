/**
 * The backends weft knows, by net-conf `Backend.Type`: each parses its own options (so a bad option is
 * rejected with its key when the config is written or read) and builds itself for one node.
 *
 * @module
 */
import type { Netlink } from "../../ffi/mod.ts";
import { BackendOptionReader, ConfigError, type NetworkConfig } from "../config/net_conf.ts";
import type { ExternalInterface } from "../net/iface.ts";
import type { IPNet } from "../net/ip.ts";
import { type LeaseAttrs, vtepMac } from "../lease/lease.ts";
import type { Backend } from "./backend.ts";
import { parseVxlanOptions } from "./vxlan/options.ts";
import { parseUdpOptions } from "./udp/options.ts";
import { parseWireguardOptions } from "./wireguard/options.ts";

/** What a backend is built from. */
export interface BackendContext {
  /** Netlink handle in the node's namespace. */
  nl: Netlink;
  /** The external interface. */
  ext: ExternalInterface;
  /** The address families the network serves. */
  families: { ipv4: boolean; ipv6: boolean };
  /** This node's previous lease attributes, if any (stable VTEP MACs, keys). */
  previous?: LeaseAttrs;
  /** The cluster networks (udp and wireguard route the whole network through their device). */
  networks?: { ipv4?: IPNet; ipv6?: IPNet };
}

function network(ctx: BackendContext, type: string): IPNet {
  const n = ctx.networks?.ipv4;
  if (!n) throw new Error(`the ${type} backend needs an IPv4 Network`);
  return n;
}

/** One backend type: its option parser and its constructor. */
export interface BackendKind<O = unknown> {
  /** `Backend.Type`, lowercase. */
  type: string;
  /** Parses `Backend.*`; throws ConfigError naming the key. */
  parseOptions(o: BackendOptionReader): O;
  /**
   * Builds the backend for one node. Each backend's module is imported here, when it is built: an
   * agent holds the one backend it runs, not all four (wireguard's alone pulls in Node's crypto, a few
   * MB of an agent's memory; bench/kube_scale.ts, BENCHMARKS.md).
   */
  create(ctx: BackendContext, opts: O): Promise<Backend>;
}

function kind<O>(k: BackendKind<O>): BackendKind {
  return k as BackendKind;
}

const KINDS: BackendKind[] = [
  kind({
    type: "vxlan",
    parseOptions: parseVxlanOptions,
    create: async (ctx, opts) => {
      const { VxlanBackend } = await import("./vxlan/vxlan.ts");
      const previousMac6 = vtepMac(ctx.previous?.BackendV6Data);
      return new VxlanBackend(ctx.nl, opts, ctx.ext, vtepMac(ctx.previous?.BackendData), {
        ...ctx.families,
        ...(previousMac6 ? { previousMac6 } : {}),
      });
    },
  }),
  kind({
    type: "host-gw",
    parseOptions: () => ({}),
    create: async (ctx) => new (await import("./hostgw/hostgw.ts")).HostGwBackend(ctx.ext, ctx.families),
  }),
  kind({
    type: "udp",
    parseOptions: parseUdpOptions,
    create: async (ctx, opts) =>
      new (await import("./udp/udp.ts")).UdpBackend(ctx.nl, opts, ctx.ext, network(ctx, "udp"), ctx.families),
  }),
  kind({
    type: "wireguard",
    parseOptions: parseWireguardOptions,
    create: async (ctx, opts) =>
      new (await import("./wireguard/wireguard.ts")).WireguardBackend(ctx.nl, opts, ctx.ext, ctx.families, {
        ...(ctx.families.ipv4 && ctx.networks?.ipv4 ? { network: ctx.networks.ipv4 } : {}),
        ...(ctx.families.ipv6 && ctx.networks?.ipv6 ? { ipv6Network: ctx.networks.ipv6 } : {}),
        previousBackendData: ctx.previous?.BackendData ?? ctx.previous?.BackendV6Data,
      }),
  }),
];

/** The backend types weft supports. */
export function backendTypes(): string[] {
  return KINDS.map((k) => k.type);
}

function kindOf(cfg: NetworkConfig): BackendKind {
  const k = KINDS.find((k) => k.type === cfg.backend.type);
  if (!k) {
    throw new ConfigError(
      "Backend.Type",
      cfg.backend.type,
      `is not supported (supported: ${backendTypes().join(", ")})`,
    );
  }
  return k;
}

/** Parses the config's backend options (throws ConfigError naming the key); for config validation. */
export function parseBackendOptions(cfg: NetworkConfig): unknown {
  return kindOf(cfg).parseOptions(new BackendOptionReader(cfg.backend.options));
}

/** Builds the configured backend for one node. */
export function createBackend(cfg: NetworkConfig, ctx: BackendContext): Promise<Backend> {
  const k = kindOf(cfg);
  return k.create(ctx, k.parseOptions(new BackendOptionReader(cfg.backend.options)));
}
