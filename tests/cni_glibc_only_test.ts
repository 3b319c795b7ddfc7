/**
 * CNI mode on a host needs glibc and nothing else: the plugin's ADD and DEL with ipMasq (FLANNEL_IPMASQ
 * =false: the plugin masquerades its pods) work when libnftables and libnl cannot be loaded at all —
 * each is hidden behind /dev/null in the plugin's own mount namespace, so any dlopen of them fails.
 */
import assert from "node:assert/strict";
import { cni, cniLab, MAIN, nsExec } from "./helpers/cni.ts";
import { ROOT } from "./helpers/topology.ts";
import { needBinaries } from "./helpers/skip.ts";
import { PRIVATE_MOUNTS_SH } from "./helpers/private_mounts.ts";

const LIBDIR = `/usr/lib/${Deno.build.arch === "aarch64" ? "aarch64" : "x86_64"}-linux-gnu`;
const HIDDEN = ["libnftables.so.1", "libnl-3.so.200", "libnl-route-3.so.200", "libnl-genl-3.so.200"]
  .map((l) => `${LIBDIR}/${l}`)
  .filter((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });

/** The plugin with the libraries hidden: a private mount namespace, /dev/null bound over each. */
const PLUGIN = [
  ...PRIVATE_MOUNTS_SH,
  `${HIDDEN.map((l) => `mount --bind /dev/null ${l}`).join(" && ")} && exec "$@"`,
  "sh",
  Deno.execPath(),
  "run",
  "-A",
  MAIN,
];

Deno.test({
  name: "CNI mode needs only glibc: ADD and DEL with ipMasq work with libnftables and libnl unloadable",
  ignore: !ROOT || needBinaries("unshare", "nft"),
  async fn() {
    assert.ok(HIDDEN.some((l) => l.includes("libnftables")), "libnftables is installed here (to hide)");
    await using lab = await cniLab({ net: "10.244.41", agentMasq: false });
    // The control: with the libraries hidden, loading one fails.
    const probe = await nsExec(lab.node, [
      ...PLUGIN.slice(0, 8),
      Deno.execPath(),
      "eval",
      `Deno.dlopen("libnftables.so.1", {}); console.log("loaded")`,
    ]);
    assert.notEqual(probe.code, 0, probe.stdout);
    assert.doesNotMatch(probe.stdout, /^loaded$/m);
    assert.match(probe.stdout, /file too short/);

    const pod = lab.pod();
    const env = { containerId: "glibc", netns: pod, ifname: "eth0" };
    const add = await cni(lab.node, { command: "ADD", ...env }, lab.conf("1.0.0"), PLUGIN);
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const ip = (add.out!.ips as { address: string }[])[0]!.address.split("/")[0]!;
    const table = await nsExec(lab.node, ["nft", "list", "table", "ip", "weft-cni"]);
    assert.match(table.stdout, new RegExp(`elements = \\{ ${ip.replaceAll(".", "\\.")} \\}`));
    assert.match(
      table.stdout,
      /ip saddr @pods ip daddr != 10\.244\.41\.0\/24 ip daddr != 224\.0\.0\.0\/4 masquerade/,
    );
    const del = await cni(lab.node, { command: "DEL", ...env }, lab.conf("1.0.0"), PLUGIN);
    assert.equal(del.code, 0, del.stdout + del.stderr);
    const after = await nsExec(lab.node, ["nft", "list", "set", "ip", "weft-cni", "pods"]);
    assert.doesNotMatch(after.stdout, new RegExp(ip.replaceAll(".", "\\.")));
    // DEL again: nothing left to remove, still success.
    assert.equal((await cni(lab.node, { command: "DEL", ...env }, lab.conf("1.0.0"), PLUGIN)).code, 0);
  },
});
