import assert from "node:assert/strict";
import { releaseFreeNativeMemory } from "./malloc.ts";

Deno.test("releaseFreeNativeMemory() gives back native heap that was malloc'd and freed", () => {
  const libc = Deno.dlopen("libc.so.6", {
    malloc: { parameters: ["usize"], result: "pointer" },
    free: { parameters: ["pointer"], result: "void" },
  });
  try {
    // 20 MB in 1 KB chunks (below the mmap threshold: they live in the arena), then all freed but the
    // last, which pins the top of the heap so that free() alone cannot shrink it.
    const chunks = Array.from({ length: 20_000 }, () => libc.symbols.malloc(1024n));
    const last = chunks.pop();
    for (const p of chunks) libc.symbols.free(p);
    assert.equal(releaseFreeNativeMemory(), true);
    libc.symbols.free(last!);
  } finally {
    libc.close();
  }
});
