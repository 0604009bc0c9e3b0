//! What GitHub sends, read without I/O: signatures, payloads, commands.
//!
//! Everything here is pure, so that each rule (what a signature is, which callback URL is
//! believed, what a GitHub name may hold, what a command says) is tested on its own, and the
//! flow (`flow.rs`) only decides what to do with what was read.

use hmac::{Hmac, Mac};
use jitgate_core::text::is_invisible;
use serde::Deserialize;
use sha2::Sha256;
use std::borrow::Cow;

/// The longest environment name accepted, in bytes (GitHub's own limit).
pub const MAX_ENVIRONMENT_LEN: usize = 255;
/// The longest ref accepted, in bytes.
pub const MAX_REF_LEN: usize = 255;
/// The longest text after a command's request id, in characters.
pub const MAX_COMMAND_TEXT: usize = 500;
/// The longest callback URL looked at.
const MAX_CALLBACK_URL_LEN: usize = 2048;
/// The longest header value accepted for `X-GitHub-Delivery` and `X-GitHub-Event`.
const MAX_HEADER_LEN: usize = 100;
/// The longest request id looked up (ours are `req_` and 32 hex digits).
const MAX_REQUEST_ID_LEN: usize = 64;

/// Why a delivery's signature is not believed (for the log; the caller is told one thing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not sha256= and 64 hex digits")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Check `X-Hub-Signature-256` (`sha256=` + hex HMAC-SHA256(secret, body)) in constant time.
pub fn verify_signature(secret: &[u8], header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_text = header.strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
    if hex_text.len() != 64 || !hex_text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::decode(hex_text).map_err(|_| SignatureError::Malformed)?;
    // An empty secret is refused at configuration; HMAC takes keys of any length, so this
    // cannot fail, but a failure must never read as a match.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| SignatureError::Mismatch)
}

/// What a delivery is remembered by: `sha256:` and the hex SHA-256 of its signed body.
pub fn delivery_key(body: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// What is wrong with an `X-GitHub-Delivery` / `X-GitHub-Event` value: 1 to 100 printable
/// ASCII characters.
pub fn header_problem(value: Option<&str>) -> Option<&'static str> {
    match value {
        None => Some("is missing"),
        Some(v) if v.is_empty() || v.len() > MAX_HEADER_LEN => Some("must be 1 to 100 characters"),
        Some(v) if !v.bytes().all(|b| b.is_ascii_graphic()) => Some("must be printable ASCII"),
        Some(_) => None,
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Account {
    pub login: Option<String>,
    /// `User`, `Bot`, `Organization`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Repository {
    pub full_name: Option<String>,
    pub name: Option<String>,
    pub owner: Option<Account>,
}

impl Repository {
    /// Owner and name, as `full_name` spells them (what the requester's principal is made
    /// of), else from `owner.login` and `name`.
    pub fn owner_and_name(&self) -> Option<(String, String)> {
        if let Some((owner, repo)) = self.full_name.as_deref().and_then(|f| f.split_once('/')) {
            return Some((owner.to_string(), repo.to_string()));
        }
        let owner = self.owner.as_ref()?.login.clone()?;
        Some((owner, self.name.clone()?))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Installation {
    pub id: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeploymentObject {
    pub sha: Option<String>,
    #[serde(rename = "ref")]
    pub git_ref: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PullRequestRef {
    pub number: Option<i64>,
}

/// The parts of a `deployment_protection_rule` event jitgate reads; every one may be missing.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeploymentEvent {
    pub action: Option<String>,
    pub environment: Option<String>,
    pub event: Option<String>,
    pub deployment_callback_url: Option<String>,
    pub deployment: Option<DeploymentObject>,
    pub pull_requests: Option<Vec<PullRequestRef>>,
    pub repository: Option<Repository>,
    pub installation: Option<Installation>,
    pub sender: Option<Account>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Issue {
    pub number: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Comment {
    pub id: Option<i64>,
    pub body: Option<String>,
    pub html_url: Option<String>,
    pub user: Option<Account>,
    /// The commenter's standing in the repository: `OWNER`, `MEMBER`, `COLLABORATOR`,
    /// `CONTRIBUTOR`, `NONE`, ...
    pub author_association: Option<String>,
    /// Non-null when an App made the comment (jitgate's own replies among them).
    pub performed_via_github_app: Option<serde_json::Value>,
}

/// The parts of an `issue_comment` event jitgate reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommentEvent {
    pub action: Option<String>,
    pub issue: Option<Issue>,
    pub comment: Option<Comment>,
    pub repository: Option<Repository>,
    pub installation: Option<Installation>,
}

/// Just the action, to dispatch on before reading the rest.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ActionOnly {
    pub action: Option<String>,
}

/// A GitHub account name: 1 to 39 ASCII letters, digits and single inner hyphens, and for a
/// user of Enterprise Managed Users `_` and the enterprise's short code (`alice_acme`). The
/// rule directory.toml's `github_user` is held to, so every linked login is one GitHub sends.
pub fn is_github_login(name: &str) -> bool {
    jitgate_policy::github_login_problem(name).is_none()
}

/// A sender: a login, or an App's bot account (`name[bot]`).
pub fn is_github_actor(name: &str) -> bool {
    is_github_login(name.strip_suffix("[bot]").unwrap_or(name))
}

/// A repository name: 1 to 100 ASCII letters, digits, `-`, `_`, `.`; not `.` or `..`.
pub fn is_github_repo(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A commit SHA: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub fn is_commit_sha(sha: &str) -> bool {
    (sha.len() == 40 || sha.len() == 64) && sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What makes a text from GitHub unfit to be shown to a reviewer or named in the policy:
/// control characters (NUL included), bidi controls, invisible characters (a plain space
/// aside), and a backslash (what jitgate's escaping leaves behind, and never part of a ref).
fn text_problem(value: &str) -> Option<String> {
    let bad = value
        .chars()
        .find(|&c| c.is_control() || (c != ' ' && is_invisible(c)) || c == '\\')?;
    Some(match bad {
        '\0' => "holds a NUL byte".to_string(),
        '\\' => "holds a backslash".to_string(),
        c => format!(
            "holds U+{:04X}, a control, invisible or text-reordering character",
            u32::from(c)
        ),
    })
}

/// What is wrong with an environment's name, if anything.
pub fn environment_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some("is empty".into());
    }
    if name.len() > MAX_ENVIRONMENT_LEN {
        return Some(format!("is longer than {MAX_ENVIRONMENT_LEN} bytes"));
    }
    if name.trim() != name {
        return Some("starts or ends with a space".into());
    }
    text_problem(name)
}

/// What is wrong with a ref, if anything.
pub fn ref_problem(git_ref: &str) -> Option<String> {
    if git_ref.is_empty() {
        return Some("is empty".into());
    }
    if git_ref.len() > MAX_REF_LEN {
        return Some(format!("is longer than {MAX_REF_LEN} bytes"));
    }
    if git_ref.contains(' ') {
        return Some("holds a space".into());
    }
    text_problem(git_ref)
}

/// The event that started a workflow (`push`, `workflow_dispatch`, ...): lowercase ASCII
/// letters and `_`.
pub fn is_event_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 100 && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// Text from GitHub (or any outside source) as it may be stored and shown even when it is
/// refused: escaped (`\u{0}` for a NUL, `\u{202e}` for a bidi control) and cut at 255 bytes.
/// What this returns never passes the checks above again (an escape or a cut leaves a
/// backslash), so a record stored this way is refused again when read back.
pub fn stored_form(value: &str) -> String {
    let escaped = jitgate_core::text::escape_for_display(value);
    if escaped.len() <= MAX_ENVIRONMENT_LEN {
        return escaped.into_owned();
    }
    let mut cut = 200;
    while !escaped.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}\\...", &escaped[..cut])
}

/// The run id of a `deployment_callback_url`, when its path is
/// `.../repos/{owner}/{repo}/actions/runs/{digits}/deployment_protection_rule` for this
/// repository (ASCII case-insensitive): the URL itself is never fetched; jitgate calls that
/// path on its own `api_url`.
pub fn callback_run_id(url: &str, owner: &str, repo: &str) -> Result<i64, String> {
    if url.len() > MAX_CALLBACK_URL_LEN {
        return Err(format!("is longer than {MAX_CALLBACK_URL_LEN} bytes"));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("is not an http(s) URL")?;
    if rest.contains(['?', '#']) || rest.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("holds a query, a fragment, spaces or control characters".into());
    }
    let path = rest.split_once('/').map(|(_, p)| p).ok_or("has no path")?;
    let segments: Vec<&str> = path.split('/').collect();
    let n = segments.len();
    if n < 7 {
        return Err("is not a deployment_protection_rule URL".into());
    }
    let tail = &segments[n - 7..];
    let shape =
        tail[0] == "repos" && tail[3] == "actions" && tail[4] == "runs" && tail[6] == "deployment_protection_rule";
    if !shape {
        return Err("is not .../repos/OWNER/REPO/actions/runs/RUN_ID/deployment_protection_rule".into());
    }
    let same =
        |segment: &str, expected: &str| percent_decode(segment).is_some_and(|s| s.eq_ignore_ascii_case(expected));
    if !same(tail[1], owner) || !same(tail[2], repo) {
        return Err(format!("is not for the event's repository {owner}/{repo}"));
    }
    let digits = tail[5];
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("has a run id that is not a number".into());
    }
    digits
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| "has a run id that is not a positive number".into())
}

fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex_text = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex_text, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A path segment as it may be put in a URL: anything but unreserved characters
/// percent-encoded (a name GitHub would never give still cannot change the path).
pub fn path_segment(text: &str) -> Cow<'_, str> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
    if text.bytes().all(unreserved) && text != "." && text != ".." {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if unreserved(b) && b != b'.' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

/// Text put into a GitHub comment, escaped for Markdown: a backslash before each character
/// that could start markup, a link, an HTML tag or a character reference (`&#64;` is an
/// `@`), and after every `@` a zero-width space (U+200B): GitHub may find a mention
/// (`@team`) behind a backslash, never in `@` + U+200B + name. Control and invisible
/// characters are written as visible escapes first (so the only U+200B left is ours).
pub fn markdown(text: &str) -> String {
    let shown = jitgate_core::text::escape_for_display(text);
    let mut out = String::with_capacity(shown.len() + 8);
    for c in shown.chars() {
        if matches!(
            c,
            '\\' | '`'
                | '*'
                | '_'
                | '{'
                | '}'
                | '['
                | ']'
                | '('
                | ')'
                | '#'
                | '+'
                | '-'
                | '.'
                | '!'
                | '|'
                | '<'
                | '>'
                | '~'
                | '@'
                | '&'
        ) {
            out.push('\\');
        }
        out.push(c);
        if c == '@' {
            out.push(ZERO_WIDTH_SPACE);
        }
    }
    out
}

/// What keeps an `@` from starting a mention.
const ZERO_WIDTH_SPACE: char = '\u{200b}';

/// Cut `text` to at most `max` characters, saying so.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(3)).collect();
    format!("{kept}...")
}

/// What a `/jitgate` comment asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Not a command: the first non-empty line does not start with `/jitgate`.
    NotACommand,
    /// `/jitgate approve|deny REQ_ID [text]`.
    Decide {
        approve: bool,
        request_id: String,
        text: String,
    },
    /// A command line jitgate refuses to read (why).
    Refused(String),
    /// Unknown verb or no id: the usage is the answer.
    Usage,
}

/// How to write a command.
pub const USAGE: &str = "usage: `/jitgate approve REQ_ID [comment]` or `/jitgate deny REQ_ID [reason]`";

/// Read the command in a comment's body: its first non-empty line.
pub fn parse_command(body: &str) -> Command {
    let Some(raw) = body.lines().find(|l| !l.trim().is_empty()) else {
        return Command::NotACommand;
    };
    let line = raw.trim();
    let rest = match line.strip_prefix("/jitgate") {
        Some(rest) if rest.is_empty() || rest.starts_with(|c: char| c.is_whitespace()) => rest,
        _ => return Command::NotACommand,
    };
    // Tabs and invisible spacing could hide what the command says from the people in the
    // thread: only plain spaces separate words.
    if let Some(bad) = raw.chars().find(|&c| c.is_control() || (c != ' ' && is_invisible(c))) {
        return Command::Refused(format!(
            "the command holds U+{:04X}, a control, invisible or text-reordering character; write it again in plain text",
            u32::from(bad)
        ));
    }
    let rest = rest.trim_start();
    let (verb, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let approve = match verb {
        "approve" => true,
        "deny" => false,
        _ => return Command::Usage,
    };
    let rest = rest.trim_start();
    let (id, text) = rest.split_once(' ').unwrap_or((rest, ""));
    if id.is_empty() {
        return Command::Usage;
    }
    let text = text.trim();
    if text.chars().count() > MAX_COMMAND_TEXT {
        return Command::Refused(format!(
            "the comment after the request id is longer than {MAX_COMMAND_TEXT} characters"
        ));
    }
    Command::Decide {
        approve,
        request_id: id.to_string(),
        text: text.to_string(),
    }
}

/// Whether a commenter of this `author_association` may give commands: the repository's
/// owner, organization members and collaborators. Anyone else (on a public repository,
/// anyone at all) gets no answer, so strangers cannot make jitgate write.
pub fn may_command(author_association: Option<&str>) -> bool {
    matches!(author_association, Some("OWNER" | "MEMBER" | "COLLABORATOR"))
}

/// A request id worth looking up: ASCII letters, digits and `_`, at most 64.
pub fn is_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn githubs_signature_example_verifies() {
        let secret = b"It's a Secret to Everybody";
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(verify_signature(secret, Some(header), b"Hello, World!"), Ok(()));
        assert_eq!(sign(secret, b"Hello, World!"), header);
    }

    #[test]
    fn forged_and_malformed_signatures_are_refused() {
        let secret = b"It's a Secret to Everybody";
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            verify_signature(secret, None, b"Hello, World!"),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(secret, Some(good), b"Hello, World?"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"another secret", Some(good), b"Hello, World!"),
            Err(SignatureError::Mismatch)
        );
        for bad in [
            "",
            "sha256=",
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17 ",
            "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "SHA256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ] {
            assert_eq!(
                verify_signature(secret, Some(bad), b"Hello, World!"),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn headers_are_printable_ascii_of_bounded_length() {
        assert_eq!(header_problem(Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")), None);
        assert!(header_problem(None).is_some());
        assert!(header_problem(Some("")).is_some());
        assert!(header_problem(Some(&"a".repeat(101))).is_some());
        assert!(header_problem(Some("a b")).is_some());
        assert!(header_problem(Some("a\0b")).is_some());
        assert!(header_problem(Some("dé")).is_some());
    }

    #[test]
    fn callback_urls_are_believed_only_for_the_events_repository() {
        let url = "https://api.github.com/repos/Example/App/actions/runs/4242/deployment_protection_rule";
        assert_eq!(callback_run_id(url, "example", "app"), Ok(4242));
        let ghes = "https://ghe.example/api/v3/repos/example/app/actions/runs/7/deployment_protection_rule";
        assert_eq!(callback_run_id(ghes, "example", "app"), Ok(7));
        for bad in [
            "https://api.github.com/repos/example/other/actions/runs/1/deployment_protection_rule",
            "https://api.github.com/repos/example/app/actions/runs/x1/deployment_protection_rule",
            "https://api.github.com/repos/example/app/actions/runs/0/deployment_protection_rule",
            "https://api.github.com/repos/example/app/actions/runs/1/deployment_protection_rule?x=1",
            "https://api.github.com/repos/example/app/actions/runs/1/approve",
            "ftp://api.github.com/repos/example/app/actions/runs/1/deployment_protection_rule",
            "https://api.github.com/repos/example/app/actions/runs/99999999999999999999/deployment_protection_rule",
            "https://evil.example/repos/exаmple/app/actions/runs/1/deployment_protection_rule",
        ] {
            assert!(callback_run_id(bad, "example", "app").is_err(), "{bad}");
        }
    }

    #[test]
    fn github_names_have_githubs_shape() {
        assert!(is_github_login("octo-cat"));
        assert!(is_github_actor("dependabot[bot]"));
        // Enterprise Managed Users: the enterprise's short code after `_`.
        for emu in [
            "alice_acme",
            "octo-cat_ACME2",
            "a_b",
            &format!("{}_{}", "a".repeat(39), "c".repeat(20)),
        ] {
            assert!(is_github_login(emu), "{emu}");
        }
        for bad in [
            "",
            "-octo",
            "octo-",
            "oc--to",
            "еxample",
            "a b",
            &"a".repeat(40),
            "alice_",
            "_acme",
            "alice_ac_me",
            "alice__acme",
            "alice_ac-me",
            "alice-_acme",
            "alice_acmе",
            "alice_acme\0",
            "alice_\u{200b}acme",
            &format!("alice_{}", "c".repeat(21)),
        ] {
            assert!(!is_github_login(bad), "{bad}");
        }
        assert!(is_github_repo("app.rs-1_x"));
        for bad in ["", ".", "..", "a/b", "ａpp"] {
            assert!(!is_github_repo(bad), "{bad}");
        }
        assert!(is_commit_sha(&"a".repeat(40)));
        assert!(is_commit_sha(&"0".repeat(64)));
        assert!(!is_commit_sha(&"A".repeat(40)));
        assert!(!is_commit_sha(&"a".repeat(41)));
    }

    #[test]
    fn environments_and_refs_refuse_hidden_characters() {
        assert_eq!(environment_problem("production"), None);
        assert_eq!(environment_problem("Production EU"), None);
        for bad in [
            "",
            " prod",
            "prod\0",
            "prod\u{202e}",
            "prod\u{200b}",
            "pro\td",
            "prod\\u{0}",
            &"p".repeat(256),
        ] {
            assert!(environment_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(ref_problem("refs/heads/main"), None);
        for bad in ["", "main\0", "ma in", "main\u{2066}", "main\u{1b}[2K"] {
            assert!(ref_problem(bad).is_some(), "{bad:?}");
        }
        // A ref is never rewritten (a short name may be a tag's or a branch's): only checked.
        assert_eq!(ref_problem("main"), None);
        assert_eq!(ref_problem("refs/tags/v1"), None);
    }

    #[test]
    fn stored_forms_never_pass_again() {
        for raw in ["prod\0", "prod\u{202e}", &"p".repeat(300), "prod\u{200b}"] {
            let stored = stored_form(raw);
            assert!(!stored.contains('\0'));
            assert!(stored.len() <= MAX_ENVIRONMENT_LEN);
            assert!(environment_problem(&stored).is_some(), "{stored:?}");
        }
    }

    #[test]
    fn markdown_escapes_mentions_links_and_markup() {
        assert_eq!(markdown("@org/team"), "\\@\u{200b}org/team");
        assert_eq!(markdown("&#64;org/team"), "\\&\\#64;org/team");
        // No `@` is followed directly by a character a login or team name starts with,
        // whatever surrounds it (escapes and invisible characters included).
        for text in [
            "@org/team",
            "x@admin",
            "@@admin",
            "\\@admin",
            "@\u{200b}admin",
            "@\u{0}admin",
            "@-x",
            "a @b @c",
            "＠admin",
        ] {
            let out = markdown(text);
            let chars: Vec<char> = out.chars().collect();
            for pair in chars.windows(2) {
                assert!(
                    !(pair[0] == '@' && (pair[1].is_ascii_alphanumeric() || pair[1] == '-' || pair[1] == '_')),
                    "{text:?} -> {out:?}"
                );
            }
            assert!(chars.iter().filter(|c| **c == '@').count() == out.matches("@\u{200b}").count());
        }
        assert_eq!(markdown("[x](https://e.example)"), "\\[x\\]\\(https://e\\.example\\)");
        assert_eq!(markdown("`a`*b*_c_<d>"), "\\`a\\`\\*b\\*\\_c\\_\\<d\\>");
        assert_eq!(markdown("a\0b"), "a\\\\x00b");
        assert_eq!(markdown("a\\b"), "a\\\\\\\\b");
    }

    #[test]
    fn commands_are_read_from_the_first_line() {
        assert_eq!(
            parse_command("\r\n  /jitgate approve req_1 looks good  \r\nmore"),
            Command::Decide {
                approve: true,
                request_id: "req_1".into(),
                text: "looks good".into()
            }
        );
        assert_eq!(
            parse_command("/jitgate deny req_2"),
            Command::Decide {
                approve: false,
                request_id: "req_2".into(),
                text: String::new()
            }
        );
        assert_eq!(parse_command("LGTM\n/jitgate approve req_1"), Command::NotACommand);
        assert_eq!(parse_command("/jitgateapprove req_1"), Command::NotACommand);
        assert_eq!(parse_command(""), Command::NotACommand);
        assert_eq!(parse_command("/jitgate"), Command::Usage);
        assert_eq!(parse_command("/jitgate merge req_1"), Command::Usage);
        assert_eq!(parse_command("/jitgate approve"), Command::Usage);
        for bad in [
            "/jitgate approve req_1 ok\u{202e}",
            "/jitgate approve\treq_1",
            "/jitgate approve req_1 \u{200b}",
            "/jitgate approve req_1 \0",
        ] {
            assert!(matches!(parse_command(bad), Command::Refused(_)), "{bad:?}");
        }
        let long = format!("/jitgate approve req_1 {}", "x".repeat(501));
        assert!(matches!(parse_command(&long), Command::Refused(_)));
    }

    #[test]
    fn path_segments_cannot_change_the_path() {
        assert_eq!(path_segment("app"), "app");
        assert_eq!(path_segment(".."), "%2E%2E");
        assert_eq!(path_segment("a/b"), "a%2Fb");
        assert_eq!(path_segment("е"), "%D0%B5");
    }
}
