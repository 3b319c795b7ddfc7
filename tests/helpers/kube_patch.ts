/**
 * The three patch types of the Kubernetes API, applied as kube-apiserver applies them, for the test API
 * server (kube_api_server.ts):
 *
 * - JSON merge patch (RFC 7386, `application/merge-patch+json`): maps merge, `null` deletes a key,
 *   everything else (lists included) replaces.
 * - Strategic merge patch (`application/strategic-merge-patch+json`): a merge patch in which the lists
 *   the schema marks as merge lists are merged by their merge key (`status.conditions` by `type`, …) or,
 *   for lists of scalars, as sets; with the directives `$patch: replace|delete|merge`, `$retainKeys`,
 *   `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`. Lists the schema does not mark are
 *   replaced, as in a merge patch.
 * - JSON patch (RFC 6902, `application/json-patch+json`): add, remove, replace, move, copy, test.
 *
 * @module
 */

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };

/**
 * The merge lists of one kind, by dotted path from the object root (`spec.taints`): the merge key for a
 * list of objects, `""` for a list of scalars merged as a set.
 */
export type MergeKeys = Readonly<Record<string, string>>;

/** A patch the server rejects (answered as 422 or 400). */
export class PatchError extends Error {
  /** Creates the error; `code` is the HTTP status the server answers with. */
  constructor(message: string, readonly code = 422) {
    super(message);
    this.name = "PatchError";
  }
}

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** A deep copy of a JSON value. */
export function clone<T extends Json>(v: T): T {
  return structuredClone(v);
}

/** RFC 7386 JSON merge patch. */
export function applyMergePatch(target: Json, patch: Json): Json {
  if (!isObj(patch)) return clone(patch);
  const out: Obj = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = applyMergePatch(out[k] ?? null, v);
  }
  return out;
}

/** Strategic merge patch of `target` with `patch`, lists merged as `keys` says. */
export function applyStrategicMergePatch(target: Json, patch: Json, keys: MergeKeys): Json {
  if (!isObj(patch)) throw new PatchError("a strategic merge patch must be a JSON object", 400);
  return mergeMap(isObj(target) ? target : {}, patch, keys, "");
}

function join(path: string, k: string): string {
  return path ? `${path}.${k}` : k;
}

function mergeMap(target: Obj, patch: Obj, keys: MergeKeys, path: string): Obj {
  const directive = patch["$patch"];
  if (directive === "replace") {
    const rest = { ...patch };
    delete rest["$patch"];
    return stripDirectives(rest) as Obj;
  }
  if (directive === "delete") return {};
  if (directive !== undefined && directive !== "merge") {
    throw new PatchError(`unknown patch directive ${JSON.stringify(directive)} at ${path || "the root"}`);
  }
  let out: Obj = { ...target };
  const retain = patch["$retainKeys"];
  if (retain !== undefined) {
    if (!Array.isArray(retain)) throw new PatchError(`$retainKeys at ${path || "the root"} must be a list`);
    const keep = new Set(retain.map(String));
    out = Object.fromEntries(Object.entries(out).filter(([k]) => keep.has(k)));
  }
  // Deletions from primitive lists and orders apply after the lists themselves are merged.
  const after: [string, string, Json][] = [];
  for (const [k, v] of Object.entries(patch)) {
    if (k === "$patch" || k === "$retainKeys") continue;
    if (k.startsWith("$deleteFromPrimitiveList/")) {
      after.push(["delete", k.slice("$deleteFromPrimitiveList/".length), v]);
      continue;
    }
    if (k.startsWith("$setElementOrder/")) {
      after.push(["order", k.slice("$setElementOrder/".length), v]);
      continue;
    }
    const p = join(path, k);
    if (v === null) {
      delete out[k];
    } else if (isObj(v)) {
      out[k] = mergeMap(isObj(out[k]) ? out[k] as Obj : {}, v, keys, p);
    } else if (Array.isArray(v) && p in keys) {
      out[k] = mergeList(Array.isArray(out[k]) ? out[k] as Json[] : [], v, keys, p);
    } else {
      out[k] = stripDirectives(clone(v));
    }
  }
  for (const [what, k, v] of after) {
    const p = join(path, k);
    if (!Array.isArray(v)) throw new PatchError(`$${what} list for ${p} must be a list`);
    const cur = Array.isArray(out[k]) ? out[k] as Json[] : [];
    if (what === "delete") {
      const gone = new Set(v.map((x) => JSON.stringify(x)));
      out[k] = cur.filter((x) => !gone.has(JSON.stringify(x)));
    } else {
      out[k] = orderList(cur, v, keys[p] ?? "");
    }
  }
  return out;
}

function mergeList(target: Json[], patch: Json[], keys: MergeKeys, path: string): Json[] {
  const key = keys[path]!;
  // A `{"$patch": "replace"}` item replaces the whole list with the other items.
  if (patch.some((x) => isObj(x) && x["$patch"] === "replace")) {
    return patch.filter((x) => !(isObj(x) && x["$patch"] === "replace")).map((x) =>
      stripDirectives(clone(x))
    );
  }
  if (key === "") {
    // A set of scalars: the union, target's order first.
    const out = [...target];
    const seen = new Set(target.map((x) => JSON.stringify(x)));
    for (const x of patch) {
      if (!seen.has(JSON.stringify(x))) {
        seen.add(JSON.stringify(x));
        out.push(clone(x));
      }
    }
    return out;
  }
  const out = target.map((x) => x);
  for (const item of patch) {
    if (!isObj(item)) throw new PatchError(`${path}: items must be objects with the merge key "${key}"`);
    if (!(key in item)) throw new PatchError(`${path}: an item has no merge key "${key}"`);
    const at = out.findIndex((x) => isObj(x) && JSON.stringify(x[key]) === JSON.stringify(item[key]));
    if (item["$patch"] === "delete") {
      if (at >= 0) out.splice(at, 1);
      continue;
    }
    if (at >= 0) out[at] = mergeMap(out[at] as Obj, item, keys, path);
    else out.push(stripDirectives(clone(item)));
  }
  return out;
}

function orderList(list: Json[], order: Json[], key: string): Json[] {
  const id = (x: Json) => JSON.stringify(key && isObj(x) ? x[key] : x);
  const want = order.map((x) => JSON.stringify(key && isObj(x) ? x[key] : x));
  const rank = new Map(want.map((k, i) => [k, i]));
  // Items the order names come in its order; the rest keep their place after them.
  return [...list].sort((a, b) => (rank.get(id(a)) ?? Infinity) - (rank.get(id(b)) ?? Infinity));
}

function stripDirectives(v: Json): Json {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (!isObj(v)) return v;
  const out: Obj = {};
  for (const [k, x] of Object.entries(v)) {
    if (k.startsWith("$")) continue;
    out[k] = stripDirectives(x);
  }
  return out;
}

/** Decodes one RFC 6901 JSON pointer into its tokens. */
function pointer(p: string): string[] {
  if (p === "") return [];
  if (!p.startsWith("/")) throw new PatchError(`JSON pointer ${JSON.stringify(p)} must start with "/"`, 400);
  return p.slice(1).split("/").map((t) => t.replaceAll("~1", "/").replaceAll("~0", "~"));
}

function walk(doc: Json, tokens: string[], op: string): { parent: Obj | Json[]; last: string } {
  let cur: Json = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(t)] ?? null;
    else if (isObj(cur)) cur = cur[t] ?? null;
    else cur = null;
    if (cur === null) {
      throw new PatchError(`${op} operation does not apply: doc is missing path: /${tokens.join("/")}`);
    }
  }
  if (!Array.isArray(cur) && !isObj(cur)) {
    throw new PatchError(`${op} operation does not apply: doc is missing path: /${tokens.join("/")}`);
  }
  return { parent: cur, last: tokens[tokens.length - 1]! };
}

function getAt(doc: Json, tokens: string[], op: string): Json {
  if (!tokens.length) return doc;
  const { parent, last } = walk(doc, tokens, op);
  const v = Array.isArray(parent) ? parent[Number(last)] : parent[last];
  if (v === undefined) {
    throw new PatchError(`${op} operation does not apply: doc is missing path: /${tokens.join("/")}`);
  }
  return v;
}

function removeAt(doc: Json, tokens: string[], op: string): Json {
  const { parent, last } = walk(doc, tokens, op);
  if (Array.isArray(parent)) {
    const i = Number(last);
    if (!Number.isInteger(i) || i < 0 || i >= parent.length) {
      throw new PatchError(`${op} operation does not apply: doc is missing path: /${tokens.join("/")}`);
    }
    return parent.splice(i, 1)[0]!;
  }
  if (!(last in parent)) {
    throw new PatchError(`${op} operation does not apply: doc is missing path: /${tokens.join("/")}`);
  }
  const v = parent[last]!;
  delete parent[last];
  return v;
}

function addAt(doc: Json, tokens: string[], value: Json, op: string, replace = false): Json {
  if (!tokens.length) return value;
  const { parent, last } = walk(doc, tokens, op);
  if (Array.isArray(parent)) {
    const i = last === "-" ? parent.length : Number(last);
    if (!Number.isInteger(i) || i < 0 || i > parent.length || (replace && i >= parent.length)) {
      throw new PatchError(`${op} operation does not apply: index out of range at /${tokens.join("/")}`);
    }
    parent.splice(i, replace ? 1 : 0, value);
  } else {
    if (replace && !(last in parent)) {
      throw new PatchError(`${op} operation does not apply: doc is missing key: /${tokens.join("/")}`);
    }
    parent[last] = value;
  }
  return doc;
}

/** RFC 6902 JSON patch. */
export function applyJsonPatch(target: Json, ops: Json): Json {
  if (!Array.isArray(ops)) throw new PatchError("a JSON patch must be a list of operations", 400);
  let doc = clone(target);
  for (const raw of ops) {
    if (!isObj(raw) || typeof raw.op !== "string" || typeof raw.path !== "string") {
      throw new PatchError("a JSON patch operation needs op and path", 400);
    }
    const { op } = raw;
    const path = pointer(raw.path);
    switch (op) {
      case "add":
        doc = addAt(doc, path, clone(raw.value ?? null), op);
        break;
      case "remove":
        removeAt(doc, path, op);
        break;
      case "replace":
        doc = path.length ? addAt(doc, path, clone(raw.value ?? null), op, true) : clone(raw.value ?? null);
        break;
      case "move": {
        const from = pointer(String(raw.from));
        const v = removeAt(doc, from, op);
        doc = addAt(doc, path, v, op);
        break;
      }
      case "copy": {
        const v = clone(getAt(doc, pointer(String(raw.from)), op));
        doc = addAt(doc, path, v, op);
        break;
      }
      case "test": {
        const v = getAt(doc, path, op);
        if (JSON.stringify(v) !== JSON.stringify(raw.value)) {
          throw new PatchError(`testing value /${path.join("/")} failed`);
        }
        break;
      }
      default:
        throw new PatchError(`Unexpected kind: ${op}`, 400);
    }
  }
  return doc;
}
