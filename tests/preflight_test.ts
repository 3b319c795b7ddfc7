/**
 * `weft doctor --preflight` through main.ts (what the image's binary runs in the release workflow): every
 * library each backend loads binds its whole symbol table, every helper binary runs; a library that
 * cannot be loaded fails it, naming the package.
 */
import assert from "node:assert/strict";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

interface Finding {
  id: string;
  status: string;
  message: string;
  fix?: string;
}

async function preflight(env: Record<string, string> = {}): Promise<{ code: number; findings: Finding[] }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "doctor", "--preflight", "--json"],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, findings: JSON.parse(new TextDecoder().decode(out.stdout)).findings };
}

Deno.test("weft doctor --preflight passes here: every backend's libraries and binaries load", async () => {
  const { code, findings } = await preflight();
  const failed = findings.filter((f) => f.status !== "ok");
  assert.deepEqual(failed, [], "this machine has what ./dev setup installs");
  assert.equal(code, 0);
  const text = findings.map((f) => f.message).join("\n");
  for (
    const want of [
      "libnl-genl-3.so.200",
      "libnftables.so.1",
      "iptables-legacy-restore",
      "ip6tables-nft-save",
      "wireguard-go",
    ]
  ) {
    assert.match(text, new RegExp(want.replaceAll(".", "\\.")));
  }
});

Deno.test("weft doctor --preflight fails on a library that does not load, naming its package", async () => {
  const { code, findings } = await preflight({ WEFT_LIBNL_DIR: "/nonexistent", WEFT_LIBNL_ONLY_DIR: "1" });
  assert.equal(code, 1);
  const nl = findings.find((f) => f.message.startsWith("libnl-route-3.so.200"));
  assert.equal(nl?.status, "fail");
  assert.match(nl!.fix!, /apt-get install libnl-route-3-200/);
  assert.equal(
    findings.find((f) => f.message.startsWith("libnftables.so.1"))?.status,
    "ok",
    "its own loader",
  );
});
