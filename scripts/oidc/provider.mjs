// The OpenID Provider of the CLI's single sign-on tests (tests/end_to_end/cli_sso.rs): panva's
// oidc-provider (OpenID Certified), installed by `scripts/oidc.sh install` into target/node-oidc
// (or $OIDC_NODE_DIR) and configured as /work/sso-spec.md's "The test provider" says:
//
//   node scripts/oidc/provider.mjs PORT      (scripts/oidc.sh start PORT runs this)
//
// It listens on 127.0.0.1 only (PORT 0: a free port of the system's choosing) and calls itself
// http://127.0.0.1:PORT, the port it got. Once it listens it prints one line on stdout,
//   oidc-provider ready http://127.0.0.1:PORT
// and runs until killed. Everything else it says goes to stderr.
//
// What it offers:
// - one client, `jitgate-cli`: public (no secret), native, redirect http://127.0.0.1/callback on
//   any port (RFC 8252 7.3), PKCE S256 required, grants authorization_code, refresh_token and
//   device_code;
// - the provider's own login and consent pages (devInteractions): any login name with any
//   password is an account whose `sub` is that name, email NAME@example.test, verified;
// - the device authorization grant (RFC 8628) with its pages at /device, token revocation
//   (RFC 7009), discovery and JWKS;
// - ID tokens that last OIDC_ID_TOKEN_TTL seconds (default 20, so tests see them expire),
//   refresh tokens issued when offline_access is granted and replaced at every use (a used one
//   presented again ends the whole grant, as a stolen one would).
//
// Switches for the tests, in the environment:
//   OIDC_ID_TOKEN_TTL=N        ID tokens last N seconds (default 20)
//   OIDC_DEVICE_CODE_TTL=N     device codes last N seconds (default 600)
//   OIDC_DEVICE_FLOW=0         no device flow: no device_authorization_endpoint in discovery
//   OIDC_EXIT_ON_STDIN_EOF=1   exit when stdin ends: a test holds the other end of a pipe, so
//                              the provider cannot outlive it, even killed with SIGKILL
//
// Its pages are self-contained: oidc-provider's own pages import a web font from
// fonts.googleapis.com, which is cut out of every HTML answer here, and every answer carries a
// Content-Security-Policy that lets a browser load nothing from anywhere else. So the tests
// need no network but the loopback.
//
// Every token endpoint grant it answers is logged on stderr as one line,
//   provider.mjs: granted GRANT_TYPE
// so that a test can count the refreshes (several CLIs at once must refresh once).
//
// slow_down: oidc-provider sends no `interval` in its device authorization answer and never
// answers slow_down, so a client's slow_down handling cannot be tested with it.
//
// State (sessions, grants, tokens) is held in memory: a restart forgets every sign-in.
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeDir = process.env.OIDC_NODE_DIR || path.resolve(here, "../../target/node-oidc");
const entry = path.join(nodeDir, "node_modules/oidc-provider/lib/index.js");
if (!fs.existsSync(entry)) {
  console.error(`provider.mjs: oidc-provider is not installed in ${nodeDir}: run scripts/oidc.sh install`);
  process.exit(2);
}
// Installed outside the source tree: loaded from there by path, not by Node's lookup from here.
const { default: Provider } = await import(pathToFileURL(entry).href);

const port = Number.parseInt(process.argv[2] ?? "", 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error("usage: provider.mjs PORT (0 for any free port)");
  process.exit(2);
}

function seconds(name, fallback) {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number.parseInt(text, 10);
  if (!Number.isInteger(value) || value <= 0 || String(value) !== text.trim()) {
    console.error(`provider.mjs: ${name} must be a whole number of seconds, not ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return value;
}
const idTokenTtl = seconds("OIDC_ID_TOKEN_TTL", 20);
const deviceCodeTtl = seconds("OIDC_DEVICE_CODE_TTL", 600);
const deviceFlow = process.env.OIDC_DEVICE_FLOW !== "0";
const deviceCodeGrant = "urn:ietf:params:oauth:grant-type:device_code";

if (process.env.OIDC_EXIT_ON_STDIN_EOF === "1") {
  // Whoever started it is gone (or closed the pipe): so is the provider.
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("error", () => process.exit(0));
  process.stdin.resume();
}

// A fresh signing key each start: the relying parties read it from the JWKS.
const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: "jwk" }), kid: crypto.randomUUID(), use: "sig", alg: "RS256" };

// Any login name is an account of that name.
function account(id) {
  return {
    accountId: id,
    async claims() {
      return { sub: id, email: `${id}@example.test`, email_verified: true, name: id };
    },
  };
}

const configuration = {
  clients: [
    {
      client_id: "jitgate-cli",
      client_name: "jitgate CLI",
      application_type: "native",
      token_endpoint_auth_method: "none",
      redirect_uris: ["http://127.0.0.1/callback"],
      response_types: ["code"],
      grant_types: ["authorization_code", "refresh_token", ...(deviceFlow ? [deviceCodeGrant] : [])],
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString("base64url")] },
  findAccount: async (_ctx, id) => account(id),
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name"],
  },
  scopes: ["openid", "offline_access", "profile", "email"],
  // The ID token carries the scopes' claims too (email, email_verified), not only /userinfo:
  // jitgate reads the ID token alone.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: deviceFlow },
    revocation: { enabled: true },
  },
  // Public client: a new refresh token at every use, the old one spent.
  rotateRefreshToken: true,
  ttl: {
    IdToken: idTokenTtl,
    AccessToken: idTokenTtl,
    AuthorizationCode: 60,
    DeviceCode: deviceCodeTtl,
    RefreshToken: 24 * 60 * 60,
    Interaction: 600,
    Session: 24 * 60 * 60,
    Grant: 24 * 60 * 60,
  },
  // Show the provider's error in full on its error page (a test reads it when a step fails).
  renderError: async (ctx, out) => {
    ctx.type = "html";
    const shown = Object.entries(out)
      .map(([key, value]) => `<pre id="${key}">${String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)}</pre>`)
      .join("\n");
    ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>oops! something went wrong</title></head><body><h1>oops! something went wrong</h1>${shown}</body></html>`;
  },
};

const server = http.createServer();
server.on("error", (e) => {
  console.error(`provider.mjs: cannot listen on 127.0.0.1:${port}: ${e.message}`);
  process.exit(2);
});
server.listen(port, "127.0.0.1", () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration);
  provider.on("server_error", (_ctx, e) => console.error("provider.mjs: server_error", e));
  provider.on("grant.success", (ctx) => console.error(`provider.mjs: granted ${ctx.oidc.params.grant_type}`));
  // Self-contained pages: no web font from fonts.googleapis.com (oidc-provider's pages import
  // one), and a policy that lets the browser load nothing from another origin. No form-action:
  // the consent form's answer redirects to the client's loopback port.
  provider.use(async (ctx, next) => {
    await next();
    if (typeof ctx.body === "string" && ctx.response.is("html")) {
      ctx.body = ctx.body.replace(/@import url\(https?:\/\/[^)]*\);?/g, "");
    }
    ctx.set("Content-Security-Policy", "default-src 'self' 'unsafe-inline'; img-src 'self' data:");
  });
  server.on("request", provider.callback());
  console.log(`oidc-provider ready ${issuer}`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => process.exit(0));
}
