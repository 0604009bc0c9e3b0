//! What the PostgreSQL store needs to live through a failover, kept apart from the I/O so it
//! can be tested alone: libpq-style URLs naming several hosts (`postgres://h1:5432,h2:5432/db
//! ?target_session_attrs=read-write`), and the witness: what this process has seen of the
//! database's history (the newest audit event it wrote or heard of, and the newest timeline
//! of a writable node it used), against which every node it connects to and every commit is
//! held. A node whose log is behind or beside what was seen lost acknowledged work (a
//! failover to a standby that lacked it) or is a second writable primary (split brain).

use crate::StoreError;
use std::time::Duration;

/// Which node a connection may use, as libpq's `target_session_attrs` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionAttrs {
    /// Whichever answers first (libpq's default).
    Any,
    /// One that accepts writes (`transaction_read_only` off).
    ReadWrite,
    /// One not in recovery.
    Primary,
}

impl SessionAttrs {
    fn parse(value: &str) -> Result<SessionAttrs, StoreError> {
        match value {
            "any" => Ok(SessionAttrs::Any),
            "read-write" => Ok(SessionAttrs::ReadWrite),
            "primary" => Ok(SessionAttrs::Primary),
            other => Err(StoreError::Url(format!(
                "target_session_attrs={other} is not supported: jitgate writes, so use read-write, primary or any"
            ))),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SessionAttrs::Any => "any",
            SessionAttrs::ReadWrite => "read-write",
            SessionAttrs::Primary => "primary",
        }
    }

    /// Does a node in this state suit? (`None`: why not.)
    pub(crate) fn refusal(self, node: &NodeState) -> Option<&'static str> {
        match self {
            SessionAttrs::Any => None,
            SessionAttrs::ReadWrite if node.in_recovery => Some("in recovery (a standby)"),
            SessionAttrs::ReadWrite if node.read_only => Some("read-only (default_transaction_read_only)"),
            SessionAttrs::Primary if node.in_recovery => Some("in recovery (a standby)"),
            _ => None,
        }
    }
}

/// A PostgreSQL URL taken apart where sqlx cannot read it: the host list and the parameters
/// jitgate reads itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The URL with only its first host and without the parameters below: sqlx reads the
    /// rest (user, password, database, TLS...).
    pub url: String,
    /// Every host in order, with its port (5432 when not given).
    pub hosts: Vec<(String, u16)>,
    pub attrs: SessionAttrs,
    /// How long to try one host before the next (libpq's `connect_timeout`, in seconds).
    pub connect_timeout: Duration,
}

/// libpq's default port.
const DEFAULT_PORT: u16 = 5432;
/// How long one host is tried when the URL does not say.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl Target {
    /// Take `url` apart. Errors name the part at fault, never the password.
    pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
        let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
        let rest = &url[scheme_end..];
        // The user information ends at the last `@` before the path (a password may hold
        // raw characters; see database_url.rs).
        // (Only before the query: a parameter may hold an `@`, `application_name=ops@team`.)
        let path_from = |s: &str| s.find(['/', '?']).unwrap_or(s.len());
        let before_query = rest.find('?').unwrap_or(rest.len());
        let host_start = rest[..before_query].rfind('@').map_or(0, |at| at + 1);
        let after_userinfo = &rest[host_start..];
        let host_end = host_start + path_from(after_userinfo);
        let host_list = &rest[host_start..host_end];
        let tail = &rest[host_end..];
        let hosts = host_list
            .split(',')
            .enumerate()
            .map(|(n, host)| parse_host(n + 1, host))
            .collect::<Result<Vec<_>, _>>()?;
        let (path, query) = match tail.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (tail, None),
        };
        let mut attrs = SessionAttrs::Any;
        let mut connect_timeout = DEFAULT_CONNECT_TIMEOUT;
        let mut kept: Vec<&str> = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("target_session_attrs", value)) => attrs = SessionAttrs::parse(value)?,
                Some(("connect_timeout", value)) => {
                    let seconds: u64 = value.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        StoreError::Url(format!(
                            "connect_timeout={value} is not a whole number of seconds above 0 (e.g. connect_timeout=2)"
                        ))
                    })?;
                    connect_timeout = Duration::from_secs(seconds);
                }
                _ => kept.push(pair),
            }
        }
        let (first_host, first_port) = &hosts[0];
        let shown_host = if first_host.contains(':') {
            format!("[{first_host}]")
        } else {
            first_host.clone()
        };
        let mut single = format!(
            "{}{}{shown_host}:{first_port}{path}",
            &url[..scheme_end],
            &rest[..host_start]
        );
        if !kept.is_empty() {
            single.push('?');
            single.push_str(&kept.join("&"));
        }
        Ok(Target {
            url: single,
            hosts,
            attrs,
            connect_timeout,
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`: the `number`th of the list. Errors name it by
/// its place, not its text (a URL written wrongly may put part of a password there).
fn parse_host(number: usize, text: &str) -> Result<(String, u16), StoreError> {
    let bad = |why: &str| {
        StoreError::Url(format!(
            "host {number} of the host list {why}; write HOST:PORT,HOST:PORT"
        ))
    };
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("has no closing ]"))?;
        (host, after.strip_prefix(':'))
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(bad("is empty"));
    }
    if host.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("holds a space or control character"));
    }
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(port) => port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("has no valid port"))?,
    };
    Ok((host.to_string(), port))
}

/// What one node said of itself when connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeState {
    pub in_recovery: bool,
    pub read_only: bool,
    /// Its timeline, when it is a primary (a standby's is not asked).
    pub timeline: Option<u32>,
}

/// A place in the audit log: a sequence number and the hash of the event there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub seq: i64,
    pub hash: String,
}

/// What this process has seen of the database's history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Witness {
    /// The newest event written or heard of.
    pub head: Option<Head>,
    /// The newest timeline of a writable node used.
    pub timeline: u32,
}

/// What the database shows at the place the witness knows, read when its head is past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AtWitness {
    /// Not asked: the database's head is at or before the witness's.
    NotRead,
    /// The event at the witness's seq has this hash.
    Hash(String),
    /// No event there: deleted by retention (older than the oldest kept), which proves nothing.
    Archived,
}

impl Witness {
    /// Is a node on `timeline` one this process may use? A lower timeline than one already
    /// written on is an old primary that kept running (or was started again) after a standby
    /// was promoted over it.
    pub(crate) fn timeline_refusal(&self, timeline: Option<u32>) -> Option<String> {
        let timeline = timeline?;
        (timeline < self.timeline).then(|| {
            format!(
                "the node is on timeline {timeline}, behind timeline {} this replica has written on: \
                 an old primary running writable beside the promoted one (split brain); fence it",
                self.timeline
            )
        })
    }

    /// Does the database's log, whose newest event is `head`, continue the history seen up
    /// to `seen`? `seen` must be what the witness held *before* the log was read: whatever
    /// it held then had committed, so the log cannot be behind it; a newer head adopted while
    /// the log was read (another commit) proves nothing about what was read.
    pub(crate) fn history_refusal(seen: &Head, head: Option<&Head>, at_witness: &AtWitness) -> Option<String> {
        let short = |hash: &str| hash.chars().take(16).collect::<String>();
        let Some(head) = head else {
            return Some(format!(
                "this replica saw audit event {} (hash {}…), and the database's log is empty: \
                 acknowledged work is gone (a failover to a standby that lacked it?)",
                seen.seq,
                short(&seen.hash)
            ));
        };
        if head.seq < seen.seq {
            return Some(format!(
                "this replica saw audit event {} (hash {}…), and the database's log ends at {}: \
                 events {}–{} of acknowledged work are gone (a failover to a standby that lacked them?)",
                seen.seq,
                short(&seen.hash),
                head.seq,
                head.seq + 1,
                seen.seq
            ));
        }
        let found = if head.seq == seen.seq {
            Some(head.hash.as_str())
        } else {
            match at_witness {
                AtWitness::Hash(hash) => Some(hash.as_str()),
                AtWitness::Archived | AtWitness::NotRead => None,
            }
        };
        match found {
            Some(hash) if hash != seen.hash => Some(format!(
                "audit event {} has hash {}… in the database, and this replica saw {}… there: \
                 the log forked (two writable primaries, or a failover that lost work and went on)",
                seen.seq,
                short(hash),
                short(&seen.hash)
            )),
            _ => None,
        }
    }

    /// Take a newer place in the log as seen (an older one changes nothing).
    pub(crate) fn adopt(&mut self, head: Head) {
        if self.head.as_ref().is_none_or(|seen| head.seq > seen.seq) {
            self.head = Some(head);
        }
    }

    pub(crate) fn adopt_timeline(&mut self, timeline: Option<u32>) {
        if let Some(timeline) = timeline {
            self.timeline = self.timeline.max(timeline);
        }
    }
}

/// The timeline in a WAL file name (its first eight hex digits).
pub(crate) fn timeline_of_wal_file(name: &str) -> Option<u32> {
    u32::from_str_radix(name.get(..8)?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lists_come_apart_and_sqlx_gets_one_host() {
        let t = Target::parse(
            "postgres://u:p@ss@h1:5701,h2:5702,[::1]:5703,h4/db?sslmode=disable&target_session_attrs=read-write&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            t.hosts,
            vec![
                ("h1".to_string(), 5701),
                ("h2".to_string(), 5702),
                ("::1".to_string(), 5703),
                ("h4".to_string(), 5432)
            ]
        );
        assert_eq!(t.attrs, SessionAttrs::ReadWrite);
        assert_eq!(t.connect_timeout, Duration::from_secs(3));
        assert_eq!(t.url, "postgres://u:p@ss@h1:5701/db?sslmode=disable");
        let one = Target::parse("postgresql://db.example/j").unwrap();
        assert_eq!(one.hosts, vec![("db.example".to_string(), 5432)]);
        assert_eq!(one.attrs, SessionAttrs::Any);
        assert_eq!(one.url, "postgresql://db.example:5432/j");
        assert_eq!(
            Target::parse("postgres://h1:1,h2:2/db?target_session_attrs=primary")
                .unwrap()
                .attrs,
            SessionAttrs::Primary
        );
        // An `@` in a parameter is not the end of the user information.
        let at_in_query = Target::parse("postgres://u:pw@db.internal/j?application_name=ops@team").unwrap();
        assert_eq!(at_in_query.hosts, vec![("db.internal".to_string(), 5432)]);
        assert_eq!(
            at_in_query.url,
            "postgres://u:pw@db.internal:5432/j?application_name=ops@team"
        );
    }

    #[test]
    fn bad_host_lists_and_parameters_are_named() {
        let error = |url: &str| Target::parse(url).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error("postgres://h1:5701,,h2/db").contains("is empty"));
        assert!(error("postgres://h1:x/db").contains("no valid port"));
        assert!(error("postgres://h1:0/db").contains("no valid port"));
        assert!(error("postgres://[::1/db").contains("no closing ]"));
        assert!(error("postgres://h\u{0}1/db").contains("control"));
        assert!(error("postgres://h1/db?target_session_attrs=standby").contains("read-write, primary or any"));
        assert!(error("postgres://h1/db?connect_timeout=0").contains("connect_timeout=0"));
        // The password is never repeated, nor the text of a host that may hold part of one.
        assert!(!error("postgres://u:s3cret@h1:x/db").contains("s3cret"));
        let misplaced = error("postgres://u@h1:s3cret/db");
        assert!(
            misplaced.contains("host 1 of the host list has no valid port"),
            "{misplaced}"
        );
        assert!(!misplaced.contains("s3cret"), "{misplaced}");
    }

    #[test]
    fn what_suits_each_target_session_attrs() {
        let standby = NodeState {
            in_recovery: true,
            read_only: true,
            timeline: None,
        };
        let read_only_primary = NodeState {
            in_recovery: false,
            read_only: true,
            timeline: Some(1),
        };
        assert!(SessionAttrs::ReadWrite.refusal(&standby).is_some());
        assert!(SessionAttrs::Primary.refusal(&standby).is_some());
        assert!(SessionAttrs::ReadWrite.refusal(&read_only_primary).is_some());
        assert!(SessionAttrs::Primary.refusal(&read_only_primary).is_none());
        assert!(SessionAttrs::Any.refusal(&standby).is_none());
    }

    fn head(seq: i64, hash: &str) -> Head {
        Head {
            seq,
            hash: hash.to_string(),
        }
    }

    #[test]
    fn the_witness_refuses_a_rewound_or_forked_log_and_takes_one_that_goes_on() {
        let mut w = Witness::default();
        w.adopt(head(10, "aaaa"));
        w.adopt(head(7, "older"));
        assert_eq!(w.head, Some(head(10, "aaaa")));
        let seen = w.head.clone().unwrap();
        // The same head, or a later one that passes through it.
        assert_eq!(
            Witness::history_refusal(&seen, Some(&head(10, "aaaa")), &AtWitness::NotRead),
            None
        );
        assert_eq!(
            Witness::history_refusal(&seen, Some(&head(12, "cccc")), &AtWitness::Hash("aaaa".into())),
            None
        );
        assert_eq!(
            Witness::history_refusal(&seen, Some(&head(12, "cccc")), &AtWitness::Archived),
            None
        );
        // Behind: acknowledged events are gone.
        let behind = Witness::history_refusal(&seen, Some(&head(8, "bbbb")), &AtWitness::NotRead).unwrap();
        assert!(
            behind.contains("ends at 8") && behind.contains("events 9–10"),
            "{behind}"
        );
        assert!(Witness::history_refusal(&seen, None, &AtWitness::NotRead)
            .unwrap()
            .contains("empty"));
        // Beside: the same seq, or a later head that does not pass through it.
        assert!(
            Witness::history_refusal(&seen, Some(&head(10, "zzzz")), &AtWitness::NotRead)
                .unwrap()
                .contains("forked")
        );
        assert!(
            Witness::history_refusal(&seen, Some(&head(11, "cccc")), &AtWitness::Hash("zzzz".into()))
                .unwrap()
                .contains("forked")
        );
    }

    #[test]
    fn an_older_timeline_is_an_old_primary() {
        let mut w = Witness::default();
        w.adopt_timeline(Some(2));
        w.adopt_timeline(Some(1));
        assert_eq!(w.timeline, 2);
        assert!(w.timeline_refusal(Some(1)).unwrap().contains("split brain"));
        assert_eq!(w.timeline_refusal(Some(2)), None);
        assert_eq!(w.timeline_refusal(None), None);
        assert_eq!(timeline_of_wal_file("000000020000000000000003"), Some(2));
        assert_eq!(timeline_of_wal_file("0000000A0000000000000003"), Some(10));
        assert_eq!(timeline_of_wal_file("short"), None);
    }
}
