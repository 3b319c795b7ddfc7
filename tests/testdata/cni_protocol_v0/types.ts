// Shim: the frozen v0 files import "./types.ts"; today's answers the same.
export * from "../../../src/cni/types.ts";
