/**
 * The storage side of the test API server: kinds, objects, one global resourceVersion, a bounded event
 * history, label and field selectors and watchers — with kube-apiserver's semantics where weft and
 * kubectl can see them:
 *
 * - Every write takes the next value of one cluster-wide resourceVersion counter; a write that changes
 *   nothing (same bytes) is not a write: no new resourceVersion, no event (GuaranteedUpdate does that).
 * - A watch from resourceVersion N replays the history after N, then goes live; when the history no
 *   longer reaches back to N it fails with 410 Gone (`Expired`, "too old resource version"). A watch
 *   with no resourceVersion (or "0") first sends every current object as ADDED.
 * - A watch with selectors sees an object that stops matching as DELETED and one that starts matching as
 *   ADDED, as the watch cache reports them.
 * - Update strategies: writing the main resource keeps the old `status`, writing the `status`
 *   subresource keeps the old `spec` (pkg/registry/core/node/strategy.go: `nodeStrategy` /
 *   `nodeStatusStrategy.PrepareForUpdate`); metadata changes (annotations, labels) go through both.
 *   `metadata.name/namespace/uid/creationTimestamp` never change.
 * - A resourceVersion sent with an update or inside a patch is a precondition: 409 Conflict when stale.
 *
 * @module
 */
import { clone, type Json, type MergeKeys } from "./kube_patch.ts";

type Obj = { [k: string]: Json };

/** What a kind is: where it lives in the API and how it merges and selects. */
export interface KindDef {
  /** API group, "" for core. */
  group: string;
  /** API version. */
  version: string;
  /** Plural resource name (URL segment). */
  plural: string;
  /** Singular name (discovery). */
  singular: string;
  /** Kind. */
  kind: string;
  /** Namespaced or cluster-scoped. */
  namespaced: boolean;
  /** kubectl short names. */
  shortNames?: string[];
  /** Has a `status` subresource. */
  status: boolean;
  /** Strategic-merge list keys (see kube_patch.ts). */
  mergeKeys: MergeKeys;
  /** Extra field-selector fields beyond metadata.name/metadata.namespace. */
  fields?: (o: Obj) => Record<string, string>;
  /** Rejects an update (old → new) as validation does: `[field, "Forbidden: …"]`; undefined when fine. */
  validateUpdate?: (old: Obj, next: Obj) => [string, string] | undefined;
  /** Fills defaults on create (e.g. a namespace's status.phase). */
  defaults?: (o: Obj) => void;
}

/** The apiVersion of a kind (`v1`, `networking.k8s.io/v1`). */
export function apiVersionOf(d: KindDef): string {
  return d.group ? `${d.group}/${d.version}` : d.version;
}

const NODE: KindDef = {
  group: "",
  version: "v1",
  plural: "nodes",
  singular: "node",
  kind: "Node",
  namespaced: false,
  shortNames: ["no"],
  status: true,
  mergeKeys: {
    "metadata.finalizers": "",
    "metadata.ownerReferences": "uid",
    "spec.podCIDRs": "",
    "spec.taints": "key",
    "status.addresses": "type",
    "status.conditions": "type",
    "status.volumesAttached": "name",
  },
  fields: (o) => ({ "spec.unschedulable": String(!!(o.spec as Obj | undefined)?.unschedulable) }),
  validateUpdate(old, next) {
    // ValidateNodeUpdate: podCIDR(s) may only go from unset to set.
    const a = (old.spec as Obj | undefined) ?? {};
    const b = (next.spec as Obj | undefined) ?? {};
    if (a.podCIDR && a.podCIDR !== b.podCIDR) {
      return ["spec.podCIDR", `Forbidden: node updates may not change podCIDR except from "" to valid`];
    }
    const oa = JSON.stringify(a.podCIDRs ?? []), ob = JSON.stringify(b.podCIDRs ?? []);
    if (oa !== "[]" && oa !== ob) {
      return ["spec.podCIDRs", `Forbidden: node updates may not change podCIDR except from "" to valid`];
    }
    return undefined;
  },
};

const NAMESPACE: KindDef = {
  group: "",
  version: "v1",
  plural: "namespaces",
  singular: "namespace",
  kind: "Namespace",
  namespaced: false,
  shortNames: ["ns"],
  status: true,
  mergeKeys: { "metadata.finalizers": "", "status.conditions": "type" },
  fields: (o) => ({ "status.phase": String((o.status as Obj | undefined)?.phase ?? "") }),
  defaults(o) {
    o.spec ??= { finalizers: ["kubernetes"] };
    o.status ??= { phase: "Active" };
    const md = o.metadata as Obj;
    md.labels = { ...(md.labels as Obj | undefined), "kubernetes.io/metadata.name": md.name! };
  },
};

const POD: KindDef = {
  group: "",
  version: "v1",
  plural: "pods",
  singular: "pod",
  kind: "Pod",
  namespaced: true,
  shortNames: ["po"],
  status: true,
  mergeKeys: {
    "metadata.finalizers": "",
    "metadata.ownerReferences": "uid",
    "spec.containers": "name",
    "spec.initContainers": "name",
    "spec.volumes": "name",
    "spec.tolerations": "",
    "status.conditions": "type",
    "status.podIPs": "ip",
  },
  fields: (o) => ({
    "spec.nodeName": String((o.spec as Obj | undefined)?.nodeName ?? ""),
    "status.phase": String((o.status as Obj | undefined)?.phase ?? ""),
    "status.podIP": String((o.status as Obj | undefined)?.podIP ?? ""),
  }),
};

const NETWORK_POLICY: KindDef = {
  group: "networking.k8s.io",
  version: "v1",
  plural: "networkpolicies",
  singular: "networkpolicy",
  kind: "NetworkPolicy",
  namespaced: true,
  shortNames: ["netpol"],
  status: false,
  mergeKeys: { "metadata.finalizers": "", "metadata.ownerReferences": "uid" },
};

/** The kinds the test API server serves unless told otherwise. */
export const DEFAULT_KINDS: readonly KindDef[] = [NODE, NAMESPACE, POD, NETWORK_POLICY];

/** A failure the server answers with a `Status` object. */
export class ApiError extends Error {
  /** `code` is the HTTP status, `reason` the StatusReason (`NotFound`, `Conflict`, …). */
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Obj,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

function notFound(d: KindDef, name: string): ApiError {
  return new ApiError(404, "NotFound", `${d.plural}${d.group ? `.${d.group}` : ""} "${name}" not found`, {
    name,
    ...(d.group ? { group: d.group } : {}),
    kind: d.plural,
  });
}

function conflict(d: KindDef, name: string): ApiError {
  return new ApiError(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${d.plural}${
      d.group ? `.${d.group}` : ""
    } "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    { name, ...(d.group ? { group: d.group } : {}), kind: d.plural },
  );
}

/** A requirement of a label or field selector. */
interface Requirement {
  key: string;
  op: "=" | "!=" | "in" | "notin" | "exists" | "!exists";
  values: string[];
}

/** Parses a label selector (`a=b,c!=d,e in (x,y),f notin (z),g,!h`). */
export function parseLabelSelector(s: string): Requirement[] {
  const out: Requirement[] = [];
  // Split on commas outside parentheses.
  const parts: string[] = [];
  let depth = 0, cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  if (cur.trim()) parts.push(cur);
  for (const raw of parts) {
    const p = raw.trim();
    if (!p) continue;
    let m;
    if ((m = p.match(/^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/))) {
      out.push({ key: m[1]!, op: m[2] as "in", values: m[3]!.split(",").map((v) => v.trim()) });
    } else if ((m = p.match(/^(\S+?)\s*(!=|==|=)\s*(\S*)$/))) {
      out.push({ key: m[1]!, op: m[2] === "!=" ? "!=" : "=", values: [m[3]!] });
    } else if ((m = p.match(/^!\s*(\S+)$/))) {
      out.push({ key: m[1]!, op: "!exists", values: [] });
    } else if (/^\S+$/.test(p)) {
      out.push({ key: p, op: "exists", values: [] });
    } else {
      throw new ApiError(400, "BadRequest", `unable to parse requirement: ${JSON.stringify(p)}`);
    }
  }
  return out;
}

/** Parses a field selector (`metadata.name=x,spec.nodeName!=y`). */
export function parseFieldSelector(s: string): Requirement[] {
  return s.split(",").filter((p) => p.trim()).map((p) => {
    const m = p.trim().match(/^([^=!]+?)\s*(!=|==|=)\s*(.*)$/);
    if (!m) throw new ApiError(400, "BadRequest", `invalid selector: '${s}'; can't understand '${p}'`);
    return { key: m[1]!, op: m[2] === "!=" ? "!=" as const : "=" as const, values: [m[3]!] };
  });
}

function matches(reqs: Requirement[], set: Record<string, string>): boolean {
  return reqs.every((r) => {
    const has = r.key in set;
    const v = set[r.key];
    switch (r.op) {
      case "=":
        return has && v === r.values[0];
      case "!=":
        return !has || v !== r.values[0];
      case "in":
        return has && r.values.includes(v!);
      case "notin":
        return !has || !r.values.includes(v!);
      case "exists":
        return has;
      case "!exists":
        return !has;
    }
  });
}

/** What a list or watch selects. */
export interface Selection {
  /** Namespace, for namespaced kinds; undefined = all namespaces. */
  namespace?: string;
  /** Label selector text. */
  labelSelector?: string;
  /** Field selector text. */
  fieldSelector?: string;
}

/** One change, as a watch reports it. */
export interface StoreEvent {
  /** ADDED, MODIFIED, DELETED. */
  type: "ADDED" | "MODIFIED" | "DELETED";
  /** Kind. */
  def: KindDef;
  /** The object after the change (for DELETED: as it was, with the deletion's resourceVersion). */
  object: Obj;
  /** The object before the change (undefined for ADDED). */
  old?: Obj;
  /** The change's resourceVersion. */
  rv: number;
}

/** A watch's way of receiving events; returning false ends it. */
export interface Watcher {
  def: KindDef;
  matches: (o: Obj) => boolean;
  namespace?: string;
  send: (type: "ADDED" | "MODIFIED" | "DELETED", o: Obj) => void;
}

/** A consistent list: the matching objects as of `rv`. */
export interface ListResult {
  /** Items in name order (namespace, then name). */
  items: Obj[];
  /** The resourceVersion the list is consistent with. */
  rv: number;
}

const md = (o: Obj) => o.metadata as Obj;
const nameOf = (o: Obj) => String(md(o).name ?? "");
const nsOf = (o: Obj) => String(md(o).namespace ?? "");

/** Objects of every kind, one resourceVersion counter, a bounded history. */
export class KubeStore {
  #objects = new Map<string, Obj>();
  #rv = 100;
  #history: StoreEvent[] = [];
  /** The newest resourceVersion whose event was dropped from the history (0: none). */
  #compacted = 0;
  #watchers = new Set<Watcher>();
  /** Kinds by `group/plural`. */
  readonly kinds = new Map<string, KindDef>();

  /** A store serving `kinds`; `historySize` events are kept for watches that resume. */
  constructor(kinds: readonly KindDef[] = DEFAULT_KINDS, readonly historySize = 1000) {
    for (const k of kinds) this.kinds.set(`${k.group}/${k.plural}`, k);
  }

  /** The current resourceVersion. */
  get resourceVersion(): number {
    return this.#rv;
  }

  /** The oldest resourceVersion a watch may resume from. */
  get oldestResumable(): number {
    return this.#compacted;
  }

  /** The kind named by group and plural (or kind name, or short name), or undefined. */
  kind(group: string, plural: string): KindDef | undefined {
    return this.kinds.get(`${group}/${plural}`);
  }

  /** The kind whose `kind` is `kind` (e.g. "Node"). */
  kindByName(kind: string): KindDef {
    for (const d of this.kinds.values()) if (d.kind === kind) return d;
    throw new Error(`no kind ${kind}`);
  }

  /** Drops the whole history: every watch resuming from an older resourceVersion gets 410 Gone. */
  compact(): void {
    this.#compacted = this.#rv;
    this.#history = [];
  }

  #key(d: KindDef, ns: string, name: string): string {
    return `${d.group}/${d.plural}/${d.namespaced ? ns : ""}/${name}`;
  }

  /** The object, or 404. */
  get(d: KindDef, ns: string, name: string): Obj {
    const o = this.#objects.get(this.#key(d, ns, name));
    if (!o) throw notFound(d, name);
    return clone(o);
  }

  /** Objects of a kind matching `sel`, in key order, consistent with the returned resourceVersion. */
  list(d: KindDef, sel: Selection = {}): ListResult {
    const m = this.#matcher(d, sel);
    const prefix = `${d.group}/${d.plural}/`;
    const keys = [...this.#objects.keys()].filter((k) => k.startsWith(prefix)).sort();
    const items: Obj[] = [];
    for (const k of keys) {
      const o = this.#objects.get(k)!;
      if ((sel.namespace === undefined || !d.namespaced || nsOf(o) === sel.namespace) && m(o)) items.push(o);
    }
    // Stored objects are never mutated (writes replace them), so references are a snapshot.
    return { items, rv: this.#rv };
  }

  #matcher(d: KindDef, sel: Selection): (o: Obj) => boolean {
    const labels = sel.labelSelector ? parseLabelSelector(sel.labelSelector) : [];
    const fields = sel.fieldSelector ? parseFieldSelector(sel.fieldSelector) : [];
    for (const f of fields) {
      const known = [
        "metadata.name",
        "metadata.namespace",
        ...Object.keys(d.fields?.({ metadata: {} }) ?? {}),
      ];
      if (!known.includes(f.key)) {
        throw new ApiError(
          400,
          "BadRequest",
          `field label not supported: ${f.key}`,
        );
      }
    }
    return (o) =>
      matches(labels, (md(o).labels as Record<string, string> | undefined) ?? {}) &&
      matches(fields, { "metadata.name": nameOf(o), "metadata.namespace": nsOf(o), ...d.fields?.(o) });
  }

  #record(ev: StoreEvent): void {
    this.#history.push(ev);
    while (this.#history.length > this.historySize) this.#compacted = this.#history.shift()!.rv;
    for (const w of this.#watchers) {
      if (w.def !== ev.def) continue;
      if (w.namespace !== undefined && ev.def.namespaced && nsOf(ev.object) !== w.namespace) continue;
      deliver(w, ev);
    }
  }

  /** Creates an object (409 AlreadyExists when the name is taken); returns it as stored. */
  create(d: KindDef, ns: string, input: object): Obj {
    const o = clone(input as Obj);
    o.apiVersion = apiVersionOf(d);
    o.kind = d.kind;
    const meta: Obj = { ...(o.metadata as Obj | undefined) };
    if (!meta.name && meta.generateName) {
      meta.name = `${meta.generateName}${Math.random().toString(36).slice(2, 7)}`;
    }
    const name = String(meta.name ?? "");
    if (!name) {
      throw new ApiError(
        422,
        "Invalid",
        `${d.kind} "" is invalid: metadata.name: Required value: name or generateName is required`,
      );
    }
    if (d.namespaced) {
      if (!ns) {
        throw new ApiError(
          400,
          "BadRequest",
          "the namespace of the object does not match the namespace on the request",
        );
      }
      if (this.kinds.has("/namespaces") && !this.#objects.has(this.#key(NAMESPACE, "", ns))) {
        throw new ApiError(404, "NotFound", `namespaces "${ns}" not found`, { name: ns, kind: "namespaces" });
      }
      meta.namespace = ns;
    } else delete meta.namespace;
    const key = this.#key(d, ns, name);
    if (this.#objects.has(key)) {
      throw new ApiError(
        409,
        "AlreadyExists",
        `${d.plural}${d.group ? `.${d.group}` : ""} "${name}" already exists`,
        {
          name,
          kind: d.plural,
        },
      );
    }
    meta.uid = crypto.randomUUID();
    meta.creationTimestamp = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    delete meta.resourceVersion;
    delete meta.deletionTimestamp;
    o.metadata = meta;
    d.defaults?.(o);
    meta.resourceVersion = String(++this.#rv);
    this.#objects.set(key, o);
    this.#record({ type: "ADDED", def: d, object: o, rv: this.#rv });
    return clone(o);
  }

  /**
   * Replaces an object with `next` as the main resource (`sub` undefined: status kept) or its status
   * subresource (`sub` "status": spec kept). `next.metadata.resourceVersion`, when set, must be current.
   * A replacement that changes nothing is no write; `dryRun` computes the result without writing.
   */
  update(d: KindDef, ns: string, name: string, next: object, sub?: "status", dryRun = false): Obj {
    const key = this.#key(d, ns, name);
    const old = this.#objects.get(key);
    if (!old) throw notFound(d, name);
    const o = clone(next as Obj);
    const meta: Obj = { ...(o.metadata as Obj | undefined) };
    if (meta.name !== undefined && meta.name !== name) {
      throw new ApiError(
        400,
        "BadRequest",
        `the name of the object (${meta.name}) does not match the name on the URL (${name})`,
      );
    }
    const want = meta.resourceVersion;
    if (want !== undefined && want !== "" && String(want) !== md(old).resourceVersion) {
      throw conflict(d, name);
    }
    const om = md(old);
    for (const k of ["name", "namespace", "uid", "creationTimestamp"]) {
      if (om[k] !== undefined) meta[k] = om[k]!;
      else delete meta[k];
    }
    meta.resourceVersion = om.resourceVersion!;
    o.metadata = meta;
    o.apiVersion = apiVersionOf(d);
    o.kind = d.kind;
    if (sub === "status") {
      if (old.spec !== undefined) o.spec = old.spec;
      else delete o.spec;
    } else if (d.status) {
      if (old.status !== undefined) o.status = old.status;
      else delete o.status;
    }
    const bad = d.validateUpdate?.(old, o);
    if (bad) {
      const [field, message] = bad;
      throw new ApiError(422, "Invalid", `${d.kind} "${name}" is invalid: ${field}: ${message}`, {
        name,
        ...(d.group ? { group: d.group } : {}),
        kind: d.kind,
        causes: [{ reason: `FieldValue${message.split(":")[0]}`, message, field }],
      });
    }
    if (JSON.stringify(o) === JSON.stringify(old) || dryRun) return clone(dryRun ? o : old);
    meta.resourceVersion = String(++this.#rv);
    this.#objects.set(key, o);
    this.#record({ type: "MODIFIED", def: d, object: o, old, rv: this.#rv });
    return clone(o);
  }

  /** Deletes an object; returns it as it was. */
  delete(d: KindDef, ns: string, name: string): Obj {
    const key = this.#key(d, ns, name);
    const old = this.#objects.get(key);
    if (!old) throw notFound(d, name);
    this.#objects.delete(key);
    const gone = clone(old);
    md(gone).resourceVersion = String(++this.#rv);
    this.#record({ type: "DELETED", def: d, object: gone, old, rv: this.#rv });
    return gone;
  }

  /**
   * Starts a watch. From `fromRV` (a number) it replays the history after it; without one it first sends
   * every matching object as ADDED. Throws 410 Expired when the history no longer reaches `fromRV`.
   * Returns a function that ends the watch.
   */
  watch(
    d: KindDef,
    sel: Selection,
    fromRV: number | undefined,
    send: Watcher["send"],
  ): () => void {
    const m = this.#matcher(d, sel);
    const w: Watcher = {
      def: d,
      matches: m,
      ...(sel.namespace !== undefined && d.namespaced ? { namespace: sel.namespace } : {}),
      send,
    };
    if (fromRV === undefined || fromRV === 0) {
      for (const o of this.list(d, sel).items) send("ADDED", o);
    } else {
      if (fromRV < this.#compacted) {
        throw new ApiError(
          410,
          "Expired",
          `too old resource version: ${fromRV} (${this.#compacted + 1})`,
        );
      }
      for (const ev of this.#history) {
        if (ev.rv <= fromRV || ev.def !== d) continue;
        if (w.namespace !== undefined && nsOf(ev.object) !== w.namespace) continue;
        deliver(w, ev);
      }
    }
    this.#watchers.add(w);
    return () => this.#watchers.delete(w);
  }

  /** How many watches are open (for tests). */
  get watchCount(): number {
    return this.#watchers.size;
  }
}

function deliver(w: Watcher, ev: StoreEvent): void {
  const now = w.matches(ev.object);
  const before = ev.old !== undefined && w.matches(ev.old);
  if (ev.type === "DELETED") {
    if (before || now) w.send("DELETED", ev.object);
  } else if (ev.type === "ADDED") {
    if (now) w.send("ADDED", ev.object);
  } else if (now && before) w.send("MODIFIED", ev.object);
  else if (now) w.send("ADDED", ev.object);
  else if (before) w.send("DELETED", ev.object);
}
