// go:embed serves committed files: the copies in cmd/stepup-authz/devui/ must
// be what tsc makes of src/ and demo/ now.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../testlib/devstack.js";

test("the demo page's embedded scripts are up to date (npm run devui)", () => {
  for (const f of ["src/challenge.js", "src/stepUpFetch.js", "src/dpop.js", "demo/page.js"]) {
    const built = readFileSync(join(repoRoot, "examples", "web", "dist", f), "utf8");
    const embedded = readFileSync(join(repoRoot, "cmd", "stepup-authz", "devui", f), "utf8");
    assert.ok(built === embedded, `cmd/stepup-authz/devui/${f} differs from the compiled dist/${f}: run npm run devui in examples/web and commit`);
  }
});
