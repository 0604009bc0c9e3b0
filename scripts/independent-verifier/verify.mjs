#!/usr/bin/env node
// An audit verifier for jitgate exports written from docs/audit.md ("The format, exactly:
// verifying without jitgate") alone, without reading jitgate's code: the proof that the page
// is enough. Node.js 18 or later, its built-in modules only.
//
//   node verify.mjs [--keys KEYS.json] FILE [FILE...]
//
// Exit 0 and "ok: ..." when the files are intact; exit 1 and "BROKEN at event N: FILE:LINE:
// ..." at the first break; exit 2 on a usage error or a file that cannot be read.

import { createHash, createPublicKey, verify as verifySignature } from "node:crypto";
import { readFileSync } from "node:fs";

const GENESIS = "0".repeat(64);
const ABSENT = Buffer.from([0x00, 0x6e, 0x6f, 0x6e, 0x65]); // NUL, then "none"
const HEX64 = /^[0-9a-f]{64}$/;

class Broken extends Error {
  constructor(seq, problem) {
    super(problem);
    this.seq = seq;
  }
}

function usage(message) {
  process.stderr.write(`${message}\nusage: node verify.mjs [--keys KEYS.json] FILE [FILE...]\n`);
  process.exit(2);
}

// RFC 3339 time to Unix milliseconds (a fraction beyond milliseconds is cut, not rounded).
function unixMillis(text, seq, what) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/.exec(
    typeof text === "string" ? text : "",
  );
  if (!m) throw new Broken(seq, `${what} is not an RFC 3339 time: ${JSON.stringify(text)}`);
  const [, y, mo, d, h, mi, s, fraction = "", zone] = m;
  let ms = Date.UTC(+y, +mo - 1, +d, +h, +mi, +s) + Number((fraction + "000").slice(0, 3));
  if (zone !== "Z" && zone !== "z") {
    const sign = zone[0] === "-" ? -1 : 1;
    ms -= sign * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6))) * 60000;
  }
  return BigInt(ms);
}

function u64(n) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

function i64(n) {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(n));
  return b;
}

// The hash of an event: SHA-256 over eleven fields, each its byte length (u64 big-endian)
// then its bytes.
function eventHash(prevHash, e) {
  const text = (s) => Buffer.from(s, "utf8");
  const optional = (s) => (s === undefined || s === null ? ABSENT : text(s));
  const fields = [
    text(prevHash),
    i64(e.seq),
    text(e.kind),
    i64(unixMillis(e.at, e.seq, "at")),
    text(e.actor),
    text(e.subject),
    optional(e.request_id),
    optional(e.grant_id),
    text(e.resource),
    text(e.action),
    optional(e.comment),
  ];
  const h = createHash("sha256");
  for (const f of fields) {
    h.update(u64(f.length));
    h.update(f);
  }
  return h.digest("hex");
}

function checkEventShape(e) {
  const seq = e.seq;
  if (!Number.isSafeInteger(seq)) throw new Broken(0, `seq is not an integer: ${JSON.stringify(seq)}`);
  for (const key of ["kind", "at", "actor", "subject", "resource", "action"]) {
    if (typeof e[key] !== "string") throw new Broken(seq, `event ${seq}: ${key} is not a string`);
  }
  for (const key of ["request_id", "grant_id", "comment"]) {
    if (e[key] !== undefined && e[key] !== null && typeof e[key] !== "string") {
      throw new Broken(seq, `event ${seq}: ${key} is neither absent nor a string`);
    }
  }
  for (const key of ["prev_hash", "hash"]) {
    if (typeof e[key] !== "string" || !HEX64.test(e[key])) {
      throw new Broken(seq, `event ${seq}: ${key} is not 64 lowercase hex characters`);
    }
  }
}

function base64urlJson(part) {
  try {
    return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  } catch {
    return null;
  }
}

// The checkpoint's signature: its claims must state what the line shows; with keys, the
// Ed25519 signature by the key its header names must hold.
function checkCheckpoint(c, keys) {
  const seq = c.seq;
  const parts = typeof c.signature === "string" ? c.signature.split(".") : [];
  if (parts.length !== 3) throw new Broken(seq, `the checkpoint of event ${seq}: the signature is not a compact JWS`);
  const header = base64urlJson(parts[0]);
  const claims = base64urlJson(parts[1]);
  if (!header || !claims) throw new Broken(seq, `the checkpoint of event ${seq}: the JWS header or payload is not JSON`);
  if (header.alg !== "EdDSA") throw new Broken(seq, `the checkpoint of event ${seq}: alg is ${header.alg}, not EdDSA`);
  if (claims.iss !== "jitgate") throw new Broken(seq, `the checkpoint of event ${seq}: iss is not jitgate`);
  if (claims.typ !== "jitgate-audit-checkpoint") {
    throw new Broken(seq, `the checkpoint of event ${seq}: typ is not jitgate-audit-checkpoint`);
  }
  if (claims.seq !== c.seq) throw new Broken(seq, `the checkpoint of event ${seq}: the signature states seq ${claims.seq}`);
  if (claims.hash !== c.hash) throw new Broken(seq, `the checkpoint of event ${seq}: the signature states another hash`);
  const atMillis = unixMillis(c.at, seq, "the checkpoint's at");
  const atSeconds = atMillis / 1000n - (atMillis % 1000n < 0n ? 1n : 0n); // floor
  if (!Number.isSafeInteger(claims.iat) || BigInt(claims.iat) !== atSeconds) {
    throw new Broken(
      seq,
      `the checkpoint of event ${seq}: at ${c.at} is not the signed time (iat ${claims.iat}): the line was edited`,
    );
  }
  if (!keys) return;
  const jwk = keys.find((k) => k.kid === header.kid);
  if (!jwk) throw new Broken(seq, `the checkpoint of event ${seq}: signed by key ${header.kid}, not among the keys given`);
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519") {
    throw new Broken(seq, `the checkpoint of event ${seq}: key ${header.kid} is not an Ed25519 key`);
  }
  const key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: jwk.x }, format: "jwk" });
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`, "ascii");
  if (!verifySignature(null, signed, key, Buffer.from(parts[2], "base64url"))) {
    throw new Broken(seq, `the checkpoint of event ${seq}: the signature does not verify`);
  }
}

function main(argv) {
  let keysPath = null;
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--keys") keysPath = argv[++i] ?? usage("--keys needs a file");
    else files.push(argv[i]);
  }
  if (files.length === 0) usage("no file to verify");
  let keys = null;
  if (keysPath) {
    try {
      keys = JSON.parse(readFileSync(keysPath, "utf8")).keys;
    } catch (e) {
      usage(`--keys: ${keysPath}: ${e.message}`);
    }
    if (!Array.isArray(keys)) usage(`--keys: ${keysPath} is not a JWKS`);
  }

  let last = null; // the last event read: {seq, hash}
  const before = new Map(); // checkpoints before the first event, by seq
  let anySigned = false;
  let signedThrough = null;
  let first = null;
  let events = 0;
  let checkpoints = 0;
  for (const file of files) {
    let text;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      usage(`${file}: ${e.message}`);
    }
    const lines = text.split("\n");
    for (let n = 0; n < lines.length; n++) {
      const place = `${file}:${n + 1}`;
      const line = lines[n].trim();
      if (line === "") continue;
      const nextSeq = last ? last.seq + 1 : 1;
      try {
        let value;
        try {
          value = JSON.parse(line);
        } catch {
          throw new Broken(nextSeq, "the line is cut off or is not JSON");
        }
        const isObject = value !== null && typeof value === "object" && !Array.isArray(value);
        if (isObject && Object.keys(value).length === 1 && "checkpoint" in value) {
          const c = value.checkpoint;
          if (!c || !Number.isSafeInteger(c.seq) || typeof c.hash !== "string") {
            throw new Broken(nextSeq, "a checkpoint line without seq and hash");
          }
          anySigned = true;
          checkCheckpoint(c, keys);
          if (!last) {
            before.set(c.seq, c);
          } else if (c.seq > last.seq) {
            throw new Broken(c.seq, `the checkpoint of event ${c.seq} comes before its event (after event ${last.seq})`);
          } else if (c.seq < last.seq) {
            throw new Broken(c.seq, `the checkpoint of event ${c.seq} is not right after its event (after event ${last.seq})`);
          } else if (c.hash !== last.hash) {
            throw new Broken(c.seq, `event ${c.seq} differs from its checkpoint: the log was rewritten`);
          } else {
            checkpoints++;
            signedThrough = c.seq;
          }
        } else if (isObject && "seq" in value) {
          const e = value;
          checkEventShape(e);
          let prev;
          if (!last) {
            for (const s of before.keys()) {
              if (s >= e.seq) throw new Broken(s, `the checkpoint of event ${s} comes before its event`);
            }
            if (e.seq === 1) {
              prev = GENESIS;
            } else if (e.seq > 1 && before.has(e.seq - 1)) {
              prev = before.get(e.seq - 1).hash;
              checkpoints++;
              signedThrough = e.seq - 1;
            } else if (e.seq > 1) {
              prev = e.prev_hash; // a partial export: its first link is taken on trust
            } else {
              throw new Broken(e.seq, `the first event has seq ${e.seq}`);
            }
            first = e.seq;
          } else {
            if (e.seq !== last.seq + 1) throw new Broken(e.seq, `expected event ${last.seq + 1} but found ${e.seq}`);
            prev = last.hash;
          }
          if (e.prev_hash !== prev) throw new Broken(e.seq, `event ${e.seq} does not link to the event before it`);
          if (eventHash(prev, e) !== e.hash) throw new Broken(e.seq, `event ${e.seq} does not match its hash`);
          last = { seq: e.seq, hash: e.hash };
          events++;
        } else {
          throw new Broken(nextSeq, "neither an event line nor a checkpoint line");
        }
      } catch (err) {
        if (!(err instanceof Broken)) throw err;
        process.stdout.write(`BROKEN at event ${err.seq}: ${place}: ${err.message}\n`);
        process.exit(1);
      }
    }
  }
  if (anySigned && last) {
    if (signedThrough === null) {
      process.stdout.write(`BROKEN at event ${first}: none of the checkpoints signs an event of the file\n`);
      process.exit(1);
    }
    if (signedThrough < last.seq) {
      process.stdout.write(
        `BROKEN at event ${signedThrough + 1}: events ${signedThrough + 1} to ${last.seq} come after the last signed checkpoint (event ${signedThrough})\n`,
      );
      process.exit(1);
    }
  }
  const range = last ? `events ${first} to ${last.seq} (${events} events)` : "no events";
  const signatures = anySigned ? (keys ? ", signatures valid" : " (signatures not checked: no --keys)") : "";
  process.stdout.write(`ok: ${range}, chain intact, ${checkpoints} checkpoint(s) agree${signatures}\n`);
}

main(process.argv.slice(2));
