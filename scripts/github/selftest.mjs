// The stand-in's own test: that it refuses what GitHub would refuse, so that "every call jitgate
// made was valid" means something. Starts standin.mjs with a fresh App key pair, makes good and
// bad calls as a client would, and compares each verdict with the expected one. Prints one line
// per case and exits 1 if any differs.
//
//   node selftest.mjs
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { writeAppKeys, appKeyPair } from "./keys.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "standin-selftest-"));
const keys = writeAppKeys(dir);
const appKey = fs.readFileSync(keys.private_key_file, "utf8");
const otherKey = appKeyPair().privateKey;
const APP_ID = "4242";

const child = spawn(
  process.execPath,
  [path.join(here, "standin.mjs"), "--app-id", APP_ID, "--public-key", keys.public_key_file, "--installation", "42=example"],
  { stdio: ["ignore", "pipe", "inherit"] },
);
const first = await new Promise((resolve, reject) => {
  readline.createInterface({ input: child.stdout }).once("line", resolve);
  child.once("exit", (code) => reject(new Error(`the stand-in exited (${code})`)));
});
const base = JSON.parse(first).url;

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
function jwt(claims, { key = appKey, alg = "RS256" } = {}) {
  const head = b64({ alg, typ: "JWT" });
  const body = b64(claims);
  const sig = crypto.sign("RSA-SHA256", Buffer.from(`${head}.${body}`), key).toString("base64url");
  return `${head}.${body}.${sig}`;
}
const now = () => Math.floor(Date.now() / 1000);
const goodJwt = () => jwt({ iat: now() - 60, exp: now() + 540, iss: APP_ID });

function headers(token, extra = {}) {
  return {
    Accept: "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
    "User-Agent": "jitgate/0.0.0-selftest",
    Authorization: `Bearer ${token}`,
    "Content-Type": "application/json",
    ...extra,
  };
}

async function call(method, p, token, body, extra) {
  const r = await fetch(base + p, {
    method,
    headers: headers(token, extra),
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

async function lastCall() {
  const calls = (await (await fetch(`${base}/_standin/calls`)).json()).calls;
  return calls[calls.length - 1];
}

const token = (await call("POST", "/app/installations/42/access_tokens", goodJwt())).json.token;
const callback = "/repos/example/app/actions/runs/7/deployment_protection_rule";
const review = { environment_name: "production", state: "approved", comment: "ok" };

// [name, () => call, expected status, expected verdict]
const cases = [
  ["a good App JWT gets a token", () => call("POST", "/app/installations/42/access_tokens", goodJwt()), 201, true],
  ["a JWT signed by another key", () => call("POST", "/app/installations/42/access_tokens", jwt({ iat: now() - 60, exp: now() + 540, iss: APP_ID }, { key: otherKey })), 401, false],
  ["a JWT whose iss is a number", () => call("POST", "/app/installations/42/access_tokens", jwt({ iat: now() - 60, exp: now() + 540, iss: Number(APP_ID) })), 401, false],
  ["a JWT valid longer than 10 minutes", () => call("POST", "/app/installations/42/access_tokens", jwt({ iat: now() - 60, exp: now() + 600, iss: APP_ID })), 401, false],
  ["an expired JWT", () => call("POST", "/app/installations/42/access_tokens", jwt({ iat: now() - 700, exp: now() - 100, iss: APP_ID })), 401, false],
  ["a JWT from the future", () => call("POST", "/app/installations/42/access_tokens", jwt({ iat: now() + 300, exp: now() + 800, iss: APP_ID })), 401, false],
  ["another App's installation", () => call("POST", "/app/installations/43/access_tokens", goodJwt()), 404, false],
  ["an installation token on the token endpoint", () => call("POST", "/app/installations/42/access_tokens", token), 401, false],
  ["a good review", () => call("POST", callback, token, review), 204, true],
  ["a review with the App JWT", () => call("POST", callback, goodJwt(), review), 401, false],
  ["a misspelt state", () => call("POST", callback, token, { ...review, state: "aproved" }), 422, false],
  ["a review without environment_name", () => call("POST", callback, token, { state: "approved" }), 422, false],
  ["a property GitHub does not take", () => call("POST", callback, token, { ...review, extra: 1 }), 422, false],
  ["a run id that is not a number", () => call("POST", "/repos/example/app/actions/runs/x/deployment_protection_rule", token, review), 422, false],
  ["another owner's repository", () => call("POST", "/repos/evil/app/issues/1/comments", token, { body: "hi" }), 404, false],
  ["a good comment", () => call("POST", "/repos/example/app/issues/1/comments", token, { body: "hi" }), 201, true],
  ["a comment without body", () => call("POST", "/repos/example/app/issues/1/comments", token, {}), 422, false],
  ["not JSON", () => call("POST", "/repos/example/app/issues/1/comments", token, "{"), 422, false],
  ["JSON sent as text", () => call("POST", "/repos/example/app/issues/1/comments", token, { body: "hi" }, { "Content-Type": "text/plain" }), 422, false],
  ["no Accept", () => call("POST", "/repos/example/app/issues/1/comments", token, { body: "hi" }, { Accept: "*/*" }), 422, false],
  ["no API version", () => call("POST", "/repos/example/app/issues/1/comments", token, { body: "hi" }, { "X-GitHub-Api-Version": "" }), 422, false],
  ["another User-Agent", () => call("POST", "/repos/example/app/issues/1/comments", token, { body: "hi" }, { "User-Agent": "curl/8" }), 422, false],
  ["a query GitHub does not take", () => call("POST", "/repos/example/app/issues/1/comments?x=1", token, { body: "hi" }), 422, false],
  ["the token scheme", () => call("POST", "/repos/example/app/issues/1/comments", token, { body: "hi" }, { Authorization: `token ${token}` }), 401, false],
  ["an unknown token", () => call("POST", "/repos/example/app/issues/1/comments", "ghs_nope", { body: "hi" }), 401, true],
  ["no such operation", () => call("POST", "/repos/example/app/nothing", token, {}), 404, false],
  ["an operation jitgate should not make", () => call("DELETE", "/repos/example/app", token), 501, false],
];

let failed = 0;
for (const [name, run, status, valid] of cases) {
  const got = await run();
  const recorded = await lastCall();
  const ok = got.status === status && recorded.valid === valid;
  if (!ok) failed += 1;
  console.log(
    `${ok ? "ok  " : "FAIL"} ${name}: ${got.status} valid=${recorded.valid}` +
      (ok ? "" : ` (expected ${status} valid=${valid}; problems: ${recorded.problems.join("; ")})`),
  );
}

// Down: every call answers the given status; a rate limit says when to come back.
await fetch(`${base}/_standin/down`, { method: "POST", body: JSON.stringify({ status: 403 }) });
const limited = await fetch(base + "/repos/example/app/issues/1/comments", {
  method: "POST",
  headers: headers(token),
  body: JSON.stringify({ body: "hi" }),
});
const downOk = limited.status === 403 && limited.headers.get("x-ratelimit-remaining") === "0";
if (!downOk) failed += 1;
console.log(`${downOk ? "ok  " : "FAIL"} rate limited while down: ${limited.status}`);
await fetch(`${base}/_standin/up`, { method: "POST" });

child.kill();
fs.rmSync(dir, { recursive: true, force: true });
console.log(`${cases.length + 1 - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
