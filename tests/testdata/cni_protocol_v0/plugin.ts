// The CNI branch of main.ts as it was at weft's protocol 0 (cf18b7d): the v0 plugin, run by the skew test.
import { runCni } from "./main.ts";

Deno.exit(await runCni());
