import assert from "node:assert/strict";
import { parseIP } from "../net/ip.ts";
import { IpamStore, safeIfname, safeName, UnsafeNameError } from "./store.ts";

async function withStore(fn: (s: IpamStore, root: string) => void | Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "weft-ipam-" });
  try {
    await fn(new IpamStore(root, "cbr0"), root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("IpamStore writes host-local's exact file format: containerID CRLF ifname, and last_reserved_ip", async () => {
  await withStore((s, root) => {
    assert.equal(s.reserve(parseIP("10.244.3.2"), "abc123", "eth0", 0), true);
    assert.equal(Deno.readTextFileSync(`${root}/cbr0/10.244.3.2`), "abc123\r\neth0");
    assert.equal(Deno.readTextFileSync(`${root}/cbr0/last_reserved_ip.0`), "10.244.3.2");
    assert.equal((Deno.statSync(`${root}/cbr0/10.244.3.2`).mode ?? 0) & 0o777, 0o644);
  });
});

Deno.test("IpamStore.reserve() is O_EXCL: a second reservation of the same IP fails and keeps the owner", async () => {
  await withStore((s, root) => {
    assert.equal(s.reserve(parseIP("10.244.3.2"), "a", "eth0", 0), true);
    assert.equal(s.reserve(parseIP("10.244.3.2"), "b", "eth0", 0), false);
    assert.equal(Deno.readTextFileSync(`${root}/cbr0/10.244.3.2`), "a\r\neth0");
  });
});

Deno.test("IpamStore.list() reads host-local files, including old ID-only and crash-empty ones, and skips the rest", async () => {
  await withStore((s, root) => {
    Deno.writeTextFileSync(`${root}/cbr0/10.244.3.5`, "old-host-local-id");
    Deno.writeTextFileSync(`${root}/cbr0/10.244.3.6`, "");
    Deno.writeTextFileSync(`${root}/cbr0/fd00::7`, "v6\r\neth0");
    Deno.writeTextFileSync(`${root}/cbr0/last_reserved_ip.0`, "10.244.3.6");
    Deno.writeTextFileSync(`${root}/cbr0/lock`, "");
    const got = s.list().sort((a, b) => a.ip.localeCompare(b.ip));
    assert.deepEqual(got, [
      { ip: "10.244.3.5", containerId: "old-host-local-id", ifname: "" },
      { ip: "10.244.3.6", containerId: "", ifname: "" },
      { ip: "fd00::7", containerId: "v6", ifname: "eth0" },
    ]);
  });
});

Deno.test("IpamStore.releaseOwner() frees every address of the attachment, old ID-only files too, and nothing else", async () => {
  await withStore((s, root) => {
    s.reserve(parseIP("10.244.3.2"), "a", "eth0", 0);
    s.reserve(parseIP("fd00::2"), "a", "eth0", 1);
    s.reserve(parseIP("10.244.3.3"), "a", "net1", 0);
    s.reserve(parseIP("10.244.3.4"), "b", "eth0", 0);
    Deno.writeTextFileSync(`${root}/cbr0/10.244.3.9`, "a");
    assert.deepEqual(s.releaseOwner("a", "eth0").sort(), ["10.244.3.2", "10.244.3.9", "fd00::2"]);
    assert.deepEqual(s.list().map((x) => x.ip).sort(), ["10.244.3.3", "10.244.3.4"]);
    assert.deepEqual(s.releaseOwner("a", "eth0"), [], "twice is fine");
    assert.equal(s.releaseIP("10.244.3.200"), false);
  });
});

Deno.test("names that could escape the store directory are rejected", async () => {
  await withStore((s) => {
    for (const bad of ["..", ".", "../x", "a/b", "", "-x", "a\r\nb", "a b"]) {
      assert.throws(() => safeName("container ID", bad), UnsafeNameError, bad);
      assert.throws(() => s.reserve(parseIP("10.244.3.2"), bad, "eth0", 0), UnsafeNameError, bad);
    }
    for (const bad of ["..", "a/b", "", "eth0\r\nx", "sixteen-chars-xx", "a:b"]) {
      assert.throws(() => safeIfname(bad), UnsafeNameError, bad);
    }
    assert.throws(() => new IpamStore("/tmp", "../etc"), UnsafeNameError);
    assert.throws(() => s.releaseIP("../../etc/passwd"), UnsafeNameError);
    assert.equal(safeName("container ID", "k8s_POD.abc-1"), "k8s_POD.abc-1");
  });
});
