//! Where connector kinds become connectors: each family lists its kinds, one line each, in its
//! `mod.rs` (`providers::KINDS`, `notify::KINDS`, `audit_sinks::KINDS`, written with `kinds!`),
//! and [`Registry::standard`] knows them all. The registry turns `[[providers]]`, `[[notify.sinks]]` and `[[audit.sinks]]` into the service's
//! [`Providers`], [`Notifier`] and audit sinks, checking what every kind shares (names given
//! once, timeouts, formats) and leaving the rest to the kind's builder.

use crate::config::{duration, At, AuditConfig, AuditSinkConfig, NotifyConfig, ProviderConfig};
use crate::{audit_sinks, notify, providers};
use jitgate_service::audit::sinks::{Format, Sink};
use jitgate_service::audit::{AuditKeys, AuditSettings};
use jitgate_service::connectors::{NotificationSink, Provider};
use jitgate_service::notify::Notifier;
use jitgate_service::provision::Providers;

pub use crate::entry::{
    AuditSinkBuilder, AuditSinkEntry, NotifySinkBuilder, NotifySinkEntry, ProviderBuilder, ProviderEntry,
};

/// The connector kinds a server knows, by the `kind` its config gives.
pub struct Registry {
    providers: Vec<(&'static str, ProviderBuilder)>,
    notify_sinks: Vec<(&'static str, NotifySinkBuilder)>,
    audit_sinks: Vec<(&'static str, AuditSinkBuilder)>,
    http: reqwest::Client,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::standard()
    }
}

impl Registry {
    /// The kinds jitgate ships: a new kind is its own file and one line in its family's
    /// `kinds!` list.
    pub fn standard() -> Registry {
        let mut registry = Registry::empty();
        registry.providers.extend_from_slice(providers::KINDS);
        registry.notify_sinks.extend_from_slice(notify::KINDS);
        registry.audit_sinks.extend_from_slice(audit_sinks::KINDS);
        registry
    }

    /// No kinds at all.
    pub fn empty() -> Registry {
        Registry {
            providers: Vec::new(),
            notify_sinks: Vec::new(),
            audit_sinks: Vec::new(),
            http: reqwest::Client::new(),
        }
    }

    /// Know the provider kind `kind`, built by `build`.
    pub fn provider(mut self, kind: &'static str, build: ProviderBuilder) -> Registry {
        self.providers.push((kind, build));
        self
    }

    /// Know the notification sink kind `kind`, built by `build`.
    pub fn notify_sink(mut self, kind: &'static str, build: NotifySinkBuilder) -> Registry {
        self.notify_sinks.push((kind, build));
        self
    }

    /// Know the audit sink kind `kind`, built by `build`.
    pub fn audit_sink(mut self, kind: &'static str, build: AuditSinkBuilder) -> Registry {
        self.audit_sinks.push((kind, build));
        self
    }

    /// The providers `[[providers]]` declares.
    pub fn providers(&self, configs: &[ProviderConfig]) -> Result<Providers, String> {
        let mut built: Vec<(String, Box<dyn Provider>)> = Vec::new();
        for (n, c) in configs.iter().enumerate() {
            let at = |key: &str| format!("providers[{n}].{key}");
            let timeout = duration(&at("timeout"), &c.timeout)?;
            let build = find(&self.providers, &c.kind).ok_or_else(|| {
                format!(
                    "{}: '{}' is not a provider kind; use {}",
                    at("kind"),
                    c.kind,
                    one_of(&self.providers)
                )
            })?;
            let provider = build(&ProviderEntry {
                config: c,
                timeout,
                at: &at,
                http: &self.http,
            })?;
            if built.iter().any(|(name, _)| name == &c.name) {
                return Err(format!("{}: '{}' is declared twice", at("name"), c.name));
            }
            built.push((c.name.clone(), provider));
        }
        Ok(Providers::new(built))
    }

    /// The notifier `[notify]` declares; `listen` is the server's address, for links and the
    /// replica's name.
    pub fn notifier(&self, config: &NotifyConfig, listen: std::net::SocketAddr) -> Result<Notifier, String> {
        let mut sinks: Vec<Box<dyn NotificationSink>> = Vec::new();
        for (n, c) in config.sinks.iter().enumerate() {
            let at = |key: &str| format!("notify.sinks[{n}].{key}");
            let build = find(&self.notify_sinks, &c.kind).ok_or_else(|| {
                format!(
                    "{}: '{}' is not a sink kind; use {}",
                    at("kind"),
                    c.kind,
                    one_of(&self.notify_sinks)
                )
            })?;
            let sink = build(&NotifySinkEntry {
                config: c,
                timeout: duration(&at("timeout"), &c.timeout)?,
                at: &at,
                http: &self.http,
            })?;
            if sinks.iter().any(|s| s.name() == c.name) {
                return Err(format!("{}: '{}' is declared twice", at("name"), c.name));
            }
            sinks.push(sink);
        }
        Notifier::new(
            config.public_url.as_deref(),
            config.remind_before.as_deref(),
            listen,
            sinks,
        )
    }

    /// `[audit]` with the sinks it declares.
    pub fn audit(&self, config: &AuditConfig) -> Result<AuditSettings, String> {
        let mut sinks: Vec<Sink> = Vec::new();
        for (n, c) in config.sinks.iter().enumerate() {
            let at = |key: &str| format!("audit.sinks[{n}].{key}");
            let sink = self.audit_sink_of(c, &at)?;
            if sinks.iter().any(|s| s.name == sink.name) {
                return Err(format!("audit.sinks[{n}].name: '{}' is declared twice", sink.name));
            }
            sinks.push(sink);
        }
        let keys = AuditKeys {
            checkpoint_every: config.checkpoint_every.as_deref(),
            denied_checks_every: config.denied_checks_every.as_deref(),
            retain: config.retain.as_deref(),
            archive_dir: config.archive_dir.as_deref(),
            archive_every: config.archive_every.as_deref(),
        };
        AuditSettings::new(keys, sinks)
    }

    fn audit_sink_of(&self, c: &AuditSinkConfig, at: At<'_>) -> Result<Sink, String> {
        if c.name.is_empty()
            || !c
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
        {
            return Err(format!("{}: use letters, digits, '-', '_' or '.'", at("name")));
        }
        let format = match c.format.as_deref() {
            None | Some("json") => Format::Json,
            Some("ecs") => Format::Ecs,
            Some(other) => return Err(format!("{}: '{other}' is not a format; use json or ecs", at("format"))),
        };
        let from_now = match c.start.as_deref() {
            None | Some("beginning") => false,
            Some("now") => true,
            Some(other) => return Err(format!("{}: '{other}'; use beginning or now", at("start"))),
        };
        let build = find(&self.audit_sinks, &c.kind).ok_or_else(|| {
            format!(
                "{}: '{}' is not an audit sink kind; use {}",
                at("kind"),
                c.kind,
                one_of(&self.audit_sinks)
            )
        })?;
        if c.resume_after.is_some_and(|seq| seq < 0) {
            return Err(format!(
                "{}: name an event of the log by its seq (0 or more)",
                at("resume_after")
            ));
        }
        let target = build(&AuditSinkEntry { config: c, at })?;
        Ok(Sink::new(c.name.clone(), format, from_now, target).resume_after(c.resume_after))
    }
}

fn find<B: Copy>(kinds: &[(&'static str, B)], kind: &str) -> Option<B> {
    kinds.iter().find(|(k, _)| *k == kind).map(|(_, build)| *build)
}

/// `a, b or c`.
fn one_of<B>(kinds: &[(&'static str, B)]) -> String {
    let names: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
    match names.split_last() {
        None => "none (no kind is registered)".into(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn config(text: &str) -> Vec<ProviderConfig> {
        #[derive(Deserialize)]
        struct File {
            providers: Vec<ProviderConfig>,
        }
        toml::from_str::<File>(text)
            .map(|f| f.providers)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn build(text: &str) -> Result<Providers, String> {
        Registry::standard().providers(&config(text))
    }

    fn refusal(text: &str) -> String {
        match build(text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e,
        }
    }

    /// The PostgreSQL target the first `[[providers]]` entry of `text` declares.
    fn postgres_target(text: &str) -> providers::postgres::PostgresTarget {
        let configs = config(text);
        let at = |key: &str| format!("providers[0].{key}");
        let entry = ProviderEntry {
            config: &configs[0],
            timeout: std::time::Duration::from_secs(5),
            at: &at,
            http: &reqwest::Client::new(),
        };
        providers::postgres::target(&entry).unwrap()
    }

    #[tokio::test]
    async fn postgres_providers_are_checked_and_named_by_key() {
        let ok =
            "[[providers]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"postgres://admin:pw@127.0.0.1:5432/app\"\n";
        let providers = build(ok).unwrap();
        assert!(providers.get("pg").and_then(|p| p.logins()).is_some());
        let target = postgres_target(ok);
        assert_eq!(
            (target.host.as_str(), target.port, target.database.as_str()),
            ("127.0.0.1", 5432, "app")
        );
        let login = format!("{ok}login_host = \"db.example.com\"\nlogin_port = 6432\n");
        build(&login).unwrap();
        let target = postgres_target(&login);
        assert_eq!((target.host.as_str(), target.port), ("db.example.com", 6432));

        let cases = [
            (
                "url = \"mysql://x@h/db\"",
                "providers[0].url: a postgres provider's URL starts with postgres://",
            ),
            (
                "url = \"postgres://a@h/db\"\nurl_env = \"X\"",
                "providers[0].url: set exactly one of url and url_env",
            ),
            (
                "url_env = \"JITGATE_TEST_UNSET_VARIABLE\"",
                "providers[0].url_env: the environment variable JITGATE_TEST_UNSET_VARIABLE is not set",
            ),
            (
                "url = \"postgres://a@h/db\"\ncommand = [\"/bin/true\"]",
                "providers[0].command: a postgres provider takes url or url_env",
            ),
            (
                "url = \"postgres://a@h/db\"\nsecret = \"0123456789abcdef0\"",
                "providers[0].secret: a postgres provider signs nothing",
            ),
        ];
        for (keys, expected) in cases {
            let text = format!("[[providers]]\nname = \"pg\"\nkind = \"postgres\"\n{keys}\n");
            let error = refusal(&text);
            assert!(error.starts_with(expected), "{keys}: {error}");
        }
        let error = refusal("[[providers]]\nname = \"x\"\nkind = \"ldap\"\n");
        assert!(error.contains("use webhook, exec or postgres"), "{error}");
    }

    #[tokio::test]
    async fn postgres_sections_and_postgres_providers_go_together() {
        let providers = build(
            "[[providers]]\nname = \"pg\"\nkind = \"postgres\"\nurl = \"postgres://a@h/db\"\n\
             [[providers]]\nname = \"hook\"\nkind = \"exec\"\ncommand = [\"/bin/true\"]\n",
        )
        .unwrap();
        let directory = "[[principal]]\nname = \"alice\"\ngroups = [\"dev\"]\n";
        let policy = |extra: &str| {
            let workflows = format!(
                "[[workflow]]\nresource = \"app-db\"\naction = \"read\"\nrequesters = [\"dev\"]\nauto_approve = true\n{extra}\n"
            );
            jitgate_policy::Policy::from_texts(directory, &workflows, None, &[]).unwrap()
        };
        let with_roles = "postgres = { roles = [\"app_read\"] }";
        assert!(providers
            .check_policy(&policy(&format!("providers = [\"pg\"]\n{with_roles}")))
            .is_ok());
        let error = providers.check_policy(&policy("providers = [\"pg\"]")).unwrap_err();
        assert!(error.contains("has no postgres section"), "{error}");
        let error = providers
            .check_policy(&policy(&format!("providers = [\"hook\"]\n{with_roles}")))
            .unwrap_err();
        assert!(error.contains("names no provider of kind postgres"), "{error}");
        let error = providers.check_policy(&policy("providers = [\"nope\"]")).unwrap_err();
        assert!(error.contains("does not declare"), "{error}");
    }
}
