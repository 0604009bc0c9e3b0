//! One function per command. Each returns the process exit code.

use crate::client::{Client, ClientError};
use crate::{render, Output, ServeArgs};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub type CommandResult = Result<ExitCode, ClientError>;

pub fn print(client: &Client, value: &Value, text: impl FnOnce(&Value) -> String) {
    match client.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Output::Text | Output::Markdown => print!("{}", text(value)),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<String>,
    policy: Option<PathBuf>,
    database: Option<String>,
    database_password_file: Option<PathBuf>,
    /// `--database-write-timeout` (`5s`).
    database_write_timeout: Option<String>,
    /// OIDC issuers, a trusted proxy, throttling: see docs/identity.md.
    #[serde(default)]
    auth: jitgate_server::auth::config::AuthConfig,
    /// Webhook providers that provision and deprovision grants: see docs/providers.md.
    #[serde(default)]
    providers: Vec<jitgate_server::provision::ProviderConfig>,
    /// Notification sinks (Slack, signed webhooks) and reminders: see docs/notifications.md.
    #[serde(default)]
    notify: jitgate_server::notify::NotifyConfig,
    /// Slack interactivity (approve and deny from Slack): see docs/notifications.md.
    #[serde(default)]
    slack: jitgate_server::slack::SlackConfig,
    /// Audit checkpoints: see docs/audit.md.
    #[serde(default)]
    audit: jitgate_server::audit::AuditConfig,
    /// Limits on what one caller may do: filings per minute (see docs/deploy.md).
    #[serde(default)]
    limits: jitgate_server::limits::LimitsConfig,
    /// The web UI: single sign-on (see docs/ui.md).
    #[serde(default)]
    ui: jitgate_server::ui::UiConfig,
    /// Connections: header and body timeouts, how many at once (see docs/deploy.md).
    #[serde(default)]
    connections: jitgate_server::connections::ConnectionsConfig,
    /// Forward authentication for reverse proxies: who may assert users (see docs/identity.md).
    #[serde(default)]
    forward_auth: jitgate_server::forward_auth::ForwardAuthConfig,
    /// SCIM provisioning: how provisioned users become principals (see docs/scim.md).
    #[serde(default)]
    scim: Option<jitgate_server::scim::ScimConfig>,
    /// jitgate as a GitHub App: deployment protection rules and `/jitgate` comments (see
    /// docs/github.md).
    #[serde(default)]
    github: Option<jitgate_server::github::GithubConfig>,
    /// How people sign in from the CLI: single sign-on through one of `[[auth.oidc]]` (see
    /// docs/cli.md).
    #[serde(default)]
    cli: jitgate_server::cli_login::CliConfig,
}

pub fn serve(args: ServeArgs) -> CommandResult {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("JITGATE_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let file: ConfigFile = match &args.config {
        None => ConfigFile::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ClientError::Other(format!("cannot read config {}: {e}", path.display())))?;
            toml::from_str(&text).map_err(|e| ClientError::Other(format!("config {}: {e}", path.display())))?
        }
    };
    let listen = args.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:7400".into());
    let listen = listen
        .parse()
        .map_err(|_| ClientError::Other(format!("--listen: '{listen}' is not an address like 127.0.0.1:7400")))?;
    let policy_dir = args
        .policy
        .or(file.policy)
        .ok_or_else(|| ClientError::Other("--policy DIR is required (try --policy examples/quickstart)".into()))?;
    let database_url = jitgate_store::DatabaseUrl::new(
        args.database
            .or(file.database)
            .unwrap_or_else(|| "sqlite://./jitgate-data/jitgate.db".into()),
    );
    let database_url = match args.database_password_file.or(file.database_password_file) {
        None => database_url,
        Some(path) => database_url
            .with_password(read_password_file(&path)?)
            .map_err(|e| ClientError::Other(format!("--database-password-file {}: {e}", path.display())))?,
    };
    let store = match (args.database_write_timeout, file.database_write_timeout) {
        (Some(text), _) => store_settings("--database-write-timeout", &text)?,
        (None, Some(text)) => {
            let shown = args.config.as_deref().unwrap_or(Path::new("")).display();
            store_settings(&format!("database_write_timeout in {shown}"), &text)?
        }
        (None, None) => jitgate_store::StoreSettings::default(),
    };
    let config = jitgate_server::ServerConfig {
        listen,
        policy_dir,
        database_url,
        store,
        auth: file.auth,
        providers: file.providers,
        notify: file.notify,
        slack: file.slack,
        audit: file.audit,
        ui: file.ui,
        limits: file.limits,
        connections: file.connections,
        forward_auth: file.forward_auth,
        scim: file.scim,
        github: file.github,
        cli: file.cli,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Other(format!("cannot start runtime: {e}")))?;
    runtime
        .block_on(jitgate_server::serve(config))
        .map_err(|e| ClientError::Other(e.to_string()))?;
    Ok(ExitCode::SUCCESS)
}

/// The longest write the database may take, as `--database-write-timeout` (or the config
/// file's `database_write_timeout`, named by `what`) gives it.
fn store_settings(what: &str, text: &str) -> Result<jitgate_store::StoreSettings, ClientError> {
    Ok(jitgate_store::StoreSettings {
        write_timeout: write_timeout(text).map_err(|e| ClientError::Other(format!("{what}: {e}")))?,
    })
}

/// A write bound: whole seconds from 1s to 5m. Zero would refuse every write, and a bound
/// longer than a few minutes is no bound for a caller waiting on it.
fn write_timeout(text: &str) -> Result<std::time::Duration, String> {
    const MAX: u64 = 300;
    let shown = text.escape_debug();
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.trim_end_matches(['s', 'm', 'h', 'd']).chars().all(|c| c == '0') {
        return Err(format!(
            "'{shown}' is zero: every write would time out; use 1s to 5m (default 5s)"
        ));
    }
    match jitgate_core::duration::parse_duration(text) {
        Ok(d) if d.0 <= MAX => Ok(std::time::Duration::from_secs(d.0)),
        Ok(_) => Err(format!("'{shown}' is longer than 5m; use 1s to 5m (default 5s)")),
        Err(_) => Err(format!(
            "'{shown}' is not a duration; use whole seconds from 1s to 5m, like 5s, 30s or 2m (default 5s)"
        )),
    }
}

/// The password a password file holds: its content without the line end an editor leaves.
fn read_password_file(path: &Path) -> Result<String, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientError::Other(format!("cannot read --database-password-file {}: {e}", path.display())))?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    Ok(password.strip_suffix('\r').unwrap_or(password).to_string())
}

#[allow(clippy::too_many_arguments)]
pub fn request(
    client: &Client,
    resource: &str,
    action: &str,
    duration: Option<String>,
    reason: &str,
    payload: Option<String>,
    break_glass: bool,
    wait: bool,
    also: &[crate::waiting::AlsoItem],
) -> CommandResult {
    let mut body = json!({"resource": resource, "action": action, "reason": reason, "break_glass": break_glass});
    if let Some(d) = duration {
        body["duration"] = json!(d);
    }
    if let Some(p) = payload {
        body["payload"] = json!(p);
    }
    crate::waiting::add_items(&mut body, also);
    let request = client.post("/v1/requests", &body)?;
    let request = if wait && request["status"] == "pending" {
        if client.output != Output::Json {
            eprintln!(
                "request {} is waiting for approval ({})...",
                render::s(&request["id"]),
                crate::waiting::needs_text(&request)
            );
        }
        let interrupt = crate::waiting::Interrupt::install(client);
        let waiting = crate::waiting::Wait {
            client,
            timeout: None,
            progress: false,
            interrupt: Some(&interrupt),
        };
        match waiting.until_decided(request)? {
            crate::waiting::Outcome::Decided(r) | crate::waiting::Outcome::TimedOut(r) => r,
        }
    } else {
        request
    };
    print(client, &request, render::request_detail);
    Ok(decision_code(&request, wait))
}

fn decision_code(request: &Value, waited: bool) -> ExitCode {
    if !waited || request["status"] == "approved" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// GET a list endpoint, filtered by status, and print it as a table.
fn list(
    client: &Client,
    path: &str,
    status: Option<String>,
    header: String,
    line: fn(&Value) -> String,
) -> CommandResult {
    let query: Vec<(&str, String)> = status.into_iter().map(|s| ("status", s)).collect();
    let list = client.get(path, &query)?;
    print(client, &list, |l| {
        let rows = l["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| line(item) + "\n");
        std::iter::once(header + "\n").chain(rows).collect()
    });
    Ok(ExitCode::SUCCESS)
}

/// The optional `{"comment": ...}` body of reviews and revocations.
fn comment_body(comment: Option<String>) -> Value {
    comment.map_or_else(|| json!({}), |c| json!({"comment": c}))
}

pub fn requests(client: &Client, status: Option<String>) -> CommandResult {
    list(
        client,
        "/v1/requests",
        status,
        render::request_header(),
        render::request_line,
    )
}

/// Every page of `GET /v1/resources`, printed as one list.
pub fn resources(client: &Client, search: Option<String>, labels: Vec<String>, kind: Option<String>) -> CommandResult {
    let mut query: Vec<(&str, String)> = Vec::new();
    query.extend(search.map(|s| ("q", s)));
    query.extend(kind.map(|k| ("kind", k)));
    if !labels.is_empty() {
        query.push(("label", labels.join(",")));
    }
    let mut items = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut page_query = query.clone();
        page_query.extend(before.take().map(|b| ("before", b)));
        let page = client.get("/v1/resources", &page_query)?;
        items.extend(page["items"].as_array().into_iter().flatten().cloned());
        match page["next"].as_str() {
            Some(next) => before = Some(next.to_string()),
            None => break,
        }
    }
    let all = json!({ "items": items });
    print(client, &all, |l| {
        let rows = l["items"].as_array().into_iter().flatten().map(render::resource_lines);
        std::iter::once(render::resource_header() + "\n").chain(rows).collect()
    });
    Ok(ExitCode::SUCCESS)
}

pub fn show(client: &Client, id: &str, whole_payload: bool) -> CommandResult {
    let request = client.get(&format!("/v1/requests/{id}"), &[])?;
    if whole_payload {
        print(client, &request, render::whole_payload);
    } else {
        print(client, &request, render::request_detail);
    }
    Ok(ExitCode::SUCCESS)
}

/// Approve, bound to the payload the reviewer looked at when they give its hash.
pub fn approve(client: &Client, id: &str, comment: Option<String>, payload_sha256: Option<String>) -> CommandResult {
    let mut body = comment_body(comment);
    if let Some(hash) = payload_sha256 {
        body["payload_sha256"] = json!(hash.trim());
    }
    let request = client.post(&format!("/v1/requests/{id}/approve"), &body)?;
    print(client, &request, render::request_detail);
    Ok(ExitCode::SUCCESS)
}

pub fn review(client: &Client, id: &str, verb: &str, comment: Option<String>) -> CommandResult {
    let request = client.post(&format!("/v1/requests/{id}/{verb}"), &comment_body(comment))?;
    print(client, &request, render::request_detail);
    Ok(ExitCode::SUCCESS)
}

pub fn grants(client: &Client, status: Option<String>) -> CommandResult {
    list(client, "/v1/grants", status, render::grant_header(), render::grant_line)
}

/// What `token create` was asked for besides the principal.
pub struct TokenOptions {
    pub groups: Vec<String>,
    pub ttl: Option<String>,
    pub label: Option<String>,
    pub service: bool,
    pub agent_for: Option<String>,
    pub scim: bool,
}

pub fn token_create(client: &Client, principal: &str, options: TokenOptions) -> CommandResult {
    let TokenOptions {
        groups,
        ttl,
        label,
        service,
        agent_for,
        scim,
    } = options;
    let mut body = json!({"principal": principal, "groups": groups, "service": service});
    if scim {
        body["scim"] = json!(true);
    }
    if let Some(person) = agent_for {
        body["agent_for"] = json!(person);
    }
    if let Some(ttl) = ttl {
        body["ttl"] = json!(ttl);
    }
    if let Some(label) = label {
        body["label"] = json!(label);
    }
    let created = client.post("/v1/tokens", &body)?;
    print(client, &created, |t| {
        format!(
            "{}\n\ntoken {} for {} ({}). It is shown this once: jitgate keeps only its hash.\n",
            render::raw(&t["token"]),
            render::s(&t["id"]),
            render::requester(&t["principal"], &t["agent_for"]),
            t["expires_at"]
                .as_str()
                .map_or("valid until revoked".to_string(), |e| format!("expires {e}"))
        )
    });
    Ok(ExitCode::SUCCESS)
}

pub fn ssh_certificate(client: &Client, grant_id: &str, key: &std::path::Path, write: bool) -> CommandResult {
    let public_key = read_public_key(key)?;
    let answer = client.post(
        &format!("/v1/grants/{grant_id}/ssh-cert"),
        &json!({"public_key": public_key.trim()}),
    )?;
    if !write {
        print(client, &answer, |a| format!("{}\n", render::raw(&a["certificate"])));
        return Ok(ExitCode::SUCCESS);
    }
    let path = write_certificate(&answer, key)?;
    let mut shown = answer.clone();
    shown["path"] = json!(path.display().to_string());
    print(client, &shown, |_| format!("{}\n", path.display()));
    Ok(ExitCode::SUCCESS)
}

/// The biggest public key file read: an RSA key of 16384 bits is under 3 KiB.
const MAX_PUBLIC_KEY_BYTES: u64 = 16 * 1024;

/// The public key file's text. A private key must never leave the machine: it is refused
/// before anything is sent.
fn read_public_key(key: &Path) -> Result<String, ClientError> {
    let cannot_read = |e: std::io::Error| ClientError::Other(format!("--key: cannot read {}: {e}", key.display()));
    let size = std::fs::metadata(key).map_err(cannot_read)?.len();
    if size > MAX_PUBLIC_KEY_BYTES {
        return Err(ClientError::Other(format!(
            "--key {}: {size} bytes is no OpenSSH public key: pass the .pub file",
            key.display()
        )));
    }
    let public_key = std::fs::read_to_string(key).map_err(cannot_read)?;
    if public_key.contains("PRIVATE KEY") {
        return Err(ClientError::Other(format!(
            "--key {}: that is a private key: pass the .pub file",
            key.display()
        )));
    }
    Ok(public_key)
}

/// The OpenSSH certificate line of the server's `answer`, or why there is none.
fn certificate_line(answer: &Value) -> Result<&str, ClientError> {
    answer["certificate"]
        .as_str()
        .filter(|c| is_certificate_line(c))
        .ok_or_else(|| {
            ClientError::Other("the server's answer holds no OpenSSH certificate line; nothing was written".into())
        })
}

/// Save the certificate of the server's `answer` beside `key` as KEY-cert.pub (mode 0644,
/// atomically, never through a symbolic link), where ssh finds it; its path.
fn write_certificate(answer: &Value, key: &Path) -> Result<PathBuf, ClientError> {
    let certificate = certificate_line(answer)?;
    let path = certificate_path(key);
    crate::profiles::write_atomically(&path, format!("{certificate}\n").as_bytes(), 0o644)
        .map_err(|e| ClientError::Other(format!("--write: {e}")))?;
    Ok(path)
}

/// What `jitgate ssh --request RESOURCE USER@HOST` was asked for.
pub struct SshLogin {
    pub resource: String,
    /// `--action`; otherwise the one login action the resource offers.
    pub action: Option<String>,
    pub destination: String,
    /// `--key`; otherwise the first of ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub.
    pub key: Option<PathBuf>,
    pub reason: String,
    pub duration: Option<String>,
    pub timeout: std::time::Duration,
    /// Passed to ssh after the destination: its options and the remote command.
    pub ssh_args: Vec<String>,
}

/// The keys ssh looks for by default, in its order: the first whose public half exists is
/// used, as `ssh` itself would.
const DEFAULT_KEYS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// `jitgate ssh --request`: everything is checked before the request is filed (the key pair,
/// the destination, the resource and its action, the ssh program, where the certificate and
/// the login's files go), so that nobody approves access this command then cannot use. Then
/// file, wait (Ctrl-C cancels), certify the key for the new grant, write KEY-cert.pub beside
/// it, and run ssh with the login's own files ([`LoginFiles`]); ssh's exit code is the
/// command's. Whatever stops it once the grant exists ends the grant.
pub fn ssh_login(client: &Client, login: SshLogin) -> CommandResult {
    check_destination(&login.destination)?;
    check_resource_name("--request", &login.resource)?;
    let (public, private) = match &login.key {
        Some(key) => key_pair(key)?,
        None => default_key_pair()?,
    };
    let public_key = read_public_key(&public)?;
    check_public_key_line(&public, &public_key)?;
    let program = ssh_program()?;
    // Every path ssh is given is checked now: refused after an approval, the grant would stay
    // live and unused. ssh is given the login's own files, never the key's (see LoginFiles).
    LoginFiles::check_where()?;
    check_certificate_place(&public)?;
    if let Some(action) = &login.action {
        check_resource_name("--action", action)?;
    }
    let action = ssh_action(client, &login.resource, login.action.as_deref())?;
    let ask = crate::waiting::Ask {
        resource: &login.resource,
        action: &action,
        duration: login.duration,
        reason: &login.reason,
        payload: None,
        also: Vec::new(),
    };
    let interrupt = crate::waiting::Interrupt::install(client);
    let decision = crate::waiting::file_and_wait(client, &ask, login.timeout, &interrupt)?;
    let request = &decision.request;
    if !decision.approved() {
        eprintln!(
            "jitgate: request {} was {}; not running ssh",
            render::s(&request["id"]),
            render::s(&request["status"])
        );
        return Ok(decision.code);
    }
    let grant_id = render::raw(&request["grant"]["id"]);
    // From here the grant is live: whatever stops the login ends it, so that no access stays
    // open that nobody uses.
    // Ctrl-C after the decision (while an auto-approved request was filed, say): no
    // certificate is asked for, so none stays valid after the grant is ended.
    if interrupt.stopped() {
        let stop = ClientError::Other("interrupted: not running ssh".into());
        eprintln!("\n{}", end_unused_grant(client, grant_id, stop, None));
        return Ok(ExitCode::from(130));
    }
    let answer = client
        .post(
            &format!("/v1/grants/{grant_id}/ssh-cert"),
            &json!({"public_key": public_key.trim()}),
        )
        .map_err(|e| {
            ClientError::Other(format!(
                "request {} is approved (grant {}), but the server issued no certificate: {e}",
                render::s(&request["id"]),
                render::s(&request["grant"]["id"])
            ))
        });
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => return Err(end_unused_grant(client, grant_id, e, None)),
    };
    let written = match write_certificate(&answer, &public) {
        Ok(path) => WrittenCertificate {
            path,
            line: certificate_line(&answer).unwrap_or_default().to_string(),
            until: render::raw(&request["grant"]["expires_at"]).to_string(),
        },
        Err(e) => return Err(end_unused_grant(client, grant_id, e, None)),
    };
    let prepared = (|| {
        let files = LoginFiles::create(grant_id, &private, &public, &written.line)?;
        let options = [
            ssh_path_option("IdentityFile", &files.identity())?,
            ssh_path_option("CertificateFile", &files.certificate())?,
        ];
        Ok((files, options))
    })();
    let (files, [identity_option, certificate_option]) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => return Err(end_unused_grant(client, grant_id, e, Some(&written))),
    };
    let certificate = &written.path;
    // Ctrl-C after the decision (during the certificate's issue, say: "wrong host"): no ssh.
    if interrupt.stopped() {
        drop(files);
        let stop = ClientError::Other("interrupted: not running ssh".into());
        eprintln!("\n{}", end_unused_grant(client, grant_id, stop, Some(&written)));
        return Ok(ExitCode::from(130));
    }
    if client.output != Output::Json {
        eprintln!(
            "jitgate: {} on {} granted until {} ({}); certificate {}",
            render::shown(&action),
            render::shown(&login.resource),
            render::s(&request["grant"]["expires_at"]),
            render::s(&request["grant"]["id"]),
            render::shown(&certificate.display().to_string())
        );
    }
    // No shell: each argument reaches ssh as it is. The destination, checked above, cannot be
    // taken for an option.
    // IdentitiesOnly: this key and this certificate are offered, none of the agent's others.
    let status = std::process::Command::new(&program)
        .args(["-o", &identity_option, "-o", &certificate_option])
        .args(["-o", "IdentitiesOnly=yes"])
        .arg(&login.destination)
        .args(&login.ssh_args)
        .status();
    drop(files);
    match status {
        Ok(status) => Ok(ExitCode::from(
            u8::try_from(crate::waiting::exit_code_of(&status)).unwrap_or(1),
        )),
        Err(e) => {
            let cannot = ClientError::Other(format!(
                "jitgate: cannot run {}: {e}",
                render::shown(&program.display().to_string())
            ));
            eprintln!("{}", end_unused_grant(client, grant_id, cannot, Some(&written)));
            Ok(ExitCode::from(127))
        }
    }
}

/// The certificate one `jitgate ssh --request` wrote beside the key (KEY-cert.pub).
struct WrittenCertificate {
    path: PathBuf,
    /// The certificate line, as written.
    line: String,
    /// The end of its grant, which is the end of the certificate.
    until: String,
}

impl WrittenCertificate {
    /// Remove KEY-cert.pub if it still holds this run's certificate (another login with the
    /// same key may have written its own since: that one is left), and say what became of it.
    /// ssh loads KEY-cert.pub by itself beside the key: left there, a plain `ssh` would still
    /// log in with the certificate of a grant that is ended.
    fn withdraw(&self) -> String {
        let path = self.path.display().to_string();
        let shown = render::shown(&path);
        match std::fs::read_to_string(&self.path) {
            Ok(text) if !self.line.is_empty() && text.trim_end() == self.line.trim_end() => {
                match std::fs::remove_file(&self.path) {
                    Ok(()) => format!("removed {shown}"),
                    Err(e) => format!("could not remove {shown} ({e}): remove it"),
                }
            }
            Ok(_) => format!("{shown} holds another certificate now, so it is left"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("{shown} is gone already"),
            Err(e) => format!("cannot read {shown} ({e}): remove it if it holds this grant's certificate"),
        }
    }
}

/// `error` stopped the login after the grant was made: end the grant (best effort), and say
/// whether it is ended or what to run. When this run already wrote the grant's certificate
/// (`written`), KEY-cert.pub is removed, and the message says that the certificate itself stays
/// valid until its end: hosts check no revocation list (docs/ssh.md).
fn end_unused_grant(
    client: &Client,
    grant_id: &str,
    error: ClientError,
    written: Option<&WrittenCertificate>,
) -> ClientError {
    let shown = render::shown(grant_id);
    let comment = match written {
        None => "jitgate ssh --request: not used, the login stopped before ssh ran".to_string(),
        Some(written) => format!(
            "jitgate ssh --request: not used, the login stopped before ssh ran; its certificate stays valid until {}",
            written.until
        ),
    };
    let ended = client.post(&format!("/v1/grants/{grant_id}/done"), &json!({ "comment": comment }));
    let certificate = written.map(|written| {
        format!(
            "; its certificate, already issued, stays valid until {} (hosts check no revocation list): {}",
            render::shown(&written.until),
            written.withdraw()
        )
    });
    let certificate = certificate.unwrap_or_default();
    match ended {
        Ok(_) => ClientError::Other(format!("{error}; grant {shown} is ended{certificate}")),
        Err(e) => ClientError::Other(format!(
            "{error}; could not end grant {shown} ({e}): run jitgate done {shown}{certificate}"
        )),
    }
}

/// Whether the server's grant id can name a file: ASCII letters, digits, `_` and `-` only (no
/// `/`, `..`, NUL, space or look-alike), at most 100 of them, as jitgate's ids are.
fn is_plain_grant_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 100 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// Whether `dir` is a directory this process may create files in.
fn writable_directory(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => rustix::fs::access(dir, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK)
            .map_err(|e| format!("cannot write there ({e})")),
        Ok(_) => Err("not a directory".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// KEY-cert.pub, beside the public key, can be written: the directory is writable, and the
/// name is free or a file (a directory there would refuse the certificate only after approval).
fn check_certificate_place(public: &Path) -> Result<(), ClientError> {
    let path = certificate_path(public);
    let dir = path.parent().unwrap_or(Path::new("."));
    let problem = match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => Some("it is a directory".to_string()),
        _ => writable_directory(dir).err(),
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(ClientError::Other(format!(
            "--key {}: cannot write its certificate {} ({problem}); nothing was requested",
            public.display(),
            path.display()
        ))),
    }
}

/// The files one `jitgate ssh --request` login gives ssh, in a directory of its own (mode 0700,
/// under the temporary directory, `jitgate-ssh-` and a random name: one that others could
/// foresee, made of the grant id and the process id, could be taken first, and the login
/// refused), removed once ssh is done: `id` and `id.pub`, symbolic links to the key pair, and
/// `id-cert.pub`, this grant's certificate. ssh loads `IDENTITY-cert.pub` beside any identity
/// by itself, and reads its files only once connected: were it given the key itself, a
/// KEY-cert.pub that another `jitgate ssh --request` with the same key rewrote meanwhile would
/// log in with that other grant's certificate. KEY-cert.pub is still written beside the key,
/// for later use by hand.
struct LoginFiles {
    /// Removed with everything in it when dropped: on every way out of the login.
    dir: tempfile::TempDir,
}

/// The start of the name of a login's directory; a random part follows.
const LOGIN_DIR_PREFIX: &str = "jitgate-ssh-";
/// How many random characters follow [`LOGIN_DIR_PREFIX`].
const LOGIN_DIR_RANDOM: usize = 12;

impl LoginFiles {
    /// A name of the form the login's directory will have, for the checks made before filing.
    fn dir_like() -> PathBuf {
        std::env::temp_dir().join(format!("{LOGIN_DIR_PREFIX}{}", "x".repeat(LOGIN_DIR_RANDOM)))
    }

    /// Whether ssh would read the files of a login as they are written: the temporary
    /// directory (TMPDIR) is checked before anything is filed.
    fn check_where() -> Result<(), ClientError> {
        let dir = Self::dir_like();
        let refused = |problem: String| {
            ClientError::Other(format!(
                "{problem}: the login's files go to the temporary directory: set TMPDIR to another one; nothing was requested"
            ))
        };
        ssh_path_option("IdentityFile", &dir.join("id")).map_err(|e| refused(e.to_string()))?;
        let temp = std::env::temp_dir();
        writable_directory(&temp).map_err(|e| refused(format!("{}: {e}", temp.display())))
    }

    fn create(grant_id: &str, private: &Path, public: &Path, certificate: &str) -> Result<LoginFiles, ClientError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if !is_plain_grant_id(grant_id) {
            return Err(ClientError::Other(format!(
                "the server named the grant {}, which is no grant id",
                render::shown(grant_id)
            )));
        }
        Self::check_where()?;
        let temp = std::env::temp_dir();
        // A fresh directory of a random name (never one that exists, nor a symbolic link put
        // there), ours only.
        let dir = tempfile::Builder::new()
            .prefix(LOGIN_DIR_PREFIX)
            .rand_bytes(LOGIN_DIR_RANDOM)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(&temp)
            .map_err(|e| ClientError::Other(format!("cannot prepare a directory in {}: {e}", temp.display())))?;
        let files = LoginFiles { dir };
        let cannot =
            |e: std::io::Error| ClientError::Other(format!("cannot prepare {}: {e}", files.dir.path().display()));
        std::os::unix::fs::symlink(private, files.identity()).map_err(cannot)?;
        std::os::unix::fs::symlink(public, files.dir.path().join("id.pub")).map_err(cannot)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(files.certificate())
            .and_then(|mut f| f.write_all(format!("{certificate}\n").as_bytes()))
            .map_err(cannot)?;
        Ok(files)
    }

    fn identity(&self) -> PathBuf {
        self.dir.path().join("id")
    }

    fn certificate(&self) -> PathBuf {
        self.dir.path().join("id-cert.pub")
    }
}

/// `USER@HOST` (or `HOST`) as ssh is given it: nothing ssh could take for an option (a
/// leading `-`), no control, space or invisible character (what is shown is what connects).
fn check_destination(destination: &str) -> Result<(), ClientError> {
    let problem = if destination.is_empty() {
        Some("it is empty".to_string())
    } else if destination.starts_with('-') {
        Some("it starts with '-', which ssh would take for an option".to_string())
    } else if destination.len() > 1024 {
        Some(format!("it is {} bytes long", destination.len()))
    } else {
        destination
            .chars()
            .find(|&c| c.is_control() || c.is_whitespace() || jitgate_core::text::is_invisible(c))
            .map(|c| format!("it holds U+{:04X}, a space, control or invisible character", c as u32))
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(ClientError::Other(format!(
            "USER@HOST {destination}: {problem}; nothing was requested"
        ))),
    }
}

/// A resource (or action) name as typed: one that holds a control or invisible character is
/// not the name it looks like, and is refused before anything is sent.
fn check_resource_name(flag: &str, name: &str) -> Result<(), ClientError> {
    match name
        .chars()
        .find(|&c| c.is_control() || jitgate_core::text::is_invisible(c))
    {
        None if !name.trim().is_empty() => Ok(()),
        None => Err(ClientError::Other(format!("{flag}: the name is empty; nothing was requested"))),
        Some(c) => Err(ClientError::Other(format!(
            "{flag} {name}: the name holds U+{:04X}, an invisible or control character: type the name (jitgate resources --kind ssh lists them); nothing was requested",
            c as u32
        ))),
    }
}

/// `--key KEY.pub` and its private half, `KEY`, which must be beside it.
fn key_pair(public: &Path) -> Result<(PathBuf, PathBuf), ClientError> {
    let public =
        std::path::absolute(public).map_err(|e| ClientError::Other(format!("--key {}: {e}", public.display())))?;
    let name = public
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(stem) = name.strip_suffix(".pub").filter(|s| !s.is_empty()) else {
        // A private key given by mistake is named as such (and never read further).
        read_public_key(&public)?;
        return Err(ClientError::Other(format!(
            "--key {}: name the public key file, KEY.pub, with its private key KEY beside it",
            public.display()
        )));
    };
    let private = public.with_file_name(stem);
    if !private.is_file() {
        return Err(ClientError::Other(format!(
            "--key {}: its private key {} is missing: ssh needs both",
            public.display(),
            private.display()
        )));
    }
    Ok((public, private))
}

/// The first of ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub that exists, with its private
/// key beside it.
fn default_key_pair() -> Result<(PathBuf, PathBuf), ClientError> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ClientError::Other("HOME is not set: pass --key KEY.pub".into()))?;
    let dir = Path::new(&home).join(".ssh");
    for name in DEFAULT_KEYS {
        let public = dir.join(format!("{name}.pub"));
        if public.exists() {
            return key_pair(&public);
        }
    }
    Err(ClientError::Other(format!(
        "no SSH key: none of {} exists in {}: make one with ssh-keygen -t ed25519, or pass --key KEY.pub",
        DEFAULT_KEYS.map(|k| format!("{k}.pub")).join(", "),
        dir.display()
    )))
}

/// A public key file holds one line `TYPE BASE64 [COMMENT]`; anything else would be refused
/// by the server only after someone approved the request.
fn check_public_key_line(path: &Path, text: &str) -> Result<(), ClientError> {
    let line = text.trim();
    let mut words = line.split(' ');
    let kind = words.next().unwrap_or("");
    let blob = words.next().unwrap_or("");
    let known = kind.starts_with("ssh-") || kind.starts_with("ecdsa-sha2-") || kind.starts_with("sk-");
    let ok = known
        && !kind.contains("-cert-")
        && !blob.is_empty()
        && blob
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        && !line.contains('\n');
    if ok {
        Ok(())
    } else {
        Err(ClientError::Other(format!(
            "--key {}: not an OpenSSH public key (one line: TYPE BASE64 COMMENT); nothing was requested",
            path.display()
        )))
    }
}

/// The program run as ssh: JITGATE_SSH_PROGRAM, else `ssh` on PATH; found before anything is
/// requested.
fn ssh_program() -> Result<PathBuf, ClientError> {
    let named = std::env::var_os("JITGATE_SSH_PROGRAM").filter(|p| !p.is_empty());
    let (program, from) = match &named {
        Some(p) => (PathBuf::from(p), "JITGATE_SSH_PROGRAM"),
        None => (PathBuf::from("ssh"), "PATH"),
    };
    let found = if program.components().count() > 1 {
        is_executable_file(&program).then_some(program.clone())
    } else {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .map(|dir| dir.join(&program))
            .find(|candidate| is_executable_file(candidate))
    };
    found.ok_or_else(|| {
        ClientError::Other(format!(
            "cannot find {} ({from}), or it is not executable: install OpenSSH's client, or set JITGATE_SSH_PROGRAM; nothing was requested",
            program.display()
        ))
    })
}

/// A regular file (through symbolic links) that someone may execute, as `execvp` looks for:
/// a file without an execute bit would pass a plain existence check, then fail with 127 only
/// after the request was approved.
fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `OPTION=PATH` for `ssh -o` (`IdentityFile`, `CertificateFile`): ssh splits an option's
/// value at spaces (unless quoted) and expands `%` tokens and `${VAR}` in it (in `-i` too, which
/// is why the key is not given that way), so the path is quoted, `%` doubled, and a path ssh
/// would read otherwise (a quote, a backslash, `$`, a control character) refused.
fn ssh_path_option(option: &str, path: &Path) -> Result<String, ClientError> {
    let text = path.to_str().ok_or_else(|| {
        ClientError::Other(format!(
            "{}: the path is not UTF-8, which ssh -o cannot take",
            path.display()
        ))
    })?;
    if let Some(c) = text
        .chars()
        .find(|&c| matches!(c, '"' | '\\' | '$' | '\'') || c.is_control())
    {
        return Err(ClientError::Other(format!(
            "{}: ssh would not read a path holding {:?} as it is",
            path.display(),
            c
        )));
    }
    Ok(format!("{option}=\"{}\"", text.replace('%', "%%")))
}

/// Which action of `resource` is the SSH login: `wanted` (`--action`), which must be one the
/// resource offers you, else the one it offers that is not bound to one command. A resource
/// that does not exist or is not SSH, no such action, none or several, are said in one line
/// before anything is requested.
fn ssh_action(client: &Client, resource: &str, wanted: Option<&str>) -> Result<String, ClientError> {
    let found = find_resource(client, resource)?.ok_or_else(|| {
        ClientError::Other(format!(
            "--request {resource}: no resource of that name that you may request (jitgate resources --kind ssh lists those you may); nothing was requested"
        ))
    })?;
    if let Some(kind) = found["kind"].as_str().filter(|k| *k != "ssh") {
        return Err(ClientError::Other(format!(
            "--request {resource}: it is a {kind} resource, not ssh; nothing was requested"
        )));
    }
    let actions: Vec<&Value> = found["actions"].as_array().into_iter().flatten().collect();
    if let Some(wanted) = wanted {
        if actions.iter().any(|a| a["action"].as_str() == Some(wanted)) {
            return Ok(wanted.to_string());
        }
        let offered: Vec<&str> = actions.iter().filter_map(|a| a["action"].as_str()).collect();
        return Err(ClientError::Other(format!(
            "--action {}: not an action you may request on {resource} (you may request {}); nothing was requested",
            render::shown(wanted),
            if offered.is_empty() {
                "none".to_string()
            } else {
                offered.join(", ")
            }
        )));
    }
    let names = |bound: bool| -> Vec<&str> {
        actions
            .iter()
            .filter(|a| a["action_bound"].as_bool() == Some(bound))
            .filter_map(|a| a["action"].as_str())
            .collect()
    };
    let (logins, bound) = (names(false), names(true));
    match (logins.as_slice(), bound.as_slice()) {
        ([one], _) => Ok((*one).to_string()),
        ([], []) => Err(ClientError::Other(format!(
            "--request {resource}: you may request no action on it; nothing was requested"
        ))),
        ([], bound) => Err(ClientError::Other(format!(
            "--request {resource}: its only SSH actions ({}) are bound to one approved command: file that with jitgate request {resource} ACTION --payload COMMAND, then jitgate ssh GRANT_ID --key KEY.pub --write; nothing was requested",
            bound.join(", ")
        ))),
        (several, _) => Err(ClientError::Other(format!(
            "--request {resource}: which action? you may request {} on it: pick one with --action; nothing was requested",
            several.join(", ")
        ))),
    }
}

/// The longest search text `GET /v1/resources` takes (`q`, in characters).
const MAX_RESOURCE_SEARCH: usize = 256;

/// The resource named exactly `name` among those the caller may request, looked for page by
/// page: the search (`q`) matches names and descriptions that contain the text, so in a large
/// catalog the exact name may come after a full page of others. A name longer than the search
/// takes is looked for by its beginning, which it contains too.
fn find_resource(client: &Client, name: &str) -> Result<Option<Value>, ClientError> {
    let search: String = name.chars().take(MAX_RESOURCE_SEARCH).collect();
    let mut before: Option<String> = None;
    loop {
        let mut query = vec![("q", search.clone()), ("limit", "500".to_string())];
        query.extend(before.take().map(|b| ("before", b)));
        let page = client.get("/v1/resources", &query)?;
        let found = page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"].as_str() == Some(name));
        if let Some(found) = found {
            return Ok(Some(found.clone()));
        }
        match page["next"].as_str() {
            Some(next) => before = Some(next.to_string()),
            None => return Ok(None),
        }
    }
}

/// Whether `line` looks like one OpenSSH certificate line: a certificate type
/// (`...-cert-v01@openssh.com`), a space, then base64 (and maybe a comment), printable ASCII
/// only. Anything else (empty, an error page, a plain key) is not written where ssh loads it.
fn is_certificate_line(line: &str) -> bool {
    let Some((kind, rest)) = line.split_once(' ') else {
        return false;
    };
    let blob = rest.split(' ').next().unwrap_or("");
    kind.len() > "-cert-v01@openssh.com".len()
        && kind.ends_with("-cert-v01@openssh.com")
        && kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '@' | '.'))
        && !blob.is_empty()
        && blob
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        && line.chars().all(|c| c.is_ascii_graphic() || c == ' ')
}

/// Where ssh looks for a key's certificate: `id_ed25519.pub` -> `id_ed25519-cert.pub`, beside it.
fn certificate_path(key: &std::path::Path) -> PathBuf {
    let name = key
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = name.strip_suffix(".pub").unwrap_or(&name);
    key.with_file_name(format!("{stem}-cert.pub"))
}

/// How long `jitgate credentials` waits for a login role that is still being created.
const CREDENTIALS_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

pub fn database_credentials(client: &Client, grant_id: &str) -> CommandResult {
    let path = format!("/v1/grants/{grant_id}/credentials");
    let deadline = std::time::Instant::now() + CREDENTIALS_WAIT;
    let answer = loop {
        match client.post(&path, &json!({})) {
            Err(ClientError::Api { status: 503, .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            other => break other?,
        }
    };
    print(client, &answer, |a| {
        let mut out = String::new();
        for c in a["credentials"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "provider  {}\nuser      {}\npassword  {}\nhost      {}:{}\ndatabase  {}\nexpires   {}\nurl       {}\n\n",
                render::s(&c["provider"]),
                render::s(&c["user"]),
                render::raw(&c["password"]),
                render::s(&c["host"]),
                c["port"],
                render::s(&c["database"]),
                render::s(&c["expires_at"]),
                render::s(&c["url"]),
            ));
        }
        out.push_str("shown once: jitgate keeps no copy of the password\n");
        out
    });
    Ok(ExitCode::SUCCESS)
}

pub fn keys_rotate(client: &Client) -> CommandResult {
    let rotated = client.post("/v1/keys/rotate", &json!({}))?;
    print(client, &rotated, |r| {
        format!(
            "grant tokens are now signed with {}; the previous key stays published until its grants end\n",
            render::s(&r["kid"])
        )
    });
    Ok(ExitCode::SUCCESS)
}

pub fn database_accept_history(client: &Client) -> CommandResult {
    let answer = client.post("/v1/admin/database/accept-history", &json!({}))?;
    print(client, &answer, |a| format!("{}\n", render::s(&a["message"])));
    Ok(ExitCode::SUCCESS)
}

pub fn token_list(client: &Client) -> CommandResult {
    list(client, "/v1/tokens", None, render::token_header(), render::token_line)
}

pub fn token_revoke(client: &Client, id: &str) -> CommandResult {
    let token = client.post(&format!("/v1/tokens/{id}/revoke"), &json!({}))?;
    print(client, &token, |t| format!("{}\n", render::token_line(t)));
    Ok(ExitCode::SUCCESS)
}

/// The task is finished: end the grant (if still active) and record it.
pub fn done(client: &Client, grant_id: &str, comment: Option<String>) -> CommandResult {
    let grant = client.post(&format!("/v1/grants/{grant_id}/done"), &json!({"comment": comment}))?;
    print(client, &grant, |g| format!("{}\n", render::grant_line(g)));
    Ok(ExitCode::SUCCESS)
}

pub fn revoke(client: &Client, grant_id: &str, comment: Option<String>) -> CommandResult {
    let grant = client.post(&format!("/v1/grants/{grant_id}/revoke"), &comment_body(comment))?;
    print(client, &grant, |g| format!("{}\n", render::grant_line(g)));
    Ok(ExitCode::SUCCESS)
}

pub fn extend(client: &Client, grant_id: &str, duration: &str, reason: &str) -> CommandResult {
    let grant = client.post(
        &format!("/v1/grants/{grant_id}/extend"),
        &json!({"duration": duration, "reason": reason}),
    )?;
    print(client, &grant, |g| format!("{}\n", render::grant_line(g)));
    Ok(ExitCode::SUCCESS)
}

pub fn check(client: &Client, principal: &str, resource: &str, action: &str, payload: Option<String>) -> CommandResult {
    let mut body = json!({"principal": principal, "resource": resource, "action": action});
    if let Some(p) = payload {
        body["payload"] = json!(p);
    }
    let answer = client.post("/v1/check", &body)?;
    let allowed = answer["allow"].as_bool() == Some(true);
    // A deny the server could not make durable is an error, not a denial: a retry may allow.
    let error = !allowed && answer["error"].as_bool() == Some(true);
    print(client, &answer, |a| {
        format!(
            "{}: {}\n",
            match (allowed, error) {
                (true, _) => "allow",
                (false, true) => "deny (error; a retry may succeed)",
                (false, false) => "deny",
            },
            render::s(&a["reason"])
        )
    });
    Ok(match (allowed, error) {
        (true, _) => ExitCode::SUCCESS,
        (false, true) => ExitCode::from(2),
        (false, false) => ExitCode::from(1),
    })
}

fn audit_query(filter: &crate::AuditFilterArgs) -> Vec<(&'static str, String)> {
    [
        ("request_id", &filter.request_id),
        ("principal", &filter.principal),
        ("resource", &filter.resource),
        ("action", &filter.action),
        ("kind", &filter.kind),
        ("since", &filter.since),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.clone().map(|v| (name, v)))
    .collect()
}

pub fn audit_list(client: &Client, filter: &crate::AuditFilterArgs) -> CommandResult {
    let list = client.get("/v1/audit", &audit_query(filter))?;
    print(client, &list, |l| {
        l["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| render::event_line(e) + "\n")
            .collect()
    });
    Ok(ExitCode::SUCCESS)
}

/// Check exported lines offline: every event links to the one before and matches its hash;
/// with checkpoints among them, each stands right after the event it signs and agrees with it
/// (a consistent rewrite, a moved line or a cut-off end shows), states in its signature what
/// the line shows, and with `keys`, its signature holds. An export of the whole log (or from
/// `--since` on), a segment, or segments in a row are one unbroken run; a filtered export is
/// not, and is reported as such. A line that is cut off or not an audit line is a break too.
pub fn audit_verify_file(client: &Client, files: &[PathBuf], keys: Option<&Path>) -> CommandResult {
    let keys = match keys {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ClientError::Other(format!("--keys: cannot read {}: {e}", path.display())))?;
            let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text)
                .map_err(|e| ClientError::Other(format!("--keys: {} is not a JWKS: {e}", path.display())))?;
            Some(set.keys)
        }
    };
    let report = verify_lines(files, keys.as_deref())?;
    let answer = json!({
        "ok": report.ok, "events": report.events, "checkpoints": report.checkpoints,
        "first_seq": report.first_seq, "last_seq": report.last_seq,
        "signatures_checked": keys.is_some(), "signed_through": report.signed_through,
        "first_bad_seq": report.first_bad_seq, "problem": report.problem,
    });
    print(client, &answer, |r| {
        if !report.ok {
            return format!("BROKEN at event {}: {}\n", r["first_bad_seq"], render::s(&r["problem"]));
        }
        let mut text = match (report.first_seq, report.last_seq) {
            (Some(first), Some(last)) => {
                format!("ok: events {first} to {last} ({} events), chain intact", report.events)
            }
            _ => "ok: no events".to_string(),
        };
        if report.checkpoints > 0 {
            text.push_str(&format!(
                ", {} checkpoint(s) agree, the last at event {}",
                report.checkpoints,
                report.signed_through.unwrap_or(0)
            ));
            text.push_str(if keys.is_some() {
                ", signatures valid"
            } else {
                " (signatures not checked: pass --keys with the JWKS from `jitgate audit keys`)"
            });
        }
        text + "\n"
    });
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The lines of `files`, read in order one at a time (memory stays flat): the chain, each
/// checkpoint where it stands (its signature first, when keys are given), and when there are
/// checkpoints, an end at one: events after the last are not vouched for. A problem found at a
/// line names it (`file:line`). Only a file that cannot be read is an error.
fn verify_lines(
    files: &[PathBuf],
    keys: Option<&[jsonwebtoken::jwk::Jwk]>,
) -> Result<jitgate_core::audit::ChainReport, ClientError> {
    use jitgate_core::audit::{ChainReport, ChainVerifier};
    use jitgate_server::audit::format::{parse_line, Line};
    use std::io::BufRead;
    let mut verifier = ChainVerifier::reading_lines();
    let mut signed = false;
    // The last event read, for a line that says nothing about where it is.
    let mut last_read = 0;
    // A problem at a line: the report so far, broken there.
    let broken_at = |verifier: ChainVerifier, seq: i64, place: &str, problem: &str| ChainReport {
        ok: false,
        first_bad_seq: Some(seq),
        problem: Some(format!("{place}: {problem}")),
        ..verifier.finish()
    };
    for path in files {
        let file = std::fs::File::open(path)
            .map_err(|e| ClientError::Other(format!("--file: cannot read {}: {e}", path.display())))?;
        for (n, bytes) in std::io::BufReader::new(file).split(b'\n').enumerate() {
            let bytes =
                bytes.map_err(|e| ClientError::Other(format!("--file: cannot read {}: {e}", path.display())))?;
            let place = format!("{}:{}", path.display(), n + 1);
            let parsed = String::from_utf8(bytes)
                .map_err(|_| "not UTF-8 text".to_string())
                .and_then(|text| match text.trim() {
                    "" => Ok(None),
                    line => parse_line(line).map(Some),
                });
            let going = match parsed {
                Ok(None) => true,
                Err(why) => {
                    let problem = format!("the line is cut off or is not an audit line ({why})");
                    return Ok(broken_at(verifier, last_read + 1, &place, &problem));
                }
                Ok(Some(Line::Event(event))) => {
                    last_read = event.seq;
                    verifier.event_line(&event)
                }
                Ok(Some(Line::Checkpoint(checkpoint))) => {
                    signed = true;
                    let agrees = match keys {
                        Some(keys) => jitgate_server::signing::verify_checkpoint_with(keys, &checkpoint),
                        None => jitgate_server::signing::checkpoint_agrees_with_its_claims(&checkpoint),
                    };
                    if let Err(why) = agrees {
                        let seq = checkpoint.seq;
                        return Ok(broken_at(
                            verifier,
                            seq,
                            &place,
                            &format!("the checkpoint of event {seq}: {why}"),
                        ));
                    }
                    verifier.checkpoint_line(checkpoint)
                }
            };
            if !going {
                let report = verifier.finish();
                let problem = format!("{place}: {}", report.problem.clone().unwrap_or_default());
                return Ok(ChainReport {
                    problem: Some(problem),
                    ..report
                });
            }
        }
    }
    let report = verifier.finish();
    let (count, first, last) = (report.events, report.first_seq, report.last_seq.unwrap_or(0));
    Ok(match report.signed_through {
        Some(through) if report.ok && through < last => ChainReport {
            ok: false,
            first_bad_seq: Some(through + 1),
            problem: Some(format!(
                "events {} to {last} come after the last signed checkpoint (event {through}): nothing vouches for them (an export made with --checkpoints ends with one)",
                through + 1
            )),
            ..report
        },
        None if report.ok && signed => ChainReport::broken(
            count,
            first.unwrap_or(1),
            "none of the checkpoints matches an event of the export".into(),
        ),
        _ => report,
    })
}

pub fn audit_keys(client: &Client) -> CommandResult {
    let keys = client.get("/v1/audit/keys", &[])?;
    println!("{}", serde_json::to_string_pretty(&keys).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

pub fn audit_verify(client: &Client) -> CommandResult {
    let report = client.get("/v1/audit/verify", &[])?;
    let ok = report["ok"].as_bool() == Some(true);
    print(client, &report, |r| {
        if ok {
            format!(
                "ok: {} events, chain intact, {} signed checkpoint(s) agree\n",
                r["events"], r["checkpoints"]
            )
        } else {
            format!("BROKEN at event {}: {}\n", r["first_bad_seq"], render::s(&r["problem"]))
        }
    });
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Every matching event as one JSON object per line, page by page; with `checkpoints`, the
/// signed checkpoints among them, ending with one signed now.
pub fn audit_export(client: &Client, filter: &crate::AuditFilterArgs, checkpoints: bool) -> CommandResult {
    let mut pending = std::collections::VecDeque::new();
    let mut end = i64::MAX;
    if checkpoints {
        let narrowed = [
            &filter.request_id,
            &filter.principal,
            &filter.resource,
            &filter.action,
            &filter.kind,
        ];
        if narrowed.iter().any(|f| f.is_some()) {
            return Err(ClientError::Other(
                "--checkpoints: a filtered export is not one run of the chain; use it alone or with --since".into(),
            ));
        }
        let head = client.post("/v1/audit/checkpoints", &json!({}))?;
        end = head["seq"].as_i64().unwrap_or(0);
        let listed = client.get("/v1/audit/checkpoints", &[("through", end.to_string())])?;
        pending.extend(listed["items"].as_array().cloned().unwrap_or_default());
    }
    let mut first = true;
    let mut after: Option<i64> = None;
    loop {
        let mut query = audit_query(filter);
        query.push(("limit", "5000".into()));
        if let Some(a) = after {
            query.push(("after", a.to_string()));
        }
        let page = client.get("/v1/audit", &query)?;
        for e in page["items"].as_array().into_iter().flatten() {
            let seq = e["seq"].as_i64().unwrap_or(0);
            if seq > end {
                break;
            }
            if first {
                // The checkpoint just before the first event anchors it; older ones vouch for
                // events not in this export.
                while pending.front().is_some_and(|c| c["seq"].as_i64() < Some(seq - 1)) {
                    pending.pop_front();
                }
                first = false;
            }
            while pending.front().is_some_and(|c| c["seq"].as_i64() < Some(seq)) {
                println!("{}", json!({"checkpoint": pending.pop_front()}));
            }
            println!("{e}");
        }
        match page["next"].as_i64() {
            Some(n) if n < end => after = Some(n),
            _ => break,
        }
    }
    for c in pending {
        println!("{}", json!({ "checkpoint": c }));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_policy_errors(errors: &[jitgate_policy::PolicyError], output: Output) {
    match output {
        Output::Json => {
            let list: Vec<Value> = errors
                .iter()
                .map(|e| json!({"file": e.file, "line": e.line, "message": e.message}))
                .collect();
            println!("{}", json!({"ok": false, "errors": list}));
        }
        Output::Text | Output::Markdown => {
            for e in errors {
                eprintln!("{e}");
            }
        }
    }
}

pub fn policy_test(dir: &Path, output: Output) -> CommandResult {
    let policy = match jitgate_policy::Policy::load(dir) {
        Ok(p) => p,
        Err(errors) => {
            print_policy_errors(&errors, output);
            return Ok(ExitCode::from(2));
        }
    };
    let results = match jitgate_policy::testing::run(&policy, dir) {
        Ok(r) => r,
        Err(errors) => {
            print_policy_errors(&errors, output);
            return Ok(ExitCode::from(2));
        }
    };
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    match output {
        Output::Json => {
            let cases: Vec<Value> = results
                .iter()
                .map(|r| {
                    json!({"file": r.file, "line": r.line, "name": r.name, "ok": r.failure.is_none(),
                           "expected": r.failure.as_ref().map(|f| &f.0), "got": r.failure.as_ref().map(|f| &f.1),
                           "failed_on": r.failed_on, "resources": r.resources})
                })
                .collect();
            println!(
                "{}",
                json!({"passed": results.len() - failed, "failed": failed, "cases": cases})
            );
        }
        Output::Text | Output::Markdown => {
            for r in &results {
                match &r.failure {
                    None if r.resources == 1 => println!("ok    {}", r.name),
                    None => println!("ok    {} ({} resources)", r.name, r.resources),
                    Some((expected, got)) => {
                        println!(
                            "FAIL  {} ({}:{})\n      expected: {expected}\n      got:      {got}",
                            r.name, r.file, r.line
                        )
                    }
                }
            }
            println!("{} passed, {} failed", results.len() - failed, failed);
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn policy_diff(old: &Path, new: &Path, output: Output) -> CommandResult {
    let load = |dir: &Path| jitgate_policy::Policy::load(dir);
    let (old_policy, new_policy) = match (load(old), load(new)) {
        (Ok(o), Ok(n)) => (o, n),
        (o, n) => {
            let errors: Vec<_> = o.err().into_iter().chain(n.err()).flatten().collect();
            print_policy_errors(&errors, output);
            return Ok(ExitCode::from(2));
        }
    };
    let report = jitgate_policy::diff::review(&old_policy, &new_policy);
    match output {
        Output::Json => println!("{}", json!(report)),
        Output::Text => print!("{report}"),
        // For a pull-request comment (docs/policy-review.md): every name escaped, bounded
        // under GitHub's comment size.
        Output::Markdown => print!("{}", report.markdown()),
    }
    Ok(if report.is_unchanged() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn policy_explain(
    client: &Client,
    principal: &str,
    resource: &str,
    action: &str,
    dir: Option<&Path>,
) -> CommandResult {
    let answer = match dir {
        None => client.get(
            "/v1/policy/explain",
            &[
                ("principal", principal.to_string()),
                ("resource", resource.to_string()),
                ("action", action.to_string()),
            ],
        )?,
        Some(dir) => {
            let policy = match jitgate_policy::Policy::load(dir) {
                Ok(p) => p,
                Err(errors) => {
                    print_policy_errors(&errors, client.output);
                    return Ok(ExitCode::from(2));
                }
            };
            let identity = match policy.rules().principal(principal) {
                Some(entry) => entry.identity.clone(),
                None => return Err(ClientError::Other(format!("'{principal}' is not in {}", dir.display()))),
            };
            let explanation = policy.explain(&identity, resource, action, None, chrono::Utc::now());
            jitgate_policy::explanation_json(principal, resource, action, &explanation)
        }
    };
    print(client, &answer, |a| {
        let mut text = format!("{}\n", render::s(&a["summary"]));
        // Which workflow and selector decided it; absent from servers older than the catalog.
        if let Some(by) = a["governed_by"].as_str() {
            text.push_str(&format!("governed by {by}\n"));
        }
        text
    });
    Ok(ExitCode::SUCCESS)
}

pub fn policy_check(dir: &Path, output: Output) -> CommandResult {
    match jitgate_policy::Policy::load(dir) {
        Ok(policy) => {
            let workflows = policy.workflows().count();
            let principals = policy.principals().count();
            match output {
                Output::Json => println!(
                    "{}",
                    json!({"ok": true, "workflows": workflows, "principals": principals})
                ),
                Output::Text | Output::Markdown => println!("ok: {workflows} workflows, {principals} principals"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            print_policy_errors(&errors, output);
            Ok(ExitCode::from(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logins_directory_is_private_named_at_random_and_removed_when_dropped() {
        use std::os::unix::fs::PermissionsExt;
        let keys = tempfile::tempdir().unwrap();
        let (private, public) = (keys.path().join("id_ed25519"), keys.path().join("id_ed25519.pub"));
        let line = "ssh-ed25519-cert-v01@openssh.com AAAA";
        let one = LoginFiles::create("grt_0193", &private, &public, line).unwrap();
        let two = LoginFiles::create("grt_0193", &private, &public, line).unwrap();
        let dir = one.dir.path().to_path_buf();
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with("jitgate-ssh-") && !name.contains("grt_0193"), "{name}");
        assert!(!name.contains(&std::process::id().to_string()), "{name}");
        assert_ne!(one.dir.path(), two.dir.path(), "the same grant in the same process");
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::read_to_string(one.certificate()).unwrap(), format!("{line}\n"));
        assert_eq!(std::fs::read_link(one.identity()).unwrap(), private);
        drop(one);
        assert!(!dir.exists());
        // The key pair the links pointed at is untouched.
        drop(two);
        assert!(keys.path().exists());
    }

    #[test]
    fn an_ended_grants_certificate_is_removed_only_while_it_is_this_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519-cert.pub");
        let written = WrittenCertificate {
            path: path.clone(),
            line: "ssh-ed25519-cert-v01@openssh.com AAAAmine".into(),
            until: "2030-01-01T00:00:00Z".into(),
        };
        // Another login with the same key wrote its own since: left.
        std::fs::write(&path, "ssh-ed25519-cert-v01@openssh.com AAAAtheirs\n").unwrap();
        assert!(written
            .withdraw()
            .ends_with("holds another certificate now, so it is left"));
        assert!(path.exists());
        // Still this run's: removed.
        std::fs::write(&path, "ssh-ed25519-cert-v01@openssh.com AAAAmine\n").unwrap();
        assert_eq!(written.withdraw(), format!("removed {}", path.display()));
        assert!(!path.exists());
        assert!(written.withdraw().ends_with("is gone already"));
    }

    #[test]
    fn a_destination_is_never_an_ssh_option_nor_hides_anything() {
        for good in [
            "alice@bastion.example",
            "bastion",
            "alice@127.0.0.1",
            "ssh://alice@h:22",
            "deploy@höst",
        ] {
            assert!(check_destination(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-oProxyCommand=touch /tmp/x",
            "-F/tmp/config",
            "alice@host name",
            "alice@host\n-oProxyCommand=x",
            "alice@\u{1b}[2Jhost",
            "alice@ho\u{200b}st",
            "alice@host\u{202e}",
            "alice@host\0",
        ] {
            let error = check_destination(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.ends_with("nothing was requested"), "{bad:?}: {error}");
        }
        assert!(check_destination(&"a".repeat(2000)).is_err());
    }

    #[test]
    fn the_certificate_and_key_options_are_quoted_and_never_expanded() {
        assert_eq!(
            ssh_path_option("CertificateFile", Path::new("/home/a b/.ssh/id_ed25519-cert.pub")).ok(),
            Some("CertificateFile=\"/home/a b/.ssh/id_ed25519-cert.pub\"".to_string())
        );
        assert_eq!(
            ssh_path_option("CertificateFile", Path::new("/k/100%u-cert.pub")).ok(),
            Some("CertificateFile=\"/k/100%%u-cert.pub\"".to_string())
        );
        assert_eq!(
            ssh_path_option("IdentityFile", Path::new("/k/100%u/id_ed25519")).ok(),
            Some("IdentityFile=\"/k/100%%u/id_ed25519\"".to_string())
        );
        for bad in ["/k/${HOME}-cert.pub", "/k/a\"b", "/k/a\\b", "/k/a\nb", "/k/a'b"] {
            assert!(ssh_path_option("CertificateFile", Path::new(bad)).is_err(), "{bad:?}");
            assert!(ssh_path_option("IdentityFile", Path::new(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_a_plain_grant_id_names_the_logins_directory() {
        assert!(is_plain_grant_id("grt_01a243369d5d735d83a978d3ed696222"));
        for bad in [
            "",
            "..",
            "../../etc",
            "grt_a/b",
            "grt_a\0b",
            "grt a",
            "grt_\u{430}",
            "grt_\u{200b}",
            "grt_%u",
            "grt_${HOME}",
            "grt_'",
            &"a".repeat(101),
        ] {
            assert!(!is_plain_grant_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_public_key_is_one_line_of_a_known_type() {
        let path = Path::new("k.pub");
        for good in [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI alice@laptop\n",
            "ecdsa-sha2-nistp256 AAAA+/=",
            "sk-ssh-ed25519@openssh.com AAAA",
        ] {
            assert!(check_public_key_line(path, good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "hello",
            "ssh-ed25519",
            "ssh-ed25519-cert-v01@openssh.com AAAA",
            "ssh-ed25519 AAAA\nssh-rsa BBBB",
            "ssh-ed25519 AA$(x)",
        ] {
            assert!(check_public_key_line(path, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_an_openssh_certificate_line_is_written() {
        for good in [
            "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQ= alice",
            "ecdsa-sha2-nistp256-cert-v01@openssh.com AAAA+/=",
        ] {
            assert!(is_certificate_line(good), "{good}");
        }
        for bad in [
            "",
            "-",
            " ",
            "-cert-v01@openssh.com AAAA",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 alice",
            "ssh-ed25519-cert-v01@openssh.com",
            "ssh-ed25519-cert-v01@openssh.com ",
            "ssh-ed25519-cert-v01@openssh.com AAAA\nssh-rsa BBBB",
            "ssh-ed25519-cert-v01@openssh.com AA$(x)",
            "<html>error</html>",
        ] {
            assert!(!is_certificate_line(bad), "{bad:?}");
        }
    }
}
