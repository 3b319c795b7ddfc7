/**
 * The DaemonSets as a node meets them: they run on Linux nodes only, with kube-flannel.yml's tolerations,
 * from the image the release workflow pushes; and their init containers install the CNI binary and the
 * conflist atomically — a temp file in the same directory, then rename(2) — run for real (paths moved
 * into a temp dir) under strace, with the old plugin binary busy running (a plain `cp` over it fails
 * with "text file busy").
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { WEFT_VERSION } from "../src/version.ts";
import { hasBinary, skipUnless } from "./helpers/topology.ts";

const DEPLOY = new URL("../deploy/", import.meta.url);
const RELEASE = new URL("../.github/workflows/release.yml", import.meta.url);

interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
}
interface PodSpec {
  nodeSelector?: Record<string, string>;
  tolerations?: Record<string, string>[];
  affinity?: unknown;
  initContainers: Container[];
  containers: Container[];
}

async function podOf(file: string): Promise<PodSpec> {
  const docs = parseAllDocuments(await Deno.readTextFile(new URL(file, DEPLOY))).map((d) => d.toJS());
  const ds = docs.find((d) => d?.kind === "DaemonSet") as { spec: { template: { spec: PodSpec } } };
  return ds.spec.template.spec;
}

const MANIFESTS = ["kube-weft.yml", "kube-weft-etcd.yml"];

Deno.test("the DaemonSets run on Linux nodes with kube-flannel.yml's tolerations and the released image", async () => {
  for (const f of MANIFESTS) {
    const pod = await podOf(f);
    assert.deepEqual(pod.nodeSelector, { "kubernetes.io/os": "linux" }, f);
    assert.deepEqual(pod.tolerations, [{ operator: "Exists", effect: "NoSchedule" }], f);
    for (const c of [...pod.initContainers, ...pod.containers]) {
      assert.equal(c.image, `ghcr.io/OWNER/weft:${WEFT_VERSION}`, `${f} ${c.name}`);
    }
  }
});

Deno.test("the release workflow's manifests name the image it pushes: ghcr.io/<owner>/weft:<version>", async () => {
  const wf = await Deno.readTextFile(RELEASE);
  assert.match(wf, /image=ghcr\.io\/\$owner\/weft/);
  assert.match(wf, /owner="\$\{GITHUB_REPOSITORY_OWNER,,\}"/, "the repository's owner, lower-cased");
  // The workflow's own sed line, run on each manifest with an example owner.
  const sed = /sed "(s\|[^"]+)"/.exec(wf)![1]!.replaceAll("$IMAGE", "ghcr.io/acme/weft").replaceAll(
    "$VERSION",
    WEFT_VERSION,
  );
  for (const f of MANIFESTS) {
    const out = await new Deno.Command("sed", { args: [sed, new URL(f, DEPLOY).pathname], stdout: "piped" })
      .output();
    const text = new TextDecoder().decode(out.stdout);
    assert.doesNotMatch(text, /OWNER/, f);
    const images = [...text.matchAll(/image: (\S+)/g)].map((m) => m[1]);
    assert.ok(images.length >= 3);
    assert.ok(images.every((i) => i === `ghcr.io/acme/weft:${WEFT_VERSION}`), `${f}: ${images}`);
  }
});

/** An init container's script with the node's paths moved under `root`. */
function rooted(script: string, root: string): string {
  return script.replace(
    /(\/opt\/cni\/bin|\/etc\/cni\/net\.d|\/etc\/kube-flannel|\/etc\/weft|\/usr\/local\/bin)/g,
    `${root}$1`,
  );
}

for (const f of MANIFESTS) {
  Deno.test({
    name: `${f}: the init containers install the plugin and the conflist by rename, over a running plugin`,
    ignore: skipUnless(hasBinary("strace"), "strace is not installed: the atomic-install test is skipped"),
    async fn() {
      const pod = await podOf(f);
      const root = await Deno.makeTempDir({ prefix: "weft-install-" });
      let sleeper: Deno.ChildProcess | undefined;
      try {
        for (const d of ["opt/cni/bin", "etc/cni/net.d", "etc/kube-flannel", "etc/weft", "usr/local/bin"]) {
          await Deno.mkdir(`${root}/${d}`, { recursive: true });
        }
        // The image's binary (any executable will do) and the ConfigMap's conflist.
        await Deno.copyFile("/bin/true", `${root}/usr/local/bin/weft`);
        await Deno.chmod(`${root}/usr/local/bin/weft`, 0o755);
        const conflist = '{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel"}]}\n';
        for (const d of ["etc/kube-flannel", "etc/weft"]) {
          await Deno.writeTextFile(`${root}/${d}/cni-conf.json`, conflist);
        }
        // The node already has the previous plugin, running right now (kubelet in the middle of a call).
        await Deno.copyFile("/bin/sleep", `${root}/opt/cni/bin/flannel`);
        await Deno.chmod(`${root}/opt/cni/bin/flannel`, 0o755);
        await Deno.writeTextFile(`${root}/etc/cni/net.d/10-flannel.conflist`, "{}\n");
        sleeper = new Deno.Command(`${root}/opt/cni/bin/flannel`, { args: ["30"] }).spawn();
        const plain = await new Deno.Command("cp", {
          args: ["/bin/true", `${root}/opt/cni/bin/flannel`],
          stderr: "piped",
        }).output();
        assert.equal(plain.success, false, "the control: cp over a running binary fails");
        assert.match(new TextDecoder().decode(plain.stderr), /busy/i);

        for (const c of pod.initContainers) {
          assert.deepEqual(c.command, ["/bin/sh", "-c"]);
          const trace = `${root}/${c.name}.strace`;
          const run = await new Deno.Command("strace", {
            args: [
              "-f",
              "-o",
              trace,
              "-e",
              "trace=openat,creat,rename,renameat,renameat2",
              "sh",
              "-c",
              rooted(c.args![0]!, root),
            ],
            stderr: "piped",
          }).output();
          assert.ok(run.success, `${c.name}: ${new TextDecoder().decode(run.stderr)}`);
          const dest = c.name === "install-cni-plugin"
            ? `${root}/opt/cni/bin/flannel`
            : `${root}/etc/cni/net.d/10-flannel.conflist`;
          const log = await Deno.readTextFile(trace);
          // Nothing opened the destination for writing: it only ever appeared by a rename in its directory.
          const writes = [...log.matchAll(/open(?:at)?\([^"]*"([^"]+)", ([^)]*)\)/g)]
            .filter((m) => /O_WRONLY|O_RDWR|O_CREAT|O_TRUNC/.test(m[2]!)).map((m) => m[1]!);
          assert.ok(!writes.includes(dest), `${c.name} wrote ${dest} in place: ${writes}`);
          const renames = [...log.matchAll(/rename(?:at2?)?\([^"]*"([^"]+)",[^"]*"([^"]+)"/g)].map((
            m,
          ): [string, string] => [m[1]!, m[2]!]);
          const into = renames.find(([, to]) => to === dest);
          assert.ok(into, `${c.name}: no rename onto ${dest} (${JSON.stringify(renames)})`);
          const dir = dest.slice(0, dest.lastIndexOf("/") + 1);
          assert.ok(
            into[0].startsWith(dir) && writes.includes(into[0]),
            `temp file ${into[0]} is written in ${dir}`,
          );
          assert.ok(!/\.(conf|conflist|json)$/.test(into[0]), "no CNI runtime loads the temp file");
          const left = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".tmp"));
          assert.deepEqual(left, [], "no temp file left behind");
        }
        assert.deepEqual(
          await Deno.readFile(`${root}/opt/cni/bin/flannel`),
          await Deno.readFile("/bin/true"),
        );
        assert.equal(await Deno.readTextFile(`${root}/etc/cni/net.d/10-flannel.conflist`), conflist);
        // The running plugin kept its own file: the install did not touch it.
        assert.match(await Deno.readLink(`/proc/${sleeper.pid}/exe`), /\(deleted\)$/);
      } finally {
        try {
          sleeper?.kill("SIGKILL");
          await sleeper?.status;
        } catch { /* gone */ }
        await Deno.remove(root, { recursive: true });
      }
    },
  });
}
