// Shim: the frozen v0 files import the command code from "./execute.ts"; the commands are not part of
// the protocol, so today's run here. (CniOutcome moved to agent_protocol.ts; v0 named it here.)
export * from "../../../src/cni/execute.ts";
export type { CniOutcome } from "../../../src/cni/agent_protocol.ts";
