//! Who may call what: the authorization table of every API operation, in one place.
//!
//! A caller holds one or more roles, derived from its identity (a person or CI job is a
//! `user`; membership of `auditors` or `admins` adds those roles; a service identity is a
//! `service` and nothing else unless it is also in a group above). For each operation the table
//! gives every role a [`Reach`]: nothing, the caller's own requests, those plus the ones they may
//! review, or everything. A caller's reach is the widest of its roles'.
//!
//! The server turns this table into types: a handler takes `Allowed<Op>`, which can only be
//! obtained from the table, so a route cannot forget to ask. Rules about one request in
//! particular (never approve your own, only a reviewer approves, only the holder extends) are
//! the state machine's and apply on top; `docs/authorization.md` shows both.

use crate::identity::{Identity, PrincipalKind};
use crate::machine;
use crate::model::Request;

/// The group whose members may read everything and the audit log.
pub const AUDITOR_GROUP: &str = "auditors";

/// What a caller is, as far as the table is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A person or a CI job: files requests, reviews what the policy makes them a reviewer of.
    User,
    /// A machine that enforces grants.
    Service,
    /// Reads everything, decides nothing.
    Auditor,
    /// Runs jitgate.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::User, Role::Service, Role::Auditor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Service => "service",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

/// The roles an identity holds (without allocating: this runs on every request).
pub fn roles(who: &Identity) -> impl Iterator<Item = Role> {
    let base = match who.kind {
        PrincipalKind::User => Role::User,
        PrincipalKind::Service => Role::Service,
    };
    let auditor = who.in_group(AUDITOR_GROUP).then_some(Role::Auditor);
    let admin = who.is_admin().then_some(Role::Admin);
    std::iter::once(base).chain(auditor).chain(admin)
}

/// How far an operation reaches for a caller. Ordered: each reaches at least as far as the
/// one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// Refused: 403.
    Nothing,
    /// Requests the caller filed and grants the caller holds; other requests do not exist
    /// for them (404, the same answer as an unknown id, so ids cannot be probed).
    Own,
    /// Own, plus requests the policy makes the caller a reviewer of.
    Involved,
    /// Everything.
    All,
}

impl Reach {
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Nothing => "—",
            Reach::Own => "own",
            Reach::Involved => "own + reviewable",
            Reach::All => "all",
        }
    }

    /// May a caller with this reach see `request` at all?
    pub fn covers(self, who: &Identity, request: &Request) -> bool {
        match self {
            Reach::Nothing => false,
            Reach::Own => request.requester == who.principal,
            Reach::Involved => request.requester == who.principal || machine::is_reviewer(request, who),
            Reach::All => true,
        }
    }
}

macro_rules! operations {
    ($($name:ident),* $(,)?) => {
        /// Every operation of the API that needs a caller.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation {
            $($name),*
        }

        impl Operation {
            pub const ALL: &'static [Operation] = &[$(Operation::$name),*];
        }

        /// The operations as types, one per row of the table, so that a request handler can
        /// name the row it needs in its signature (`Allowed<op::Check>` in the server).
        pub mod op {
            /// An operation of the authorization table.
            pub trait Op: Send + Sync + 'static {
                const OPERATION: super::Operation;
            }

            $(
                pub struct $name;
                impl Op for $name {
                    const OPERATION: super::Operation = super::Operation::$name;
                }
            )*
        }
    };
}

operations!(
    FileRequest,
    ReadRequests,
    ApproveRequest,
    DenyRequest,
    CancelRequest,
    ReviewBreakGlass,
    ReadGrants,
    RevokeGrant,
    ExtendGrant,
    FinishGrant,
    IssueSshCertificate,
    IssueCredentials,
    Check,
    UseGrant,
    ForwardAuth,
    ExplainPolicy,
    ReadAudit,
    ManageTokens,
    ManageKeys,
    ManageDatabase,
    Whoami,
);

/// One row of the table: an operation, its endpoints, and each role's reach.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub operation: Operation,
    pub what: &'static str,
    pub endpoints: &'static str,
    /// Reach for user, service, auditor, admin (the order of [`Role::ALL`]).
    pub reach: [Reach; 4],
}

use Reach::{All, Involved, Nothing, Own};

/// The authorization table. `docs/authorization.md` prints it; a test keeps the two equal.
pub const TABLE: &[Rule] = &[
    Rule {
        operation: Operation::FileRequest,
        what: "file a request (the policy decides which), and list what one may request",
        endpoints: "POST /v1/requests, GET /v1/resources",
        reach: [Own, Nothing, Own, Own],
    },
    Rule {
        operation: Operation::ReadRequests,
        what: "read and list requests",
        endpoints: "GET /v1/requests, GET /v1/requests/{id}",
        reach: [Involved, Nothing, All, All],
    },
    Rule {
        operation: Operation::ApproveRequest,
        what: "approve a request (never one's own; only as a reviewer the policy names)",
        endpoints: "POST /v1/requests/{id}/approve",
        reach: [Involved, Nothing, Involved, Involved],
    },
    Rule {
        operation: Operation::DenyRequest,
        what: "deny a request (reviewers; admins any)",
        endpoints: "POST /v1/requests/{id}/deny",
        reach: [Involved, Nothing, Involved, All],
    },
    Rule {
        operation: Operation::CancelRequest,
        what: "cancel a pending request (its requester; admins any)",
        endpoints: "POST /v1/requests/{id}/cancel",
        reach: [Own, Nothing, Own, All],
    },
    Rule {
        operation: Operation::ReviewBreakGlass,
        what: "give the review a break-glass request owes (its reviewers, never the one who broke the glass; admins)",
        endpoints: "POST /v1/requests/{id}/review",
        reach: [Involved, Nothing, Involved, All],
    },
    Rule {
        operation: Operation::ReadGrants,
        what: "list grants",
        endpoints: "GET /v1/grants",
        reach: [Own, Nothing, All, All],
    },
    Rule {
        operation: Operation::RevokeGrant,
        what: "revoke a grant, or end it when done (its holder, its request's reviewers; admins any)",
        endpoints: "POST /v1/grants/{id}/revoke",
        reach: [Involved, Nothing, Involved, All],
    },
    Rule {
        operation: Operation::ExtendGrant,
        what: "extend a grant (its holder, as the policy allows)",
        endpoints: "POST /v1/grants/{id}/extend",
        reach: [Own, Nothing, Own, Own],
    },
    Rule {
        operation: Operation::FinishGrant,
        what: "say a grant's task is done, ending it and recording the outcome (its holder)",
        endpoints: "POST /v1/grants/{id}/done",
        reach: [Own, Nothing, Own, Own],
    },
    Rule {
        operation: Operation::IssueSshCertificate,
        what: "get an OpenSSH certificate for a grant (its holder)",
        endpoints: "POST /v1/grants/{id}/ssh-cert",
        reach: [Own, Nothing, Own, Own],
    },
    Rule {
        operation: Operation::IssueCredentials,
        what: "get a grant's database credentials, once (its holder)",
        endpoints: "POST /v1/grants/{id}/credentials",
        reach: [Own, Nothing, Own, Own],
    },
    Rule {
        operation: Operation::Check,
        what: "ask for access decisions",
        endpoints: "POST /v1/check, POST /v1/check/batch",
        reach: [Nothing, All, Nothing, All],
    },
    Rule {
        operation: Operation::UseGrant,
        what: "use one's own grant (ask whether one's own grant covers an action, consuming a single-use one)",
        endpoints: "POST /v1/grants/use",
        reach: [Own, Nothing, Own, Own],
    },
    Rule {
        operation: Operation::ForwardAuth,
        what: "ask whether a web request a reverse proxy holds may pass (about the caller itself, or the user a listed proxy asserts)",
        endpoints: "ANY /v1/forward-auth, ANY /v1/forward-auth/{*rest}",
        reach: [Own, Own, Own, Own],
    },
    Rule {
        operation: Operation::ExplainPolicy,
        what: "explain the policy for a principal (users: themselves)",
        endpoints: "GET /v1/policy/explain",
        reach: [Own, Nothing, All, All],
    },
    Rule {
        operation: Operation::ReadAudit,
        what: "read and verify the audit log, its checkpoints and keys; sign its head",
        endpoints: "GET /v1/audit, GET /v1/audit/verify, GET /v1/audit/checkpoints, POST /v1/audit/checkpoints, GET /v1/audit/keys",
        reach: [Nothing, Nothing, All, All],
    },
    Rule {
        operation: Operation::ManageTokens,
        what: "create, list and revoke API tokens",
        endpoints: "POST /v1/tokens, GET /v1/tokens, POST /v1/tokens/{id}/revoke",
        reach: [Nothing, Nothing, Nothing, All],
    },
    Rule {
        operation: Operation::ManageKeys,
        what: "rotate the keys that sign grant tokens",
        endpoints: "POST /v1/keys/rotate",
        reach: [Nothing, Nothing, Nothing, All],
    },
    Rule {
        operation: Operation::ManageDatabase,
        what: "accept the database's history after it diverged from what a replica saw (a failover)",
        endpoints: "POST /v1/admin/database/accept-history",
        reach: [Nothing, Nothing, Nothing, All],
    },
    Rule {
        operation: Operation::Whoami,
        what: "see who the server takes the caller for: principal, groups, roles and credential",
        endpoints: "GET /v1/whoami",
        reach: [Own, Own, Own, Own],
    },
];

/// The table's row for an operation.
pub fn rule(operation: Operation) -> &'static Rule {
    // Every operation has exactly one row; the unit tests below hold that.
    TABLE.iter().find(|r| r.operation == operation).unwrap_or(&TABLE[0])
}

/// How far `operation` reaches for `who`: the widest of their roles' reach.
pub fn reach(who: &Identity, operation: Operation) -> Reach {
    let row = rule(operation);
    roles(who)
        .map(|role| row.reach[role_column(role)])
        .max()
        .unwrap_or(Reach::Nothing)
}

fn role_column(role: Role) -> usize {
    match role {
        Role::User => 0,
        Role::Service => 1,
        Role::Auditor => 2,
        Role::Admin => 3,
    }
}

/// Who the table lets do `operation`, for error messages: "user, admin".
pub fn who_may(operation: Operation) -> String {
    let row = rule(operation);
    let names: Vec<&str> = Role::ALL
        .iter()
        .filter(|r| row.reach[role_column(**r)] != Reach::Nothing)
        .map(|r| r.as_str())
        .collect();
    names.join(", ")
}

/// Who may do `operation`, in words a sentence can end with: "admins", "auditors and admins",
/// "users, services, auditors and admins".
pub fn who_may_in_words(operation: Operation) -> String {
    let row = rule(operation);
    let names: Vec<String> = Role::ALL
        .iter()
        .filter(|r| row.reach[role_column(**r)] != Reach::Nothing)
        .map(|r| format!("{}s", r.as_str()))
        .collect();
    match names.split_last() {
        None => "no one".to_string(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The table as Markdown, as `docs/authorization.md` shows it.
pub fn table_markdown() -> String {
    let mut out =
        String::from("| operation | endpoints | user | service | auditor | admin |\n|---|---|---|---|---|---|\n");
    for row in TABLE {
        out.push_str(&format!("| {} | `{}` |", row.what, row.endpoints.replace(", ", "`, `")));
        for reach in row.reach {
            out.push_str(&format!(" {} |", reach.as_str()));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn every_operation_has_exactly_one_row() {
        assert_eq!(TABLE.len(), Operation::ALL.len());
        for &op in Operation::ALL {
            assert_eq!(TABLE.iter().filter(|r| r.operation == op).count(), 1, "{op:?}");
        }
    }

    #[test]
    fn a_service_may_only_check() {
        let svc = Identity {
            kind: PrincipalKind::Service,
            ..Identity::user("svc", &[])
        };
        for &op in Operation::ALL {
            // Forward auth answers about its caller (or the user a listed proxy asserts), so
            // every identity may ask it; it reads or changes nothing else.
            let expected = match op {
                Operation::Check => Reach::All,
                Operation::ForwardAuth => Reach::Own,
                // Every caller may ask who it is.
                Operation::Whoami => Reach::Own,
                _ => Reach::Nothing,
            };
            assert_eq!(reach(&svc, op), expected, "{op:?}");
        }
    }

    #[test]
    fn roles_add_up_to_the_widest_reach() {
        let auditor = Identity::user("ann", &["auditors"]);
        assert_eq!(reach(&auditor, Operation::ReadAudit), Reach::All);
        assert_eq!(reach(&auditor, Operation::ApproveRequest), Reach::Involved);
        assert_eq!(reach(&auditor, Operation::ManageTokens), Reach::Nothing);
        let user = Identity::user("alice", &["dev"]);
        assert_eq!(reach(&user, Operation::ReadAudit), Reach::Nothing);
        assert_eq!(reach(&user, Operation::Check), Reach::Nothing);
        assert_eq!(reach(&user, Operation::ReadRequests), Reach::Involved);
        let admin = Identity::user("root", &["admins"]);
        assert_eq!(reach(&admin, Operation::ManageTokens), Reach::All);
        assert_eq!(who_may(Operation::ManageTokens), "admin");
        assert_eq!(who_may_in_words(Operation::ManageTokens), "admins");
        assert_eq!(who_may_in_words(Operation::UseGrant), "users, auditors and admins");
        assert_eq!(who_may(Operation::Check), "service, admin");
    }

    #[test]
    fn people_use_their_own_grants_and_services_check() {
        for who in [
            Identity::user("alice", &["dev"]),
            Identity::user("ann", &["auditors"]),
            Identity::user("root", &["admins"]),
        ] {
            assert_eq!(reach(&who, Operation::UseGrant), Reach::Own, "{who:?}");
        }
        let svc = Identity {
            kind: PrincipalKind::Service,
            ..Identity::user("svc", &[])
        };
        assert_eq!(reach(&svc, Operation::UseGrant), Reach::Nothing);
        assert_eq!(who_may(Operation::UseGrant), "user, auditor, admin");
    }

    #[test]
    fn every_authenticated_identity_may_ask_forward_auth() {
        let svc = Identity {
            kind: PrincipalKind::Service,
            ..Identity::user("svc-edge", &[])
        };
        for who in [
            Identity::user("alice", &["dev"]),
            Identity::user("ann", &["auditors"]),
            Identity::user("root", &["admins"]),
            svc,
        ] {
            assert_eq!(reach(&who, Operation::ForwardAuth), Reach::Own, "{who:?}");
        }
        assert_eq!(who_may(Operation::ForwardAuth), "user, service, auditor, admin");
    }
}

#[cfg(test)]
mod docs {
    /// docs/authorization.md prints the table; this keeps the two from drifting apart. To
    /// update the page, paste the output of `table_markdown()` (printed on failure).
    #[test]
    fn the_documented_table_is_the_enforced_table() {
        let page = include_str!("../../../../docs/authorization.md");
        let table = super::table_markdown();
        assert!(page.contains(&table), "docs/authorization.md must contain:\n{table}");
    }
}
