// Shim: the frozen v0 files import the command code from "./execute.ts"; the commands are not part of
// the protocol, so today's run here.
export * from "../../../src/cni/execute.ts";
