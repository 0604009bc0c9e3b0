//! Notification sinks: Slack incoming webhooks (with Approve and Deny buttons) and a generic
//! JSON webhook signed with HMAC. The service (jitgate_service::notify) decides what is said
//! to whom and keeps each sink's cursor; a sink only words and delivers one message.

kinds! {
    /// The notification sink kinds jitgate ships.
    pub const KINDS: &[(&str, crate::entry::NotifySinkBuilder)] = {
        "slack" => slack,
        "webhook" => webhook,
    };
}
