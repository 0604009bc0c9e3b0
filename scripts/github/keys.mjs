// An RSA key pair for the test GitHub App, as GitHub gives one: the private key in PKCS#1 PEM
// (`-----BEGIN RSA PRIVATE KEY-----`, what "Generate a private key" downloads), for jitgate's
// `private_key_file`; the public key (SPKI PEM) for the stand-in, which verifies the App's JWTs
// with it. Made fresh for each test: no private key is committed.
//
//   node keys.mjs DIR    writes DIR/app.pem (mode 0600) and DIR/app.pub.pem; prints
//                        {"private_key_file": ..., "public_key_file": ...}
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export function appKeyPair() {
  return crypto.generateKeyPairSync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs1", format: "pem" },
  });
}

export function writeAppKeys(dir) {
  const { publicKey, privateKey } = appKeyPair();
  fs.mkdirSync(dir, { recursive: true });
  const privateKeyFile = path.join(dir, "app.pem");
  const publicKeyFile = path.join(dir, "app.pub.pem");
  fs.writeFileSync(privateKeyFile, privateKey, { mode: 0o600 });
  fs.writeFileSync(publicKeyFile, publicKey);
  return { private_key_file: privateKeyFile, public_key_file: publicKeyFile };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2];
  if (!dir) {
    console.error("usage: node keys.mjs DIR");
    process.exit(2);
  }
  console.log(JSON.stringify(writeAppKeys(path.resolve(dir))));
}
