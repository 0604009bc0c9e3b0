//! Signed grant tokens against the real server, verified the way a service would: with a stock
//! JWT library and the keys from `/.well-known/jwks.json`, through a key rotation and the
//! retirement of the old key.

use crate::support::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

const ALICE: &str = "demo-alice";

fn jwks(s: &Server) -> JwkSet {
    let (status, v) = s.get("/.well-known/jwks.json", "");
    assert_eq!(status, 200, "{v}");
    serde_json::from_value(v).unwrap()
}

/// Verify a grant token as a service guarding `resource` would, offline.
fn verify(token: &str, keys: &JwkSet, resource: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = keys.find(&kid).ok_or(format!("key {kid} is not published"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["jitgate"]);
    validation.set_audience(&[resource]);
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[test]
fn grant_tokens_verify_offline_until_their_key_is_retired() {
    let s = Server::start();
    // The old key's grants live long enough that their tokens still verify (with no leeway)
    // after everything this test does before the rotation, however slow the machine; the
    // retirement is then awaited until just past their end.
    let filed = s.file(
        ALICE,
        json!({"resource": "staging-db", "action": "read", "duration": "10s"}),
    );
    let grant = &filed["grant"];
    let token = grant["token"]
        .as_str()
        .expect("the holder sees the grant token")
        .to_string();
    let keys = jwks(&s);
    assert_eq!(keys.keys.len(), 1);

    let claims = verify(&token, &keys, "staging-db").unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["jti"], grant["id"]);
    assert_eq!(
        (claims["resource"].clone(), claims["action"].clone()),
        (json!("staging-db"), json!("read"))
    );
    let expires_at = chrono::DateTime::parse_from_rfc3339(grant["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(claims["exp"], expires_at.timestamp());
    // A token for another resource, or an edited one, does not verify.
    assert!(verify(&token, &keys, "prod-db").is_err());
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    parts[1] = parts[1].replace('a', "b");
    assert!(verify(&parts.join("."), &keys, "staging-db").is_err());

    // The token is the holder's credential: reviewers, auditors and admins never see it.
    let rid = id(&filed);
    for other in ["demo-admin", "demo-auditor"] {
        let (status, v) = s.get(&format!("/v1/requests/{rid}"), other);
        assert_eq!(status, 200);
        assert!(v["grant"].get("token").is_none(), "{other} sees {v}");
    }
    let (_, mine) = s.get("/v1/grants", ALICE);
    assert_eq!(mine["items"][0]["token"], json!(token));

    // An action-bound grant's token carries the payload's digest.
    let deploy = s.file(
        ALICE,
        json!({"resource": "prod-api", "action": "deploy", "duration": "12s", "reason": "release", "payload": "make deploy v=1.4"}),
    );
    let (status, approved) = s.post(&format!("/v1/requests/{}/approve", id(&deploy)), "demo-bob", json!({}));
    assert_eq!(status, 200, "{approved}");
    assert!(
        approved["grant"].get("token").is_none(),
        "bob approved it but does not hold it"
    );
    let (_, deploy) = s.get(&format!("/v1/requests/{}", id(&deploy)), ALICE);
    let deploy_token = deploy["grant"]["token"].as_str().unwrap().to_string();
    let deploy_ends = chrono::DateTime::parse_from_rfc3339(deploy["grant"]["expires_at"].as_str().unwrap()).unwrap();
    let deploy_claims = verify(&deploy_token, &keys, "prod-api").unwrap();
    assert_eq!(deploy_claims["payload_sha256"], deploy["grant"]["payload_sha256"]);
    assert_eq!(deploy_claims["single_use"], true);

    // Rotation: new grants are signed with the new key; the old key stays published while
    // grants it signed are live, so their tokens keep verifying.
    let (code, out, err) = s.cli("demo-admin", &["keys", "rotate", "--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let new_kid = serde_json::from_str::<Value>(&out).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_kid, kid(&token));
    let keys = jwks(&s);
    assert_eq!(keys.keys.len(), 2);
    assert!(verify(&token, &keys, "staging-db").is_ok());
    let later = s.file(
        ALICE,
        json!({"resource": "staging-db", "action": "read", "duration": "1h"}),
    );
    let later_token = later["grant"]["token"].as_str().unwrap().to_string();
    assert_eq!(kid(&later_token), new_kid);
    assert!(verify(&later_token, &keys, "staging-db").is_ok());

    // Extending a grant gives it a token for its new window, from the new key.
    let (status, extended) = s.post(
        &format!("/v1/grants/{}/extend", later["grant"]["id"].as_str().unwrap()),
        ALICE,
        json!({"duration": "10m", "reason": "longer"}),
    );
    assert_eq!(status, 200, "{extended}");
    let extended_token = extended["token"].as_str().unwrap();
    assert_ne!(extended_token, later_token);
    let new_end = chrono::DateTime::parse_from_rfc3339(extended["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        verify(extended_token, &keys, "staging-db").unwrap()["exp"],
        new_end.timestamp()
    );

    // Once every grant the old key signed has ended, it is no longer published, and its
    // tokens no longer verify anywhere that fetches the keys.
    let old_grants_end = deploy_ends.max(expires_at).with_timezone(&chrono::Utc);
    let until_ended = (old_grants_end - chrono::Utc::now()).to_std().unwrap_or_default();
    wait_until_within(
        "the old key retires",
        until_ended + std::time::Duration::from_secs(10),
        || {
            jwks(&s)
                .keys
                .iter()
                .all(|k| k.common.key_id.as_deref() == Some(new_kid.as_str()))
        },
    );
    let keys = jwks(&s);
    let refused = verify(&deploy_token, &keys, "prod-api").unwrap_err();
    assert!(refused.contains("is not published"), "{refused}");
    assert!(verify(&later_token, &keys, "staging-db").is_ok());

    // Rotation is audited.
    let (_, events) = s.get("/v1/audit?limit=1000", "demo-admin");
    let rotations = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "key.rotated")
        .count();
    assert_eq!(rotations, 2, "the first key and the rotation");
}
