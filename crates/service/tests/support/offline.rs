//! Stand-ins for what the service tests never reach: the network (no OpenID key sets are
//! fetched) and an authenticating proxy's user header.

use jitgate_service::auth::{oidc::Fetch, Presented};

/// Refuses every fetch: these tests configure no OpenID issuer whose keys would be fetched.
pub struct NoFetch;

#[async_trait::async_trait]
impl Fetch for NoFetch {
    async fn get(&self, url: &str) -> Result<String, String> {
        Err(format!("no network in tests: {url}"))
    }
}

/// A trusted proxy's user header (`X-Forwarded-User`), as the proxy presents it.
#[allow(dead_code)] // Not every test file asserts users through a proxy.
pub struct ProxyUser(pub Vec<u8>);

impl Presented for ProxyUser {
    fn field(&self, name: &str) -> Option<&[u8]> {
        (name == "x-forwarded-user").then_some(self.0.as_slice())
    }
}
