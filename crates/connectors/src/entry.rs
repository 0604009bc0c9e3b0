//! What a connector kind's builder is given: its config entry, checked where every kind
//! agrees (the timeout), and how to name its keys in errors. Kinds (`providers/`, `notify/`,
//! `audit_sinks/`) and the registry that lists them both stand on this.

use crate::config::{At, AuditSinkConfig, NotifySinkConfig, ProviderConfig};
use jitgate_service::connectors::{AuditSink, NotificationSink, Provider};
use std::time::Duration;

/// A `[[providers]]` entry, as its kind's builder gets it.
pub struct ProviderEntry<'a> {
    pub config: &'a ProviderConfig,
    /// `timeout`, checked.
    pub timeout: Duration,
    /// Names a key of this entry in errors: `providers[N].key`.
    pub at: At<'a>,
    /// One HTTP client shared by every connector that posts.
    pub http: &'a reqwest::Client,
}

/// A `[[notify.sinks]]` entry, as its kind's builder gets it.
pub struct NotifySinkEntry<'a> {
    pub config: &'a NotifySinkConfig,
    /// `timeout`, checked.
    pub timeout: Duration,
    /// Names a key of this entry in errors: `notify.sinks[N].key`.
    pub at: At<'a>,
    pub http: &'a reqwest::Client,
}

/// An `[[audit.sinks]]` entry, as its kind's builder gets it (`name`, `format` and `start`
/// are checked already).
pub struct AuditSinkEntry<'a> {
    pub config: &'a AuditSinkConfig,
    /// Names a key of this entry in errors: `audit.sinks[N].key`.
    pub at: At<'a>,
}

pub type ProviderBuilder = fn(&ProviderEntry<'_>) -> Result<Box<dyn Provider>, String>;
pub type NotifySinkBuilder = fn(&NotifySinkEntry<'_>) -> Result<Box<dyn NotificationSink>, String>;
pub type AuditSinkBuilder = fn(&AuditSinkEntry<'_>) -> Result<Box<dyn AuditSink>, String>;
