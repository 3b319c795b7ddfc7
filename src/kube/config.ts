/**
 * Where the Kubernetes API is and how to authenticate to it, chosen as flannel (client-go's
 * `clientcmd.BuildConfigFromFlags`) chooses:
 *
 * - `--kubeconfig-file`: that kubeconfig's current context (server, CA, client certificate, token,
 *   insecure-skip-tls-verify; relative file paths resolve against the kubeconfig's folder), with the
 *   server replaced by `--kube-api-url` when that is given too.
 * - neither: the in-cluster service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, the token and CA under
 *   `/var/run/secrets/kubernetes.io/serviceaccount`; the token file is re-read when it rotates).
 * - only `--kube-api-url`: that server; client-go would send no credentials, weft uses the service
 *   account's token and CA when they exist (a pod talking to the API before kube-proxy is up).
 *
 * Every error names the file and key at fault.
 *
 * @module
 */

/** The service account folder a pod sees. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** How to reach and authenticate to the API server. */
export interface KubeConnection {
  /** Base URL, e.g. `https://10.96.0.1:443`. */
  server: string;
  /** CA bundle (PEM) that signs the server's certificate; the system roots when absent. */
  caPem?: string;
  /** Client certificate (PEM). */
  certPem?: string;
  /** Client key (PEM). */
  keyPem?: string;
  /** The file `certPem` came from: re-read when it changes (the kubelet rotates its certificate). */
  certFile?: string;
  /** The file `keyPem` came from. */
  keyFile?: string;
  /** The kubeconfig this came from (and its context): re-read when it changes (inline credentials rotated). */
  kubeconfig?: { path: string; context?: string };
  /** Skip server certificate verification (kubeconfig `insecure-skip-tls-verify`). */
  insecure?: boolean;
  /** A bearer token. */
  token?: string;
  /** A file holding the bearer token, re-read when it changes (rotation). */
  tokenFile?: string;
  /** Basic auth (kubeconfig `username`/`password`). */
  basic?: { username: string; password: string };
  /** Where this came from, for logs and errors. */
  source: string;
}

/** A configuration problem (unreadable or incomplete kubeconfig, no in-cluster environment). */
export class KubeConfigError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "KubeConfigError";
  }
}

type Rec = Record<string, unknown>;

function named(list: unknown, name: string, what: string, file: string): Rec {
  const items = Array.isArray(list) ? list as Rec[] : [];
  const hit = items.find((i) => i?.name === name);
  if (!hit) throw new KubeConfigError(`${file}: no ${what} named "${name}" (in ${what}s)`);
  return (hit[what] ?? {}) as Rec;
}

function readText(path: string, what: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (err) {
    throw new KubeConfigError(`${what} ${path}: ${(err as Error).message}`);
  }
}

function b64(text: unknown, what: string): string {
  try {
    return new TextDecoder().decode(
      Uint8Array.from(atob(String(text).replace(/\s/g, "")), (c) => c.charCodeAt(0)),
    );
  } catch {
    throw new KubeConfigError(`${what}: not base64`);
  }
}

/** Reads a kubeconfig file's current context (or `context`). */
export async function loadKubeconfig(path: string, context?: string): Promise<KubeConnection> {
  const text = readText(path, "kubeconfig");
  let doc: Rec | undefined;
  // A kubeconfig in JSON (YAML's subset, as tools often write it) needs no YAML parser: ~50 ms less at start.
  if (text.trimStart().startsWith("{")) {
    try {
      doc = JSON.parse(text) as Rec;
    } catch { /* YAML flow style after all: the YAML parser reads it */ }
  }
  if (!doc) {
    const { parse } = await import("yaml");
    try {
      doc = (parse(text) ?? {}) as Rec;
    } catch (err) {
      throw new KubeConfigError(`kubeconfig ${path}: not YAML: ${(err as Error).message}`);
    }
  }
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
  const resolve = (p: unknown) => {
    const s = String(p);
    return s.startsWith("/") ? s : `${dir}/${s}`;
  };
  const ctxName = context ?? String(doc["current-context"] ?? "");
  if (!ctxName) throw new KubeConfigError(`kubeconfig ${path}: no current-context`);
  const ctx = named(doc.contexts, ctxName, "context", `kubeconfig ${path}`);
  const cluster = named(doc.clusters, String(ctx.cluster ?? ""), "cluster", `kubeconfig ${path}`);
  const user = ctx.user ? named(doc.users, String(ctx.user), "user", `kubeconfig ${path}`) : {};
  if (!cluster.server) {
    throw new KubeConfigError(`kubeconfig ${path}: cluster "${ctx.cluster}" has no server`);
  }
  const out: KubeConnection = {
    server: String(cluster.server).replace(/\/+$/, ""),
    source: `kubeconfig ${path}`,
    kubeconfig: { path, ...(context ? { context } : {}) },
  };
  if (cluster["certificate-authority-data"]) {
    out.caPem = b64(cluster["certificate-authority-data"], `kubeconfig ${path}: certificate-authority-data`);
  } else if (cluster["certificate-authority"]) {
    out.caPem = readText(
      resolve(cluster["certificate-authority"]),
      `kubeconfig ${path}: certificate-authority`,
    );
  }
  if (cluster["insecure-skip-tls-verify"] === true) out.insecure = true;
  if (user["client-certificate-data"]) {
    out.certPem = b64(user["client-certificate-data"], `kubeconfig ${path}: client-certificate-data`);
  } else if (user["client-certificate"]) {
    out.certFile = resolve(user["client-certificate"]);
    out.certPem = readText(out.certFile, `kubeconfig ${path}: client-certificate`);
  }
  if (user["client-key-data"]) {
    out.keyPem = b64(user["client-key-data"], `kubeconfig ${path}: client-key-data`);
  } else if (user["client-key"]) {
    out.keyFile = resolve(user["client-key"]);
    out.keyPem = readText(out.keyFile, `kubeconfig ${path}: client-key`);
  }
  if (!!out.certPem !== !!out.keyPem) {
    throw new KubeConfigError(
      `kubeconfig ${path}: user "${ctx.user}" has a client certificate without a key or the other way round`,
    );
  }
  if (user.token) out.token = String(user.token);
  else if (user.tokenFile) out.tokenFile = resolve(user.tokenFile);
  if (user.username !== undefined && user.password !== undefined) {
    out.basic = { username: String(user.username), password: String(user.password) };
  }
  for (const unsupported of ["exec", "auth-provider"]) {
    if (user[unsupported] && !out.token && !out.tokenFile && !out.certPem) {
      throw new KubeConfigError(
        `kubeconfig ${path}: user "${ctx.user}" authenticates with "${unsupported}", which weft does not run: give it a token or a client certificate`,
      );
    }
  }
  return out;
}

/** The in-cluster configuration, or a {@linkcode KubeConfigError} saying what is missing. */
export function inClusterConfig(
  env: (k: string) => string | undefined = (k) => Deno.env.get(k),
  dir = SERVICE_ACCOUNT_DIR,
): KubeConnection {
  const host = env("KUBERNETES_SERVICE_HOST"), port = env("KUBERNETES_SERVICE_PORT");
  if (!host || !port) {
    throw new KubeConfigError(
      "no Kubernetes API given: pass --kubeconfig-file or --kube-api-url, or run in a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set)",
    );
  }
  const h = host.includes(":") ? `[${host}]` : host;
  return {
    server: `https://${h}:${port}`,
    caPem: readText(`${dir}/ca.crt`, "service account CA"),
    tokenFile: `${dir}/token`,
    source: "in-cluster service account",
  };
}

/** What the flags say (flannel's `--kube-api-url`, `--kubeconfig-file`). */
export interface KubeFlags {
  /** `--kube-api-url`. */
  apiUrl?: string;
  /** `--kubeconfig-file`. */
  kubeconfig?: string;
}

/** The connection the flags select (see the module comment for the order). */
export async function resolveConnection(
  flags: KubeFlags,
  env: (k: string) => string | undefined = (k) => Deno.env.get(k),
  saDir = SERVICE_ACCOUNT_DIR,
): Promise<KubeConnection> {
  const url = flags.apiUrl?.replace(/\/+$/, "");
  if (url && !/^https?:\/\//.test(url)) {
    throw new KubeConfigError(`--kube-api-url ${flags.apiUrl}: must start with http:// or https://`);
  }
  if (flags.kubeconfig) {
    const c = await loadKubeconfig(flags.kubeconfig);
    return url ? { ...c, server: url, source: `${c.source} with --kube-api-url ${url}` } : c;
  }
  if (url) {
    let sa: Partial<KubeConnection> = {};
    try {
      sa = { caPem: Deno.readTextFileSync(`${saDir}/ca.crt`), tokenFile: `${saDir}/token` };
      Deno.statSync(`${saDir}/token`);
    } catch {
      sa = {};
    }
    return {
      ...sa,
      server: url,
      source: `--kube-api-url ${url}${sa.tokenFile ? " with the service account" : ""}`,
    };
  }
  return inClusterConfig(env, saDir);
}
