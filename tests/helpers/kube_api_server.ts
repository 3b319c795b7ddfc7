/**
 * A Kubernetes API server for tests: the HTTP side of {@linkcode KubeStore}, speaking what weft and
 * kubectl use of the real kube-apiserver, with its semantics:
 *
 * - Paths: `/api/v1/<plural>[/<name>[/status]]`, `/api/v1/namespaces/<ns>/<plural>[/<name>[/status]]`,
 *   `/apis/<group>/<version>/…` the same way; GET (get, list, `?watch=true`), POST, PUT, PATCH, DELETE.
 * - list: `labelSelector`, `fieldSelector`, `limit` + `continue` (consistent snapshots; an expired token
 *   is 410), `metadata.resourceVersion`; list items carry no kind/apiVersion, as in the real server.
 * - watch: from `resourceVersion` (history replayed; 410 as an `ERROR` event carrying a `Status` when the
 *   history no longer reaches it, as the real server sends it), `allowWatchBookmarks` (BOOKMARK events
 *   every `bookmarkMs`), `timeoutSeconds`; one JSON event a line, chunked.
 * - PATCH with `application/strategic-merge-patch+json`, `application/merge-patch+json` and
 *   `application/json-patch+json` (415 otherwise); `?dryRun=All` on writes.
 * - Errors are `Status` objects (404 NotFound, 409 Conflict/AlreadyExists, 422 Invalid, 410 Expired,
 *   401 Unauthorized without the bearer token, 403 Forbidden when `authorize` refuses, with the real
 *   server's message shape).
 * - Discovery (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`) and
 *   `authorization.k8s.io/v1` SelfSubjectAccessReview, answered by the same `authorize`.
 *
 * It serves plain HTTP, or HTTPS with a certificate made by openssl (a CA file is written for clients).
 * `stop()` drops every connection and the listener, keeping the objects (an API server outage);
 * `start()` serves again on the same port; `restart()` does both, keeping the watch history or not.
 * With `netns` it listens inside that network namespace, so agents in node namespaces can reach it.
 *
 * As hostile as a real one when told to ({@linkcode KubeFaults}, changeable while it runs): a share of
 * requests answered `429 TooManyRequests` with `Retry-After` (API Priority and Fairness), answers
 * delayed, a black hole (requests accepted and never answered; open watches go silent as if the host
 * had vanished), `resourceVersion=0` lists served whole from the "watch cache" (`limit` ignored, as
 * kube-apiserver does), bookmarks at a set cadence. Every request is recorded with its verb and
 * resource, so tests assert budgets ({@linkcode KubeApiServer.count}).
 *
 * @module
 */
import { withNetns } from "../../ffi/mod.ts";
import {
  applyJsonPatch,
  applyMergePatch,
  applyStrategicMergePatch,
  type Json,
  PatchError,
} from "./kube_patch.ts";
import { ApiError, apiVersionOf, DEFAULT_KINDS, type KindDef, KubeStore } from "./kube_store.ts";

type Obj = { [k: string]: Json };

/** What `authorize` is asked. */
export interface AuthzAttributes {
  /** The user the token maps to (`system:anonymous` without one). */
  user: string;
  /** get, list, watch, create, update, patch, delete. */
  verb: string;
  /** API group ("" core). */
  group: string;
  /** Plural resource. */
  resource: string;
  /** Subresource ("" none). */
  subresource: string;
  /** Object name ("" for lists). */
  name: string;
  /** Namespace ("" cluster scope). */
  namespace: string;
}

/** Options of {@linkcode startKubeApiServer}. */
export interface KubeApiServerOptions {
  /** Listen address (default 127.0.0.1). */
  hostname?: string;
  /** Port (default: a free one). */
  port?: number;
  /** Network namespace to listen in. */
  netns?: string;
  /** Serve HTTPS with a generated certificate for `hostname` (and 127.0.0.1). */
  tls?: boolean;
  /** Bearer tokens accepted, mapped to user names; none = no authentication required. */
  tokens?: Record<string, string>;
  /** RBAC stand-in: false refuses with 403. Default: everything allowed. */
  authorize?: (a: AuthzAttributes) => boolean;
  /** How often watches with allowWatchBookmarks get a BOOKMARK (default 1000 ms). */
  bookmarkMs?: number;
  /** Events kept for resuming watches (default 1000). */
  historySize?: number;
  /** Kinds served (default: nodes, namespaces, pods, networkpolicies). */
  kinds?: readonly KindDef[];
  /** Also answer authorization.k8s.io SelfSubjectAccessReviews (default true). */
  accessReviews?: boolean;
  /**
   * Every watch event (and bookmark) reaches its watcher this long after it happened, in order — a slow
   * watch, as a loaded API server or a slow kubelet status update makes it. Changeable while it runs
   * through {@linkcode KubeApiServer.watchDelayMs}.
   */
  watchDelayMs?: number;
  /** Faults from the start (see {@linkcode KubeApiServer.faults} to change them later). */
  faults?: KubeFaults;
  /**
   * Called with each request once it is handled, before the answer leaves: a test can check, at that very
   * moment, what the client had done before sending it (e.g. its datapath before a status PATCH).
   */
  onRequest?: (rec: RequestRecord) => void;
}

/** What makes the server hostile; every field may be changed while it runs. */
export interface KubeFaults {
  /** A share (0–1) of resource requests is answered 429 with `Retry-After: retryAfterSeconds`. */
  throttle?: { share: number; retryAfterSeconds: number };
  /** Every resource request waits this long before it is handled (a slow, loaded server). */
  delayMs?: number;
  /** Every LIST waits this long more (a big cluster: its Nodes take a while to arrive). */
  listDelayMs?: number;
  /**
   * Requests are accepted and never answered, and every watch open now goes silent for good (its
   * connection is dead: nothing more is ever written to it, not even after the black hole ends).
   */
  blackhole?: boolean;
}

/** One request the server answered. */
export interface RequestRecord {
  /** Sequence number (see {@linkcode KubeApiServer.mark}). */
  seq: number;
  /** When it arrived (ms since the epoch). */
  at: number;
  /** get, list, watch, create, update, patch, delete, or "" for discovery and other paths. */
  verb: string;
  /** Resource (`nodes`, `nodes/status`, `networkpolicies.networking.k8s.io`), "" for discovery. */
  resource: string;
  /** HTTP method. */
  method: string;
  /** Path. */
  path: string;
  /** Query string without "?". */
  query: string;
  /** Content-Type header. */
  contentType: string;
  /** Request body (writes only). */
  body?: string;
  /** Status code answered. */
  status: number;
  /** The authenticated user. */
  user: string;
}

/** A running test API server. */
export interface KubeApiServer extends AsyncDisposable {
  /** Base URL (http:// or https://). */
  readonly url: string;
  /** Port. */
  readonly port: number;
  /** The objects. */
  readonly store: KubeStore;
  /** CA certificate file (PEM) when serving HTTPS. */
  readonly caFile?: string;
  /** CA certificate (PEM) when serving HTTPS. */
  readonly caPem?: string;
  /** Requests answered, oldest first (the last 10000). */
  readonly requests: RequestRecord[];
  /** Watches open now. */
  readonly openWatches: number;
  /** How long watch events are held back, ms (0: none). */
  watchDelayMs: number;
  /** The faults in force (change them at will). */
  faults: KubeFaults;
  /** Encodes every stored object now (lists and watches reuse the JSON), so no client pays for it first. */
  warm(): void;
  /** The sequence number of the last request: `count(…, mark)` counts what came after. */
  mark(): number;
  /**
   * Requests after `since` (a {@linkcode KubeApiServer.mark}), optionally only `verb` (`list`, `watch`,
   * …) on `resource` (`nodes`, `nodes/status`) and by `user`.
   */
  count(
    filter?: { verb?: string; resource?: string; user?: string; status?: number },
    since?: number,
  ): number;
  /** Requests after `since` per `"verb resource"` (e.g. `{"watch nodes": 1}`). */
  counts(since?: number): Record<string, number>;
  /** Writes a kubeconfig for this server to `path` (token = the bearer token to use). */
  writeKubeconfig(path: string, opts?: { token?: string }): Promise<void>;
  /** Ends every open watch stream (as the real server does at its watch timeout). */
  closeWatches(): void;
  /** Drops every connection and the listener; objects stay. */
  stop(): Promise<void>;
  /** Serves again on the same port. */
  start(): void;
  /**
   * Stops and starts again after `downMs` (an API server restart); with `loseHistory` the watch history
   * is gone too (watches resuming from before get 410).
   */
  restart(opts?: { downMs?: number; loseHistory?: boolean }): Promise<void>;
  /** Stops for good and removes its files. */
  close(): Promise<void>;
}

function status(code: number, reason: string, message: string, details?: Obj): Obj {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  };
}

function json(body: unknown, code = 200): Response {
  return new Response(JSON.stringify(body), {
    status: code,
    headers: { "content-type": "application/json" },
  });
}

function failure(err: unknown): Response {
  if (err instanceof ApiError) return json(status(err.code, err.reason, err.message, err.details), err.code);
  if (err instanceof PatchError) {
    return json(status(err.code, err.code === 422 ? "Invalid" : "BadRequest", err.message), err.code);
  }
  if (err instanceof SyntaxError) return json(status(400, "BadRequest", `invalid JSON: ${err.message}`), 400);
  return json(status(500, "InternalError", `Internal error occurred: ${(err as Error).message}`), 500);
}

/** A list item as the real server encodes it: no kind or apiVersion of its own. */
function listItem(o: Obj): Obj {
  const { kind: _k, apiVersion: _a, ...rest } = o;
  return rest;
}

/** `kubectl`'s ages: 45s, 3m20s, 15m, 5h3m, 20h, 3d. */
function age(created: unknown): string {
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(String(created))) / 1000));
  if (!Number.isFinite(s)) return "<unknown>";
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 ? `${m}m${s % 60}s` : `${m}m`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 ? `${h}h${m % 60}m` : `${h}h`;
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

/** Whether the client asked for server-side printing (`kubectl get` does). */
function wantsTable(req: Request): boolean {
  return /as=Table/.test(req.headers.get("accept") ?? "");
}

/** A `meta.k8s.io/v1` Table of `items`, with the columns the real server prints for nodes. */
function table(d: KindDef, items: Obj[], rv: number, full: boolean): Obj {
  const node = d.kind === "Node";
  const cols = node ? ["Name", "Status", "Roles", "Age", "Version"] : ["Name", "Age"];
  return {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: { resourceVersion: String(rv) },
    columnDefinitions: cols.map((name) => ({
      name,
      type: "string",
      format: name === "Name" ? "name" : "",
      description: "",
      priority: 0,
    })),
    rows: items.map((o) => {
      const md = o.metadata as Obj;
      let cells: Json[] = [md.name!, age(md.creationTimestamp)];
      if (node) {
        const conds = ((o.status as Obj | undefined)?.conditions ?? []) as Obj[];
        const ready = conds.find((c) => c.type === "Ready");
        let st = ready?.status === "True" ? "Ready" : ready?.status === "False" ? "NotReady" : "Unknown";
        if ((o.spec as Obj | undefined)?.unschedulable) st += ",SchedulingDisabled";
        const roles = Object.keys((md.labels as Obj | undefined) ?? {})
          .filter((k) => k.startsWith("node-role.kubernetes.io/")).map((k) => k.slice(24));
        const info = (o.status as Obj | undefined)?.nodeInfo as Obj | undefined;
        cells = [
          md.name!,
          st,
          roles.join(",") || "<none>",
          age(md.creationTimestamp),
          info?.kubeletVersion ?? "",
        ];
      }
      return {
        cells,
        object: full ? { ...o, kind: d.kind, apiVersion: apiVersionOf(d) } : {
          kind: "PartialObjectMetadata",
          apiVersion: "meta.k8s.io/v1",
          metadata: md,
        },
      };
    }),
  };
}

async function generateCert(
  dir: string,
  hosts: string[],
): Promise<{ cert: string; key: string; ca: string }> {
  const run = async (args: string[]) => {
    const r = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" }).output();
    if (!r.success) throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(r.stderr)}`);
  };
  await run([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "2",
    "-subj",
    "/CN=weft-test-kube-ca",
  ]);
  const san = hosts.map((h) => /^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`).join(",");
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`,
  );
  await run([
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=kube-apiserver",
  ]);
  await run([
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.crt",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  ]);
  return {
    cert: await Deno.readTextFile(`${dir}/server.crt`),
    key: await Deno.readTextFile(`${dir}/server.key`),
    ca: await Deno.readTextFile(`${dir}/ca.crt`),
  };
}

/** An open watch stream. */
interface OpenWatch {
  /** Ends the stream. */
  close: () => void;
  /** Silent for good (the black hole took its connection). */
  frozen: boolean;
}

/** Starts a test API server. */
export async function startKubeApiServer(opts: KubeApiServerOptions = {}): Promise<KubeApiServer> {
  const hostname = opts.hostname ?? "127.0.0.1";
  const store = new KubeStore(opts.kinds ?? DEFAULT_KINDS, opts.historySize ?? 1000);
  const bookmarkMs = opts.bookmarkMs ?? 1000;
  const authorize = opts.authorize ?? (() => true);
  const accessReviews = opts.accessReviews ?? true;
  const dir = await Deno.makeTempDir({ prefix: "weft-kube-api-" });
  const tls = opts.tls
    ? await generateCert(dir, [...new Set([hostname, "127.0.0.1", "localhost"])])
    : undefined;
  if (tls) await Deno.writeTextFile(`${dir}/ca.crt`, tls.ca);
  let port = opts.port ?? 0;
  const requests: RequestRecord[] = [];
  let seq = 0;
  let faults: KubeFaults = { ...opts.faults };
  /** Open watch streams. */
  const watches = new Set<OpenWatch>();
  /** Each stored object's JSON, made once however many watches send it (stored objects never change). */
  const encoded = new WeakMap<Obj, string>();
  const listed = new WeakMap<Obj, string>();
  const itemJson = (o: Obj): string => {
    let j = listed.get(o);
    if (j === undefined) listed.set(o, j = JSON.stringify(listItem(o)));
    return j;
  };
  const eventLine = (type: string, o: Obj): string => {
    let j = encoded.get(o);
    if (j === undefined) encoded.set(o, j = JSON.stringify(o));
    return `{"type":"${type}","object":${j}}\n`;
  };
  let server: Deno.HttpServer | undefined;
  let aborter: AbortController | undefined;
  const snapshots = new Map<string, { items: Obj[]; rv: number; at: number }>();
  let watchDelayMs = opts.watchDelayMs ?? 0;

  const userOf = (req: Request): string | undefined => {
    if (!opts.tokens) return "system:anonymous";
    const m = req.headers.get("authorization")?.match(/^Bearer\s+(.+)$/i);
    return m ? opts.tokens[m[1]!.trim()] : undefined;
  };

  const discovery = (path: string): Response | undefined => {
    const groups = new Map<string, KindDef[]>();
    for (const d of store.kinds.values()) {
      const gv = apiVersionOf(d);
      groups.set(gv, [...(groups.get(gv) ?? []), d]);
    }
    if (path === "/version") {
      return json({
        major: "1",
        minor: "32",
        gitVersion: "v1.32.0-weft-test",
        gitCommit: "0000000000000000000000000000000000000000",
        gitTreeState: "clean",
        buildDate: "2025-01-01T00:00:00Z",
        goVersion: "go1.23",
        compiler: "gc",
        platform: "linux/amd64",
      });
    }
    if (path === "/healthz" || path === "/readyz" || path === "/livez") {
      return new Response("ok", { headers: { "content-type": "text/plain" } });
    }
    if (path === "/api") {
      return json({
        kind: "APIVersions",
        versions: ["v1"],
        serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: `${hostname}:${port}` }],
      });
    }
    if (path === "/apis") {
      const byGroup = new Map<string, string[]>();
      for (const d of store.kinds.values()) {
        if (!d.group) continue;
        const vs = byGroup.get(d.group) ?? [];
        if (!vs.includes(d.version)) vs.push(d.version);
        byGroup.set(d.group, vs);
      }
      if (accessReviews) byGroup.set("authorization.k8s.io", ["v1"]);
      return json({
        kind: "APIGroupList",
        apiVersion: "v1",
        groups: [...byGroup].map(([name, vs]) => ({
          name,
          versions: vs.map((v) => ({ groupVersion: `${name}/${v}`, version: v })),
          preferredVersion: { groupVersion: `${name}/${vs[0]}`, version: vs[0] },
        })),
      });
    }
    const gv = path === "/api/v1" ? "v1" : path.match(/^\/apis\/([^/]+\/[^/]+)$/)?.[1];
    if (!gv) return undefined;
    if (gv === "authorization.k8s.io/v1" && accessReviews) {
      return json({
        kind: "APIResourceList",
        apiVersion: "v1",
        groupVersion: gv,
        resources: [{
          name: "selfsubjectaccessreviews",
          singularName: "selfsubjectaccessreview",
          namespaced: false,
          kind: "SelfSubjectAccessReview",
          verbs: ["create"],
        }],
      });
    }
    const kinds = groups.get(gv);
    if (!kinds) return undefined;
    const resources: Obj[] = [];
    for (const d of kinds) {
      resources.push({
        name: d.plural,
        singularName: d.singular,
        namespaced: d.namespaced,
        kind: d.kind,
        verbs: ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        ...(d.shortNames ? { shortNames: d.shortNames } : {}),
      });
      if (d.status) {
        resources.push({
          name: `${d.plural}/status`,
          singularName: "",
          namespaced: d.namespaced,
          kind: d.kind,
          verbs: ["get", "patch", "update"],
        });
      }
    }
    return json({ kind: "APIResourceList", apiVersion: "v1", groupVersion: gv, resources });
  };

  /** Parses a resource path; undefined when it is none. */
  const route = (path: string) => {
    let group = "", rest: string[];
    const parts = path.split("/").filter(Boolean);
    if (parts[0] === "api" && parts[1] === "v1") rest = parts.slice(2);
    else if (parts[0] === "apis" && parts.length >= 3) {
      group = parts[1]!;
      rest = parts.slice(3);
      if (
        store.kinds.size &&
        ![...store.kinds.values()].some((d) => d.group === group && d.version === parts[2])
      ) {
        if (!(group === "authorization.k8s.io" && parts[2] === "v1")) return undefined;
      }
    } else return undefined;
    let namespace = "";
    if (rest[0] === "namespaces" && rest.length >= 3 && store.kind(group, rest[2]!)) {
      namespace = rest[1]!;
      rest = rest.slice(2);
    }
    const [plural, name = "", sub = ""] = rest;
    if (!plural) return undefined;
    return { group, plural, name, sub, namespace, extra: rest.length > 3 };
  };

  const forbidden = (a: AuthzAttributes): Response => {
    const res = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
    const what = a.name
      ? `${a.resource}${a.group ? `.${a.group}` : ""} "${a.name}"`
      : `${a.resource}${a.group ? `.${a.group}` : ""}`;
    const scope = a.namespace ? `in the namespace "${a.namespace}"` : "at the cluster scope";
    return json(
      status(
        403,
        "Forbidden",
        `${what} is forbidden: User "${a.user}" cannot ${a.verb} resource "${res}" in API group "${a.group}" ${scope}`,
        { ...(a.name ? { name: a.name } : {}), ...(a.group ? { group: a.group } : {}), kind: a.resource },
      ),
      403,
    );
  };

  const watchResponse = (
    d: KindDef,
    sel: { namespace?: string; labelSelector?: string; fieldSelector?: string },
    params: URLSearchParams,
    asTable: boolean,
  ): Response => {
    const rvText = params.get("resourceVersion") ?? "";
    const fromRV = rvText === "" ? undefined : Number(rvText);
    if (fromRV !== undefined && !Number.isFinite(fromRV)) {
      return failure(new ApiError(400, "BadRequest", `invalid resource version: ${JSON.stringify(rvText)}`));
    }
    const bookmarks = params.get("allowWatchBookmarks") === "true";
    const timeoutS = Number(params.get("timeoutSeconds") ?? "0");
    const enc = new TextEncoder();
    let unsubscribe = () => {};
    const timers: ReturnType<typeof setTimeout>[] = [];
    const w: OpenWatch = { close: () => {}, frozen: false };
    const body = new ReadableStream<Uint8Array>({
      start(ctrl) {
        let open = true;
        const send = (text: string) => {
          if (!open || w.frozen) return; // a frozen watch is a dead connection: nothing gets through
          try {
            ctrl.enqueue(enc.encode(text));
          } catch { /* closed */ }
        };
        // A slow watch: each event leaves watchDelayMs after it happened (equal delays keep the order).
        const line = (text: string) => {
          const delay = watchDelayMs;
          if (delay <= 0) return send(text);
          timers.push(setTimeout(() => send(text), delay));
        };
        w.close = () => {
          if (!open) return;
          open = false;
          unsubscribe();
          for (const t of timers) clearInterval(t);
          watches.delete(w);
          try {
            ctrl.close();
          } catch { /* already */ }
        };
        watches.add(w);
        try {
          const full = params.get("includeObject") === "Object";
          unsubscribe = store.watch(d, sel, fromRV, (type, o) =>
            line(
              asTable
                ? JSON.stringify({
                  type,
                  object: table(d, [o], Number((o.metadata as Obj).resourceVersion), full),
                }) + "\n"
                : eventLine(type, o),
            ));
        } catch (err) {
          // The real server answers 200 and sends the failure as an ERROR event.
          const e = err as ApiError;
          send(
            JSON.stringify({
              type: "ERROR",
              object: status(e.code ?? 500, e.reason ?? "InternalError", e.message),
            }) + "\n",
          );
          w.close();
          return;
        }
        if (bookmarks) {
          timers.push(setInterval(() =>
            line(
              JSON.stringify({
                type: "BOOKMARK",
                object: {
                  kind: d.kind,
                  apiVersion: apiVersionOf(d),
                  metadata: { resourceVersion: String(store.resourceVersion), creationTimestamp: null },
                },
              }) + "\n",
            ), bookmarkMs));
        }
        if (timeoutS > 0) timers.push(setTimeout(() => !w.frozen && w.close(), timeoutS * 1000));
      },
      cancel() {
        w.close();
      },
    });
    return new Response(body, {
      headers: { "content-type": "application/json", "transfer-encoding": "chunked" },
    });
  };

  const handle = async (req: Request): Promise<{ res: Response; user: string; body?: string }> => {
    const url = new URL(req.url);
    const path = url.pathname.replace(/\/+$/, "") || "/";
    const user = userOf(req);
    if (user === undefined) {
      return { res: json(status(401, "Unauthorized", "Unauthorized"), 401), user: "" };
    }
    if (req.method === "GET") {
      const d = discovery(path);
      if (d) return { res: d, user };
    }
    if (path.startsWith("/openapi/")) {
      return {
        res: json(status(404, "NotFound", "the server could not find the requested resource"), 404),
        user,
      };
    }
    const r = route(path);
    if (!r) {
      return {
        res: json(status(404, "NotFound", "the server could not find the requested resource"), 404),
        user,
      };
    }
    const text = ["POST", "PUT", "PATCH"].includes(req.method) ? await req.text() : undefined;
    const bodyType = (req.headers.get("content-type") ?? "").split(";")[0]!.trim();
    if ((req.method === "POST" || req.method === "PUT") && bodyType && !bodyType.endsWith("json")) {
      // The real server also takes protobuf (kubectl create/auth can-i send it); this one speaks JSON only.
      return {
        res: json(
          status(
            415,
            "UnsupportedMediaType",
            `the body of the request was in an unknown format - accepted media types include: application/json`,
          ),
          415,
        ),
        user,
        body: text ?? "",
      };
    }
    const withBody = (res: Response) => ({ res, user, ...(text !== undefined ? { body: text } : {}) });
    const params = url.searchParams;
    const dryRun = params.getAll("dryRun").includes("All");

    // authorization.k8s.io SelfSubjectAccessReview.
    if (r.group === "authorization.k8s.io" && r.plural === "selfsubjectaccessreviews" && accessReviews) {
      if (req.method !== "POST") {
        return withBody(
          json(
            status(
              405,
              "MethodNotAllowed",
              "the server does not allow this method on the requested resource",
            ),
            405,
          ),
        );
      }
      const review = JSON.parse(text ?? "{}") as Obj;
      const ra = ((review.spec as Obj | undefined)?.resourceAttributes ?? {}) as Record<string, string>;
      const allowed = authorize({
        user,
        verb: ra.verb ?? "",
        group: ra.group ?? "",
        resource: ra.resource ?? "",
        subresource: ra.subresource ?? "",
        name: ra.name ?? "",
        namespace: ra.namespace ?? "",
      });
      return withBody(json({
        kind: "SelfSubjectAccessReview",
        apiVersion: "authorization.k8s.io/v1",
        metadata: { creationTimestamp: null },
        spec: review.spec ?? {},
        status: { allowed, ...(allowed ? { reason: "allowed by the test API server's rules" } : {}) },
      }, 201));
    }

    const d = store.kind(r.group, r.plural);
    if (!d || r.extra || (r.sub && r.sub !== "status") || (r.sub === "status" && !d.status)) {
      return withBody(json(status(404, "NotFound", "the server could not find the requested resource"), 404));
    }
    const watch = req.method === "GET" && (params.get("watch") === "true" || params.get("watch") === "1");
    const verb = ({
      GET: r.name ? "get" : watch ? "watch" : "list",
      POST: "create",
      PUT: "update",
      PATCH: "patch",
      DELETE: "delete",
    } as Record<string, string>)[req.method];
    if (!verb) {
      return withBody(json(status(405, "MethodNotAllowed", "the server does not allow this method"), 405));
    }
    const attrs: AuthzAttributes = {
      user,
      verb,
      group: r.group,
      resource: r.plural,
      subresource: r.sub,
      name: r.name,
      namespace: r.namespace,
    };
    if (!authorize(attrs)) return withBody(forbidden(attrs));
    const sel = {
      ...(d.namespaced && r.namespace ? { namespace: r.namespace } : {}),
      ...(params.get("labelSelector") ? { labelSelector: params.get("labelSelector")! } : {}),
      ...(params.get("fieldSelector") ? { fieldSelector: params.get("fieldSelector")! } : {}),
    };
    try {
      if (verb === "watch") return withBody(watchResponse(d, sel, params, wantsTable(req)));
      if (verb === "list") {
        const cont = params.get("continue");
        const listRV = params.get("resourceVersion") ?? "";
        if (cont && listRV !== "") {
          throw new ApiError(
            400,
            "BadRequest",
            "specifying resource version is not allowed when using continue",
          );
        }
        // resourceVersion=0 is served from the watch cache, which ignores limit: one answer, every item.
        const limit = listRV === "0" ? 0 : Number(params.get("limit") ?? "0");
        let items: Obj[], rv: number, offset = 0, id: string;
        if (cont) {
          let tok: { id: string; offset: number };
          try {
            tok = JSON.parse(atob(cont));
          } catch {
            throw new ApiError(400, "BadRequest", "continue key is not valid: illegal base64 data");
          }
          const snap = snapshots.get(tok.id);
          if (!snap) {
            throw new ApiError(
              410,
              "Expired",
              "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            );
          }
          ({ items, rv } = snap);
          offset = tok.offset;
          id = tok.id;
        } else {
          ({ items, rv } = store.list(d, sel));
          id = crypto.randomUUID();
        }
        const page = limit > 0 ? items.slice(offset, offset + limit) : items.slice(offset);
        const next = offset + page.length;
        const meta: Obj = { resourceVersion: String(rv) };
        if (next < items.length) {
          snapshots.set(id, { items, rv, at: Date.now() });
          meta.continue = btoa(JSON.stringify({ id, offset: next }));
          meta.remainingItemCount = items.length - next;
        } else snapshots.delete(id);
        for (const [k, s] of snapshots) if (Date.now() - s.at > 60_000) snapshots.delete(k);
        if (wantsTable(req)) {
          const t = table(d, page, rv, params.get("includeObject") === "Object");
          (t.metadata as Obj) = meta;
          return withBody(json(t));
        }
        // Built from each item's JSON, made once per stored object (a bench lists 5000 13 KB nodes).
        const head = JSON.stringify({ kind: `${d.kind}List`, apiVersion: apiVersionOf(d), metadata: meta });
        const body = `${head.slice(0, -1)},"items":[${page.map(itemJson).join(",")}]}`;
        return withBody(new Response(body, { headers: { "content-type": "application/json" } }));
      }
      if (verb === "get") {
        const o = store.get(d, r.namespace, r.name);
        if (wantsTable(req)) {
          return withBody(
            json(table(d, [o], store.resourceVersion, params.get("includeObject") === "Object")),
          );
        }
        return withBody(json(o));
      }
      if (verb === "create") {
        const o = JSON.parse(text ?? "{}") as Obj;
        const created = dryRun ? { ...o } : store.create(d, r.namespace, o);
        return withBody(json(created, 201));
      }
      if (verb === "delete") {
        const gone = store.delete(d, r.namespace, r.name);
        const md = gone.metadata as Obj;
        return withBody(json({
          kind: "Status",
          apiVersion: "v1",
          metadata: {},
          status: "Success",
          details: { name: md.name!, ...(d.group ? { group: d.group } : {}), kind: d.plural, uid: md.uid! },
        }));
      }
      const sub = r.sub === "status" ? "status" as const : undefined;
      if (verb === "update") {
        const o = JSON.parse(text ?? "{}") as Obj;
        return withBody(json(store.update(d, r.namespace, r.name, o, sub, dryRun)));
      }
      // patch
      const ct = (req.headers.get("content-type") ?? "").split(";")[0]!.trim();
      const patch = JSON.parse(text ?? "null") as Json;
      const cur = store.get(d, r.namespace, r.name);
      let next: Json;
      if (ct === "application/strategic-merge-patch+json") {
        next = applyStrategicMergePatch(cur, patch, d.mergeKeys);
      } else if (ct === "application/merge-patch+json") next = applyMergePatch(cur, patch);
      else if (ct === "application/json-patch+json") next = applyJsonPatch(cur, patch);
      else {
        throw new ApiError(
          415,
          "UnsupportedMediaType",
          `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`,
        );
      }
      if (typeof next !== "object" || next === null || Array.isArray(next)) {
        throw new ApiError(422, "Invalid", "the patch did not produce an object");
      }
      // A resourceVersion the patch carries is a precondition; otherwise the current one is implied.
      const pmeta =
        (typeof patch === "object" && patch && !Array.isArray(patch) ? patch.metadata : undefined) as
          | Obj
          | undefined;
      const nmeta = { ...((next as Obj).metadata as Obj | undefined) };
      if (ct === "application/json-patch+json" || pmeta?.resourceVersion === undefined) {
        nmeta.resourceVersion = (cur.metadata as Obj).resourceVersion!;
      }
      (next as Obj).metadata = nmeta;
      return withBody(json(store.update(d, r.namespace, r.name, next as Obj, sub, dryRun)));
    } catch (err) {
      return withBody(failure(err));
    }
  };

  /** Requests held by the black hole: released (never answered) when the server stops. */
  const held = new Set<() => void>();
  const hold = (signal: AbortSignal) =>
    new Promise<void>((resolve) => {
      const done = () => {
        held.delete(done);
        resolve();
      };
      held.add(done);
      signal.addEventListener("abort", done, { once: true });
    });

  const answer = async (req: Request, rec: RequestRecord): Promise<Response> => {
    if (faults.blackhole) {
      await hold(req.signal);
      return new Response(null, { status: 503 }); // nobody reads it: the client gave up or the server stopped
    }
    if (rec.verb) {
      if (faults.delayMs) await new Promise((r) => setTimeout(r, faults.delayMs));
      if (faults.listDelayMs && rec.verb === "list") {
        await new Promise((r) => setTimeout(r, faults.listDelayMs));
      }
      const t = faults.throttle;
      if (t && Math.random() < t.share) {
        const res = json(status(429, "TooManyRequests", "Too many requests, please try again later."), 429);
        res.headers.set("retry-after", String(t.retryAfterSeconds));
        return res;
      }
    }
    try {
      const out = await handle(req);
      rec.user = out.user;
      if (out.body !== undefined) rec.body = out.body;
      return out.res;
    } catch (err) {
      return failure(err);
    }
  };

  const serve = () => {
    aborter = new AbortController();
    const listen = () =>
      Deno.serve({
        hostname,
        port,
        signal: aborter!.signal,
        onListen: () => {},
        ...(tls ? { cert: tls.cert, key: tls.key } : {}),
      }, async (req) => {
        const u = new URL(req.url);
        const rec: RequestRecord = {
          seq: ++seq,
          at: Date.now(),
          ...classify(req.method, u),
          method: req.method,
          path: u.pathname,
          query: u.search.slice(1),
          contentType: req.headers.get("content-type") ?? "",
          status: 0,
          user: "",
        };
        requests.push(rec);
        if (requests.length > 20_000) requests.splice(0, requests.length - 20_000);
        const res = await answer(req, rec);
        rec.status = res.status;
        opts.onRequest?.(rec);
        return res;
      });
    server = opts.netns ? withNetns(opts.netns, listen) : listen();
    port = (server.addr as Deno.NetAddr).port;
  };

  /** A watch's verb and resource from its method and URL, without handling it. */
  const classify = (method: string, u: URL): { verb: string; resource: string } => {
    const r = route(u.pathname.replace(/\/+$/, "") || "/");
    if (!r) return { verb: "", resource: "" };
    const watch = u.searchParams.get("watch") === "true" || u.searchParams.get("watch") === "1";
    const verb = ({
      GET: r.name ? "get" : watch ? "watch" : "list",
      POST: "create",
      PUT: "update",
      PATCH: "patch",
      DELETE: "delete",
    } as Record<string, string>)[method] ?? method.toLowerCase();
    return { verb, resource: `${r.plural}${r.group ? `.${r.group}` : ""}${r.sub ? `/${r.sub}` : ""}` };
  };

  const closeWatches = () => {
    for (const w of [...watches]) w.close();
  };
  const stop = async () => {
    if (!server) return;
    closeWatches();
    for (const release of [...held]) release();
    const s = server;
    server = undefined;
    aborter?.abort();
    await s.finished.catch(() => {});
  };
  const select = (f: { verb?: string; resource?: string; user?: string; status?: number }, since: number) =>
    requests.filter((r) =>
      r.seq > since && (f.verb === undefined || r.verb === f.verb) &&
      (f.resource === undefined || r.resource === f.resource) &&
      (f.user === undefined || r.user === f.user) &&
      (f.status === undefined || r.status === f.status)
    );

  serve();
  const scheme = tls ? "https" : "http";
  const urlHost = hostname.includes(":") ? `[${hostname}]` : hostname;
  const api: KubeApiServer = {
    url: `${scheme}://${urlHost}:${port}`,
    port,
    store,
    ...(tls ? { caFile: `${dir}/ca.crt`, caPem: tls.ca } : {}),
    requests,
    get openWatches() {
      return watches.size;
    },
    get watchDelayMs() {
      return watchDelayMs;
    },
    set watchDelayMs(ms: number) {
      watchDelayMs = ms;
    },
    get faults() {
      return faults;
    },
    set faults(f: KubeFaults) {
      faults = f;
      if (f.blackhole) { for (const w of watches) w.frozen = true; }
    },
    mark: () => seq,
    warm() {
      for (const d of store.kinds.values()) for (const o of store.list(d).items) itemJson(o);
    },
    count: (f = {}, since = 0) => select(f, since).length,
    counts(since = 0) {
      const out: Record<string, number> = {};
      for (const r of select({}, since)) {
        if (!r.verb) continue;
        const k = `${r.verb} ${r.resource}`;
        out[k] = (out[k] ?? 0) + 1;
      }
      return out;
    },
    async writeKubeconfig(path, o = {}) {
      const cluster: Record<string, string> = { server: api.url };
      if (tls) cluster["certificate-authority-data"] = btoa(tls.ca);
      const cfg = {
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "test", cluster }],
        users: [{ name: "test", user: o.token ? { token: o.token } : {} }],
        contexts: [{ name: "test", context: { cluster: "test", user: "test" } }],
        "current-context": "test",
      };
      await Deno.writeTextFile(path, JSON.stringify(cfg, null, 2));
    },
    closeWatches,
    stop,
    start() {
      if (!server) serve();
    },
    async restart(o = {}) {
      await stop();
      if (o.loseHistory) store.compact();
      if (o.downMs) await new Promise((r) => setTimeout(r, o.downMs));
      serve();
    },
    async close() {
      await stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
    [Symbol.asyncDispose]() {
      return api.close();
    },
  };
  return api;
}

export { ApiError, DEFAULT_KINDS, type KindDef, KubeStore };
