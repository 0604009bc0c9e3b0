//! Reading documents from the web for the service (`jitgate_service::auth::oidc::Fetch`:
//! OpenID discovery and key sets), so that the service links no HTTP client of its own.

use jitgate_service::auth::oidc::Fetch;
use std::time::Duration;

/// `GET` with reqwest, each request bounded in time.
#[derive(Clone)]
pub struct HttpFetch(pub reqwest::Client);

impl HttpFetch {
    /// A client whose every request gives up after `timeout`.
    pub fn with_timeout(timeout: Duration) -> Result<HttpFetch, String> {
        reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map(HttpFetch)
            .map_err(|e| format!("cannot build an HTTP client: {e}"))
    }
}

#[async_trait::async_trait]
impl Fetch for HttpFetch {
    async fn get(&self, url: &str) -> Result<String, String> {
        let response = self
            .0
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| e.to_string())?;
        response.text().await.map_err(|e| e.to_string())
    }
}
