/**
 * The backends weft knows, by net-conf `Backend.Type`: each parses its own options (so a bad option is
 * rejected with its key when the config is written or read) and builds itself for one node.
 *
 * @module
 */
import type { Netlink } from "../../ffi/mod.ts";
import { BackendOptionReader, ConfigError, type NetworkConfig } from "../config/net_conf.ts";
import type { ExternalInterface } from "../net/iface.ts";
import { type LeaseAttrs, vtepMac } from "../subnet/lease.ts";
import type { Backend } from "./backend.ts";
import { HostGwBackend } from "./hostgw.ts";
import { VxlanBackend } from "./vxlan.ts";
import { parseVxlanOptions } from "./vxlan_options.ts";

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
