/**
 * weft's version, printed by `weft version` / `weft --version` and reported in metrics.
 *
 * Semantic Versioning. Between releases main carries the version the next release will have; a release is
 * the commit that gives CHANGELOG.md a `## [<version>] - <date>` section, tagged `v<version>`. The release
 * workflow (.github/workflows/release.yml) runs tools/release_check.ts, which refuses a tag that is not
 * `v` + this constant, a version without its CHANGELOG section, and a compiled binary that reports another
 * version (docs/operations.md, "Versions and releases").
 *
 * @module
 */

/** The version (`MAJOR.MINOR.PATCH`, optionally `-pre.release`). */
export const WEFT_VERSION = "0.1.0";
