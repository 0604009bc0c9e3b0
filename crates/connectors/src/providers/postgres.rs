//! The PostgreSQL role provider: each grant becomes a temporary login role in a target
//! PostgreSQL server, a member of the database roles its workflow names, and is gone at the
//! grant's end with its sessions cut.
//!
//! - **Provision** creates the role `NOLOGIN`, `VALID UNTIL` the grant's end, and makes it a
//!   member of the workflow's roles. Nobody can use it yet: it has no password.
//! - **Credentials** are made when the holder asks for them, once: a random password is set as a
//!   SCRAM-SHA-256 verifier computed here, so the password itself never reaches the target's
//!   statement log, and jitgate keeps no copy. Only then does the role get `LOGIN`.
//! - **Deprovision** takes `LOGIN` away first (no new sessions), terminates the role's sessions
//!   and waits for them to end, then drops the role. Objects it created are handed to the
//!   provider's own role rather than destroyed.
//!
//! Every step is idempotent, so the outbox may repeat any of them after a crash.

use crate::config::value_or_env;
use crate::entry::ProviderEntry;
use async_trait::async_trait;
use jitgate_core::outbox::OutboxOperation;
use jitgate_core::Grant;
use jitgate_policy::Workflow;
use jitgate_service::connectors::{Delivery, Login, LoginIssuer, Provider};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::time::Duration;

/// How long a terminated session may take to end before the deprovisioning is retried.
const TERMINATE_WAIT_MS: i64 = 5_000;
/// SQLSTATE dependent_objects_still_exist: the role owns objects or holds privileges.
const DEPENDENT_OBJECTS: &str = "2BP01";

/// One target PostgreSQL server, reached with an administrative role that has `CREATEROLE`
/// and `pg_signal_backend` (docs/providers.md).
pub struct PostgresTarget {
    pool: PgPool,
    /// Where grant holders connect: the admin URL's host, port and database unless the config
    /// names another host or port (a proxy, a replica's address).
    pub host: String,
    pub port: u16,
    pub database: String,
    timeout: Duration,
}

/// `kind = "postgres"`: the admin URL from `url` or `url_env`, optionally `login_host` and
/// `login_port`; no `command`, no `secret`.
pub fn build(entry: &ProviderEntry<'_>) -> Result<Box<dyn Provider>, String> {
    Ok(Box::new(target(entry)?))
}

/// The target a postgres entry declares.
pub fn target(entry: &ProviderEntry<'_>) -> Result<PostgresTarget, String> {
    let (c, at) = (entry.config, entry.at);
    if c.command.is_some() {
        return Err(format!(
            "{}: a postgres provider takes url or url_env (and no command)",
            at("command")
        ));
    }
    let url = value_or_env(c.url.as_deref(), c.url_env.as_deref(), "url", at)?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!(
            "{}: a postgres provider's URL starts with postgres://",
            at("url")
        ));
    }
    if c.secret.is_some() || c.secret_env.is_some() {
        return Err(format!(
            "{}: a postgres provider signs nothing; remove it",
            at("secret")
        ));
    }
    PostgresTarget::new(&url, c.login_host.as_deref(), c.login_port, entry.timeout)
        .map_err(|e| format!("{}: {e}", at("url")))
}

#[async_trait]
impl Provider for PostgresTarget {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn deliver(&self, d: &Delivery<'_>) -> Result<(), String> {
        match d.item.operation {
            OutboxOperation::Provision => {
                let access = d.workflow.and_then(|w| w.postgres.as_ref()).ok_or_else(|| {
                    format!(
                        "workflow {} {} has no postgres section naming the database roles",
                        d.grant.resource, d.grant.action
                    )
                })?;
                self.provision(d.grant, &access.roles).await
            }
            OutboxOperation::Deprovision => self.deprovision(d.grant).await,
        }
    }

    /// The workflow's `postgres` section says which database roles its grants get.
    fn check_workflow(&self, workflow: &Workflow) -> Result<(), String> {
        if workflow.postgres.is_none() {
            return Err(format!(
                "workflow {} {} names a postgres provider but has no postgres section: add postgres = {{ roles = [\"...\"] }}",
                workflow.resource, workflow.action
            ));
        }
        Ok(())
    }

    fn logins(&self) -> Option<&dyn LoginIssuer> {
        Some(self)
    }
}

#[async_trait]
impl LoginIssuer for PostgresTarget {
    async fn issue_login(&self, grant: &Grant) -> Result<Login, String> {
        let (user, password) = self.set_password(grant).await?;
        Ok(Login {
            url: format!(
                "postgres://{user}:{password}@{}:{}/{}",
                url_host(&self.host),
                self.port,
                self.database
            ),
            user,
            password,
            host: self.host.clone(),
            port: self.port,
            database: self.database.clone(),
        })
    }
}

/// A host as it stands in a URL: IPv6 addresses in brackets.
fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

impl PostgresTarget {
    /// Parse the admin URL; nothing connects until the first delivery, so the server starts
    /// while the target is down.
    pub fn new(
        url: &str,
        login_host: Option<&str>,
        login_port: Option<u16>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE): {e}"))?;
        let options = options.application_name("jitgate");
        let host = login_host.map_or_else(|| options.get_host().to_string(), str::to_string);
        let port = login_port.unwrap_or_else(|| options.get_port());
        let database = options
            .get_database()
            .unwrap_or_else(|| options.get_username())
            .to_string();
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(timeout)
            .connect_lazy_with(options);
        Ok(PostgresTarget {
            pool,
            host,
            port,
            database,
            timeout,
        })
    }

    async fn within<T>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(format!("postgres {}:{}: {what}: {e}", self.host, self.port)),
            Err(_) => Err(format!(
                "postgres {}:{}: {what} took longer than {:?}",
                self.host, self.port, self.timeout
            )),
        }
    }

    async fn role_exists(&self, role: &str) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&self.pool)
            .await
    }

    /// Create the grant's role (or, when it exists from an earlier attempt or before an
    /// extension, bring its end up to date) and make it a member of `roles`.
    pub async fn provision(&self, grant: &Grant, roles: &[String]) -> Result<(), String> {
        let role = role_name(grant);
        let until = literal(&grant.expires_at.to_rfc3339());
        let mut statements = vec![if self.within("look up role", self.role_exists(&role)).await? {
            format!("ALTER ROLE {} VALID UNTIL {until}", ident(&role))
        } else {
            format!(
                "CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT VALID UNTIL {until}",
                ident(&role)
            )
        }];
        statements.extend(roles.iter().map(|r| format!("GRANT {} TO {}", ident(r), ident(&role))));
        statements.push(format!(
            "COMMENT ON ROLE {} IS {}",
            ident(&role),
            literal(&format!(
                "jitgate grant {} for {}: {} on {} until {}",
                grant.id,
                grant.principal,
                grant.action,
                grant.resource,
                grant.expires_at.to_rfc3339()
            ))
        ));
        self.within("create role", in_transaction(&self.pool, &statements))
            .await
    }

    /// Give the role a fresh random password and `LOGIN`; returns the role and the password.
    async fn set_password(&self, grant: &Grant) -> Result<(String, String), String> {
        let role = role_name(grant);
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret).map_err(|e| format!("no randomness for a password: {e}"))?;
        let password = hex::encode(secret);
        let verifier = scram_verifier(&password);
        if !self.within("look up role", self.role_exists(&role)).await? {
            return Err(format!(
                "the login role {role} does not exist (not provisioned yet, or already dropped)"
            ));
        }
        let statement = format!(
            "ALTER ROLE {} LOGIN PASSWORD {} VALID UNTIL {}",
            ident(&role),
            literal(&verifier),
            literal(&grant.expires_at.to_rfc3339())
        );
        self.within(
            "set password",
            sqlx::query(&statement).persistent(false).execute(&self.pool),
        )
        .await?;
        Ok((role, password))
    }

    /// End the grant in the target: no new logins, no open sessions, no role.
    pub async fn deprovision(&self, grant: &Grant) -> Result<(), String> {
        let role = role_name(grant);
        if !self.within("look up role", self.role_exists(&role)).await? {
            return Ok(());
        }
        let nologin = format!("ALTER ROLE {} NOLOGIN", ident(&role));
        self.within(
            "refuse new logins",
            sqlx::query(&nologin).persistent(false).execute(&self.pool),
        )
        .await?;
        let sessions: Vec<i32> = self
            .within(
                "find sessions",
                sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE usename = $1")
                    .bind(&role)
                    .fetch_all(&self.pool),
            )
            .await?;
        for pid in sessions {
            // With a timeout, pg_terminate_backend waits for the session to end (PostgreSQL 14+).
            let ended: bool = self
                .within(
                    "terminate session",
                    sqlx::query_scalar("SELECT pg_terminate_backend($1, $2)")
                        .bind(pid)
                        .bind(TERMINATE_WAIT_MS)
                        .fetch_one(&self.pool),
                )
                .await?;
            if !ended {
                return Err(format!("session {pid} of {role} did not end; will retry"));
            }
        }
        let drop = format!("DROP ROLE IF EXISTS {}", ident(&role));
        match tokio::time::timeout(self.timeout, sqlx::query(&drop).persistent(false).execute(&self.pool)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(sqlx::Error::Database(e))) if e.code().as_deref() == Some(DEPENDENT_OBJECTS) => {
                self.drop_with_owned_objects(&role).await
            }
            Ok(Err(e)) => Err(format!("postgres {}:{}: drop role: {e}", self.host, self.port)),
            Err(_) => Err(format!("postgres {}:{}: drop role timed out", self.host, self.port)),
        }
    }

    /// The role created tables or holds privileges of its own: hand what it owns to the
    /// provider's role (data outlives the grant), drop its privileges, then the role.
    async fn drop_with_owned_objects(&self, role: &str) -> Result<(), String> {
        let statements = [
            format!("GRANT {} TO CURRENT_USER", ident(role)),
            format!("REASSIGN OWNED BY {} TO CURRENT_USER", ident(role)),
            format!("DROP OWNED BY {}", ident(role)),
            format!("DROP ROLE {}", ident(role)),
        ];
        self.within(
            "hand over owned objects and drop role",
            in_transaction(&self.pool, &statements),
        )
        .await
    }
}

/// Run `statements` in one transaction: all of them or none.
async fn in_transaction(pool: &PgPool, statements: &[String]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for statement in statements {
        sqlx::query(statement).persistent(false).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// The role a grant becomes: `jit_` + the principal (made a plain identifier, at most 24
/// characters) + the random tail of the grant id, so DBAs see who it is and no two grants share
/// one. At most 45 characters, under PostgreSQL's 63.
pub fn role_name(grant: &Grant) -> String {
    let principal: String = grant
        .principal
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    let id: String = grant
        .id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let tail = &id[id.len().saturating_sub(16)..];
    format!("jit_{principal}_{tail}")
}

/// A double-quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted SQL string literal (standard_conforming_strings, the default since 9.1).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, RFC 7677), in the
/// form `ALTER ROLE ... PASSWORD` accepts as already hashed: postgres-protocol's, as libpq's
/// `PQencryptPasswordConn` makes it (a random 16-byte salt, PostgreSQL's default 4096
/// iterations). `password` is plain ASCII, so SASLprep leaves it as it is.
fn scram_verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    use base64::Engine;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// The verifier for `password` with `salt` and `iterations`, computed here from RFC 5802
    /// (PBKDF2-HMAC-SHA-256 of one block, then the client and server keys) independently of
    /// postgres-protocol.
    fn independent_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut u = hmac(password.as_bytes(), &[salt, &1u32.to_be_bytes()].concat());
        let mut salted = u;
        for _ in 1..iterations {
            u = hmac(password.as_bytes(), &u);
            salted.iter_mut().zip(u).for_each(|(s, u)| *s ^= u);
        }
        let stored_key = Sha256::digest(hmac(&salted, b"Client Key"));
        let server_key = hmac(&salted, b"Server Key");
        format!(
            "SCRAM-SHA-256${iterations}:{}${}:{}",
            b64(salt),
            b64(&stored_key),
            b64(&server_key)
        )
    }

    #[test]
    fn scram_verifier_matches_an_independent_computation() {
        // Computed with Python's hashlib.pbkdf2_hmac and hmac for password "pencil" and the
        // salt of RFC 7677's example: it pins the computation below, which then checks what
        // postgres-protocol makes with a salt of its own.
        let salt = [
            0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81,
        ];
        assert_eq!(independent_verifier("pencil", &salt, 4096), EXPECTED_PENCIL);
        let verifier = scram_verifier("pencil");
        let (iterations, salt) = verifier
            .strip_prefix("SCRAM-SHA-256$")
            .and_then(|rest| rest.split_once('$'))
            .and_then(|(params, _keys)| params.split_once(':'))
            .unwrap();
        assert_eq!(iterations, "4096", "PostgreSQL's own default");
        let salt = base64::engine::general_purpose::STANDARD.decode(salt).unwrap();
        assert_eq!(salt.len(), 16);
        assert_eq!(verifier, independent_verifier("pencil", &salt, 4096));
        // Each verifier has a salt of its own.
        assert_ne!(scram_verifier("pencil"), verifier);
    }

    const EXPECTED_PENCIL: &str = include_str!("../../testdata/scram_pencil.txt");

    #[test]
    fn role_names_are_plain_unique_and_short() {
        let mut grant = Grant {
            id: "grt_0193a1b2c3d4e5f6a7b8c9d0e1f2a3b4".into(),
            request_id: "req_1".into(),
            principal: "ci:Example/app-with-a-very-long-repository-name\"; DROP".into(),
            resource: "db".into(),
            action: "read".into(),
            payload_sha256: None,
            single_use: false,
            break_glass: false,
            status: jitgate_core::GrantStatus::Active,
            starts_at: chrono::Utc::now(),
            expires_at: chrono::Utc::now(),
            ended_at: None,
            ended_by: None,
            end_comment: None,
            extensions: 0,
            token: None,
            providers: vec![],
        };
        let name = role_name(&grant);
        assert_eq!(name, "jit_ci_example_app_with_a_ve_a7b8c9d0e1f2a3b4");
        assert!(name.len() <= 63);
        grant.id = "grt_0193a1b2c3d4e5f6a7b8c9d0e1f2a3b5".into();
        assert_ne!(role_name(&grant), name);
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
