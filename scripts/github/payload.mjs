// Webhook deliveries as GitHub sends them, checked against GitHub's own descriptions.
//
// - `deployment_protection_rule` (action `requested`): @octokit/webhooks-examples has no example
//   of it, so it is built from the examples of its parts (the repository, sender and
//   installation of an `issue_comment` example, the deployment of a `deployment` example, the
//   pull request of a `pull_request` example) and validated against @octokit/openapi-webhooks'
//   `webhook-deployment-protection-rule-requested` schema.
// - `issue_comment` (`created`, `edited`, `deleted`): @octokit/webhooks-examples' example of that
//   action with the body, user, issue, repository and installation replaced, validated against
//   `webhook-issue-comment-ACTION`.
// - `ping`: the example as it is.
// A payload that does not validate is refused, unless `allow_invalid` is set (a test that sends
// GitHub something GitHub would never send says so).
//
//   node payload.mjs build EVENT OPTIONS_JSON           prints the payload (one line)
//   node payload.mjs deliver EVENT SECRET OPTIONS_JSON  prints {"event", "delivery", "signature",
//                                                      "body"}: body is the exact text to POST,
//                                                      signature its X-Hub-Signature-256 (by
//                                                      @octokit/webhooks-methods), delivery a
//                                                      fresh X-GitHub-Delivery GUID
import crypto from "node:crypto";
import { fileURLToPath } from "node:url";
import { Ajv2020, addFormats, readJson } from "./deps.mjs";
import { sign } from "./sign.mjs";

const webhooks = readJson("@octokit/openapi-webhooks/generated/api.github.com.json");
const examples = readJson("@octokit/webhooks-examples/api.github.com/index.json");

// OpenAPI 3.1: JSON Schema 2020-12. Unknown OpenAPI keywords (`example`, `x-github`) are
// annotations, not errors.
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: "webhooks", components: webhooks.components });

/** The schema of `EVENT-ACTION` (`webhook-deployment-protection-rule-requested`). */
export function validator(event, action) {
  const name = `webhook-${event.replaceAll("_", "-")}${action ? `-${action}` : ""}`;
  const validate = ajv.getSchema(`webhooks#/components/schemas/${name}`);
  if (!validate) throw new Error(`@octokit/openapi-webhooks has no schema ${name}`);
  return { name, validate };
}

/** The errors of `payload` against its event's schema (empty when valid). */
export function check(event, payload) {
  const { name, validate } = validator(event, payload.action);
  return validate(payload) ? [] : validate.errors.map((e) => `${name}${e.instancePath}: ${e.message}`);
}

function example(event, matches = () => true) {
  const group = examples.find((e) => e.name === event);
  if (!group) throw new Error(`@octokit/webhooks-examples has no ${event} examples`);
  const found = group.examples.find((x) => matches(x) && check(event, x).length === 0);
  if (!found) throw new Error(`no ${event} example matches and validates`);
  return structuredClone(found);
}

const clone = structuredClone;

/** Every string in `value` with `replace` applied (URLs get the URL-encoded form). */
function mapStrings(value, replace) {
  if (typeof value === "string") return replace(value);
  if (Array.isArray(value)) return value.map((v) => mapStrings(v, replace));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, mapStrings(v, replace)]));
  }
  return value;
}

const isUrl = (s) => /^(https?|git):/.test(s) || s.startsWith("git@");
const enc = (s) => encodeURIComponent(s);

// The examples' account and repository, replaced by the test's.
const EXAMPLE_OWNER = "Codertocat";
const EXAMPLE_REPO = "Hello-World";

const base = example("issue_comment", (x) => x.action === "created" && x.installation);
const idOf = (text) => Number.parseInt(crypto.createHash("sha256").update(text).digest("hex").slice(0, 8), 16);

/** A GitHub user (simple-user) with `login`, from the examples' sender. */
export function user(login, type = "User") {
  const u = mapStrings(clone(base.sender), (s) =>
    s.replaceAll(EXAMPLE_OWNER, isUrl(s) ? enc(login) : login),
  );
  u.login = login;
  u.id = idOf(`user:${login}`);
  u.type = type;
  return u;
}

/** The repository OWNER/REPO (repository-webhooks), from the examples'. */
export function repository(owner, repo) {
  const r = mapStrings(clone(base.repository), (s) => {
    const url = isUrl(s);
    return s
      .replaceAll(`${EXAMPLE_OWNER}/${EXAMPLE_REPO}`, url ? `${enc(owner)}/${enc(repo)}` : `${owner}/${repo}`)
      .replaceAll(EXAMPLE_OWNER, url ? enc(owner) : owner)
      .replaceAll(EXAMPLE_REPO, url ? enc(repo) : repo);
  });
  r.name = repo;
  r.full_name = `${owner}/${repo}`;
  r.id = idOf(`repo:${owner}/${repo}`);
  r.owner = { ...user(owner, "Organization"), ...{ login: owner } };
  return r;
}

function installation(id) {
  return { id, node_id: Buffer.from(`04:Installation${id}`).toString("base64") };
}

function organization(owner) {
  if (!base.organization) return undefined;
  const o = mapStrings(clone(base.organization), (s) => s.replaceAll("Octocoders", isUrl(s) ? enc(owner) : owner));
  o.login = owner;
  return o;
}

function retarget(value, owner, repo) {
  return mapStrings(value, (s) => {
    const url = isUrl(s);
    return s
      .replaceAll(`${EXAMPLE_OWNER}/${EXAMPLE_REPO}`, url ? `${enc(owner)}/${enc(repo)}` : `${owner}/${repo}`)
      .replaceAll(EXAMPLE_OWNER, url ? enc(owner) : owner);
  });
}

/** A pull request of OWNER/REPO numbered `number`, from the examples' (pull-request). */
function pullRequest(owner, repo, number, { sha, ref }) {
  const pr = retarget(example("pull_request").pull_request, owner, repo);
  const path = `${enc(owner)}/${enc(repo)}`;
  pr.number = number;
  pr.id = idOf(`pr:${owner}/${repo}#${number}`);
  pr.url = `https://api.github.com/repos/${path}/pulls/${number}`;
  pr.html_url = `https://github.com/${path}/pull/${number}`;
  pr.issue_url = `https://api.github.com/repos/${path}/issues/${number}`;
  pr.comments_url = `${pr.issue_url}/comments`;
  pr.head.sha = sha;
  pr.head.ref = ref.replace(/^refs\/heads\//, "");
  pr.head.repo = { ...pr.head.repo, ...repository(owner, repo), owner: pr.head.repo.owner };
  return pr;
}

/**
 * A `deployment_protection_rule` `requested` delivery's payload. Options (all optional but the
 * first three): owner, repo, environment, sha (40 hex), ref (as GitHub sends `deployment.ref`:
 * a bare branch or tag name; default `main`), run_id, installation_id, sender (login),
 * event (`push`), pull_requests ([numbers]), callback_url (default GitHub's own form:
 * `https://api.github.com/repos/OWNER/REPO/actions/runs/RUN_ID/deployment_protection_rule`),
 * omit ([top-level fields to leave out, `deployment` included]).
 */
export function deploymentProtectionRule(o) {
  const owner = o.owner ?? "example";
  const repo = o.repo ?? "app";
  const environment = o.environment ?? "production";
  const sha = o.sha ?? crypto.createHash("sha1").update(`${owner}/${repo}/${environment}/${Date.now()}`).digest("hex");
  // GitHub sends the branch name as `deployment.ref` (`main`), as a deployment made by Actions has it.
  const ref = o.ref ?? "main";
  const runId = o.run_id ?? 4242;
  const installationId = o.installation_id ?? 42;
  const sender = user(o.sender ?? "octocat");
  const path = `${enc(owner)}/${enc(repo)}`;

  const deployment = retarget(example("deployment").deployment, owner, repo);
  deployment.id = idOf(`deployment:${owner}/${repo}/${runId}/${environment}`);
  deployment.url = `https://api.github.com/repos/${path}/deployments/${deployment.id}`;
  deployment.statuses_url = `${deployment.url}/statuses`;
  deployment.sha = sha;
  deployment.ref = ref;
  deployment.environment = environment;
  deployment.original_environment = environment;
  deployment.creator = sender;

  const payload = {
    action: "requested",
    environment,
    event: o.event ?? "push",
    deployment_callback_url:
      o.callback_url ?? `https://api.github.com/repos/${path}/actions/runs/${runId}/deployment_protection_rule`,
    deployment,
    pull_requests: (o.pull_requests ?? []).map((n) => pullRequest(owner, repo, n, { sha, ref })),
    repository: repository(owner, repo),
    organization: organization(owner),
    installation: installation(installationId),
    sender,
  };
  if (payload.organization === undefined) delete payload.organization;
  for (const field of o.omit ?? []) delete payload[field];
  return payload;
}

/**
 * An `issue_comment` delivery's payload (action `created` unless `action` says otherwise).
 * Options: owner, repo, number (the issue or pull request), pull_request (default true: the
 * issue is a pull request), body, login (the commenter), user_type (`User`, or `Bot`),
 * via_app (true: `performed_via_github_app` is an App, as for a comment an App made),
 * comment_id, installation_id.
 */
export function issueComment(o) {
  const action = o.action ?? "created";
  const owner = o.owner ?? "example";
  const repo = o.repo ?? "app";
  const number = o.number ?? 7;
  const login = o.login ?? "octocat";
  const commentId = o.comment_id ?? idOf(`comment:${owner}/${repo}#${number}:${o.body}:${Date.now()}`);
  const path = `${enc(owner)}/${enc(repo)}`;
  const p = retarget(example("issue_comment", (x) => x.action === action), owner, repo);
  const commenter = user(login, o.user_type ?? "User");

  p.issue.number = number;
  p.issue.url = `https://api.github.com/repos/${path}/issues/${number}`;
  p.issue.html_url = `https://github.com/${path}/${o.pull_request === false ? "issues" : "pull"}/${number}`;
  p.issue.comments_url = `${p.issue.url}/comments`;
  if (o.pull_request === false) {
    delete p.issue.pull_request;
  } else {
    p.issue.pull_request = {
      url: `https://api.github.com/repos/${path}/pulls/${number}`,
      html_url: `https://github.com/${path}/pull/${number}`,
      diff_url: `https://github.com/${path}/pull/${number}.diff`,
      patch_url: `https://github.com/${path}/pull/${number}.patch`,
      merged_at: null,
    };
  }
  p.comment.id = commentId;
  p.comment.body = o.body ?? "";
  p.comment.user = commenter;
  p.comment.issue_url = p.issue.url;
  p.comment.url = `https://api.github.com/repos/${path}/issues/comments/${commentId}`;
  p.comment.html_url = `${p.issue.html_url}#issuecomment-${commentId}`;
  p.comment.performed_via_github_app = o.via_app ? app() : null;
  p.repository = repository(owner, repo);
  const org = organization(owner);
  if (org) p.organization = org;
  else delete p.organization;
  p.installation = installation(o.installation_id ?? 42);
  p.sender = commenter;
  return p;
}

/** An App (`integration`), as `performed_via_github_app` shows one. */
function app() {
  for (const group of examples) {
    for (const x of group.examples) {
      const found = x?.comment?.performed_via_github_app ?? x?.check_run?.app ?? x?.check_suite?.app;
      if (found) {
        const a = clone(found);
        a.slug = "jitgate";
        a.name = "jitgate";
        return a;
      }
    }
  }
  throw new Error("no App in @octokit/webhooks-examples to copy");
}

export function ping() {
  return example("ping");
}

/** The payload of EVENT built from `options`, checked against its schema. */
export function build(event, options = {}) {
  let payload;
  if (event === "deployment_protection_rule") payload = deploymentProtectionRule(options);
  else if (event === "issue_comment") payload = issueComment(options);
  else if (event === "ping") payload = ping();
  else throw new Error(`unknown event ${event}: deployment_protection_rule, issue_comment or ping`);
  const errors = check(event, payload);
  if (errors.length > 0 && !options.allow_invalid) {
    throw new Error(`the ${event} payload does not match GitHub's schema:\n${errors.join("\n")}`);
  }
  return payload;
}

/** A delivery: the exact body to POST, its headers' values. */
export async function deliver(event, secret, options = {}) {
  const body = JSON.stringify(build(event, options));
  return { event, delivery: crypto.randomUUID(), signature: await sign(secret, body), body };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [command, ...args] = process.argv.slice(2);
  try {
    if (command === "build" && args.length >= 1) {
      console.log(JSON.stringify(build(args[0], JSON.parse(args[1] ?? "{}"))));
    } else if (command === "deliver" && args.length >= 2) {
      console.log(JSON.stringify(await deliver(args[0], args[1], JSON.parse(args[2] ?? "{}"))));
    } else {
      console.error("usage: node payload.mjs build EVENT [OPTIONS_JSON] | deliver EVENT SECRET [OPTIONS_JSON]");
      process.exit(2);
    }
  } catch (e) {
    console.error(`payload.mjs: ${e.message}`);
    process.exit(1);
  }
}
