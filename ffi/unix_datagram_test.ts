import assert from "node:assert/strict";
import { sendUnixDatagram, UnixDatagramListener, unixSockaddr } from "./unix_datagram.ts";
import { SyscallError } from "./syscall_error.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => b && new TextDecoder().decode(b);

Deno.test("unixSockaddr(): a path keeps its NUL; '@name' is the abstract name, NUL first, no trailing NUL", () => {
  const p = unixSockaddr("/run/x.sock");
  assert.equal(p.len, 2 + "/run/x.sock".length + 1);
  assert.deepEqual([...p.sa.subarray(0, 4)], [1, 0, 0x2f, 0x72]); // AF_UNIX, "/r"
  const a = unixSockaddr("@weft/notify");
  assert.equal(a.len, 2 + 1 + "weft/notify".length);
  assert.equal(a.sa[2], 0);
  assert.equal(new TextDecoder().decode(a.sa.subarray(3, a.len)), "weft/notify");
  assert.throws(() => unixSockaddr(""), /empty or too long/);
  assert.throws(() => unixSockaddr("/" + "x".repeat(107)), /too long/);
});

Deno.test("a datagram reaches a listener on an abstract name and on a path; none waiting reads as undefined", () => {
  const dir = Deno.makeTempDirSync();
  try {
    for (const name of [`@weft-test-${crypto.randomUUID()}`, `${dir}/notify.sock`]) {
      using l = UnixDatagramListener.listen(name);
      assert.equal(l.tryReceive(), undefined);
      sendUnixDatagram(name, enc("READY=1\nSTATUS=ok"));
      sendUnixDatagram(name, enc("STOPPING=1"));
      assert.equal(dec(l.tryReceive()), "READY=1\nSTATUS=ok", name);
      assert.equal(dec(l.tryReceive()), "STOPPING=1", "datagrams keep their boundaries");
      assert.equal(l.tryReceive(), undefined);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("sending to nobody fails with the errno (no listener: ECONNREFUSED or ENOENT)", () => {
  assert.throws(
    () => sendUnixDatagram(`@weft-nobody-${crypto.randomUUID()}`, enc("READY=1")),
    (e) => e instanceof SyscallError && e.code === "ECONNREFUSED",
  );
  assert.throws(
    () => sendUnixDatagram(`/nonexistent-${crypto.randomUUID()}/notify`, enc("READY=1")),
    (e) => e instanceof SyscallError && e.code === "ENOENT",
  );
});
