//! A trivial provider kind, `noop`, written as a file in src/providers/ would be: it records
//! each delivery and acknowledges it. Nothing else in jitgate names it but one registration
//! line.

use async_trait::async_trait;
use jitgate_connectors::registry::ProviderEntry;
use jitgate_service::connectors::{Delivery, Provider};
use std::time::Duration;

/// What every `noop` provider was told: (provider name, operation, grant id), in order.
pub static DELIVERED: parking_lot::Mutex<Vec<(String, String, String)>> = parking_lot::Mutex::new(Vec::new());

struct Noop {
    timeout: Duration,
}

/// `kind = "noop"`: no keys of its own.
pub fn build(entry: &ProviderEntry<'_>) -> Result<Box<dyn Provider>, String> {
    if entry.config.url.is_some() || entry.config.command.is_some() {
        return Err(format!(
            "{}: a noop provider takes no url or command",
            (entry.at)("url")
        ));
    }
    Ok(Box::new(Noop { timeout: entry.timeout }))
}

#[async_trait]
impl Provider for Noop {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn deliver(&self, d: &Delivery<'_>) -> Result<(), String> {
        DELIVERED.lock().push((
            d.item.provider.clone(),
            d.item.operation.as_str().to_string(),
            d.grant.id.clone(),
        ));
        Ok(())
    }
}
