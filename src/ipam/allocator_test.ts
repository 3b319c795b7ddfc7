import assert from "node:assert/strict";
import { parseIP, parseNet } from "../net/ip.ts";
import { allocate, DuplicateAllocationError, RangeFullError, usableSpan, withPrefix } from "./allocator.ts";
import { IpamStore } from "./store.ts";

const SUBNET = parseNet("10.244.3.0/24");
const RANGE = { subnet: SUBNET, gateway: parseIP("10.244.3.1"), index: 0 };

async function withStore(fn: (s: IpamStore, root: string) => void | Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "weft-alloc-" });
  try {
    await fn(new IpamStore(root, "cbr0"), root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("allocate() hands out .2 first (never the network address or the gateway) and goes round robin", async () => {
  await withStore((s) => {
    assert.equal(withPrefix(allocate(s, RANGE, "a", "eth0"), SUBNET), "10.244.3.2/24");
    assert.equal(withPrefix(allocate(s, RANGE, "b", "eth0"), SUBNET), "10.244.3.3/24");
    s.releaseOwner("a", "eth0");
    // Round robin: a freed address is not reused until the range wraps (host-local's behaviour).
    assert.equal(withPrefix(allocate(s, RANGE, "c", "eth0"), SUBNET), "10.244.3.4/24");
  });
});

Deno.test("allocate() continues after host-local's last_reserved_ip and wraps past the broadcast address", async () => {
  await withStore((s, root) => {
    Deno.writeTextFileSync(`${root}/cbr0/last_reserved_ip.0`, "10.244.3.253");
    assert.equal(withPrefix(allocate(s, RANGE, "a", "eth0"), SUBNET), "10.244.3.254/24");
    assert.equal(
      withPrefix(allocate(s, RANGE, "b", "eth0"), SUBNET),
      "10.244.3.2/24",
      ".255 and .0 and .1 skipped",
    );
  });
});

Deno.test("allocate() refuses a second address for the same container and ifname", async () => {
  await withStore((s) => {
    allocate(s, RANGE, "a", "eth0");
    assert.throws(() => allocate(s, RANGE, "a", "eth0"), DuplicateAllocationError);
    assert.doesNotThrow(() => allocate(s, RANGE, "a", "net1"), "another interface of the same pod is fine");
  });
});

Deno.test("allocate() with duplicateCheck off skips the scan of the store and just takes the next address", async () => {
  await withStore((s) => {
    allocate(s, RANGE, "a", "eth0");
    assert.equal(
      withPrefix(allocate(s, RANGE, "a", "eth0", { duplicateCheck: false }), SUBNET),
      "10.244.3.3/24",
    );
  });
});

Deno.test("allocate() reports a full range", async () => {
  await withStore((s) => {
    const small = { subnet: parseNet("10.244.3.0/29"), gateway: parseIP("10.244.3.1"), index: 0 };
    const got = Array.from(
      { length: 5 },
      (_, i) => withPrefix(allocate(s, small, `p${i}`, "eth0"), small.subnet),
    );
    assert.deepEqual(got, [
      "10.244.3.2/29",
      "10.244.3.3/29",
      "10.244.3.4/29",
      "10.244.3.5/29",
      "10.244.3.6/29",
    ]);
    assert.throws(() => allocate(s, small, "p5", "eth0"), RangeFullError);
  });
});

Deno.test("usableSpan() keeps the last IPv6 address (no broadcast) and drops the IPv4 broadcast", () => {
  assert.deepEqual(usableSpan(parseNet("fd00::/126")), {
    first: parseIP("fd00::1"),
    last: parseIP("fd00::3"),
  });
  assert.deepEqual(usableSpan(SUBNET), { first: parseIP("10.244.3.1"), last: parseIP("10.244.3.254") });
});

Deno.test({
  name: "50 allocations in 50 separate processes under the store lock get 50 distinct addresses",
  async fn() {
    await withStore(async (_s, root) => {
      const alloc = new URL("./allocator.ts", import.meta.url).href;
      const store = new URL("./store.ts", import.meta.url).href;
      const ip = new URL("../net/ip.ts", import.meta.url).href;
      const script = `
        import { allocate } from "${alloc}"; import { IpamStore } from "${store}";
        import { formatIP, parseIP, parseNet } from "${ip}";
        const s = new IpamStore(Deno.args[0], "cbr0");
        const range = { subnet: parseNet("10.244.3.0/24"), gateway: parseIP("10.244.3.1"), index: 0 };
        const got = s.locked(() => allocate(s, range, Deno.args[1], "eth0"));
        console.log(formatIP(got));`;
      const runs = await Promise.all(
        Array.from(
          { length: 50 },
          (_, i) =>
            new Deno.Command(Deno.execPath(), { args: ["eval", script, root, `proc${i}`], stderr: "inherit" })
              .output(),
        ),
      );
      const dec = new TextDecoder();
      const ips = runs.map((r) => {
        assert.equal(r.code, 0);
        return dec.decode(r.stdout).trim();
      });
      assert.equal(new Set(ips).size, 50, `distinct: ${ips.join(" ")}`);
      const files = [...Deno.readDirSync(`${root}/cbr0`)].map((e) => e.name).filter((n) => /^\d/.test(n));
      assert.deepEqual(files.sort(), [...ips].sort(), "one file per address");
      for (const [i, r] of runs.entries()) {
        const owner = Deno.readTextFileSync(`${root}/cbr0/${dec.decode(r.stdout).trim()}`);
        assert.equal(owner, `proc${i}\r\neth0`);
      }
    });
  },
});

Deno.test("allocate() on a nearly full range that wrapped finds the one free address", async () => {
  await withStore((s, root) => {
    for (let i = 0; i < 253; i++) allocate(s, RANGE, `p${i}`, "eth0", { duplicateCheck: false });
    s.releaseIP("10.244.3.100");
    Deno.writeTextFileSync(`${root}/cbr0/last_reserved_ip.0`, "10.244.3.200");
    assert.equal(
      withPrefix(allocate(s, RANGE, "late", "eth0", { duplicateCheck: false }), SUBNET),
      "10.244.3.100/24",
    );
    assert.throws(() => allocate(s, RANGE, "full", "eth0", { duplicateCheck: false }), RangeFullError);
  });
});
