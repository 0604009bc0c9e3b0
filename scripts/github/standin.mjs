// A local stand-in for GitHub's REST API, for jitgate's end-to-end tests. It checks every call
// jitgate makes against GitHub's own OpenAPI description (@octokit/openapi, api.github.com) and
// records it with its verdict, so a test can assert that jitgate called GitHub exactly as
// GitHub documents it:
//
// - the method and path are an operation of the description, its path parameters of their
//   types, and no query parameter it does not declare;
// - `Accept: application/vnd.github+json`, `X-GitHub-Api-Version: 2022-11-28`,
//   `User-Agent: jitgate/VERSION`, and `Content-Type: application/json` with a body;
// - authentication: `POST /app/installations/{id}/access_tokens` with the App's JWT
//   (`Authorization: Bearer JWT`: RS256, verified with the App's public key; `iss` the App id
//   as a string; `iat` not in the future beyond a minute's skew; `exp` in the future and at
//   most 10 minutes after `iat`), every other call with an installation token this stand-in
//   issued, unexpired, for an installation that covers the repository (when --installation
//   says which owner each covers);
// - the JSON body against the operation's requestBody schema with ajv, and exactly: when the
//   schema offers alternatives (anyOf/oneOf), the body must match one of them with no property
//   that alternative does not declare (GitHub's `review-custom-gates` body is "comment
//   required" or "state required"; a misspelt `state` must not pass as the first).
//
// It implements the three operations jitgate makes (answers built from the description's own
// examples): apps/create-installation-access-token (201, a token valid --token-ttl seconds),
// actions/review-custom-gates-for-run (204), issues/create-comment (201). Any other operation
// of the description is recorded as a problem and answered 501.
//
// Control (not GitHub's): GET /_standin/calls -> {"calls": [...]}; POST /_standin/down
// ({"status": 503} by default; 403 and 429 come with x-ratelimit-remaining: 0 and retry-after;
// "operation": an operationId fails only that operation; "message": the error's message) makes
// every (such) API call fail so until POST /_standin/up; POST /_standin/revoke-tokens forgets
// every installation token issued (as GitHub does when a token is revoked).
//
//   node standin.mjs --app-id ID --public-key FILE [--port 0] [--token-ttl 3600]
//                    [--installation ID=OWNER ...] [--base-path /api/v3]
// (--base-path: the API is served below it, as GitHub Enterprise Server serves it below
// /api/v3; a call outside it is a problem.)
// prints one line, {"url": "http://127.0.0.1:PORT", ...}, once it listens.
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import { Ajv, addFormats, readJson, versionOf } from "./deps.mjs";

const API_VERSION = "2022-11-28";
const ACCEPT = "application/vnd.github+json";
const SKEW_SECONDS = 60;
const MAX_JWT_SECONDS = 600;

function parseArgs(argv) {
  const options = { port: 0, tokenTtl: 3600, installations: new Map(), basePath: "" };
  for (let i = 0; i < argv.length; i += 1) {
    const value = () => {
      i += 1;
      if (argv[i] === undefined) throw new Error(`${argv[i - 1]} needs a value`);
      return argv[i];
    };
    switch (argv[i]) {
      case "--app-id":
        options.appId = value();
        break;
      case "--public-key":
        options.publicKey = crypto.createPublicKey(fs.readFileSync(value(), "utf8"));
        break;
      case "--port":
        options.port = Number(value());
        break;
      case "--token-ttl":
        options.tokenTtl = Number(value());
        break;
      case "--base-path":
        options.basePath = value().replace(/\/+$/, "");
        if (options.basePath && !options.basePath.startsWith("/")) throw new Error("--base-path /PATH");
        break;
      case "--installation": {
        const [id, owner] = value().split("=");
        if (!/^\d+$/.test(id) || !owner) throw new Error("--installation ID=OWNER");
        options.installations.set(id, owner.toLowerCase());
        break;
      }
      default:
        throw new Error(`unknown option ${argv[i]}`);
    }
  }
  if (!options.appId || !options.publicKey) throw new Error("--app-id and --public-key are required");
  return options;
}

const options = parseArgs(process.argv.slice(2));
const doc = readJson("@octokit/openapi/generated/api.github.com.json");

// OpenAPI 3.0: JSON Schema draft-04-ish with `nullable`, which Ajv 8 knows; the description's
// annotations (`example`, `x-github`, ...) are not errors.
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: "rest", components: doc.components });

/** Follow a local `$ref` (`#/components/...`) of the description. */
function resolve(node) {
  let n = node;
  while (n && n.$ref) {
    n = n.$ref
      .slice(2)
      .split("/")
      .map((p) => p.replaceAll("~1", "/").replaceAll("~0", "~"))
      .reduce((at, key) => at?.[key], doc);
  }
  return n;
}

/** A schema of the description made compilable on its own: its refs point into "rest". */
function rooted(schema) {
  if (Array.isArray(schema)) return schema.map(rooted);
  if (schema && typeof schema === "object") {
    return Object.fromEntries(
      Object.entries(schema).map(([k, v]) => [k, k === "$ref" && typeof v === "string" ? `rest${v}` : rooted(v)]),
    );
  }
  return schema;
}

/** The property names an object schema declares (null: it allows any). */
function declared(schema) {
  const s = resolve(schema);
  if (!s || typeof s !== "object") return null;
  if (s.additionalProperties !== undefined && s.additionalProperties !== false) return null;
  const names = new Set(Object.keys(s.properties ?? {}));
  for (const part of s.allOf ?? []) {
    const more = declared(part);
    if (more === null) return null;
    for (const name of more) names.add(name);
  }
  return names;
}

// Every operation: a regular expression of its path (literal segments first), its parameters.
const operations = [];
for (const [template, item] of Object.entries(doc.paths)) {
  for (const method of ["get", "put", "post", "patch", "delete", "head"]) {
    const op = item[method];
    if (!op) continue;
    const names = [];
    const pattern = template.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{([^}]+)\}/g, (_, name) => {
      names.push(name);
      return "([^/]+)";
    });
    const parameters = [...(item.parameters ?? []), ...(op.parameters ?? [])].map(resolve);
    operations.push({
      method: method.toUpperCase(),
      template,
      regex: new RegExp(`^${pattern}$`),
      names,
      op,
      parameters,
    });
  }
}
operations.sort((a, b) => a.names.length - b.names.length);

const bodyCheckers = new Map();
/** The body checker of an operation: `(body) => problems`. */
function bodyChecker(operation) {
  if (bodyCheckers.has(operation)) return bodyCheckers.get(operation);
  const requestBody = resolve(operation.op.requestBody);
  const schema = requestBody?.content?.["application/json"]?.schema;
  let check;
  if (!schema) {
    check = (body) => (body === undefined ? [] : ["the operation takes no JSON body"]);
  } else {
    const whole = ajv.compile(rooted(schema));
    const resolved = resolve(schema);
    const alternatives = (resolved.anyOf ?? resolved.oneOf ?? [schema]).map((alt) => ({
      validate: ajv.compile(rooted(alt)),
      names: declared(alt),
    }));
    check = (body) => {
      if (body === undefined) return requestBody.required ? ["the operation requires a JSON body"] : [];
      if (!whole(body)) {
        return whole.errors.map((e) => `body${e.instancePath} ${e.message} (${JSON.stringify(e.params)})`);
      }
      const keys = body && typeof body === "object" && !Array.isArray(body) ? Object.keys(body) : [];
      const why = [];
      for (const [i, alt] of alternatives.entries()) {
        if (!alt.validate(body)) {
          why.push(`alternative ${i + 1}: ${alt.validate.errors.map((e) => `body${e.instancePath} ${e.message}`).join(", ")}`);
          continue;
        }
        const unknown = alt.names === null ? [] : keys.filter((k) => !alt.names.has(k));
        if (unknown.length === 0) return [];
        why.push(`alternative ${i + 1}: unknown properties ${unknown.join(", ")}`);
      }
      return [`the body matches no alternative of the operation's schema exactly (${why.join("; ")})`];
    };
  }
  bodyCheckers.set(operation, check);
  return check;
}

/** The response schema of `operation` for `status`, to check this stand-in's own answers. */
const responseCheckers = new Map();
function responseProblems(operation, status, body) {
  const key = `${operation.template} ${operation.method} ${status}`;
  if (!responseCheckers.has(key)) {
    const schema = resolve(operation.op.responses?.[status])?.content?.["application/json"]?.schema;
    responseCheckers.set(key, schema ? ajv.compile(rooted(schema)) : null);
  }
  const validate = responseCheckers.get(key);
  if (!validate || validate(body)) return [];
  return validate.errors.map((e) => `stand-in answer${e.instancePath} ${e.message}`);
}

// --- authentication -------------------------------------------------------------------------

/** Verify an App JWT; its claims, or why it is refused. */
function verifyAppJwt(jwt) {
  const parts = jwt.split(".");
  if (parts.length !== 3) return { problem: "the App JWT is not three base64url parts" };
  let header;
  let claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], "base64url").toString("utf8"));
    claims = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
  } catch {
    return { problem: "the App JWT's header or claims are not JSON" };
  }
  if (header.alg !== "RS256") return { problem: `the App JWT's alg is ${header.alg}, not RS256` };
  const signed = crypto.verify(
    "RSA-SHA256",
    Buffer.from(`${parts[0]}.${parts[1]}`),
    options.publicKey,
    Buffer.from(parts[2], "base64url"),
  );
  if (!signed) return { problem: "the App JWT's signature does not verify with the App's public key" };
  const now = Math.floor(Date.now() / 1000);
  const problems = [];
  if (claims.iss !== String(options.appId)) {
    problems.push(`the App JWT's iss is ${JSON.stringify(claims.iss)}, not the App id "${options.appId}" as a string`);
  }
  if (!Number.isInteger(claims.iat) || !Number.isInteger(claims.exp)) {
    problems.push("the App JWT's iat and exp must be integers (seconds)");
  } else {
    if (claims.iat > now + SKEW_SECONDS) problems.push(`the App JWT's iat is ${claims.iat - now}s in the future`);
    if (claims.exp <= now) problems.push("the App JWT has expired");
    if (claims.exp - claims.iat > MAX_JWT_SECONDS) {
      problems.push(`the App JWT is valid ${claims.exp - claims.iat}s, more than GitHub's 10 minutes`);
    }
  }
  return problems.length ? { problem: problems.join("; "), claims } : { claims };
}

// Installation tokens issued: token -> {installation, expires}.
const tokens = new Map();

function issueToken(installation) {
  const token = `ghs_${crypto.randomBytes(27).toString("base64url").replace(/[-_]/g, "x").slice(0, 36)}`;
  const expires = new Date(Date.now() + options.tokenTtl * 1000);
  tokens.set(token, { installation, expires });
  return { token, expires };
}

// --- the server -------------------------------------------------------------------------------

const calls = [];
let down = null;
let commentIds = 1000;

function answer(res, status, body, headers = {}) {
  const text = body === undefined ? "" : JSON.stringify(body);
  res.writeHead(status, {
    ...(text ? { "content-type": "application/json; charset=utf-8" } : {}),
    "x-github-media-type": "github.v3; format=json",
    "x-github-api-version-selected": API_VERSION,
    ...headers,
  });
  res.end(text);
}

const error = (message, status) => ({
  message,
  documentation_url: "https://docs.github.com/rest",
  status: String(status),
});

function control(req, res, path, raw) {
  if (req.method === "GET" && path === "/_standin/calls") return answer(res, 200, { calls });
  if (req.method === "GET" && path === "/_standin/health") return answer(res, 200, { ok: true });
  if (req.method === "POST" && path === "/_standin/down") {
    const asked = raw.length ? JSON.parse(raw) : {};
    down = { status: asked.status ?? 503, operation: asked.operation ?? null, message: asked.message ?? null };
    return answer(res, 200, { down });
  }
  if (req.method === "POST" && path === "/_standin/up") {
    down = null;
    return answer(res, 200, { down });
  }
  if (req.method === "POST" && path === "/_standin/revoke-tokens") {
    const revoked = tokens.size;
    tokens.clear();
    return answer(res, 200, { revoked });
  }
  return answer(res, 404, error("no such control endpoint", 404));
}

function handle(req, res, raw) {
  const url = new URL(req.url, "http://standin");
  // Control, at the root or below the base path (the URL printed at start has it).
  for (const prefix of [options.basePath, ""]) {
    if (url.pathname.startsWith(`${prefix}/_standin/`)) return control(req, res, url.pathname.slice(prefix.length), raw);
  }

  const problems = [];
  const record = {
    seq: calls.length + 1,
    at: new Date().toISOString(),
    method: req.method,
    path: url.pathname,
    query: url.search,
    operation_id: null,
    params: {},
    headers: {
      accept: req.headers.accept ?? null,
      "x-github-api-version": req.headers["x-github-api-version"] ?? null,
      "user-agent": req.headers["user-agent"] ?? null,
      "content-type": req.headers["content-type"] ?? null,
    },
    auth: null,
    installation_id: null,
    body: null,
    status: 0,
    down: false,
    valid: false,
    problems,
  };
  calls.push(record);
  const finish = (status, body, headers) => {
    record.status = status;
    record.valid = problems.length === 0;
    if (!record.valid) console.error(`standin: ${req.method} ${url.pathname}: ${problems.join("; ")}`);
    answer(res, status, body, headers);
  };

  // Below the base path (GitHub Enterprise Server's /api/v3), the operation's path.
  let apiPath = url.pathname;
  if (options.basePath) {
    if (!apiPath.startsWith(`${options.basePath}/`)) {
      problems.push(`${apiPath} is not below the API's base path ${options.basePath}`);
      return finish(404, error("Not Found", 404));
    }
    apiPath = apiPath.slice(options.basePath.length);
    record.path = apiPath;
  }

  // What GitHub's description says of this method and path.
  let operation = null;
  let match = null;
  for (const candidate of operations) {
    if (candidate.method !== req.method) continue;
    match = candidate.regex.exec(apiPath);
    if (match) {
      operation = candidate;
      break;
    }
  }
  if (!operation) {
    problems.push(`no operation of GitHub's REST API is ${req.method} ${apiPath}`);
    return finish(404, error("Not Found", 404));
  }
  record.operation_id = operation.op.operationId;
  operation.names.forEach((name, i) => {
    let value = match[i + 1];
    try {
      value = decodeURIComponent(value);
    } catch {
      problems.push(`path parameter ${name} is not valid percent-encoding`);
    }
    record.params[name] = value;
    const parameter = operation.parameters.find((p) => p.in === "path" && p.name === name);
    if (parameter?.schema?.type === "integer" && !/^[0-9]+$/.test(value)) {
      problems.push(`path parameter ${name} must be an integer, not ${JSON.stringify(value)}`);
    }
    if (value === "") problems.push(`path parameter ${name} is empty`);
  });
  for (const name of url.searchParams.keys()) {
    if (!operation.parameters.some((p) => p.in === "query" && p.name === name)) {
      problems.push(`query parameter ${name} is not one the operation takes`);
    }
  }

  // Headers GitHub asks every client to send.
  if (req.headers.accept !== ACCEPT) problems.push(`Accept is ${JSON.stringify(req.headers.accept)}, not ${ACCEPT}`);
  if (req.headers["x-github-api-version"] !== API_VERSION) {
    problems.push(`X-GitHub-Api-Version is ${JSON.stringify(req.headers["x-github-api-version"])}, not ${API_VERSION}`);
  }
  if (!/^jitgate\/\S+/.test(req.headers["user-agent"] ?? "")) {
    problems.push(`User-Agent is ${JSON.stringify(req.headers["user-agent"])}, not jitgate/VERSION`);
  }

  // The body.
  let body;
  if (raw.length > 0) {
    if (!/^application\/json(\s*;\s*charset=utf-8)?$/i.test(req.headers["content-type"] ?? "")) {
      problems.push(`Content-Type is ${JSON.stringify(req.headers["content-type"])}, not application/json`);
    }
    try {
      body = JSON.parse(raw.toString("utf8"));
      record.body = body;
    } catch {
      problems.push("the body is not JSON");
      record.body = raw.toString("utf8");
    }
  }
  if (record.body === null || typeof record.body !== "string") problems.push(...bodyChecker(operation)(body));

  // Authentication.
  const authorization = req.headers.authorization ?? "";
  const bearer = /^Bearer (\S+)$/.exec(authorization)?.[1];
  const creatingToken = operation.op.operationId === "apps/create-installation-access-token";
  if (!bearer) {
    problems.push(`Authorization is not "Bearer ..."${authorization.startsWith("token ") ? " (the token scheme)" : ""}`);
    return finish(401, error("Requires authentication", 401));
  }
  if (creatingToken) {
    record.auth = "app-jwt";
    const verdict = verifyAppJwt(bearer);
    record.jwt_claims = verdict.claims ?? null;
    if (verdict.problem) {
      problems.push(verdict.problem);
      return finish(401, error("A JSON web token could not be decoded", 401));
    }
    const installation = record.params.installation_id;
    record.installation_id = Number(installation);
    if (options.installations.size > 0 && !options.installations.has(installation)) {
      problems.push(`installation ${installation} is not an installation of this App`);
      return finish(404, error("Not Found", 404));
    }
  } else {
    record.auth = "installation-token";
    if (bearer.split(".").length === 3) {
      record.auth = "app-jwt";
      problems.push("the App JWT is sent where GitHub wants an installation token");
      return finish(401, error("Bad credentials", 401));
    }
    const issued = tokens.get(bearer);
    if (!issued || issued.expires <= new Date()) {
      // Not a problem of the call's shape: a token may expire or be revoked under a client,
      // which then gets a new one (recorded, the test judges it).
      record.auth = issued ? "expired-installation-token" : "unknown-token";
      record.valid = problems.length === 0;
      record.status = 401;
      return answer(res, 401, error("Bad credentials", 401));
    }
    record.installation_id = Number(issued.installation);
    const covers = options.installations.get(issued.installation);
    const owner = record.params.owner?.toLowerCase();
    if (covers && owner !== undefined && owner !== covers) {
      problems.push(`installation ${issued.installation} covers ${covers}, not ${record.params.owner}`);
      return finish(404, error("Not Found", 404));
    }
  }

  if (problems.length > 0) return finish(422, error(`Invalid request: ${problems.join("; ")}`, 422));

  if (down && (!down.operation || down.operation === operation.op.operationId)) {
    record.down = true;
    const headers =
      down.status === 403 || down.status === 429
        ? { "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(Math.floor(Date.now() / 1000) + 1), "retry-after": "1" }
        : {};
    const message = down.message ?? (down.status === 403 ? "API rate limit exceeded" : "Service Unavailable");
    return finish(down.status, error(message, down.status), headers);
  }

  switch (operation.op.operationId) {
    case "apps/create-installation-access-token": {
      const { token, expires } = issueToken(record.params.installation_id);
      const response = {
        token,
        expires_at: expires.toISOString().replace(/\.\d{3}Z$/, "Z"),
        permissions: { actions: "read", deployments: "write", issues: "write", metadata: "read", pull_requests: "write" },
        repository_selection: "all",
      };
      problems.push(...responseProblems(operation, "201", response));
      record.token_expires_at = response.expires_at;
      return finish(201, response);
    }
    case "actions/review-custom-gates-for-run":
      return finish(204, undefined);
    case "issues/create-comment": {
      commentIds += 1;
      const { owner, repo, issue_number: number } = record.params;
      const example = structuredClone(resolve(doc.components.examples["issue-comment"]).value);
      const path = `${encodeURIComponent(owner)}/${encodeURIComponent(repo)}`;
      const response = {
        ...example,
        id: commentIds,
        url: `https://api.github.com/repos/${path}/issues/comments/${commentIds}`,
        html_url: `https://github.com/${path}/issues/${number}#issuecomment-${commentIds}`,
        issue_url: `https://api.github.com/repos/${path}/issues/${number}`,
        body: body.body,
        user: { ...example.user, login: "jitgate[bot]", type: "Bot" },
        created_at: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
        updated_at: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
      };
      problems.push(...responseProblems(operation, "201", response));
      return finish(201, response, { location: response.url });
    }
    default:
      problems.push(`${operation.op.operationId} is GitHub's, but not a call jitgate should make (not implemented here)`);
      return finish(501, error("Not Implemented by the stand-in", 501));
  }
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    try {
      handle(req, res, Buffer.concat(chunks));
    } catch (e) {
      console.error(`standin: ${e.stack}`);
      answer(res, 500, error(`stand-in failure: ${e.message}`, 500));
    }
  });
});

server.listen(options.port, "127.0.0.1", () => {
  const { port } = server.address();
  console.log(
    JSON.stringify({
      url: `http://127.0.0.1:${port}${options.basePath}`,
      openapi: versionOf("@octokit/openapi"),
      description: doc.info.version,
    }),
  );
});

for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));