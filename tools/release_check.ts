/**
 * The release workflow's check that a tag, the source and the binary agree:
 * `deno run -A tools/release_check.ts v0.1.0 [--binary dist/weft-x86_64-linux]`.
 *
 * It refuses a tag that is not `v<WEFT_VERSION>` (src/version.ts), a version that is not semver, a version
 * without its `## [<version>] - <YYYY-MM-DD>` section in CHANGELOG.md, and, with `--binary`, a compiled
 * binary whose `version` prints anything else. Prints each problem and exits 1, or prints `ok`.
 *
 * @module
 */
import { WEFT_VERSION } from "../src/version.ts";

const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$/;

/** What a release check looks at. */
export interface ReleaseFacts {
  /** The git tag, e.g. `v0.1.0`. */
  tag: string;
  /** The version in the source (src/version.ts). */
  version: string;
  /** CHANGELOG.md's text. */
  changelog: string;
  /** What the compiled binary's `version` printed, when one was checked. */
  binaryVersion?: string;
}

/** Everything that stops this tag from being released ([] = none). */
export function releaseProblems(f: ReleaseFacts): string[] {
  const problems: string[] = [];
  if (!SEMVER.test(f.version)) problems.push(`src/version.ts: ${f.version} is not a semantic version`);
  if (f.tag !== `v${f.version}`) {
    problems.push(
      `tag ${f.tag} is not v${f.version}, the version in src/version.ts (set it, or tag v${f.version})`,
    );
  }
  const heading = new RegExp(
    `^## \\[${f.version.replaceAll(".", "\\.")}\\] - \\d{4}-\\d{2}-\\d{2}\\s*$`,
    "m",
  );
  if (!heading.test(f.changelog)) {
    problems.push(
      `CHANGELOG.md has no "## [${f.version}] - YYYY-MM-DD" section (move [Unreleased] under it)`,
    );
  }
  if (f.binaryVersion !== undefined && f.binaryVersion.trim() !== f.version) {
    problems.push(`the binary says ${JSON.stringify(f.binaryVersion.trim())}, not ${f.version}`);
  }
  return problems;
}

if (import.meta.main) {
  const [tag, flag, binary] = Deno.args;
  if (!tag || (flag !== undefined && (flag !== "--binary" || !binary))) {
    console.error("usage: release_check.ts TAG [--binary PATH]");
    Deno.exit(2);
  }
  let binaryVersion: string | undefined;
  if (binary) {
    const out = await new Deno.Command(binary, { args: ["version"], stdout: "piped" }).output();
    binaryVersion = new TextDecoder().decode(out.stdout);
  }
  const changelog = Deno.readTextFileSync(new URL("../CHANGELOG.md", import.meta.url));
  const problems = releaseProblems({
    tag,
    version: WEFT_VERSION,
    changelog,
    ...(binaryVersion !== undefined ? { binaryVersion } : {}),
  });
  for (const p of problems) console.error(`release check: ${p}`);
  if (problems.length) Deno.exit(1);
  console.log(`ok: ${tag} is weft ${WEFT_VERSION}${binary ? ` (${binary} agrees)` : ""}`);
}
