// Builds the stepup-authz binary and runs `stepup-authz dev` on free ports,
// for the integration and browser tests. Not a test file itself (node --test
// runs every file under dist/test/).
import { spawn, spawnSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { DPoP } from "../src/dpop.js";

/** The repository root (this file is examples/web/dist/testlib/devstack.js). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");

export interface DevStack {
  proxy: string; // http://127.0.0.1:PORT, the page's origin
  idp: string;
  output: () => string;
  stop: () => Promise<void>;
}

function env(): NodeJS.ProcessEnv {
  const e = { ...process.env };
  if (existsSync("/usr/local/go/bin")) e["PATH"] = `/usr/local/go/bin:${e["PATH"] ?? ""}`;
  return e;
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (a && typeof a === "object" ? res(a.port) : rej(new Error("no port"))));
    });
  });
}

/** go build -o <tmp>/stepup-authz ./cmd/stepup-authz from the repository root. */
export function buildBinary(): { bin: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "stepup-web-"));
  const bin = join(dir, "stepup-authz");
  const r = spawnSync("go", ["build", "-o", bin, "./cmd/stepup-authz"], { cwd: repoRoot, env: env(), encoding: "utf8" });
  if (r.status !== 0) throw new Error(`go build failed (${r.error ?? r.status}):\n${r.stderr}`);
  return { bin, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Starts `stepup-authz dev` on free ports and resolves once its banner says it
 * is ready. `extraArgs` go to dev as they are (e.g. `--dpop-nonce`).
 */
export async function startDev(bin: string, extraArgs: string[] = []): Promise<DevStack> {
  const addrs: Record<string, string> = {};
  for (const flag of ["proxy-addr", "idp-addr", "app-addr", "grpc-addr", "admin-addr"]) {
    addrs[flag] = `127.0.0.1:${await freePort()}`;
  }
  const args = ["dev", ...Object.entries(addrs).flatMap(([k, v]) => [`--${k}`, v]), ...extraArgs];
  const child: ChildProcess = spawn(bin, args, { env: env(), stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));

  const deadline = Date.now() + 30_000;
  while (!out.includes("Ctrl-C stops everything")) {
    if (child.exitCode !== null) throw new Error(`stepup-authz dev exited with ${child.exitCode}:\n${out}`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`stepup-authz dev was not ready within 30 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    proxy: `http://${addrs["proxy-addr"]}`,
    idp: `http://${addrs["idp-addr"]}`,
    output: () => out,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill("SIGINT");
      const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * Mints a token from the dev IdP over HTTP, as a frontend would get one from
 * its IdP; with `dpop`, a token bound to its key (a DPoP proof on the token
 * request, RFC 9449 §5).
 */
export async function mint(idp: string, acr: string, authAgeSeconds = 0, dpop?: DPoP): Promise<string> {
  const headers: Record<string, string> = {};
  if (dpop) headers["DPoP"] = await dpop.proof("POST", `${idp}/token`);
  const res = await fetch(`${idp}/token`, {
    method: "POST",
    headers,
    body: new URLSearchParams({ sub: "user-1", acr, auth_age_seconds: String(authAgeSeconds) }),
  });
  if (!res.ok) throw new Error(`dev IdP /token: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { access_token: string; token_type: string };
  if (body.token_type !== (dpop ? "DPoP" : "Bearer")) throw new Error(`dev IdP /token: token_type ${body.token_type}`);
  return body.access_token;
}

export interface Server {
  grpc: string; // host:port, for dev --authz-addr
  output: () => string;
  stop: () => Promise<void>;
}

/**
 * Runs `stepup-authz serve` with `config` (YAML; `listen` is set here: gRPC on
 * `grpc`, else a free port, admin on a free port) and resolves once /readyz
 * answers 200, i.e. it holds its issuers' keys.
 */
export async function startServe(bin: string, config: string, grpc = ""): Promise<Server> {
  grpc ||= `127.0.0.1:${await freePort()}`;
  const admin = `127.0.0.1:${await freePort()}`;
  const dir = mkdtempSync(join(tmpdir(), "stepup-serve-"));
  const file = join(dir, "config.yaml");
  writeFileSync(file, `listen: { grpc: "${grpc}", admin: "${admin}" }\n${config}`);
  const child: ChildProcess = spawn(bin, ["serve", "--config", file], { env: env(), stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  for (const deadline = Date.now() + 30_000; ; ) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`stepup-authz serve exited with ${child.exitCode}:\n${out}`);
    }
    const ready = await fetch(`http://${admin}/readyz`).then((r) => r.status === 200, () => false);
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`stepup-authz serve was not ready within 30 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { grpc, output: () => out, stop };
}
