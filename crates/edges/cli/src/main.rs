//! The `jitgate` binary: `jitgate serve` and the client commands of the contract.

mod client;
mod commands;
mod mcp;
mod people;
mod profiles;
mod render;
mod shell;
mod sso;
mod waiting;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "jitgate",
    version,
    about = "Just-in-time access: request, approve, grant, expire, audit"
)]
struct Cli {
    /// The jitgate server to talk to [default: the profile's, else http://127.0.0.1:7400].
    #[arg(long, global = true, env = "JITGATE_URL")]
    url: Option<String>,
    /// Your bearer token; wins over the profile's stored credential. With `login`, the token
    /// to store (`-`: read it from standard input, out of shell history).
    #[arg(long, global = true, env = "JITGATE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The profile (a server and its stored credential) [default: the active one, else
    /// `default`]; see `jitgate profile list`.
    #[arg(long, global = true, env = "JITGATE_PROFILE")]
    profile: Option<String>,
    /// A shell command that prints a fresh token, run when the server refuses the current one
    /// (or when there is none): for short-lived CI tokens during long waits.
    #[arg(long, global = true, env = "JITGATE_TOKEN_COMMAND")]
    token_command: Option<String>,
    /// `text` for people, `json` for scripts; `markdown` makes `policy diff` print a
    /// pull-request comment (other commands print text).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
    /// `policy diff` as a GitHub pull-request comment; text for every other command.
    Markdown,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Sign in to a server and remember it in a profile (docs/cli.md).
    ///
    /// `jitgate login --url URL --token -` reads the token from standard input, checks it with
    /// the server, then stores it (mode 0600) under $XDG_CONFIG_HOME/jitgate/ for the profile
    /// (`--profile`, default `default`), which becomes the active one. Without --token, a
    /// server whose [cli] section names an OpenID issuer signs you in through it (single
    /// sign-on): the browser opens (the CLI listens on 127.0.0.1 for its answer), or with
    /// --device, or when no browser can be opened, you enter a code on the provider's page.
    /// The ID token is then refreshed silently while the refresh token lasts.
    Login {
        /// Single sign-on with the device authorization grant (RFC 8628): print a URL and a
        /// code to enter there, from any device, instead of opening a browser here.
        #[arg(long)]
        device: bool,
        /// Allow an `http://` URL to a host other than this machine (127.0.0.0/8, ::1,
        /// localhost): the token then crosses the network in clear text.
        #[arg(long)]
        insecure_http: bool,
    },
    /// Forget the profile's stored credential (its server stays in the profile).
    Logout,
    /// Who the server takes you for: principal, groups, roles, credential, expiry.
    ///
    /// Also the profile, the server, and where the credential came from (--token,
    /// JITGATE_TOKEN, JITGATE_TOKEN_COMMAND or the profile's file).
    Whoami,
    /// Profiles: several servers side by side.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Print a shell completion script (docs/cli.md).
    ///
    /// `jitgate completion bash > ~/.local/share/bash-completion/completions/jitgate`
    Completion { shell: clap_complete::Shell },
    /// Print the man page, or with --dir write one page per command into DIR.
    Man {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Candidates for shell completion from the server (request ids, resource names): quietly
    /// nothing on any error.
    #[command(name = "__complete", hide = true)]
    Complete { what: String },
    /// File a request for access.
    Request {
        resource: String,
        action: String,
        /// How long the access should last once approved (`30m`, `2h`).
        #[arg(long = "for")]
        duration: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
        /// The exact command or artifact an action-bound request is for.
        #[arg(long)]
        payload: Option<String>,
        #[arg(long)]
        break_glass: bool,
        /// Block until the request is decided; exit 0 approved, 1 otherwise.
        #[arg(long)]
        wait: bool,
        /// Ask for more in the same request: `RESOURCE:ACTION`, or `RESOURCE:ACTION=PAYLOAD` for
        /// an action-bound one (split at the last `:` before any `=`, so a resource named
        /// `github:OWNER/REPO/ENV` works); repeat for several (at most 20 items in all).
        #[arg(long = "also", value_name = "RESOURCE:ACTION[=PAYLOAD]")]
        also: Vec<String>,
    },
    /// List requests you can see.
    Requests {
        #[arg(long)]
        status: Option<String>,
    },
    /// What you may request: each resource with the actions you may ask for and what each
    /// takes (automatic, or whose approvals).
    Resources {
        /// Text the resource's name or description contains.
        #[arg(long)]
        search: Option<String>,
        /// Only resources with this label (`env=prod`); repeat for several.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// Only resources of this kind.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Show one request.
    Show {
        id: String,
        /// Print the whole payload (escaped), however long, instead of the request.
        #[arg(long)]
        payload: bool,
    },
    /// Approve a request.
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        /// The SHA-256 of the payload you reviewed (`jitgate show` prints it): if the request's
        /// payload is not that one, nothing is approved.
        #[arg(long, value_name = "HEX")]
        payload_sha256: Option<String>,
    },
    /// Deny a request.
    Deny {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Give the review a break-glass request demands afterwards.
    Review {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Cancel your pending request.
    Cancel { id: String },
    /// List grants.
    Grants {
        #[arg(long)]
        status: Option<String>,
    },
    /// Revoke a grant.
    Revoke {
        grant_id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Extend your active grant (as its workflow allows).
    Extend {
        grant_id: String,
        #[arg(long = "for")]
        duration: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// End your grant early: the task is done, so is the access.
    Done {
        grant_id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// For pipelines: file a request and wait for the decision. Exit 0 approved, 1 denied or
    /// cancelled, 3 nobody decided in time (the request is then cancelled), 2 error.
    Gate {
        resource: String,
        action: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// The exact command or artifact digest an action-bound request is for.
        #[arg(long)]
        payload: Option<String>,
        /// How long the access should last once approved.
        #[arg(long = "for")]
        duration: Option<String>,
        /// How long to wait for a decision (`30m`).
        #[arg(long, default_value = "30m")]
        timeout: String,
        /// Ask for more in the same request: `RESOURCE:ACTION`, or `RESOURCE:ACTION=PAYLOAD` for
        /// an action-bound one (split at the last `:` before any `=`, so a resource named
        /// `github:OWNER/REPO/ENV` works); repeat for several (at most 20 items in all).
        #[arg(long = "also", value_name = "RESOURCE:ACTION[=PAYLOAD]")]
        also: Vec<String>,
    },
    /// Ask approval for exactly this command, wait, run it once approved, and end the grant
    /// when it finishes; its exit code is passed through. Ctrl-C while waiting cancels.
    Run {
        resource: String,
        action: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// How long the access should last once approved.
        #[arg(long = "for")]
        duration: Option<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
        /// Ask for more in the same request: `RESOURCE:ACTION`, or `RESOURCE:ACTION=PAYLOAD` for
        /// an action-bound one (split at the last `:` before any `=`, so a resource named
        /// `github:OWNER/REPO/ENV` works); repeat for several (at most 20 items in all).
        #[arg(long = "also", value_name = "RESOURCE:ACTION[=PAYLOAD]")]
        also: Vec<String>,
    },
    /// Ask whether a principal may act now: exit 0 allowed, 1 denied, 2 error.
    Check {
        principal: String,
        resource: String,
        action: String,
        #[arg(long)]
        payload: Option<String>,
    },
    /// Read and verify the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Work with a policy directory.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage API tokens (admins).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a short-lived OpenSSH user certificate for your active grant on an SSH resource
    /// (--write saves it beside the key as KEY-cert.pub, where ssh finds it); or, with
    /// --request, ask for access, wait, and log in with ssh (docs/cli.md).
    ///
    /// `jitgate ssh GRANT_ID --key KEY.pub [--write]`, or
    /// `jitgate ssh --request RESOURCE [--reason R] [--for D] USER@HOST [-- SSH_ARGS...]`: file a
    /// request for the resource's SSH action, wait for its approval (Ctrl-C cancels it), write
    /// KEY-cert.pub beside the key and run `ssh -i KEY -o CertificateFile=KEY-cert.pub USER@HOST
    /// SSH_ARGS...` (JITGATE_SSH_PROGRAM instead of `ssh` if set); ssh's exit code is passed
    /// through. Denied or cancelled: 1; expired or not decided within --timeout: 3.
    Ssh {
        /// The grant to certify; with --request, the USER@HOST (or HOST) to log in to.
        #[arg(value_name = "GRANT_ID | USER@HOST")]
        target: String,
        /// Your OpenSSH public key file (`~/.ssh/id_ed25519.pub`); with --request, the first of
        /// ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub by default (its private key beside it).
        #[arg(long, required_unless_present = "request")]
        key: Option<PathBuf>,
        /// Write the certificate beside the key as KEY-cert.pub (mode 0644, as ssh-keygen
        /// does), where ssh finds it, and print its path.
        #[arg(long, conflicts_with = "request")]
        write: bool,
        /// Ask for access to this SSH resource, wait for it, and log in to USER@HOST.
        #[arg(long, value_name = "RESOURCE")]
        request: Option<String>,
        /// With --request: the action to ask for [default: the resource's one action that is
        /// not bound to a command].
        #[arg(long, requires = "request")]
        action: Option<String>,
        /// With --request: why you need it.
        #[arg(long, requires = "request")]
        reason: Option<String>,
        /// With --request: how long the access should last once approved (`30m`).
        #[arg(
            long = "for",
            visible_alias = "duration",
            value_name = "DURATION",
            requires = "request"
        )]
        duration: Option<String>,
        /// With --request: how long to wait for a decision before cancelling the request
        /// [default: 30m].
        #[arg(long, value_name = "DURATION", requires = "request")]
        timeout: Option<String>,
        /// With --request: ssh's further arguments, after `--` (its options, the remote command).
        #[arg(last = true, value_name = "SSH_ARGS", requires = "request")]
        ssh_args: Vec<String>,
    },
    /// Print the database login (user, password, connection URL) made for your active grant
    /// on a PostgreSQL resource. Shown once: save it now. Waits while the role is being created.
    Credentials { grant_id: String },
    /// Manage the keys that sign grant tokens (admins).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The database behind the server (admins).
    #[command(subcommand)]
    Database(DatabaseCommand),
    /// AI agents over the Model Context Protocol (docs/agents.md).
    #[command(subcommand)]
    Mcp(McpCommand),
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// The profiles: name, server, whether signed in; `*` marks the one in use.
    List,
    /// Make a profile the active one.
    Use { name: String },
}

#[derive(Subcommand)]
enum McpCommand {
    /// Put an MCP server behind jitgate: speak MCP on standard input and output to the agent,
    /// relay everything to the upstream server, and forward each tool call only once a grant
    /// allows that exact call (filing a request and waiting for its approval when needed).
    Proxy {
        /// The catalog resource (kind mcp) whose actions are this server's tools.
        #[arg(long)]
        resource: String,
        /// How long a tool call waits for a decision before its request is cancelled.
        #[arg(long, default_value = "10m")]
        timeout: String,
        /// The reason filed with each request [default: "MCP tool call TOOL by AGENT"].
        #[arg(long)]
        reason: Option<String>,
        /// How long the access asked for should last (the policy's default otherwise).
        #[arg(long = "for")]
        duration: Option<String>,
        /// The upstream's streamable HTTP endpoint, instead of a command.
        #[arg(long, value_name = "URL", conflicts_with = "command")]
        upstream_url: Option<String>,
        /// The upstream MCP server's command and arguments, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// An MCP server (stdio) with the tools request_access, request_status, my_grants and
    /// done, so that an agent asks for access the way a person does.
    Serve,
}

#[derive(Subcommand)]
enum DatabaseCommand {
    /// Accept the database's history as it is, after the server refused it because it
    /// diverged from what the server had seen (a failover lost acknowledged work, or a second
    /// primary forked the log): the server writes again and records what was given up in the
    /// audit log. Ask each replica that refuses it (JITGATE_URL naming it); see docs/deploy.md,
    /// "Failover".
    AcceptHistory,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Start signing grant tokens with a new key; the old one stays published until the
    /// grants it signed have ended.
    Rotate,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a token. It is printed once; jitgate keeps only its hash.
    Create {
        /// Whom the token authenticates as.
        #[arg(long)]
        principal: String,
        /// Groups, comma-separated, besides those the directory gives the principal.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// How long the token is valid (`90d`, `12h`); without it, until revoked.
        #[arg(long)]
        ttl: Option<String>,
        /// What the token is for.
        #[arg(long)]
        label: Option<String>,
        /// A service token, allowed to call /v1/check.
        #[arg(long)]
        service: bool,
        /// An agent token acting for this person: the agent may request what its person may,
        /// never reviews, and its person never counts as a reviewer of its requests.
        #[arg(long, value_name = "PERSON")]
        agent_for: Option<String>,
        /// A SCIM provisioning token for an identity provider: it may call /scim/v2 and
        /// nothing else (see docs/scim.md).
        #[arg(long, conflicts_with_all = ["groups", "service", "agent_for"])]
        scim: bool,
    },
    /// List issued tokens (never the tokens themselves).
    List,
    /// Revoke a token: refused from that moment on.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// List events.
    List {
        #[command(flatten)]
        filter: AuditFilterArgs,
    },
    /// Check the log: the hash chain and its signed checkpoints on the server (exit 0 intact,
    /// 1 broken), or, with --file, an export offline.
    Verify {
        /// A file of JSON lines from `jitgate audit export`, an archived segment or a json
        /// sink: check its chain here, without the server. Repeat for files that follow each
        /// other (oldest first).
        #[arg(long)]
        file: Vec<PathBuf>,
        /// With --file: the JWKS from `jitgate audit keys`, to check the checkpoints'
        /// signatures too.
        #[arg(long, requires = "file")]
        keys: Option<PathBuf>,
    },
    /// Events as JSON lines (all of them, or those the filters select).
    Export {
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// Add the signed checkpoints, ending with one signed now, so that the export
        /// re-verifies offline end to end (whole log or --since only).
        #[arg(long)]
        checkpoints: bool,
    },
    /// Every key that signed a checkpoint, as a JWKS (for `verify --file --keys`).
    Keys,
}

/// Which audit events.
#[derive(clap::Args, Clone, Default)]
pub struct AuditFilterArgs {
    #[arg(long)]
    pub request_id: Option<String>,
    /// Events where this principal is the actor or the subject.
    #[arg(long)]
    pub principal: Option<String>,
    #[arg(long)]
    pub resource: Option<String>,
    #[arg(long)]
    pub action: Option<String>,
    /// Events of this kind (`request.approved`, `grant.revoked`, ...).
    #[arg(long)]
    pub kind: Option<String>,
    /// RFC 3339 time: events at or after it.
    #[arg(long)]
    pub since: Option<String>,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy directory: exit 0 valid, 2 with `file:line: message` errors.
    Check { dir: PathBuf },
    /// Run the policy's own test cases (DIR/tests/*.toml): exit 0 all pass, 1 any fails.
    Test { dir: PathBuf },
    /// Who gains or loses which ability between two versions: exit 0 none, 1 changes, 2 error.
    Diff { old: PathBuf, new: PathBuf },
    /// Why a request would be refused, automatic, or need which approvals.
    Explain {
        #[arg(long)]
        principal: String,
        resource: String,
        action: String,
        /// Judge against this policy directory instead of asking the server.
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7400].
    #[arg(long, env = "JITGATE_LISTEN")]
    listen: Option<String>,
    /// The policy directory.
    #[arg(long, env = "JITGATE_POLICY")]
    policy: Option<PathBuf>,
    /// The database: `sqlite://PATH` or `postgres://USER[:PASSWORD]@HOST:PORT/DATABASE`
    /// [default: sqlite://./jitgate-data/jitgate.db]. Logs show it with the password hidden.
    /// A password on the command line is visible to every local user (`ps`): prefer the
    /// environment variable, or a URL without one and --database-password-file.
    #[arg(long, env = "JITGATE_DATABASE", value_name = "URL")]
    database: Option<String>,
    /// A file holding the PostgreSQL password (one line) for a --database URL without one,
    /// such as a mounted container secret.
    #[arg(long, env = "JITGATE_DATABASE_PASSWORD_FILE", value_name = "PATH")]
    database_password_file: Option<PathBuf>,
    /// The longest a database write may take before it is answered 503 (`5s`, whole seconds,
    /// 1s to 5m) [default: 5s]. Past it the write may still commit: callers read before
    /// retrying (docs/deploy.md).
    #[arg(long, env = "JITGATE_DATABASE_WRITE_TIMEOUT", value_name = "DURATION")]
    database_write_timeout: Option<String>,
    /// A TOML file with `listen`, `policy`, `database` and `database_password_file` (and the
    /// sections of docs/deploy.md); flags and env override it.
    #[arg(long, env = "JITGATE_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    refuse_a_grant_id_with_request(&cli.command);
    // `login` stores only a token typed as --token, never one JITGATE_TOKEN carries for CI.
    let token_typed = matches.value_source("token") == Some(clap::parser::ValueSource::CommandLine);
    let globals = people::Globals {
        url: cli.url.clone(),
        token: cli.token.clone(),
        token_command: cli.token_command.clone(),
        profile: cli.profile.clone(),
        output: cli.output,
        token_typed,
    };
    let result = match cli.command {
        // Commands that need no server, or find it themselves.
        Command::Serve(args) => commands::serve(args),
        Command::Policy(PolicyCommand::Check { dir }) => commands::policy_check(&dir, cli.output),
        Command::Policy(PolicyCommand::Test { dir }) => commands::policy_test(&dir, cli.output),
        Command::Policy(PolicyCommand::Diff { old, new }) => commands::policy_diff(&old, &new, cli.output),
        Command::Login { device, insecure_http } => people::login(
            &globals,
            token_typed.then(|| cli.token.clone()).flatten(),
            device,
            insecure_http,
        ),
        Command::Logout => people::logout(&globals),
        Command::Profile(ProfileCommand::List) => people::profile_list(&globals),
        Command::Profile(ProfileCommand::Use { name }) => people::profile_use(&globals, &name),
        Command::Completion { shell } => shell::completion(Cli::command(), shell),
        Command::Man { dir } => shell::man(Cli::command(), dir.as_deref()),
        Command::Complete { what } => shell::complete_from_server(&globals, &what),
        command => match people::connect(&globals) {
            Err(e) => Err(e),
            Ok(session) => run_remote(command, &session).map_err(|e| people::name_the_profile(&session, e)),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // The message may quote what someone typed (a resource name, a reason).
            eprintln!("error: {}", render::shown(&e.to_string()));
            ExitCode::from(2)
        }
    }
}

/// How long `jitgate ssh --request` waits for a decision by default (as `jitgate gate`).
const SSH_DEFAULT_TIMEOUT: &str = "30m";

/// `jitgate ssh GRANT_ID --request RESOURCE`: the one positional is the grant to certify, or
/// with --request the host to log in to; a grant id there means both were meant, which clap
/// cannot see by itself. Said as clap says a conflict (exit 2), before anything is sent.
fn refuse_a_grant_id_with_request(command: &Command) {
    let Command::Ssh {
        target,
        request: Some(_),
        ..
    } = command
    else {
        return;
    };
    let looks_like_a_grant = target.starts_with("grt_") && !target.contains('@');
    if !looks_like_a_grant {
        return;
    }
    let message = format!(
        "the argument '--request <RESOURCE>' cannot be used with '<GRANT_ID>' ({}): give USER@HOST to log in through a new request, or leave out --request to certify that grant",
        render::shown(target)
    );
    let mut cli = Cli::command();
    cli.build();
    match cli.find_subcommand_mut("ssh") {
        Some(ssh) => ssh.error(clap::error::ErrorKind::ArgumentConflict, message).exit(),
        None => cli.error(clap::error::ErrorKind::ArgumentConflict, message).exit(),
    }
}

/// A command that talks to the server through `session`.
fn run_remote(command: Command, session: &people::Session) -> commands::CommandResult {
    let client = &session.client;
    match command {
        Command::Whoami => people::whoami(session),
        Command::Request {
            resource,
            action,
            duration,
            reason,
            payload,
            break_glass,
            wait,
            also,
        } => match waiting::parse_also(&also) {
            Err(e) => Err(e),
            Ok(also) => commands::request(
                client,
                &resource,
                &action,
                duration,
                &reason,
                payload,
                break_glass,
                wait,
                &also,
            ),
        },
        Command::Requests { status } => commands::requests(client, status),
        Command::Resources { search, labels, kind } => commands::resources(client, search, labels, kind),
        Command::Show { id, payload } => commands::show(client, &id, payload),
        Command::Approve {
            id,
            comment,
            payload_sha256,
        } => commands::approve(client, &id, comment, payload_sha256),
        Command::Deny { id, comment } => commands::review(client, &id, "deny", comment),
        Command::Review { id, comment } => commands::review(client, &id, "review", comment),
        Command::Cancel { id } => commands::review(client, &id, "cancel", None),
        Command::Grants { status } => commands::grants(client, status),
        Command::Revoke { grant_id, comment } => commands::revoke(client, &grant_id, comment),
        Command::Extend {
            grant_id,
            duration,
            reason,
        } => commands::extend(client, &grant_id, &duration, &reason),
        Command::Done { grant_id, comment } => commands::done(client, &grant_id, comment),
        Command::Gate {
            resource,
            action,
            reason,
            payload,
            duration,
            timeout,
            also,
        } => match (jitgate_core::parse_duration(&timeout), waiting::parse_also(&also)) {
            (Err(m), _) => Err(client::ClientError::Other(format!("--timeout: {m}"))),
            (_, Err(e)) => Err(e),
            (Ok(timeout), Ok(also)) => {
                let ask = waiting::Ask {
                    resource: &resource,
                    action: &action,
                    duration,
                    reason: &reason,
                    payload,
                    also,
                };
                waiting::gate(client, &ask, std::time::Duration::from_secs(timeout.0))
            }
        },
        Command::Run {
            resource,
            action,
            reason,
            duration,
            command,
            also,
        } => match waiting::parse_also(&also) {
            Err(e) => Err(e),
            Ok(also) => waiting::run(client, &resource, &action, duration, &reason, &command, also),
        },
        Command::Check {
            principal,
            resource,
            action,
            payload,
        } => commands::check(client, &principal, &resource, &action, payload),
        Command::Audit(AuditCommand::List { filter }) => commands::audit_list(client, &filter),
        Command::Audit(AuditCommand::Verify { file, keys }) if file.is_empty() && keys.is_none() => {
            commands::audit_verify(client)
        }
        Command::Audit(AuditCommand::Verify { file, keys }) => {
            commands::audit_verify_file(client, &file, keys.as_deref())
        }
        Command::Audit(AuditCommand::Export { filter, checkpoints }) => {
            commands::audit_export(client, &filter, checkpoints)
        }
        Command::Audit(AuditCommand::Keys) => commands::audit_keys(client),
        Command::Token(TokenCommand::Create {
            principal,
            groups,
            ttl,
            label,
            service,
            agent_for,
            scim,
        }) => commands::token_create(
            client,
            &principal,
            commands::TokenOptions {
                groups,
                ttl,
                label,
                service,
                agent_for,
                scim,
            },
        ),
        Command::Ssh {
            target,
            key,
            write,
            request: None,
            ..
        } => match key {
            Some(key) => commands::ssh_certificate(client, &target, &key, write),
            None => Err(client::ClientError::Other("--key KEY.pub is required".into())),
        },
        Command::Ssh {
            target,
            key,
            request: Some(resource),
            action,
            reason,
            duration,
            timeout,
            ssh_args,
            ..
        } => match jitgate_core::parse_duration(timeout.as_deref().unwrap_or(SSH_DEFAULT_TIMEOUT)) {
            Err(m) => Err(client::ClientError::Other(format!("--timeout: {m}"))),
            Ok(timeout) => commands::ssh_login(
                client,
                commands::SshLogin {
                    resource,
                    action,
                    destination: target,
                    key,
                    reason: reason.unwrap_or_default(),
                    duration,
                    timeout: std::time::Duration::from_secs(timeout.0),
                    ssh_args,
                },
            ),
        },
        Command::Credentials { grant_id } => commands::database_credentials(client, &grant_id),
        Command::Keys(KeysCommand::Rotate) => commands::keys_rotate(client),
        Command::Database(DatabaseCommand::AcceptHistory) => commands::database_accept_history(client),
        Command::Mcp(McpCommand::Serve) => mcp::serve::run(client),
        Command::Mcp(McpCommand::Proxy {
            resource,
            timeout,
            reason,
            duration,
            upstream_url,
            command,
        }) => match (jitgate_core::parse_duration(&timeout), upstream_url) {
            (Err(m), _) => Err(client::ClientError::Other(format!("--timeout: {m}"))),
            (Ok(_), None) if command.is_empty() => Err(client::ClientError::Other(
                "name the upstream MCP server: its command after -- (jitgate mcp proxy --resource files -- npx -y @modelcontextprotocol/server-filesystem /srv), or --upstream-url URL".into(),
            )),
            (Ok(timeout), upstream_url) => mcp::proxy::run(
                client,
                mcp::proxy::ProxyArgs {
                    resource,
                    timeout: std::time::Duration::from_secs(timeout.0),
                    reason,
                    duration,
                    upstream: match upstream_url {
                        Some(url) => mcp::proxy::UpstreamSpec::Url(url),
                        None => mcp::proxy::UpstreamSpec::Command(command),
                    },
                },
            ),
        },
        Command::Token(TokenCommand::List) => commands::token_list(client),
        Command::Token(TokenCommand::Revoke { id }) => commands::token_revoke(client, &id),
        Command::Policy(PolicyCommand::Explain {
            principal,
            resource,
            action,
            policy,
        }) => commands::policy_explain(client, &principal, &resource, &action, policy.as_deref()),
        // Answered in main, before any connection.
        Command::Serve(_)
        | Command::Policy(PolicyCommand::Check { .. } | PolicyCommand::Test { .. } | PolicyCommand::Diff { .. })
        | Command::Login { .. }
        | Command::Logout
        | Command::Profile(_)
        | Command::Completion { .. }
        | Command::Man { .. }
        | Command::Complete { .. } => Err(client::ClientError::Other("internal: a local command reached the server path".into())),
    }
}
