// Webhook signatures as GitHub makes them, by GitHub's own library (@octokit/webhooks-methods):
// `X-Hub-Signature-256: sha256=` + hex HMAC-SHA256(secret, the raw body).
//
//   node sign.mjs sign SECRET              the body on stdin; prints the header's value
//   node sign.mjs verify SECRET SIGNATURE  the body on stdin; exit 0 if it verifies, 1 if not
import { fileURLToPath } from "node:url";
import { webhooksMethods } from "./deps.mjs";

export async function sign(secret, body) {
  return webhooksMethods.sign(secret, body);
}

export async function verify(secret, body, signature) {
  return webhooksMethods.verify(secret, body, signature);
}

async function stdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [command, secret, signature] = process.argv.slice(2);
  if (command === "sign" && secret !== undefined) {
    console.log(await sign(secret, await stdin()));
  } else if (command === "verify" && secret !== undefined && signature !== undefined) {
    let ok = false;
    try {
      ok = await verify(secret, await stdin(), signature);
    } catch (e) {
      console.error(`sign.mjs: ${e.message}`);
    }
    console.log(ok ? "verified" : "not verified");
    process.exit(ok ? 0 : 1);
  } else {
    console.error("usage: node sign.mjs sign SECRET | verify SECRET SIGNATURE (the body on stdin)");
    process.exit(2);
  }
}
