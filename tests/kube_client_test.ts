/**
 * The Kubernetes connection and client: kubeconfig parsing (token, client certificate, CA, insecure,
 * relative paths, contexts, errors), in-cluster config, --kube-api-url, token rotation, TLS verification
 * on and off, and a client certificate a TLS server demands (openssl s_server -Verify).
 */
import assert from "node:assert/strict";
import { KubeClient } from "../src/kube/client.ts";
import { inClusterConfig, KubeConfigError, loadKubeconfig, resolveConnection } from "../src/kube/config.ts";
import { freePort } from "./helpers/etcd.ts";
import { startKubeApiServer } from "./helpers/kube_api_server.ts";
import { hasBinary, skipUnless } from "./helpers/skip.ts";

async function openssl(dir: string, args: string[]) {
  const r = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" }).output();
  if (!r.success) throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, all in `dir`. */
async function makePki(dir: string) {
  await openssl(dir, [
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
    "1",
    "-subj",
    "/CN=test-ca",
  ]);
  await Deno.writeTextFile(`${dir}/srv.cnf`, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  await Deno.writeTextFile(`${dir}/cli.cnf`, "extendedKeyUsage=clientAuth\n");
  for (const [name, cnf, cn] of [["srv", "srv.cnf", "server"], ["cli", "cli.cnf", "system:node:n1"]]) {
    await openssl(dir, [
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${cn}`,
    ]);
    await openssl(dir, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.crt`,
      "-days",
      "1",
      "-extfile",
      cnf!,
    ]);
  }
}

Deno.test("loadKubeconfig reads the current context: server, CA file (relative), client cert data, token", async () => {
  const dir = await Deno.makeTempDir({ prefix: "weft-kubeconfig-" });
  try {
    await Deno.mkdir(`${dir}/pki`);
    await Deno.writeTextFile(`${dir}/pki/ca.crt`, "CA PEM");
    await Deno.writeTextFile(
      `${dir}/config`,
      `apiVersion: v1
kind: Config
current-context: prod
clusters:
  - name: prod-cluster
    cluster:
      server: https://10.0.0.1:6443/
      certificate-authority: pki/ca.crt
  - name: lab
    cluster:
      server: https://lab:6443
      insecure-skip-tls-verify: true
contexts:
  - name: prod
    context: { cluster: prod-cluster, user: flannel }
  - name: lab
    context: { cluster: lab, user: tokenfile }
users:
  - name: flannel
    user:
      client-certificate-data: ${btoa("CERT PEM")}
      client-key-data: ${btoa("KEY PEM")}
      token: abc
  - name: tokenfile
    user:
      tokenFile: tok
`,
    );
    const c = await loadKubeconfig(`${dir}/config`);
    assert.equal(c.server, "https://10.0.0.1:6443");
    assert.equal(c.caPem, "CA PEM");
    assert.equal(c.certPem, "CERT PEM");
    assert.equal(c.keyPem, "KEY PEM");
    assert.equal(c.token, "abc");
    const lab = await loadKubeconfig(`${dir}/config`, "lab");
    assert.equal(lab.insecure, true);
    assert.equal(lab.tokenFile, `${dir}/tok`);
    await assert.rejects(loadKubeconfig(`${dir}/config`, "nope"), /no context named "nope"/);
    await assert.rejects(loadKubeconfig(`${dir}/missing`), (e: Error) => e instanceof KubeConfigError);
    await Deno.writeTextFile(
      `${dir}/exec`,
      `current-context: c
contexts: [{ name: c, context: { cluster: k, user: u } }]
clusters: [{ name: k, cluster: { server: "https://x" } }]
users: [{ name: u, user: { exec: { command: aws } } }]
`,
    );
    await assert.rejects(loadKubeconfig(`${dir}/exec`), /authenticates with "exec", which weft does not run/);
    // --kube-api-url replaces the kubeconfig's server.
    const both = await resolveConnection({ kubeconfig: `${dir}/config`, apiUrl: "https://10.96.0.1:443" });
    assert.equal(both.server, "https://10.96.0.1:443");
    assert.equal(both.token, "abc");
    await assert.rejects(resolveConnection({ apiUrl: "10.0.0.1:6443" }), /must start with http/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("in-cluster config comes from KUBERNETES_SERVICE_HOST/PORT and the service account folder", async () => {
  const sa = await Deno.makeTempDir({ prefix: "weft-sa-" });
  try {
    await Deno.writeTextFile(`${sa}/ca.crt`, "SA CA");
    await Deno.writeTextFile(`${sa}/token`, "sa-token");
    const env: Record<string, string> = {
      KUBERNETES_SERVICE_HOST: "fd00::1",
      KUBERNETES_SERVICE_PORT: "443",
    };
    const c = inClusterConfig((k) => env[k], sa);
    assert.equal(c.server, "https://[fd00::1]:443");
    assert.equal(c.caPem, "SA CA");
    assert.equal(c.tokenFile, `${sa}/token`);
    assert.throws(() => inClusterConfig(() => undefined, sa), /pass --kubeconfig-file or --kube-api-url/);
    // Only --kube-api-url: the service account's token and CA go with it.
    const url = await resolveConnection({ apiUrl: "https://10.0.0.1:6443" }, () => undefined, sa);
    assert.equal(url.tokenFile, `${sa}/token`);
    assert.equal(url.caPem, "SA CA");
  } finally {
    await Deno.remove(sa, { recursive: true });
  }
});

Deno.test({
  name: "the client re-reads a rotated token file, verifies TLS unless told not to",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const tokens: Record<string, string> = { "token-1": "weft" };
    await using s = await startKubeApiServer({ tls: true, tokens });
    const dir = await Deno.makeTempDir({ prefix: "weft-token-" });
    try {
      await Deno.writeTextFile(`${dir}/token`, "token-1");
      const client = new KubeClient({
        server: s.url,
        caPem: s.caPem!,
        tokenFile: `${dir}/token`,
        source: "test",
      });
      assert.equal((await client.get<{ kind: string }>("/api/v1/nodes")).kind, "NodeList");
      // The kubelet rotates the projected token: the old one stops working.
      tokens["token-2"] = "weft";
      delete tokens["token-1"];
      await Deno.writeTextFile(`${dir}/token.new`, "token-2\n");
      await Deno.rename(`${dir}/token.new`, `${dir}/token`);
      assert.equal((await client.get<{ kind: string }>("/api/v1/nodes")).kind, "NodeList");
      client.close();

      const unverified = new KubeClient({ server: s.url, token: "token-2", source: "test" });
      await assert.rejects(unverified.get("/version"), /unreachable/);
      unverified.close();
      const insecure = new KubeClient({ server: s.url, token: "token-2", insecure: true, source: "test" });
      assert.equal((await insecure.get<{ kind: string }>("/api/v1/nodes")).kind, "NodeList");
      await assert.rejects(insecure.get("/api/v1/nodes/nope"), /nodes "nope" not found/);
      insecure.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "the client presents its certificate to a server that demands one (openssl s_server -Verify)",
  ignore: skipUnless(hasBinary("openssl"), "openssl is not installed"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "weft-mtls-" });
    const port = freePort();
    await makePki(dir);
    await Deno.writeTextFile(`${dir}/version.json`, '{"gitVersion":"v1.32.0-s_server"}');
    const server = new Deno.Command("openssl", {
      args: [
        "s_server",
        "-accept",
        `127.0.0.1:${port}`,
        "-cert",
        "srv.crt",
        "-key",
        "srv.key",
        "-CAfile",
        "ca.crt",
        "-Verify",
        "1",
        "-verify_return_error",
        "-WWW",
        "-quiet",
      ],
      cwd: dir,
      stdin: "piped",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      const conn = {
        server: `https://127.0.0.1:${port}`,
        caPem: await Deno.readTextFile(`${dir}/ca.crt`),
        source: "test",
      };
      const deadline = Date.now() + 30_000;
      const withCert = new KubeClient({
        ...conn,
        certPem: await Deno.readTextFile(`${dir}/cli.crt`),
        keyPem: await Deno.readTextFile(`${dir}/cli.key`),
      });
      let answer: { gitVersion?: string } | undefined;
      while (!answer && Date.now() < deadline) {
        answer = await withCert.get<{ gitVersion: string }>("/version.json").catch(() => undefined);
        if (!answer) await new Promise((r) => setTimeout(r, 200));
      }
      assert.equal(answer?.gitVersion, "v1.32.0-s_server");
      withCert.close();
      const without = new KubeClient(conn);
      await assert.rejects(without.get("/version.json"));
      without.close();
    } finally {
      server?.kill();
      await server?.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A second CA and a client certificate it signs (`cli2.crt`, `cli2.key`), beside makePki's. */
async function secondClientCert(dir: string) {
  await openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca2.key",
    "-out",
    "ca2.crt",
    "-days",
    "1",
    "-subj",
    "/CN=test-ca-2",
  ]);
  await openssl(dir, [
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "cli2.key",
    "-out",
    "cli2.csr",
    "-subj",
    "/CN=system:node:n1",
  ]);
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    "cli2.csr",
    "-CA",
    "ca2.crt",
    "-CAkey",
    "ca2.key",
    "-CAcreateserial",
    "-out",
    "cli2.crt",
    "-days",
    "1",
    "-extfile",
    "cli.cnf",
  ]);
}

Deno.test({
  name:
    "a rotated client certificate is used without a restart: certificate files, and a kubeconfig's inline data",
  ignore: !hasBinary("openssl"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "weft-rotate-" });
    const port = freePort();
    await makePki(dir);
    await secondClientCert(dir);
    await Deno.writeTextFile(`${dir}/version.json`, '{"gitVersion":"v1.32.0-s_server"}');
    // The server trusts only the second CA: the first certificate is the "expired" one, the second the renewed
    // one. s_server ends after a refused handshake, so each phase gets its own.
    let server: Deno.ChildProcess | undefined;
    const serve = async () => {
      if (server) {
        server.kill();
        await server.status.catch(() => {});
      }
      server = new Deno.Command("openssl", {
        args: [
          "s_server",
          "-accept",
          `127.0.0.1:${port}`,
          "-cert",
          "srv.crt",
          "-key",
          "srv.key",
          "-CAfile",
          "ca2.crt",
          "-Verify",
          "1",
          "-verify_return_error",
          "-WWW",
          "-quiet",
        ],
        cwd: dir,
        stdin: "piped",
        stdout: "null",
        stderr: "null",
      }).spawn();
      // Listening once ss shows the socket (a probing connection would itself be a refused handshake).
      for (const end = Date.now() + 10_000; Date.now() < end;) {
        const ss = await new Deno.Command("ss", { args: ["-Hltn", `sport = :${port}`], stdout: "piped" })
          .output();
        if (new TextDecoder().decode(ss.stdout).trim()) return;
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const kubeconfig = (user: string) =>
      `apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts: [{ name: c, context: { cluster: k, user: u } }]\n` +
      `clusters: [{ name: k, cluster: { server: "https://127.0.0.1:${port}", certificate-authority: ca.crt } }]\n` +
      `users: [{ name: u, user: ${user} }]\n`;
    const swap = async (path: string, text: string) => {
      await Deno.writeTextFile(`${path}.new`, text);
      await Deno.rename(`${path}.new`, path); // as the kubelet rotates: a new file in place
    };
    try {
      // 1. kubelet style: the kubeconfig names certificate files, which are rotated in place.
      await Deno.copyFile(`${dir}/cli.crt`, `${dir}/current.crt`);
      await Deno.copyFile(`${dir}/cli.key`, `${dir}/current.key`);
      await Deno.writeTextFile(
        `${dir}/kc-files`,
        kubeconfig("{ client-certificate: current.crt, client-key: current.key }"),
      );
      const files = new KubeClient(await loadKubeconfig(`${dir}/kc-files`), { timeoutMs: 3000 });
      await serve();
      await assert.rejects(files.get("/version.json"), "the old certificate is refused by the server");
      await serve();
      await swap(`${dir}/current.crt`, await Deno.readTextFile(`${dir}/cli2.crt`));
      await swap(`${dir}/current.key`, await Deno.readTextFile(`${dir}/cli2.key`));
      assert.equal((await files.get<{ gitVersion: string }>("/version.json")).gitVersion, "v1.32.0-s_server");
      files.close();

      // 2. inline data: the kubeconfig itself is rewritten with the new certificate.
      const inline = (crt: string, key: string) =>
        kubeconfig(`{ client-certificate-data: ${btoa(crt)}, client-key-data: ${btoa(key)} }`);
      await Deno.writeTextFile(
        `${dir}/kc-inline`,
        inline(await Deno.readTextFile(`${dir}/cli.crt`), await Deno.readTextFile(`${dir}/cli.key`)),
      );
      const data = new KubeClient(await loadKubeconfig(`${dir}/kc-inline`), { timeoutMs: 3000 });
      await serve();
      await assert.rejects(data.get("/version.json"));
      await serve();
      await swap(
        `${dir}/kc-inline`,
        inline(await Deno.readTextFile(`${dir}/cli2.crt`), await Deno.readTextFile(`${dir}/cli2.key`)),
      );
      assert.equal((await data.get<{ gitVersion: string }>("/version.json")).gitVersion, "v1.32.0-s_server");
      data.close();
    } finally {
      server?.kill();
      await server?.status;
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "lists follow the server's pages only when it cuts the list; rv=0 comes whole from the watch cache",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using s = await startKubeApiServer({ tls: true, tokens: { t: "u" } });
    const Node = s.store.kindByName("Node");
    for (let i = 0; i < 5; i++) s.store.create(Node, "", { metadata: { name: `n${i}` } });
    const client = new KubeClient({ server: s.url, caPem: s.caPem!, token: "t", source: "test" });
    try {
      const mark = s.mark();
      const cached = await client.list("/api/v1/nodes", { resourceVersion: "0", limit: 2 });
      assert.equal(cached.items.length, 5);
      assert.equal(cached.pages, 1, "the watch cache ignores limit: one answer");
      const paged = await client.list<{ metadata: { name: string } }>("/api/v1/nodes", { limit: 2 });
      assert.deepEqual(paged.items.map((n) => n.metadata.name), ["n0", "n1", "n2", "n3", "n4"]);
      assert.equal(paged.pages, 3);
      // Continued pages carry no resourceVersion (the server refuses both), every page succeeded.
      const lists = s.requests.filter((r) => r.seq > mark && r.verb === "list");
      assert.deepEqual(lists.map((r) => r.status), [200, 200, 200, 200]);
      assert.ok(
        lists.slice(2).every((r) => r.query.includes("continue=") && !r.query.includes("resourceVersion")),
      );
    } finally {
      client.close();
    }
  },
});
