//! Providers make grants real in target systems, and end them there; the service's outbox
//! worker (jitgate_service::provision) calls them, retrying until they acknowledge.
//!
//! The webhook provider POSTs a JSON body signed with HMAC-SHA256:
//! `X-Jitgate-Signature: t=UNIX_SECONDS,v1=HEX(HMAC(secret, "UNIX_SECONDS." + body))`, with an
//! `Idempotency-Key` that is the same on every attempt of one delivery. The exec provider runs
//! a command with the same body on its standard input and the essentials in its environment;
//! exit status 0 acknowledges. The postgres provider makes each grant a temporary login role
//! in a PostgreSQL server.

kinds! {
    /// The provider kinds jitgate ships.
    pub const KINDS: &[(&str, crate::entry::ProviderBuilder)] = {
        "webhook" => webhook,
        "exec" => exec,
        "postgres" => postgres,
    };
}

use jitgate_service::connectors::Delivery;

/// The JSON body webhook and exec providers get.
pub fn delivery_body(d: &Delivery<'_>) -> String {
    let (item, grant) = (d.item, d.grant);
    serde_json::json!({
        "delivery": item.idempotency_key(grant.extensions),
        "operation": item.operation.as_str(),
        "provider": item.provider,
        "attempt": item.attempts + 1,
        "grant": {
            "id": grant.id,
            "request_id": grant.request_id,
            "principal": grant.principal,
            "resource": grant.resource,
            "action": grant.action,
            "payload_sha256": grant.payload_sha256,
            "starts_at": grant.starts_at,
            "expires_at": grant.expires_at,
            "status": grant.status_at(d.at).as_str(),
        },
    })
    .to_string()
}
