/**
 * Small helpers for C memory at the FFI boundary: NUL-terminated strings, out-parameters, and
 * {@linkcode Owned}, which frees a C object when a `using` block ends.
 *
 * @module
 */

const encoder = new TextEncoder();

/** Encodes `s` as a NUL-terminated C string. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** Reads a C string, or `""` for NULL. */
export function readCString(ptr: Deno.PointerValue): string {
  return ptr === null ? "" : Deno.UnsafePointerView.getCString(ptr);
}

/** A one-slot out-parameter for `T **`; read it with {@linkcode outPointer}. */
export function pointerSlot(): BigUint64Array<ArrayBuffer> {
  return new BigUint64Array(1);
}

/** The pointer a C function stored in a slot from {@linkcode pointerSlot}. */
export function outPointer(slot: BigUint64Array): Deno.PointerValue {
  return Deno.UnsafePointer.create(slot[0]!);
}

/** A one-slot `uint32_t *` out-parameter. */
export function u32Slot(): Uint32Array<ArrayBuffer> {
  return new Uint32Array(1);
}

/** A C object owned by JS: freed exactly once, by `using` or an explicit `free()`. */
export class Owned implements Disposable {
  #ptr: Deno.PointerValue;
  readonly #free: (p: Deno.PointerObject) => void;

  /** Takes ownership of `ptr`, to be released with `free`. */
  constructor(ptr: Deno.PointerValue, free: (p: Deno.PointerObject) => void) {
    this.#ptr = ptr;
    this.#free = free;
  }

  /** The raw pointer (NULL after free). */
  get ptr(): Deno.PointerValue {
    return this.#ptr;
  }

  /** Gives the pointer away (e.g. to a C function that takes ownership); it will not be freed here. */
  release(): Deno.PointerValue {
    const p = this.#ptr;
    this.#ptr = null;
    return p;
  }

  /** Frees the object now. */
  free(): void {
    const p = this.#ptr;
    this.#ptr = null;
    if (p !== null) this.#free(p);
  }

  /** Frees the object at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.free();
  }
}

// size_t arguments are BigInts at the FFI boundary; packet loops pass a different length per packet, and a
// fresh BigInt each time would be an allocation per packet. Lengths are small (a packet), so each one is
// made once and kept.
const sizes: bigint[] = [];

/**
 * `n` as a `size_t` argument (a BigInt), from a cache for lengths up to 64 KiB, so a packet loop passing
 * varying lengths allocates nothing once warm.
 */
export function sizeT(n: number): bigint {
  if (n > 65536) return BigInt(n);
  return sizes[n] ??= BigInt(n);
}
