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
import { HostGwBackend } from "./hostgw/hostgw.ts";
import { VxlanBackend } from "./vxlan/vxlan.ts";
import { parseVxlanOptions } from "./vxlan/options.ts";
import { UdpBackend } from "./udp/udp.ts";
import { parseUdpOptions } from "./udp/options.ts";
import { WireguardBackend } from "./wireguard/wireguard.ts";
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
  /** Builds the backend for one node. */
  create(ctx: BackendContext, opts: O): Backend;
}

function kind<O>(k: BackendKind<O>): BackendKind {
  return k as BackendKind;
}

const KINDS: BackendKind[] = [
  kind({
    type: "vxlan",
    parseOptions: parseVxlanOptions,
    create: (ctx, opts) => {
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
    create: (ctx) => new HostGwBackend(ctx.ext, ctx.families),
  }),
  kind({
    type: "udp",
    parseOptions: parseUdpOptions,
    create: (ctx, opts) => new UdpBackend(ctx.nl, opts, ctx.ext, network(ctx, "udp"), ctx.families),
  }),
  kind({
    type: "wireguard",
    parseOptions: parseWireguardOptions,
    create: (ctx, opts) =>
      new WireguardBackend(ctx.nl, opts, ctx.ext, ctx.families, {
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
export function createBackend(cfg: NetworkConfig, ctx: BackendContext): Backend {
  const k = kindOf(cfg);
  return k.create(ctx, k.parseOptions(new BackendOptionReader(cfg.backend.options)));
}
