// Copies the compiled files the demo page loads into cmd/stepup-authz/devui/,
// which `stepup-authz dev` embeds (go:embed needs them committed).
// Run `npm run devui` after changing src/ or demo/; test/devui.test.ts fails
// while the copies are stale.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const web = join(dirname(fileURLToPath(import.meta.url)), "..");
export const devui = join(web, "..", "..", "cmd", "stepup-authz", "devui");
export const files = ["src/challenge.js", "src/stepUpFetch.js", "src/dpop.js", "demo/page.js"];

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const f of files) {
    mkdirSync(dirname(join(devui, f)), { recursive: true });
    copyFileSync(join(web, "dist", f), join(devui, f));
    console.log(`cmd/stepup-authz/devui/${f}`);
  }
}
