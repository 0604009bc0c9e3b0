// Where the npm packages of scripts/github/package.json are: installed by `scripts/github.sh
// install` with `npm ci` into target/node-github (or $GITHUB_NODE_DIR), outside the source tree,
// so these scripts load them from that directory explicitly instead of by Node's lookup from
// the script's own folder.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const nodeDir = process.env.GITHUB_NODE_DIR || path.resolve(here, "../../target/node-github");
export const modules = path.join(nodeDir, "node_modules");

if (!fs.existsSync(path.join(modules, "@octokit/openapi"))) {
  throw new Error(`the npm packages are not installed in ${nodeDir}: run scripts/github.sh install`);
}

// Resolves as a file in nodeDir would: from nodeDir/node_modules.
const require = createRequire(path.join(nodeDir, "package.json"));

export const Ajv = require("ajv").default;
export const Ajv2020 = require("ajv/dist/2020").default;
export const addFormats = require("ajv-formats").default;

// ESM only, and its "exports" offer no `require` condition: import its Node build by path.
export const webhooksMethods = await import(
  pathToFileURL(path.join(modules, "@octokit/webhooks-methods/dist-node/index.js")).href
);

/** A JSON file below node_modules (`@octokit/openapi/generated/api.github.com.json`). */
export function readJson(relative) {
  return JSON.parse(fs.readFileSync(path.join(modules, relative), "utf8"));
}

/** The installed version of a package, to say in errors and in the stand-in's answers. */
export function versionOf(name) {
  return readJson(`${name}/package.json`).version;
}
