//! Delivering JSON to other systems over HTTP, shared by every connector that posts: the
//! signature receivers verify, and the difference between a failure worth retrying and a
//! refusal that will not change.

use hmac::{Hmac, Mac};
use jitgate_core::Timestamp;
use sha2::Sha256;
use std::time::Duration;

pub use jitgate_service::connectors::Failure;

/// `X-Jitgate-Signature`: `t=UNIX_SECONDS,v1=HEX(HMAC-SHA256(secret, "UNIX_SECONDS." + body))`.
pub fn signature(secret: &[u8], at: Timestamp, body: &str) -> Result<String, String> {
    let stamp = at.timestamp();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| e.to_string())?;
    mac.update(format!("{stamp}.").as_bytes());
    mac.update(body.as_bytes());
    Ok(format!("t={stamp},v1={}", hex::encode(mac.finalize().into_bytes())))
}

/// POST `body` as JSON with `headers`; any 2xx acknowledges.
pub async fn post_json(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
    headers: &[(&str, String)],
    body: String,
) -> Result<(), Failure> {
    post(http, url, timeout, "application/json", headers, body).await
}

/// POST `body` of `content_type` with `headers`; any 2xx acknowledges.
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    timeout: Duration,
    content_type: &str,
    headers: &[(&str, String)],
    body: String,
) -> Result<(), Failure> {
    let mut request = http.post(url).timeout(timeout).header("Content-Type", content_type);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| Failure::Retry(format!("{url}: {e}")))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let message = format!("{url} answered {status}");
    if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
        Err(Failure::Refused(message))
    } else {
        Err(Failure::Retry(message))
    }
}
