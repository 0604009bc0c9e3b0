//! The policy's part of jitgate as a GitHub App (issue #26): `github_user` in directory.toml
//! (checked, found ignoring ASCII case only), `policy diff` showing who may decide from GitHub
//! or Slack, and the diff as a pull-request comment that nothing in the policy can make read
//! as something else.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jitgate_policy::diff::{self, ChangeKind, Link, MARKDOWN_MARKER, MARKDOWN_MAX_CHARS};
use jitgate_policy::{github_login_problem, Policy, PolicyError};
use std::fmt::Write as _;

fn directory(entries: &[(&str, &str)]) -> String {
    let mut text = String::new();
    for (name, extra) in entries {
        writeln!(text, "[[principal]]\nname = \"{name}\"\ngroups = [\"sre\"]\n{extra}").unwrap();
    }
    text
}

fn load(directory: &str) -> Result<Policy, Vec<PolicyError>> {
    Policy::from_texts(directory, "", None, &[])
}

#[test]
fn github_users_are_found_ignoring_ascii_case_only() {
    let policy = load(&directory(&[
        ("bob", "github_user = \"Octo-Bob\""),
        ("eve", "github_user = \"eve42\""),
        ("nobody", ""),
    ]))
    .unwrap();
    let rules = policy.rules();
    for login in ["Octo-Bob", "octo-bob", "OCTO-BOB"] {
        assert_eq!(rules.principal_by_github_user(login).unwrap().identity.principal, "bob");
    }
    assert_eq!(rules.principal("bob").unwrap().github_user.as_deref(), Some("Octo-Bob"));
    assert_eq!(
        rules.principal_by_github_user("EVE42").unwrap().identity.principal,
        "eve"
    );
    // Only ASCII case: look-alikes, invisible and control characters, NUL, spaces and
    // prefixes are other logins.
    for other in [
        "octo-bоb",  // Cyrillic о
        "ｏcto-bob", // full-width o
        "octo-bob\u{200b}",
        "\u{202e}octo-bob",
        "octo-bob\u{0}",
        " octo-bob",
        "octo-bob ",
        "octo-bo",
        "octo",
        "",
        "octo_bob",
        "octobob",
        "ＥＶＥ42",
    ] {
        assert!(rules.principal_by_github_user(other).is_none(), "{other:?}");
    }
}

#[test]
fn github_users_must_be_github_logins_with_their_line() {
    let refused = [
        ("\"\"", "is empty"),
        ("\"-octo\"", "begins or ends with a hyphen"),
        ("\"octo-\"", "begins or ends with a hyphen"),
        ("\"octo--cat\"", "two hyphens in a row"),
        // `octo_cat` is a managed user's login (`_` and a short code); a second `_` is not.
        ("\"octo_ca_t\"", "holds '_'"),
        ("\"octo_\"", "ends in '_' and 0 characters"),
        ("\"octo cat\"", "holds ' '"),
        ("\"octo.cat\"", "holds '.'"),
        ("\"@octocat\"", "holds '@'"),
        ("\"оctocat\"", "holds 'о' (U+043E)"),
        ("\"octocat\\u200b\"", "U+200B"),
        ("\"octo\\u202ecat\"", "U+202E"),
        ("\"octo\\u0000cat\"", "U+0000"),
        ("\"octo\\u001bcat\"", "U+001B"),
        ("\"octo\\tcat\"", "U+0009"),
        ("\"ｏctocat\"", "U+FF4F"),
        (
            &format!("\"{}\"", "a".repeat(40)),
            "40 characters long: a GitHub login has at most 39",
        ),
        (&format!("\"{}\"", "a".repeat(100_000)), "100000 characters long"),
        ("42", "invalid type"),
    ];
    for (value, expected) in refused {
        let text = format!("[[principal]]\nname = \"alice\"\n\n[[principal]]\nname = \"bob\"\ngithub_user = {value}\n");
        let errors = load(&text).err().unwrap_or_else(|| panic!("{value} was accepted"));
        assert!(
            errors.iter().any(|e| e.file == "directory.toml"
                && e.message.contains(expected)
                && (e.line == 4 || expected == "invalid type")),
            "{value}: expected '{expected}' at directory.toml:4 in {errors:?}"
        );
        // The message never carries the hidden character itself: it is written as an escape.
        for e in &errors {
            assert!(
                !e.message
                    .chars()
                    .any(|c| c.is_control() || c == '\u{200b}' || c == '\u{202e}'),
                "{e}"
            );
        }
    }
    // The longest login GitHub allows, and single inner hyphens.
    let longest = "a".repeat(39);
    for good in [longest.as_str(), "a", "0", "a-b-c", "Octo-Cat-2"] {
        assert_eq!(github_login_problem(good), None, "{good}");
        load(&directory(&[("bob", &format!("github_user = \"{good}\""))])).unwrap();
    }
}

#[test]
fn a_managed_users_login_has_the_enterprises_short_code() {
    // GitHub Enterprise Managed Users: `alice_acme`.
    let longest = format!("{}_{}", "a".repeat(39), "B".repeat(20));
    for good in ["alice_acme", "Octo-Cat_ACME2", "a_1", longest.as_str()] {
        assert_eq!(github_login_problem(good), None, "{good}");
        load(&directory(&[("bob", &format!("github_user = \"{good}\""))])).unwrap();
    }
    let too_long_code = format!("alice_{}", "c".repeat(21));
    let too_long_name = format!("{}_acme", "a".repeat(40));
    for bad in [
        "alice_",
        "_acme",
        "alice__acme",
        "alice_ac_me",
        "alice_ac-me",
        "alice-_acme",
        "alice_acmе",
        "alice_\u{200b}acme",
        "alice_acme\u{0}",
        "alice_ac me",
        too_long_code.as_str(),
        too_long_name.as_str(),
    ] {
        assert!(github_login_problem(bad).is_some(), "{bad:?}");
        // As a TOML basic string: anything but printable ASCII as `\uXXXX`.
        let escaped: String = bad
            .chars()
            .map(|c| match c {
                ' '..='~' if c != '"' && c != '\\' => c.to_string(),
                c => format!("\\u{:04X}", c as u32),
            })
            .collect();
        let errors = load(&directory(&[("bob", &format!("github_user = \"{escaped}\""))])).unwrap_err();
        assert!(errors[0].message.contains("github_user"), "{bad:?}: {errors:?}");
    }
    // Compared ignoring case, short code included: one login, one principal.
    let errors = load(&directory(&[
        ("bob", "github_user = \"alice_acme\""),
        ("eve", "github_user = \"Alice_ACME\""),
    ]))
    .unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[test]
fn a_github_user_belongs_to_one_principal_whatever_its_case() {
    let text = directory(&[
        ("bob", "github_user = \"octocat\""),
        ("eve", "github_user = \"OctoCat\""),
        ("mia", "github_user = \"other\""),
    ]);
    let errors = load(&text).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].file, "directory.toml");
    assert_eq!(errors[0].line, 5, "{errors:?}");
    assert!(
        errors[0].message.contains(
            "github_user OctoCat is given to both 'bob' and 'eve' (GitHub logins are compared ignoring case)"
        ),
        "{errors:?}"
    );
    // The same name as a Slack user or a principal is no clash: other namespaces.
    load(&directory(&[
        ("octocat", "github_user = \"octocat\"\nslack_user = \"U0OCTO\""),
        ("bob", "github_user = \"U0OCTO\""),
    ]))
    .unwrap();
}

#[test]
fn diff_shows_who_may_decide_from_github_and_slack() {
    let before = load(&directory(&[
        ("bob", "github_user = \"octo-bob\"\nslack_user = \"U0BOB\""),
        ("eve", "github_user = \"eve\""),
        ("gone", "github_user = \"gone-user\""),
        ("same", "github_user = \"Same-Case\""),
    ]))
    .unwrap();
    let after = load(&directory(&[
        ("bob", "github_user = \"mallory\"\nslack_user = \"U0MALLORY\""),
        ("eve", ""),
        ("new", "github_user = \"newbie\""),
        ("same", "github_user = \"same-case\""),
    ]))
    .unwrap();
    let report = diff::review(&before, &after);
    assert!(!report.is_unchanged());
    type Row<'a> = (&'a str, Link, ChangeKind, Option<&'a str>, Option<&'a str>);
    let links: Vec<Row<'_>> = report
        .links
        .iter()
        .map(|l| {
            (
                l.principal.as_str(),
                l.link,
                l.kind,
                l.before.as_deref(),
                l.after.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        links,
        vec![
            (
                "bob",
                Link::GithubUser,
                ChangeKind::Changed,
                Some("octo-bob"),
                Some("mallory")
            ),
            (
                "bob",
                Link::SlackUser,
                ChangeKind::Changed,
                Some("U0BOB"),
                Some("U0MALLORY")
            ),
            ("eve", Link::GithubUser, ChangeKind::Lost, Some("eve"), None),
            ("gone", Link::GithubUser, ChangeKind::Lost, Some("gone-user"), None),
            ("new", Link::GithubUser, ChangeKind::Gained, None, Some("newbie")),
        ],
        "a change of case only is the same GitHub account"
    );
    let text = report.to_string();
    assert!(
        text.contains(
            "~ bob: GitHub user mallory now acts as bob from GitHub, instead of GitHub user octo-bob (groups sre)"
        ),
        "{text}"
    );
    assert!(
        text.contains("+ new: GitHub user newbie now acts as new from GitHub"),
        "{text}"
    );
    assert!(
        text.contains("- eve: GitHub user eve no longer acts as eve from GitHub"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["links"][0]["link"], "github_user");
    assert_eq!(json["links"][0]["after"], "mallory");

    // Relinking an account alone is a change a reviewer must see (the exit status is 1).
    let only_link = diff::review(
        &load(&directory(&[("bob", "github_user = \"octo-bob\"")])).unwrap(),
        &load(&directory(&[("bob", "github_user = \"mallory\"")])).unwrap(),
    );
    assert!(only_link.changes.is_empty());
    assert!(!only_link.is_unchanged());
    // Nothing changed: nothing reported.
    let same = load(&directory(&[("bob", "github_user = \"octo-bob\"")])).unwrap();
    let unchanged = diff::review(&same, &same);
    assert!(unchanged.is_unchanged() && unchanged.links.is_empty());
    assert!(unchanged.markdown().contains("**No effective change in access.**"));
}

/// A catalog whose names try to turn the comment against its readers: mentions, links, HTML,
/// table breakers, a heading, an emoji shortcode.
const HOSTILE: &[&str] = &[
    "@acme/admins",
    "[approved](https://evil.example/)",
    "<img/src=x/onerror=alert(1)>",
    "db|extra|cells",
    "#No-effective-change-in-access",
    "**bold**_it_~strike~`code`",
    "https://evil.example/x",
    ":shipit:",
    "#42",
];

fn hostile_policies() -> (Policy, Policy) {
    let mut resources = String::new();
    for (i, name) in HOSTILE.iter().enumerate() {
        let name = name.replace('"', "\\\"");
        writeln!(resources, "[[resource]]\nname = \"{name}\"\nkind = \"k{i}\"\n").unwrap();
    }
    let workflows = |requesters: &str| {
        let mut text = String::new();
        for name in HOSTILE {
            let name = name.replace('"', "\\\"");
            writeln!(
                text,
                "[[workflow]]\nresource = \"{name}\"\naction = \"read\"\nrequesters = [{requesters}]\nsteps = [{{ group = \"sre\", approvals = 1 }}]\n"
            )
            .unwrap();
        }
        text
    };
    let directory = "[[principal]]\nname = \"@acme/security|x\"\ngroups = [\"sre\"]\ngithub_user = \"octo\"\n\n[[principal]]\nname = \"dev1\"\ngroups = [\"dev\"]\n";
    let directory_after = directory.replace("github_user = \"octo\"", "github_user = \"mallory\"");
    let resources = [("resources.toml".to_string(), resources)];
    let cedar_after = vec![(
        "policy.cedar".to_string(),
        "@id(\"```` @acme/admins\")\npermit(principal, action == Action::\"auto_approve\", resource)\nwhen { context.reason like \"*```*\" };\n"
            .to_string(),
    )];
    let old = Policy::from_texts_with_catalog(directory, &workflows("\"sre\""), None, &[], &resources).unwrap();
    let new = Policy::from_texts_with_catalog(
        &directory_after,
        &workflows("\"sre\", \"dev\""),
        None,
        &cedar_after,
        &resources,
    )
    .unwrap();
    (old, new)
}

#[test]
fn the_markdown_comment_escapes_every_name_from_the_policy() {
    let (old, new) = hostile_policies();
    let report = diff::review(&old, &new);
    assert!(!report.is_unchanged());
    let md = report.markdown();
    assert!(md.starts_with(MARKDOWN_MARKER), "{md}");
    assert!(md.chars().count() <= MARKDOWN_MAX_CHARS);
    // Outside code, no name from the policy appears unescaped: no mention, no link, no
    // HTML, no extra table cell, no heading of its own.
    let outside_code = strip_code(&md);
    for bad in [
        "@acme",
        "](https",
        "<img",
        "db|extra",
        "#No-effective",
        "**bold**",
        "https://evil",
        ":shipit:",
        "#42",
        "`code`",
    ] {
        assert!(!has_unescaped(&outside_code, bad), "{bad:?} unescaped in:\n{md}");
    }
    assert!(md.contains("\\@acme/admins"), "{md}");
    assert!(md.contains("\\[approved\\]\\(https\\://evil\\.example/\\)"), "{md}");
    assert!(md.contains("db\\|extra\\|cells"), "{md}");
    // Every table row has exactly the table's seven cells.
    for row in md.lines().filter(|l| l.starts_with("| ")) {
        assert_eq!(unescaped_pipes(row), 8, "{row}");
    }
    // The relinked GitHub account is shown in a code span, who it acts for escaped.
    assert!(
        md.contains("**\\@acme/security\\|x** `github_user`: `octo` → `mallory`"),
        "{md}"
    );
    // The Cedar policy holding four backticks sits in a longer fence it cannot close.
    assert!(md.contains("  `````cedar\n"), "{md}");
}

#[test]
fn the_markdown_comment_fits_in_a_github_comment() {
    // A hundred long Cedar policies added: whole sections only, the rest counted and left to
    // the job's log.
    let directory = directory(&[("bob", "")]);
    let cedar: Vec<(String, String)> = (0..100)
        .map(|i| {
            (
                format!("p{i:03}.cedar"),
                format!(
                    "@id(\"p{i}\")\nforbid(principal, action == Action::\"request\", resource)\nwhen {{ context.reason like \"*{i}-{}*\" }};\n",
                    "x".repeat(1500)
                ),
            )
        })
        .collect();
    let old = Policy::from_texts(&directory, "", None, &[]).unwrap();
    let new = Policy::from_texts(&directory, "", None, &cedar).unwrap();
    let report = diff::review(&old, &new);
    assert_eq!(report.cedar_policies.len(), 100);
    let md = report.markdown();
    assert!(md.chars().count() <= MARKDOWN_MAX_CHARS, "{}", md.chars().count());
    assert!(md.contains("100 Cedar policies changed"), "{md:.400}");
    assert!(
        md.contains("more sections do not fit in a comment"),
        "{}",
        &md[md.len() - 400..]
    );
    // No fence is left open: the fences pair up.
    let fences = md.lines().filter(|l| l.trim_start().starts_with("```")).count();
    assert_eq!(fences % 2, 0);
}

/// The Markdown with fenced code blocks and code spans removed.
fn strip_code(md: &str) -> String {
    let mut out = String::new();
    let mut fence: Option<String> = None;
    for line in md.lines() {
        let trimmed = line.trim_start();
        let ticks: String = trimmed.chars().take_while(|c| *c == '`').collect();
        match &fence {
            Some(open) if trimmed.starts_with(open.as_str()) && trimmed.trim_end() == open => fence = None,
            Some(_) => {}
            None if ticks.len() >= 3 => fence = Some(ticks),
            None => {
                let mut inside = false;
                for c in line.chars() {
                    if c == '`' {
                        inside = !inside;
                    } else if !inside {
                        out.push(c);
                    }
                }
                out.push('\n');
            }
        }
    }
    out
}

/// Whether `needle` occurs in `text` without a backslash before it.
fn has_unescaped(text: &str, needle: &str) -> bool {
    text.match_indices(needle)
        .any(|(at, _)| at == 0 || !text[..at].ends_with('\\'))
}

fn unescaped_pipes(row: &str) -> usize {
    let mut count = 0;
    let mut escaped = false;
    for c in row.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            '|' if !escaped => count += 1,
            _ => escaped = false,
        }
    }
    count
}
