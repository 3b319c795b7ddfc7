/**
 * netnsCreate() makes /run/netns a shared mount point, as `ip netns add` does: a namespace created later
 * is seen by a process that entered its own mount namespace earlier (`ip netns exec` makes one). On a
 * fresh host whose `/` is private and where no `ip netns add` ever ran, that process saw the empty
 * placeholder file instead (so the agent's CNI server refused calls it should have served).
 */
import assert from "node:assert/strict";
import { hasBinary, requireRoot, skipUnless } from "./helpers/topology.ts";
import { uniqueNetnsName } from "./helpers/names.ts";

const FFI = new URL("../ffi/mod.ts", import.meta.url).href;

Deno.test({
  name: "a namespace made by netnsCreate() after an `ip netns exec` began is seen inside it, on a fresh host",
  ignore: requireRoot() || skipUnless(hasBinary("unshare"), "unshare (util-linux) is not installed"),
  async fn() {
    const [a, b] = [uniqueNetnsName("sh"), uniqueNetnsName("sh")];
    // The probe: started in namespace a before b exists, it reports what it sees at /run/netns/b.
    const script = `
      import { netnsCreate, netnsDelete } from "${FFI}";
      netnsCreate("${a}");
      const probe = new Deno.Command("ip", {
        args: ["netns", "exec", "${a}", "sh", "-c", "read go; stat -f -c %T /run/netns/${b}"],
        stdin: "piped", stdout: "piped", stderr: "piped",
      }).spawn();
      try {
        // Wait until the probe is inside its own mount namespace (ip netns exec made it).
        const own = Deno.readLinkSync("/proc/self/ns/mnt");
        for (let i = 0; Deno.readLinkSync(\`/proc/\${probe.pid}/ns/mnt\`) === own; i++) {
          if (i > 6000) throw new Error("ip netns exec never switched its mount namespace");
          await new Promise((r) => setTimeout(r, 5));
        }
        netnsCreate("${b}");
        const w = probe.stdin.getWriter();
        await w.write(new TextEncoder().encode("go\\n"));
        await w.close();
        const out = await probe.output();
        console.log(new TextDecoder().decode(out.stdout).trim() || new TextDecoder().decode(out.stderr));
      } finally {
        netnsDelete("${b}");
        netnsDelete("${a}");
      }
    `;
    // A fresh host, in a private mount namespace of our own: "/" private, /run/netns no mount point.
    const out = await new Deno.Command("unshare", {
      args: [
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'umount -l /run/netns 2>/dev/null; exec "$0" eval "$1"',
        Deno.execPath(),
        script,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const dec = new TextDecoder();
    assert.equal(out.code, 0, dec.decode(out.stderr));
    assert.equal(dec.decode(out.stdout).trim(), "nsfs", "the probe sees the namespace, not its placeholder");
  },
});
