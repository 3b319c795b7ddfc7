import assert from "node:assert/strict";
import { isContainerId, isIfname } from "./names.ts";

Deno.test("isContainerId() accepts the spec's grammar and nothing that could name another path", () => {
  for (const ok of ["a", "k8s_POD.abc-1", "0123456789abcdef".repeat(4)]) assert.ok(isContainerId(ok), ok);
  for (const bad of ["", ".", "..", "../etc", "a/b", ".hidden", "-x", "a b", "a\n", "ä", "x".repeat(256)]) {
    assert.ok(!isContainerId(bad), JSON.stringify(bad));
  }
});

Deno.test("isIfname() accepts kernel interface names of at most 15 bytes", () => {
  for (const ok of ["eth0", "net1", "cni0", "veth0123456789a", "a.b-c_d"]) assert.ok(isIfname(ok), ok);
  for (
    const bad of [
      "",
      ".",
      "..",
      "eth0123456789abc",
      "a/b",
      "a:1",
      "a b",
      "a\tb",
      "a\x00",
      "a\x7f",
      "äöüäöüäö",
    ]
  ) {
    assert.ok(!isIfname(bad), JSON.stringify(bad));
  }
});
