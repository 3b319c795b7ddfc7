import assert from "node:assert/strict";
import { WEFT_VERSION } from "../src/version.ts";
import { releaseProblems } from "./release_check.ts";

const released = (v: string) => `# Changelog\n\n## [Unreleased]\n\n## [${v}] - 2026-12-07\n\n### Added\n`;

Deno.test("releaseProblems() accepts a tag that is v + the version with its CHANGELOG section and binary", () => {
  assert.deepEqual(
    releaseProblems({
      tag: "v1.2.3",
      version: "1.2.3",
      changelog: released("1.2.3"),
      binaryVersion: "1.2.3\n",
    }),
    [],
  );
  assert.deepEqual(
    releaseProblems({ tag: "v1.2.3-rc.1", version: "1.2.3-rc.1", changelog: released("1.2.3-rc.1") }),
    [],
  );
});

Deno.test("releaseProblems() refuses another tag, a missing section, a binary of another version, a non-semver", () => {
  const [tag] = releaseProblems({ tag: "v1.2.4", version: "1.2.3", changelog: released("1.2.3") });
  assert.match(tag!, /tag v1\.2\.4 is not v1\.2\.3/);
  const [section] = releaseProblems({ tag: "v1.2.3", version: "1.2.3", changelog: "## [Unreleased]\n" });
  assert.match(section!, /no "## \[1\.2\.3\] - YYYY-MM-DD" section/);
  assert.match(
    releaseProblems({ tag: "v1.2.3", version: "1.2.3", changelog: "## [1.2.30] - 2026-01-01\n" })[0]!,
    /no "## \[1\.2\.3\]/,
    "1.2.30's section is not 1.2.3's",
  );
  const [bin] = releaseProblems({
    tag: "v1.2.3",
    version: "1.2.3",
    changelog: released("1.2.3"),
    binaryVersion: "1.2.2",
  });
  assert.match(bin!, /the binary says "1\.2\.2", not 1\.2\.3/);
  assert.match(releaseProblems({ tag: "v1.2", version: "1.2", changelog: "" })[0]!, /not a semantic version/);
});

Deno.test("weft version and weft --version print src/version.ts's version, which is semver and in CHANGELOG.md", async () => {
  const main = new URL("../main.ts", import.meta.url).pathname;
  for (const arg of ["version", "--version"]) {
    const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", main, arg], stdout: "piped" })
      .output();
    assert.equal(out.code, 0);
    assert.equal(new TextDecoder().decode(out.stdout).trim(), WEFT_VERSION, arg);
  }
  const problems = releaseProblems({
    tag: `v${WEFT_VERSION}`,
    version: WEFT_VERSION,
    changelog: Deno.readTextFileSync(new URL("../CHANGELOG.md", import.meta.url)),
  });
  // Until the release commit, the version's section is [Unreleased]: that is the only problem allowed.
  assert.ok(problems.every((p) => p.startsWith("CHANGELOG.md has no")), problems.join("; "));
  assert.match(
    Deno.readTextFileSync(new URL("../CHANGELOG.md", import.meta.url)),
    /^## \[(Unreleased|\d+\.\d+\.\d+)/m,
  );
});
