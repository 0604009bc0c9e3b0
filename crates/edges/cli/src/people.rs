//! The CLI for people: which server and credential a command uses (flags, environment, the
//! profile's stored credential), and `login`, `logout`, `whoami`, `profile list|use`.

use crate::client::{Client, ClientError};
use crate::profiles::{self, Config, Credential, ProfileEntry, Store, DEFAULT_PROFILE};
use crate::sso;
use crate::{render, Output};
use serde_json::{json, Value};
use std::process::ExitCode;

/// A single sign-on credential that expired longer ago than this, and whose provider cannot
/// be reached to refresh it, is most likely abandoned (its refresh token gone too): the error
/// then says first to sign in again, rather than to try again.
const REFRESH_STALE: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// The server used when neither `--url`, `JITGATE_URL` nor the profile names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7400";

/// Where the bearer token came from, as `whoami` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token`.
    Flag,
    /// `JITGATE_TOKEN`.
    Env,
    /// `JITGATE_TOKEN_COMMAND`.
    Command,
    /// The profile's credential file.
    Profile(String),
    None,
}

impl TokenSource {
    pub fn describe(&self) -> String {
        match self {
            TokenSource::Flag => "--token".into(),
            TokenSource::Env => "JITGATE_TOKEN".into(),
            TokenSource::Command => "JITGATE_TOKEN_COMMAND".into(),
            TokenSource::Profile(path) => format!("profile file {path}"),
            TokenSource::None => "none".into(),
        }
    }
}

/// What the global flags say, before any file is read.
pub struct Globals {
    pub url: Option<String>,
    pub token: Option<String>,
    pub token_command: Option<String>,
    pub profile: Option<String>,
    pub output: Output,
    /// Whether `token` was typed as `--token` (else it came from `JITGATE_TOKEN`).
    pub token_typed: bool,
}

/// A command's connection: the client, and what it was made from.
pub struct Session {
    pub client: Client,
    pub profile: String,
    pub url: String,
    pub source: TokenSource,
    /// The issuer of the profile's single sign-on credential, when that is what is sent.
    pub sso_issuer: Option<String>,
}

impl From<profiles::ProfileError> for ClientError {
    fn from(e: profiles::ProfileError) -> Self {
        ClientError::Other(e.to_string())
    }
}

fn store() -> Result<Store, ClientError> {
    Ok(Store::new(profiles::default_dir()?))
}

/// The profile in use: `--profile`/`JITGATE_PROFILE`, else the config's active one, else
/// `default`. `config` is read only when it is needed.
fn profile_name(
    globals: &Globals,
    config: &mut dyn FnMut() -> Result<Config, ClientError>,
) -> Result<String, ClientError> {
    let name = match &globals.profile {
        Some(name) => name.clone(),
        None => config()?.active.unwrap_or_else(|| DEFAULT_PROFILE.to_string()),
    };
    profiles::check_profile_name(&name)?;
    Ok(name)
}

/// The parts of a server address that say which server it is: scheme, lower-case host, port
/// (explicit or the scheme's default), path without a trailing `/`. `None` for an address
/// that is not an http(s) URL with a host.
fn server_identity(url: &str) -> Option<(String, String, u16, String)> {
    let parsed = reqwest::Url::parse(url.trim()).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    Some((
        parsed.scheme().to_string(),
        parsed.host_str()?.to_ascii_lowercase(),
        parsed.port_or_known_default()?,
        parsed.path().trim_end_matches('/').to_string(),
    ))
}

/// Whether `url` is `http://` to a host other than this machine (loopback: 127.0.0.0/8, ::1,
/// `localhost`): there a token crosses the network readable by anyone on the way.
fn cleartext_to_another_machine(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return true;
    };
    if parsed.scheme() != "http" {
        return false;
    }
    let Some(host) = parsed.host_str() else {
        return true;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => !ip.is_loopback(),
        Err(_) => !host.eq_ignore_ascii_case("localhost"),
    }
}

/// Whether two addresses name the same server (see [`server_identity`]).
pub fn same_server(a: &str, b: &str) -> bool {
    match (server_identity(a), server_identity(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The connection a server command uses. Token: `--token`/`JITGATE_TOKEN` >
/// `JITGATE_TOKEN_COMMAND` > the profile's stored credential. URL: `--url`/`JITGATE_URL` > the
/// URL the profile's credential was stored for > the profile's URL in config.toml >
/// [`DEFAULT_URL`]. A stored credential is only ever sent to the server it was stored for:
/// `--url` naming another server, or a credential that names none, is refused before anything
/// is sent. Files are read only when flags and environment leave something open, so CI that
/// sets both never touches them.
pub fn connect(globals: &Globals) -> Result<Session, ClientError> {
    connect_and(globals, true)
}

/// As [`connect`], but a single sign-on credential is never refreshed: for shell completion,
/// which exits when its 2 s are up whatever it is doing. Exiting in the middle of a refresh
/// would lose the new refresh token after the provider had spent (rotated away) the old one,
/// and so end the session; a TAB is not worth that. An expiring credential is sent as it is.
pub fn connect_for_completion(globals: &Globals) -> Result<Session, ClientError> {
    connect_and(globals, false)
}

fn connect_and(globals: &Globals, refresh: bool) -> Result<Session, ClientError> {
    // A hostile name is refused even when nothing is read with it.
    if let Some(name) = &globals.profile {
        profiles::check_profile_name(name)?;
    }
    let needs_files = globals.url.is_none() || (globals.token.is_none() && globals.token_command.is_none());
    // Without HOME or XDG_CONFIG_HOME (a bare CI container) there are no files to read: the
    // flags and environment alone decide, as before profiles existed.
    let store = if needs_files {
        match profiles::default_dir() {
            Ok(dir) => Some(Store::new(dir)),
            Err(profiles::ProfileError::NoHome) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let mut cached: Option<Config> = None;
    let mut config = || -> Result<Config, ClientError> {
        if let Some(c) = &cached {
            return Ok(c.clone());
        }
        let c = match &store {
            Some(store) => store.load_config()?,
            None => Config::default(),
        };
        cached = Some(c.clone());
        Ok(c)
    };
    let profile = if needs_files {
        profile_name(globals, &mut config)?
    } else {
        globals.profile.clone().unwrap_or_else(|| DEFAULT_PROFILE.to_string())
    };
    let mut sso_issuer = None;
    // The single sign-on credential sent, for the client to refresh while the command runs.
    let mut sso_held: Option<Credential> = None;
    let (token, source, bound_url) = match (&globals.token, &globals.token_command, &store) {
        (Some(token), _, _) if globals.token_typed => (Some(token.clone()), TokenSource::Flag, None),
        (Some(token), _, _) => (Some(token.clone()), TokenSource::Env, None),
        (None, Some(_), _) => (None, TokenSource::Command, None),
        (None, None, Some(store)) => match store.load_credential(&profile) {
            Ok(Some(credential)) => {
                let bound = stored_credential_server(&profile, &credential, globals.url.as_deref())?;
                let credential = match credential {
                    credential if refresh => usable_credential(store, &profile, credential)?,
                    // An expired ID token would only be refused: not sent.
                    Credential::Oidc { expires_at, .. } if expires_at <= chrono::Utc::now() => {
                        return Err(ClientError::Other(format!(
                            "profile {profile}: the single sign-on credential expired (completion does not refresh it)"
                        )))
                    }
                    credential => credential,
                };
                if let Credential::Oidc { issuer, .. } = &credential {
                    sso_issuer = Some(issuer.clone());
                    sso_held = Some(credential.clone());
                }
                (
                    Some(credential.bearer().to_string()),
                    TokenSource::Profile(store.credential_path(&profile)?.display().to_string()),
                    Some(bound),
                )
            }
            Ok(None) => (None, TokenSource::None, None),
            Err(e) => return Err(ClientError::Other(format!("profile {profile}: {e}"))),
        },
        (None, None, None) => (None, TokenSource::None, None),
    };
    let url = match (&globals.url, bound_url) {
        (Some(url), _) => url.clone(),
        (None, Some(bound)) => bound,
        (None, None) => config()?
            .profiles
            .get(&profile)
            .map(|p| p.url.clone())
            .unwrap_or_else(|| DEFAULT_URL.to_string()),
    };
    let mut client = Client::new(&url, token, globals.token_command.clone(), globals.output);
    if source == TokenSource::None {
        client.set_not_signed_in(&profile, &url);
    }
    // Shell completion never refreshes (see connect_for_completion).
    if let (Some(held), Some(store), true) = (sso_held, &store, refresh) {
        client.set_credential_refresh(std::sync::Arc::new(SsoRefresh {
            store: store.clone(),
            profile: profile.clone(),
            held: std::sync::Mutex::new(held),
        }));
    }
    Ok(Session {
        client,
        profile,
        url,
        source,
        sso_issuer,
    })
}

/// The server a stored credential may be sent to: the one it was stored for, and only if
/// `--url`/`JITGATE_URL` (when given) names that same server. Otherwise the one-line refusal,
/// before anything is sent: a token stored for one server must never reach another.
fn stored_credential_server(
    profile: &str,
    credential: &Credential,
    asked: Option<&str>,
) -> Result<String, ClientError> {
    let Some(bound) = credential.url() else {
        return Err(ClientError::Other(format!(
            "profile {profile}: the stored credential names no server (an older jitgate wrote it), so it is not sent anywhere: run jitgate login --profile {profile} --url URL"
        )));
    };
    if let Some(asked) = asked {
        if !same_server(asked, bound) {
            let asked = render::shown(asked);
            return Err(ClientError::Other(format!(
                "profile {profile} is signed in to {}, not {asked}: pass --token or JITGATE_TOKEN for that server, or run jitgate login --profile NAME --url {asked}",
                render::shown(bound)
            )));
        }
    }
    Ok(bound.trim_end_matches('/').to_string())
}

/// Keeps a profile's single sign-on credential fresh for the client of one command (a wait for
/// approval outlives an ID token): the same refresh, under the same lock, as at connect.
struct SsoRefresh {
    store: Store,
    profile: String,
    /// The credential whose ID token the client sends now.
    held: std::sync::Mutex<Credential>,
}

impl crate::client::CredentialRefresh for SsoRefresh {
    fn fresh_bearer(&self, refused: bool) -> Result<Option<String>, ClientError> {
        // Held across the refresh: two threads of one command (a wait and its Ctrl-C handler)
        // refresh once between them.
        let mut held = self
            .held
            .lock()
            .map_err(|_| ClientError::Other("the credential's refresh failed in another thread".into()))?;
        let Credential::Oidc {
            expires_at,
            refresh_token,
            ..
        } = &*held
        else {
            return Ok(None);
        };
        let due = match refused {
            // Nothing to refresh with: the server's refusal is the answer.
            true => refresh_token.is_some(),
            false => sso::needs_refresh(*expires_at, chrono::Utc::now()),
        };
        if !due {
            return Ok(None);
        }
        let fresh = usable_credential_refused(&self.store, &self.profile, held.clone(), refused)?;
        let changed = fresh.bearer() != held.bearer();
        let bearer = fresh.bearer().to_string();
        *held = fresh;
        Ok(changed.then_some(bearer))
    }
}

/// The stored credential as it may be sent now: a single sign-on ID token that expires
/// within [`sso::REFRESH_MARGIN`] is refreshed first with the refresh token (under the
/// profile's lock, see [`sso::refreshed_credential`]); one past its expiry that cannot be
/// refreshed is refused without being sent, in one line saying what to run.
fn usable_credential(store: &Store, profile: &str, credential: Credential) -> Result<Credential, ClientError> {
    usable_credential_refused(store, profile, credential, false)
}

/// [`usable_credential`], or with `refused` (the server refused its ID token) refreshed whatever
/// this machine's clock says of its expiry, and a refresh that fails said rather than the old
/// ID token sent again.
fn usable_credential_refused(
    store: &Store,
    profile: &str,
    credential: Credential,
    refused: bool,
) -> Result<Credential, ClientError> {
    let now = chrono::Utc::now();
    let expired = |issuer: &str, expires_at: &chrono::DateTime<chrono::Utc>| {
        format!(
            "profile {profile}: the single sign-on credential from {} expired at {}: run jitgate login --profile {profile}",
            render::shown(issuer),
            expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    };
    let Credential::Oidc { issuer, expires_at, .. } = &credential else {
        return Ok(credential);
    };
    let (issuer, expires_at) = (issuer.clone(), *expires_at);
    let still_valid = expires_at > now && !refused;
    let held = credential.clone();
    // Asked as of its expiry, a refused credential is due for a refresh (unless another
    // jitgate refreshed it meanwhile: then that one is used).
    let due_at = if refused { now.max(expires_at) } else { now };
    match sso::refreshed_credential(store, profile, credential, due_at, sso::refresh) {
        Ok(Credential::Oidc {
            issuer, expires_at, ..
        }) if expires_at <= now => Err(ClientError::Other(expired(&issuer, &expires_at))),
        Ok(fresh) => Ok(fresh),
        Err(sso::RefreshError::Gone) => Err(ClientError::Other(format!(
            "profile {profile}: the credential was removed (jitgate logout?) while this command waited for it: run jitgate login --profile {profile}"
        ))),
        Err(sso::RefreshError::Changed) => Err(ClientError::Other(format!(
            "profile {profile}: the credential changed (another jitgate login?) while this command waited for it, so it was not sent: run the command again"
        ))),
        Err(sso::RefreshError::Files(e)) => Err(ClientError::Other(format!("profile {profile}: {e}"))),
        Err(sso::RefreshError::Sso(sso::SsoError::RefreshRefused { .. })) => Err(ClientError::Other(format!(
            "profile {profile}: the single sign-on session with {} has ended (the provider refused the refresh token): run jitgate login --profile {profile}",
            render::shown(&issuer)
        ))),
        // The ID token still holds for a few seconds: use it, and refresh next time.
        Err(sso::RefreshError::Sso(_)) if still_valid => Ok(held),
        // An expired credential whose provider is gone (a retired or mistyped issuer, a
        // network down): first what to run, then why the refresh failed.
        Err(sso::RefreshError::Sso(sso::SsoError::Unreachable { reason, .. })) if expires_at < now - REFRESH_STALE => {
            Err(ClientError::Other(format!(
                "{} (it could not be refreshed: {} did not answer: {reason})",
                expired(&issuer, &expires_at),
                render::shown(&issuer)
            )))
        }
        Err(sso::RefreshError::Sso(sso::SsoError::Unreachable { reason, .. })) => Err(ClientError::Other(format!(
            "profile {profile}: cannot reach {} to refresh the sign-in ({reason}): try again, or run jitgate login --profile {profile}",
            render::shown(&issuer)
        ))),
        Err(sso::RefreshError::Sso(e)) => Err(ClientError::Other(format!(
            "profile {profile}: cannot refresh the single sign-on credential from {} ({}): run jitgate login --profile {profile}",
            render::shown(&issuer),
            e.to_string().replace("; nothing was stored", "")
        ))),
    }
}

/// An error about the stored credential, named with its profile: a 401 with a profile's
/// credential means the server no longer accepts it. For a single sign-on credential the
/// server is asked how it signs people in now: an issuer that changed is the likely reason.
pub fn name_the_profile(session: &Session, error: ClientError) -> ClientError {
    let profile = &session.profile;
    match (&session.source, error) {
        (
            TokenSource::Profile(_),
            ClientError::Api {
                status: 401, message, ..
            },
        ) => {
            if let Some(old) = &session.sso_issuer {
                if let Ok(options) = unauthenticated_get(&session.url, "/v1/login/options") {
                    match options.get("oidc").and_then(|o| o.get("issuer")).and_then(Value::as_str) {
                        Some(new) if new != old => {
                            return ClientError::Other(format!(
                                "profile {profile}: the server now signs people in through {}, not {}: run jitgate login --profile {profile}",
                                render::shown(new),
                                render::shown(old)
                            ))
                        }
                        None if options.get("oidc").is_some_and(Value::is_null) => {
                            return ClientError::Other(format!(
                                "profile {profile}: the server no longer signs people in through {} (it accepts only tokens): run jitgate login --profile {profile} --token -",
                                render::shown(old)
                            ))
                        }
                        _ => {}
                    }
                }
            }
            ClientError::Other(format!(
                "profile {profile}: the server refused the stored credential (401: {message}): run jitgate login --profile {profile}"
            ))
        }
        (_, other) => other,
    }
}

/// `jitgate login --url URL --token TOKEN [--profile NAME]`.
pub fn login(
    globals: &Globals,
    token: Option<String>,
    device: bool,
    insecure_http: bool,
) -> Result<ExitCode, ClientError> {
    let store = store()?;
    // Read for the profile's server only: Signing::store reads it again before it writes it.
    let config = store.load_config()?;
    let profile = globals.profile.clone().unwrap_or_else(|| DEFAULT_PROFILE.to_string());
    profiles::check_profile_name(&profile)?;
    let url = match (&globals.url, config.profiles.get(&profile)) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, Some(entry)) => entry.url.clone(),
        (None, None) => {
            return Err(ClientError::Other(format!(
                "name the server: jitgate login --url URL --token - (profile {profile} has none yet)"
            )))
        }
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) || profiles::token_problem(&url).is_some() {
        return Err(ClientError::Other(format!(
            "--url {}: not an http:// or https:// address",
            render::shown(&url)
        )));
    }
    if !insecure_http && cleartext_to_another_machine(&url) {
        return Err(ClientError::Other(format!(
            "--url {}: http:// would send the token in clear text to another machine, and store it for later: use https://, or pass --insecure-http if you mean it",
            render::shown(&url)
        )));
    }
    let token = match token.as_deref() {
        Some("-") => read_token_from_stdin()?,
        Some(token) => token.to_string(),
        None => {
            return login_without_token(
                globals,
                Signing {
                    store: &store,
                    profile,
                    url,
                },
                device,
                insecure_http,
            )
        }
    };
    if let Some(problem) = profiles::token_problem(&token) {
        return Err(ClientError::Other(format!(
            "the token is refused before anything is stored: {problem}"
        )));
    }
    let client = Client::new(&url, Some(token.clone()), None, globals.output);
    let who = client.get("/v1/whoami", &[]).map_err(|e| match e {
        ClientError::Api { status, message, .. } => ClientError::Other(format!(
            "the server refused that token ({status}): {message}; nothing was stored"
        )),
        other => other,
    })?;
    let credential = Credential::Token {
        url: Some(url.clone()),
        token,
    };
    Signing {
        store: &store,
        profile,
        url,
    }
    .store(globals, &credential, &who)
}

/// What `login` signs in to: the profile and its server, and the files to store them in.
struct Signing<'a> {
    store: &'a Store,
    profile: String,
    url: String,
}

impl Signing<'_> {
    /// Store a credential the server accepted (`who`: its `/v1/whoami` answer), make the
    /// profile the active one, and say whom the server took us for (never the token).
    fn store(self, globals: &Globals, credential: &Credential, who: &Value) -> Result<ExitCode, ClientError> {
        let path = self.save(credential)?;
        let Signing { profile, url, .. } = self;
        let principal = render::s(&who["principal"]).into_owned();
        match globals.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "profile": profile, "url": url, "principal": who["principal"],
                    "credential": who["credential"], "file": path.display().to_string(),
                }))
                .unwrap_or_default()
            ),
            _ => println!("Signed in to {url} as {principal} (profile {profile})"),
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Save the credential under the profile's lock when there is one already (a refresh in
    /// flight for the old credential must not write it back over this one: it re-reads under
    /// the lock and sees the change; without a stored credential no refresh can be in
    /// flight, and no lock file is made for nothing), then record the profile in config.toml as it is now, read again: a
    /// sign-in can take minutes, and a `profile use` or another login meanwhile must not be
    /// undone with the config read at the start.
    fn save(&self, credential: &Credential) -> Result<std::path::PathBuf, ClientError> {
        let path = {
            let stored = self.store.credential_path(&self.profile)?;
            let _lock = match std::fs::symlink_metadata(&stored) {
                Ok(_) => Some(self.store.lock_credential(&self.profile)?),
                Err(_) => None,
            };
            self.store.save_credential(&self.profile, credential)?
        };
        let mut config = self.store.load_config()?;
        config
            .profiles
            .insert(self.profile.clone(), ProfileEntry { url: self.url.clone() });
        config.active = Some(self.profile.clone());
        self.store.save_config(&config)?;
        Ok(path)
    }
}

/// A token on standard input (`--token -`): it stays out of shell history and `ps`. On a
/// terminal the prompt goes to standard error and the typed or pasted token is not echoed
/// (as `ssh` and `sudo` read a password); from a pipe it is read as is.
fn read_token_from_stdin() -> Result<String, ClientError> {
    let stdin = std::io::stdin();
    // The echo goes off before the prompt shows: what is typed as soon as it appears is hidden.
    let hidden = if rustix::termios::isatty(&stdin) {
        let hidden = hide_typing(&stdin);
        eprint!("{TOKEN_PROMPT}");
        hidden
    } else {
        None
    };
    let line = match &hidden {
        None => {
            let mut line = String::new();
            stdin
                .read_line(&mut line)
                .map_err(|e| ClientError::Other(format!("--token -: cannot read standard input: {e}")))?;
            line
        }
        Some(hidden) => {
            let prompting = restore_on_signal(&hidden.saved);
            let typed = read_hidden_line(
                &mut HiddenTerminal {
                    input: stdin.lock(),
                    hidden,
                },
                &EditKeys::of(&hidden.saved),
            );
            if matches!(typed, Typed::TooLong) {
                // The rest of a long paste would otherwise be read by the shell, as commands.
                discard_pending_input(&stdin, &hidden.quiet);
            }
            // Restore the terminal before anything else can fail, print or end the process.
            let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &hidden.saved);
            prompting.store(false, std::sync::atomic::Ordering::SeqCst);
            eprintln!();
            match typed {
                Typed::Line(line) => line,
                Typed::Interrupted => {
                    eprintln!("interrupted: nothing was stored");
                    std::process::exit(130);
                }
                Typed::TooLong => {
                    return Err(ClientError::Other(format!(
                        "--token -: more than {MAX_TYPED_TOKEN} bytes is no token; nothing was stored"
                    )))
                }
                Typed::Failed(e) => {
                    return Err(ClientError::Other(format!(
                        "--token -: cannot read standard input: {e}"
                    )))
                }
            }
        }
    };
    let token = line.strip_suffix('\n').unwrap_or(&line);
    Ok(token.strip_suffix('\r').unwrap_or(token).to_string())
}

const TOKEN_PROMPT: &str = "Token (not shown): ";

/// How long input must stay silent before the rest of a too long paste counts as discarded.
const PASTE_SILENCE_DECISECONDS: u8 = 1;
/// The longest [`discard_pending_input`] goes on reading a paste that does not end.
const PASTE_DISCARD_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Discard the rest of a paste too long for a token, before the terminal is given back: the
/// terminal holds only about 4 KiB of input at a time and feeds the rest as it is read, so a
/// flush alone drops only what is queued, and the shell would then read the rest, running each
/// line of it. Read with the prompt's settings until input stays silent for 100 ms (or
/// [`PASTE_DISCARD_LIMIT`] passes), then flush.
fn discard_pending_input(stdin: &std::io::Stdin, quiet: &rustix::termios::Termios) {
    use rustix::termios::SpecialCodeIndex;
    let mut draining = quiet.clone();
    draining.special_codes[SpecialCodeIndex::VMIN] = 0;
    draining.special_codes[SpecialCodeIndex::VTIME] = PASTE_SILENCE_DECISECONDS;
    if rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, &draining).is_ok() {
        let started = std::time::Instant::now();
        let mut discarded = [0u8; 4096];
        let mut input = stdin.lock();
        while started.elapsed() < PASTE_DISCARD_LIMIT {
            match std::io::Read::read(&mut input, &mut discarded) {
                // Silent for the whole VTIME: the paste is over.
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
    let _ = rustix::termios::tcflush(stdin, rustix::termios::QueueSelector::IFlush);
}

/// A signal that ends the process while the hidden prompt waits (SIGTERM from a script or a
/// closing session, SIGHUP, SIGINT from `kill`) would leave the terminal without echo, and the
/// shell after it typing blind (bash restores it for its jobs, `sh -c` and scripts do not).
/// Until the flag returned is cleared, such a signal restores `saved` first, then the process
/// exits 130; after it, the signal just ends the process. (`login` installs no other handler;
/// `ctrlc` allows one per process.)
fn restore_on_signal(saved: &rustix::termios::Termios) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let prompting = std::sync::Arc::new(AtomicBool::new(true));
    let (flag, saved) = (prompting.clone(), saved.clone());
    let _ = ctrlc::set_handler(move || {
        if flag.load(Ordering::SeqCst) {
            let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, &saved);
            eprintln!("\ninterrupted: nothing was stored");
        }
        std::process::exit(130);
    });
    prompting
}

/// The longest token read at the hidden prompt.
const MAX_TYPED_TOKEN: usize = 64 * 1024;

/// What was typed at the hidden prompt.
enum Typed {
    Line(String),
    /// The interrupt or the quit key (Ctrl-C, Ctrl-\): the caller restores the terminal, then
    /// exits 130.
    Interrupted,
    TooLong,
    Failed(std::io::Error),
}

/// Read one line, a byte at a time, from a terminal that [`hide_typing`] set up: the terminal
/// neither echoes nor turns keys into signals, so this reads the interrupt and quit keys itself
/// (as the terminal defines them, Ctrl-C and Ctrl-\ by default) and answers them only after the
/// caller has restored the echo. A signal would end the process with the echo off, the shell
/// after it typing blind. The erase key takes back one character (all the bytes of a UTF-8
/// one), the word-erase key (Ctrl-W) the last word, the kill key the line; end-of-file on an
/// empty line ends it. The suspend key (Ctrl-Z) is [`HiddenTerminal`]'s.
fn read_hidden_line(input: &mut impl std::io::Read, keys: &EditKeys) -> Typed {
    let EditKeys {
        interrupt,
        erase,
        kill,
        end,
        word_erase,
        quit,
    } = *keys;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match input.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Typed::Failed(e),
        }
        match byte[0] {
            b'\n' | b'\r' => break,
            // 0 is _POSIX_VDISABLE: a key the terminal has turned off matches no byte.
            b if (b == interrupt || b == quit) && b != 0 => return Typed::Interrupted,
            b if (b == erase && b != 0) || b == 0x7f || b == 0x08 => erase_character(&mut line),
            b if b == word_erase && b != 0 => {
                while line.last().is_some_and(|c| c.is_ascii_whitespace()) {
                    line.pop();
                }
                while line.last().is_some_and(|c| !c.is_ascii_whitespace()) {
                    line.pop();
                }
            }
            b if b == kill && b != 0 => line.clear(),
            b if b == end && b != 0 => {
                if line.is_empty() {
                    break;
                }
            }
            b => line.push(b),
        }
        if line.len() > MAX_TYPED_TOKEN {
            return Typed::TooLong;
        }
    }
    // Anything but UTF-8 is refused later as a token with a character tokens never hold.
    Typed::Line(String::from_utf8_lossy(&line).into_owned())
}

/// Take back the last character typed: its UTF-8 continuation bytes (`10xxxxxx`), then the
/// byte that starts it, so that no half of a character is left to show as U+FFFD.
fn erase_character(line: &mut Vec<u8>) {
    while line.last().is_some_and(|b| b & 0xC0 == 0x80) {
        line.pop();
    }
    line.pop();
}

/// The terminal's keys [`read_hidden_line`] answers (0: turned off).
#[derive(Clone, Copy)]
struct EditKeys {
    interrupt: u8,
    erase: u8,
    kill: u8,
    end: u8,
    word_erase: u8,
    quit: u8,
}

impl EditKeys {
    fn of(settings: &rustix::termios::Termios) -> EditKeys {
        use rustix::termios::SpecialCodeIndex as Key;
        let key = |k: Key| settings.special_codes[k];
        EditKeys {
            interrupt: key(Key::VINTR),
            erase: key(Key::VERASE),
            kill: key(Key::VKILL),
            end: key(Key::VEOF),
            word_erase: key(Key::VWERASE),
            quit: key(Key::VQUIT),
        }
    }
}

/// The terminal's settings around the hidden prompt: those to restore, and the quiet ones.
struct Hidden {
    saved: rustix::termios::Termios,
    quiet: rustix::termios::Termios,
}

/// Standard input while the prompt hides typing. It answers the suspend key (Ctrl-Z) as the
/// terminal would, but with the echo back on while jitgate is stopped: restore the terminal,
/// stop (SIGTSTP), and once continued (`fg`) hide typing again and show the prompt anew; what
/// was typed before stays. The key never reaches the line.
struct HiddenTerminal<'a, R> {
    input: R,
    hidden: &'a Hidden,
}

impl<R: std::io::Read> std::io::Read for HiddenTerminal<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use rustix::termios::{OptionalActions, SpecialCodeIndex};
        let suspend = self.hidden.saved.special_codes[SpecialCodeIndex::VSUSP];
        loop {
            let read = self.input.read(buf)?;
            if read != 1 || suspend == 0 || buf[0] != suspend {
                return Ok(read);
            }
            let stdin = std::io::stdin();
            let _ = rustix::termios::tcsetattr(&stdin, OptionalActions::Now, &self.hidden.saved);
            eprintln!();
            // The whole process group, as the terminal's own Ctrl-Z would: in a pipeline
            // (`jitgate login --token - | tee log`) the shell sees the job stopped only when
            // every process of it is.
            let _ = rustix::process::kill_current_process_group(rustix::process::Signal::TSTP);
            // Continued (or never stopped, in a process group no shell manages).
            let _ = rustix::termios::tcsetattr(&stdin, OptionalActions::Now, &self.hidden.quiet);
            eprint!("{TOKEN_PROMPT}");
        }
    }
}

/// Turn the terminal's echo off, and its line editing and signal keys, which
/// [`read_hidden_line`] and [`HiddenTerminal`] do themselves; the settings to restore and the
/// quiet ones, or `None` if they could not be changed (then the token is read as is, echoed).
fn hide_typing(stdin: &std::io::Stdin) -> Option<Hidden> {
    use rustix::termios::{LocalModes, SpecialCodeIndex};
    let saved = rustix::termios::tcgetattr(stdin).ok()?;
    let mut quiet = saved.clone();
    quiet
        .local_modes
        .remove(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG);
    quiet.special_codes[SpecialCodeIndex::VMIN] = 1;
    quiet.special_codes[SpecialCodeIndex::VTIME] = 0;
    rustix::termios::tcsetattr(stdin, rustix::termios::OptionalActions::Now, &quiet).ok()?;
    Some(Hidden { saved, quiet })
}

#[cfg(test)]
mod hidden_prompt_tests {
    use super::*;

    fn read(bytes: &[u8]) -> String {
        let keys = EditKeys {
            interrupt: 0x03,
            erase: 0x7f,
            kill: 0x15,
            end: 0x04,
            word_erase: 0x17,
            quit: 0x1c,
        };
        match read_hidden_line(&mut &bytes[..], &keys) {
            Typed::Line(line) => line,
            Typed::Interrupted => "<interrupted>".into(),
            Typed::TooLong => "<too long>".into(),
            Typed::Failed(e) => format!("<{e}>"),
        }
    }

    #[test]
    fn erase_takes_back_a_whole_character_and_word_erase_a_word() {
        assert_eq!(read("demo-alicé\x7fe\r".as_bytes()), "demo-alice");
        assert_eq!(read("tok€\x7f\x7fen\r".as_bytes()), "toen");
        assert_eq!(read("a😀\x7fb\r".as_bytes()), "ab");
        assert_eq!(read(b"\x7f\x7fdemo-alice\r"), "demo-alice");
        assert_eq!(read(b"wrong-token\x17demo-alice\r"), "demo-alice");
        assert_eq!(read(b"a b  \x17c\r"), "a c");
        assert_eq!(read(b"\x17demo-alice\r"), "demo-alice");
    }

    #[test]
    fn the_quit_key_is_answered_like_the_interrupt_key() {
        assert_eq!(read(b"demo-\x1calice\r"), "<interrupted>");
        let off = EditKeys {
            interrupt: 0x03,
            erase: 0x7f,
            kill: 0x15,
            end: 0x04,
            word_erase: 0,
            quit: 0,
        };
        assert!(matches!(read_hidden_line(&mut &b"a\x1c\x17b\r"[..], &off), Typed::Line(l) if l == "a\u{1c}\u{17}b"));
    }
}

/// Without `--token`: ask the server how people sign in, and sign in through the identity
/// provider it names (the browser flow, or the device flow); the ID token the server accepts
/// is stored as the profile's `oidc` credential, with the refresh token.
fn login_without_token(
    globals: &Globals,
    signing: Signing<'_>,
    device: bool,
    insecure_http: bool,
) -> Result<ExitCode, ClientError> {
    let url = signing.url.clone();
    let options = unauthenticated_get(&url, "/v1/login/options")?;
    let Some(Value::Object(oidc)) = options.get("oidc") else {
        return Err(ClientError::Other(format!(
            "{url} accepts only tokens: run jitgate login --url {url} --token - (and paste the token)"
        )));
    };
    let text = |key: &str| oidc.get(key).and_then(Value::as_str).map(str::to_string);
    let (Some(issuer), Some(client_id)) = (text("issuer"), text("client_id")) else {
        return Err(ClientError::Other(format!(
            "{url} offers single sign-on but names no issuer or client id in /v1/login/options: not a jitgate server, or not this version; sign in with a token: jitgate login --url {url} --token -"
        )));
    };
    let scopes: Vec<String> = match oidc.get("scopes").and_then(Value::as_array) {
        Some(list) => list.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        None => vec!["openid".into()],
    };
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        return Err(ClientError::Other(format!(
            "{url} offers single sign-on through {}, which is not an http(s) address; nothing was stored",
            render::shown(&issuer)
        )));
    }
    // The code, the tokens and the refresh token would cross the network in clear text.
    if !insecure_http && cleartext_to_another_machine(&issuer) {
        return Err(ClientError::Other(format!(
            "{url} offers single sign-on through {}: http:// would carry your sign-in in clear text to another machine: ask the jitgate admin for an https:// issuer, or pass --insecure-http if you mean it; nothing was stored",
            render::shown(&issuer)
        )));
    }
    let offer = sso::Offer {
        issuer: issuer.clone(),
        client_id: client_id.clone(),
        scopes,
        device: oidc.get("device").and_then(Value::as_bool).unwrap_or(false),
    };
    let signed_in = sso::sign_in(&offer, device).map_err(|e| ClientError::Other(e.to_string()))?;
    // The server must accept the ID token before anything is stored.
    let client = Client::new(&url, Some(signed_in.id_token.clone()), None, globals.output);
    let who = client.get("/v1/whoami", &[]).map_err(|e| match e {
        ClientError::Api { status, message, .. } => ClientError::Other(format!(
            "{url} refused the ID token from {} ({status}: {message}): ask the jitgate admin whether [[auth.oidc]] trusts it for the client {}; nothing was stored",
            render::shown(&issuer),
            render::shown(&client_id)
        )),
        other => other,
    })?;
    let credential = Credential::Oidc {
        url: Some(url),
        issuer,
        client_id,
        id_token: signed_in.id_token,
        refresh_token: signed_in.refresh_token,
        expires_at: signed_in.expires_at,
        subject: Some(signed_in.subject),
    };
    signing.store(globals, &credential, &who)
}

fn unauthenticated_get(url: &str, path: &str) -> Result<Value, ClientError> {
    let full = format!("{url}{path}");
    // No redirect is followed: this answer names the identity provider whose sign-in page
    // the user then trusts, and a redirect (to http://, to another host) would let someone
    // else name it.
    let response = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| ClientError::Other(format!("cannot make an HTTP client: {e}")))?
        .get(&full)
        .send()
        .map_err(|source| ClientError::Transport {
            url: full.clone(),
            source,
        })?;
    let status = response.status();
    if status.is_redirection() {
        let to = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or("nowhere");
        return Err(ClientError::Other(format!(
            "{} answered {status}, a redirect to {}: not followed; if that is the server, use its address with --url",
            render::shown(&full),
            render::shown(to)
        )));
    }
    // The status first: an error page or a proxy's login page is not JSON, and "error
    // decoding response body" would hide what is wrong.
    if !status.is_success() {
        return Err(ClientError::Other(format!(
            "{} answered {status}: not a jitgate server, or not this URL",
            render::shown(&full)
        )));
    }
    response.json().map_err(|_| {
        ClientError::Other(format!(
            "{} answered something other than JSON: not a jitgate server",
            render::shown(&full)
        ))
    })
}

/// `jitgate logout [--profile NAME]`.
pub fn logout(globals: &Globals) -> Result<ExitCode, ClientError> {
    let store = store()?;
    let profile = profile_name(globals, &mut || Ok(store.load_config()?))?;
    let path = store.credential_path(&profile)?;
    let (removed, revocation, unlocked) = sign_out(&store, &profile, LOGOUT_LOCK_WAIT, sso::revoke)?;
    let mut text = if removed {
        format!("Signed out of profile {profile}: removed {}", path.display())
    } else {
        format!("Profile {profile} holds no credential: nothing to remove")
    };
    if let Some((revocation, issuer)) = &revocation {
        let issuer = render::shown(issuer);
        text.push_str(&match revocation {
            sso::Revocation::Revoked => format!("; the refresh token was revoked at {issuer}"),
            sso::Revocation::NotOffered => format!("; {issuer} offers no revocation"),
            sso::Revocation::Failed(reason) => format!(
                "; the refresh token could not be revoked ({}): it lasts until {issuer} expires it",
                render::shown(reason)
            ),
        });
    }
    if let Some(unlocked) = &unlocked {
        text.push_str(&format!(
            "; warning: removed without its lock ({}): a refresh in flight may write it back, so run jitgate logout again once no other jitgate runs",
            render::shown(unlocked)
        ));
    }
    match globals.output {
        Output::Json => {
            let mut out = json!({"profile": profile, "removed": removed, "file": path.display().to_string()});
            if let Some((revocation, _)) = &revocation {
                out["revoked"] = json!(*revocation == sso::Revocation::Revoked);
            }
            if let Some(unlocked) = &unlocked {
                out["warning"] = json!(format!("removed without its lock: {unlocked}"));
            }
            println!("{out}")
        }
        _ => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// What [`sign_out`] did: whether there was a file, what became of the refresh token (with
/// its issuer), and why the lock was not taken (if it was not).
type SignedOut = (bool, Option<(sso::Revocation, String)>, Option<String>);

/// How long `logout` waits for another jitgate's refresh to finish (a refresh usually takes a
/// second) before it removes the credential without the lock: signing out must not fail.
const LOGOUT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Remove the credential of `profile`, under its lock from the read to the removal: a
/// refresh in flight (which holds the lock) finishes first, and its new tokens are then what
/// is revoked and removed; one that starts later finds the file gone. A single sign-on
/// refresh token is revoked at its provider first (RFC 7009, with `revoke`), so that a copy
/// of the file is worth nothing either; the file goes whatever the provider says. A file that
/// cannot be read (loose modes, garbage) is still removed. A lock that cannot be taken (a
/// loose directory or lock file) or is held longer than `wait` does not keep the file either:
/// it is revoked as far as it can be read and removed, and why the lock was not taken is
/// given back for a warning. A profile without a credential gets no lock file. Whether there
/// was a file, what became of the refresh token (with its issuer), and the lock's problem.
fn sign_out(
    store: &Store,
    profile: &str,
    wait: std::time::Duration,
    revoke: impl FnOnce(&str, &str, &str) -> sso::Revocation,
) -> Result<SignedOut, ClientError> {
    let path = store.credential_path(profile)?;
    if matches!(std::fs::symlink_metadata(&path), Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
        return Ok((false, None, None));
    }
    let (_lock, unlocked) = match store.lock_credential_within(profile, wait) {
        Ok(lock) => (Some(lock), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let revocation = match store.load_credential(profile) {
        Ok(Some(Credential::Oidc {
            issuer,
            client_id,
            refresh_token: Some(refresh_token),
            ..
        })) => Some((revoke(&issuer, &client_id, &refresh_token), issuer)),
        _ => None,
    };
    let removed = store.remove_credential(profile)?;
    Ok((removed, revocation, unlocked))
}

/// `jitgate whoami`.
pub fn whoami(session: &Session) -> Result<ExitCode, ClientError> {
    let mut who = session.client.get("/v1/whoami", &[])?;
    let source = session.source.describe();
    match session.client.output {
        Output::Json => {
            if let Value::Object(map) = &mut who {
                map.insert("profile".into(), json!(session.profile));
                map.insert("url".into(), json!(session.url));
                map.insert("source".into(), json!(source));
            }
            println!("{}", serde_json::to_string_pretty(&who).unwrap_or_default());
        }
        _ => {
            let list = |v: &Value| {
                let items: Vec<String> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|g| render::s(g).into_owned())
                    .collect();
                if items.is_empty() {
                    "-".to_string()
                } else {
                    items.join(", ")
                }
            };
            let c = &who["credential"];
            let mut credential = render::s(&c["kind"]).into_owned();
            if let Some(id) = c["id"].as_str() {
                credential.push_str(&format!(" {}", render::shown(id)));
            }
            if let Some(issuer) = c["issuer"].as_str() {
                credential.push_str(&format!(" from {}", render::shown(issuer)));
            }
            let expires = c["expires_at"]
                .as_str()
                .map_or("never (until revoked)".into(), |e| render::shown(e).into_owned());
            let mut out = format!(
                "principal   {}\nkind        {}\n",
                render::s(&who["principal"]),
                render::s(&who["kind"])
            );
            if let Some(person) = who["on_behalf_of"].as_str() {
                out.push_str(&format!("for         {}\n", render::shown(person)));
            }
            out.push_str(&format!(
                "groups      {}\nroles       {}\ncredential  {credential}\nexpires     {expires}\nprofile     {}\nserver      {}\nsource      {}\n",
                list(&who["groups"]),
                list(&who["roles"]),
                session.profile,
                render::shown(&session.url),
                render::shown(&source),
            ));
            print!("{out}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `jitgate profile list`.
pub fn profile_list(globals: &Globals) -> Result<ExitCode, ClientError> {
    let store = store()?;
    let config = store.load_config()?;
    // The profile commands would use now: JITGATE_PROFILE (or --profile) wins over config.toml.
    let active = profile_name(globals, &mut || Ok(config.clone()))?;
    let mut rows = Vec::new();
    for (name, entry) in &config.profiles {
        // A file we may not read (loose, foreign) is shown as such, not as an error for all.
        let signed_in = match store.load_credential(name) {
            Ok(Some(c)) => json!(c.kind()),
            Ok(None) => json!(null),
            Err(e) => json!(format!("unusable: {e}")),
        };
        rows.push(json!({"name": name, "url": entry.url, "active": *name == active, "credential": signed_in}));
    }
    match globals.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({"items": rows})).unwrap_or_default()
        ),
        _ if rows.is_empty() => println!("No profiles yet: jitgate login --url URL --token -"),
        _ => {
            println!("  {:<20} {:<40} SIGNED IN", "PROFILE", "URL");
            for row in &rows {
                println!(
                    "{} {:<20} {:<40} {}",
                    if row["active"] == true { "*" } else { " " },
                    render::s(&row["name"]),
                    render::s(&row["url"]),
                    match &row["credential"] {
                        Value::Null => "no".to_string(),
                        other => format!("yes ({})", render::s(other)),
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `jitgate profile use NAME`.
pub fn profile_use(globals: &Globals, name: &str) -> Result<ExitCode, ClientError> {
    profiles::check_profile_name(name)?;
    let store = store()?;
    let mut config = store.load_config()?;
    if !config.profiles.contains_key(name) {
        let known: Vec<&str> = config.profiles.keys().map(String::as_str).collect();
        return Err(ClientError::Other(format!(
            "no profile {name}; known: {} (jitgate login --profile {name} --url URL makes it)",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    config.active = Some(name.to_string());
    store.save_config(&config)?;
    match globals.output {
        Output::Json => println!("{}", json!({"active": name})),
        _ => println!(
            "Profile {name} is now active ({})",
            render::shown(&config.profiles[name].url)
        ),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hidden_prompt_edits_the_line_and_answers_the_interrupt_key_itself() {
        let keys = EditKeys {
            interrupt: 0x03,
            erase: 0x7f,
            kill: 0x15,
            end: 0x04,
            word_erase: 0x17,
            quit: 0x1c,
        };
        let read = |bytes: &[u8]| match read_hidden_line(&mut &bytes[..], &keys) {
            Typed::Line(line) => line,
            Typed::Interrupted => "<interrupted>".into(),
            Typed::TooLong => "<too long>".into(),
            Typed::Failed(e) => format!("<{e}>"),
        };
        assert_eq!(read(b"demo-alice\r"), "demo-alice");
        assert_eq!(read(b"demo-alice\n"), "demo-alice");
        assert_eq!(read(b"demo-alicx\x7fe\r"), "demo-alice");
        assert_eq!(read(b"wrong\x15demo-alice\r"), "demo-alice");
        assert_eq!(read(b"demo-alice"), "demo-alice");
        assert_eq!(read(b"\x04"), "");
        assert_eq!(read(b"demo\x04-alice\r"), "demo-alice");
        assert_eq!(read(b"demo-\x03alice\r"), "<interrupted>");
        // A key the terminal turned off (0) is an ordinary byte, refused later as a token.
        let off = EditKeys { interrupt: 0, ..keys };
        assert!(matches!(read_hidden_line(&mut &b"a\x00b\r"[..], &off), Typed::Line(l) if l == "a\u{0}b"));
        assert_eq!(read(&vec![b'a'; MAX_TYPED_TOKEN + 10]), "<too long>");
    }

    fn sso_credential(id_token: &str, refresh: &str, expires_at: chrono::DateTime<chrono::Utc>) -> Credential {
        Credential::Oidc {
            url: Some("https://jit.example".into()),
            issuer: "https://idp.example".into(),
            client_id: "jitgate-cli".into(),
            id_token: id_token.into(),
            refresh_token: Some(refresh.into()),
            expires_at,
            subject: Some("carol".into()),
        }
    }

    /// A refresh of `profile` in another thread that takes `slow` at the provider (rotating
    /// r1 to r2), started once it holds the lock.
    fn refresh_in_flight(dir: std::path::PathBuf, slow: std::time::Duration) -> std::thread::JoinHandle<String> {
        let (started, running) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let store = Store::new(dir);
            let now = chrono::Utc::now();
            let held = store.load_credential("p").unwrap().unwrap();
            let got = sso::refreshed_credential(&store, "p", held, now, |_| {
                started.send(()).unwrap();
                std::thread::sleep(slow);
                Ok(sso::SignedIn {
                    id_token: "refreshed-id".into(),
                    refresh_token: Some("r2".into()),
                    expires_at: now + chrono::TimeDelta::minutes(5),
                    subject: "carol".into(),
                })
            });
            match got {
                Ok(credential) => credential.bearer().to_string(),
                Err(e) => e.to_string(),
            }
        });
        running.recv().unwrap();
        thread
    }

    /// Profile `p` signed in by single sign-on whose ID token expires in 5 s, and another
    /// jitgate refreshing it, holding the lock for half a second.
    fn a_refresh_in_flight() -> (tempfile::TempDir, Store, std::thread::JoinHandle<String>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("jitgate");
        let store = Store::new(dir.clone());
        let soon = chrono::Utc::now() + chrono::TimeDelta::seconds(5);
        store
            .save_credential("p", &sso_credential("old-id", "r1", soon))
            .unwrap();
        let refresher = refresh_in_flight(dir, std::time::Duration::from_millis(500));
        (tmp, store, refresher)
    }

    #[test]
    fn logout_during_a_refresh_stays_signed_out_and_revokes_the_new_refresh_token() {
        let (_home, store, refresher) = a_refresh_in_flight();
        let (removed, revocation, unlocked) = sign_out(&store, "p", LOGOUT_LOCK_WAIT, |_, _, refresh_token| {
            // The refresh finished first: its rotated token is the one revoked.
            assert_eq!(refresh_token, "r2");
            sso::Revocation::Revoked
        })
        .unwrap();
        assert!(removed);
        assert_eq!(unlocked, None);
        assert_eq!(revocation.map(|(r, _)| r), Some(sso::Revocation::Revoked));
        assert_eq!(refresher.join().unwrap(), "refreshed-id");
        // Nothing brought the credential back.
        assert_eq!(store.load_credential("p").unwrap(), None);
    }

    #[test]
    fn logout_removes_the_credential_even_when_its_lock_cannot_be_taken() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("jitgate");
        let store = Store::new(dir.clone());
        let later = chrono::Utc::now() + chrono::TimeDelta::minutes(5);
        // A profile without a credential: nothing to remove, and no lock file made for it.
        store.save_credential("p", &sso_credential("id", "r1", later)).unwrap();
        let (removed, revocation, unlocked) = sign_out(&store, "none", LOGOUT_LOCK_WAIT, |_, _, _| {
            unreachable!("nothing to revoke")
        })
        .unwrap();
        assert_eq!((removed, revocation, unlocked), (false, None, None));
        assert!(!dir.join("credentials").join("none.lock").exists());

        // Held by another jitgate (stopped with Ctrl-Z) longer than logout waits: the refresh
        // token is revoked and the file removed all the same, with a warning.
        let held = store.lock_credential("p").unwrap();
        let (removed, revocation, unlocked) = sign_out(
            &store,
            "p",
            std::time::Duration::from_millis(200),
            |_, _, refresh_token| {
                assert_eq!(refresh_token, "r1");
                sso::Revocation::Revoked
            },
        )
        .unwrap();
        drop(held);
        assert!(removed);
        assert_eq!(revocation.map(|(r, _)| r), Some(sso::Revocation::Revoked));
        assert!(
            unlocked.as_deref().is_some_and(|u| u.contains("another jitgate")),
            "{unlocked:?}"
        );
        assert_eq!(store.load_credential("p").unwrap(), None);

        // A config directory others may read: the lock is refused, the file removed anyway.
        store.save_credential("p", &sso_credential("id", "r1", later)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (removed, _, unlocked) =
            sign_out(&store, "p", LOGOUT_LOCK_WAIT, |_, _, _| sso::Revocation::Revoked).unwrap();
        assert!(removed);
        assert!(unlocked.is_some());
        assert!(!dir.join("credentials").join("p.json").exists());
    }

    #[test]
    fn a_login_during_a_refresh_is_not_overwritten_by_the_old_session() {
        let (_home, store, refresher) = a_refresh_in_flight();
        let new_login = Credential::Token {
            url: Some("https://jit.example".into()),
            token: "new-login".into(),
        };
        let signing = Signing {
            store: &store,
            profile: "p".into(),
            url: "https://jit.example".into(),
        };
        signing.save(&new_login).unwrap();
        refresher.join().unwrap();
        assert_eq!(store.load_credential("p").unwrap(), Some(new_login));
    }

    #[test]
    fn login_records_its_profile_in_the_config_as_it_is_when_the_sign_in_ends() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("jitgate"));
        let mut config = Config::default();
        config.profiles.insert(
            "prod".into(),
            ProfileEntry {
                url: "https://prod.example".into(),
            },
        );
        store.save_config(&config).unwrap();
        // The sign-in starts (login reads the config) ...
        let signing = Signing {
            store: &store,
            profile: "dev".into(),
            url: "https://dev.example".into(),
        };
        // ... and meanwhile another terminal signs in to ci.
        let mut meanwhile = store.load_config().unwrap();
        meanwhile.profiles.insert(
            "ci".into(),
            ProfileEntry {
                url: "https://ci.example".into(),
            },
        );
        meanwhile.active = Some("ci".into());
        store.save_config(&meanwhile).unwrap();
        signing
            .save(&Credential::Token {
                url: Some("https://dev.example".into()),
                token: "t".into(),
            })
            .unwrap();
        let after = store.load_config().unwrap();
        let names: Vec<&str> = after.profiles.keys().map(String::as_str).collect();
        assert_eq!(names, ["ci", "dev", "prod"]);
        assert_eq!(after.active.as_deref(), Some("dev"));
        // A first sign-in makes no lock file: nothing could have been refreshing.
        assert!(!store.dir().join("credentials").join("dev.lock").exists());
    }

    #[test]
    fn the_login_options_are_not_read_through_a_redirect() {
        use crate::sso::stub::{serve, Reply};
        let elsewhere = serve(|_, _, _, _| {
            Reply::json(
                200,
                &json!({"oidc": {"issuer": "http://evil.example", "client_id": "x"}}),
            )
        });
        let port = serve(move |_, target, _, _| Reply {
            status: 302,
            headers: vec![("Location", format!("http://127.0.0.1:{elsewhere}{target}"))],
            body: Vec::new(),
        });
        let e = unauthenticated_get(&format!("http://127.0.0.1:{port}"), "/v1/login/options")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("http://127.0.0.1:{port}/v1/login/options answered 302 Found, a redirect to http://127.0.0.1:{elsewhere}/v1/login/options: not followed; if that is the server, use its address with --url")
        );
    }

    #[test]
    fn the_same_server_is_recognised_in_its_spellings_and_no_other() {
        for (a, b) in [
            ("https://jit.corp", "https://JIT.corp/"),
            ("https://jit.corp", "https://jit.corp:443"),
            ("http://127.0.0.1:7400", "http://127.0.0.1:7400/"),
            ("https://jit.corp/base", "https://jit.corp/base/"),
        ] {
            assert!(same_server(a, b), "{a} {b}");
        }
        for (a, b) in [
            ("https://jit.corp", "https://evil"),
            ("https://jit.corp", "http://jit.corp"),
            ("https://jit.corp", "https://jit.corp:8443"),
            ("https://jit.corp", "https://jit.corp.evil"),
            ("https://jit.corp/a", "https://jit.corp/b"),
            ("https://jit.corp", "not a url"),
            ("file:///x", "file:///x"),
        ] {
            assert!(!same_server(a, b), "{a} {b}");
        }
    }

    #[test]
    fn cleartext_is_allowed_to_this_machine_only() {
        for local in [
            "http://127.0.0.1:7400",
            "http://127.9.8.7",
            "http://[::1]:7400",
            "http://localhost:7400",
            "http://LOCALHOST",
            "https://jit.corp",
            "https://10.0.0.1",
        ] {
            assert!(!cleartext_to_another_machine(local), "{local}");
        }
        for remote in [
            "http://jit.corp",
            "http://10.0.0.1:7400",
            "http://[::2]",
            "http://localhost.evil.example",
            "http://128.0.0.1",
            "http://0.0.0.0",
        ] {
            assert!(cleartext_to_another_machine(remote), "{remote}");
        }
    }

    #[test]
    fn a_stored_credential_goes_only_to_its_own_server() {
        let token = |url: Option<&str>| Credential::Token {
            url: url.map(str::to_string),
            token: "demo-alice".into(),
        };
        let bound = token(Some("https://jit.corp"));
        assert_eq!(
            stored_credential_server("prod", &bound, None).unwrap(),
            "https://jit.corp"
        );
        assert!(stored_credential_server("prod", &bound, Some("https://jit.corp/")).is_ok());
        let e = stored_credential_server("prod", &bound, Some("https://evil"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "profile prod is signed in to https://jit.corp, not https://evil: pass --token or JITGATE_TOKEN"
            ),
            "{e}"
        );
        assert!(!e.contains("demo-alice"), "{e}");
        let e = stored_credential_server("prod", &token(None), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("names no server") && e.contains("jitgate login --profile prod"),
            "{e}"
        );
    }
}
