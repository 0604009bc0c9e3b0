//! Verify a jitgate grant token offline, as a service guarding one resource would.
//!
//!   cargo run -p jitgate-server --example verify_grant -- http://127.0.0.1:7400 staging-db "$TOKEN"
//!
//! Fetch the JWKS once and cache it (refetch when a token names a key you do not hold), then
//! check: the signature with the key the token names, `iss` = jitgate, `aud` = your resource,
//! `nbf` and `exp` against your clock, and `action` (and `payload_sha256` for action-bound
//! grants) against what is being done. Exit 0 valid, 1 refused.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::process::ExitCode;

fn verify(jitgate_url: &str, resource: &str, token: &str) -> Result<serde_json::Value, String> {
    let keys: JwkSet = reqwest::blocking::get(format!("{jitgate_url}/.well-known/jwks.json"))
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .map_err(|e| format!("cannot fetch the keys: {e}"))?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
    let kid = header.kid.ok_or("the token names no key")?;
    let jwk = keys
        .find(&kid)
        .ok_or(format!("key {kid} is not published (retired?)"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["jitgate"]);
    validation.set_audience(&[resource]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| format!("refused: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, resource, token] = args.as_slice() else {
        eprintln!("usage: verify_grant JITGATE_URL RESOURCE TOKEN");
        return ExitCode::from(2);
    };
    match verify(url, resource, token) {
        Ok(claims) => {
            println!("{claims:#}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
