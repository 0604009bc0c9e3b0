//! `jitgate policy diff --output markdown`: the report as a pull-request comment
//! (docs/policy-review.md posts it with `gh pr comment --body-file`).
//!
//! Everything named in it comes from the pull request under review: resource names, labels,
//! Cedar text, GitHub logins. The author of a malicious change controls all of it, and the
//! comment is where the reviewers read what it does, so nothing in it may render as something
//! else: every such text is escaped for Markdown (a backslash before each character Markdown
//! gives a meaning, `@` included, so a name cannot mention a team, open a link or close the
//! table), control, invisible and bidi characters are written as visible escapes (a Cedar
//! policy cannot read differently from what it says, "Trojan Source"), and Cedar text sits in
//! a code fence longer than any run of backticks it holds. The comment stays under GitHub's
//! 65,536 characters: what does not fit is counted and left to the job's log.

use super::{ChangeKind, Edit, Report};
use jitgate_core::text::{escape_for_display, is_invisible};
use std::fmt::Write as _;

/// The most characters the comment holds: GitHub refuses a comment over 65,536, and the
/// closing note needs room.
pub const MARKDOWN_MAX_CHARS: usize = 60_000;

/// Rows of the table of access changes shown; the rest are counted.
const ROWS_SHOWN: usize = 200;

/// Resource names listed in a row; the rest are counted.
const NAMES_PER_ROW: usize = super::NAMES_SHOWN;

/// Characters of one Cedar policy's text shown.
const CEDAR_SHOWN_CHARS: usize = 4_000;

/// The hidden first line: a job that edits its earlier comment finds it by this.
pub const MARKDOWN_MARKER: &str = "<!-- jitgate policy diff -->";

/// Markdown's punctuation that can mean something inline: each gets a backslash. (`@` for
/// mentions, `#` for issue links and headings, `|` for table cells, `<` `>` for HTML.)
const ESCAPED: &[char] = &[
    '\\', '`', '*', '_', '{', '}', '[', ']', '(', ')', '#', '+', '-', '.', '!', '|', '<', '>', '~', '@', '&', ':',
];

/// Text from the policy as it may stand in a Markdown line or table cell: visible escapes for
/// control, invisible and bidi characters and line breaks, then a backslash before every
/// character in `ESCAPED`. `:` is escaped too, so that nothing reads as an autolinked URL or
/// an emoji shortcode.
pub fn escape(text: &str) -> String {
    let shown = escape_for_display(text);
    let mut out = String::with_capacity(shown.len() + 8);
    for c in shown.chars() {
        if ESCAPED.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Text shown inside a code fence: line breaks and tabs kept, every other control,
/// invisible or bidi character written as `\u{...}` (a backslash is left alone: the text is
/// Cedar, whose strings hold escapes of their own).
fn code_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let shown_as_is = matches!(c, '\n' | '\t' | ' ') || !(c.is_control() || is_invisible(c));
        if shown_as_is {
            out.push(c);
        } else {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
    }
    out
}

/// A fenced code block that the text cannot close: its fence is longer than the longest run
/// of backticks in it.
fn fenced(info: &str, text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat((longest + 1).max(3));
    let body = code_text(text);
    format!("{fence}{info}\n{}\n{fence}\n", body.trim_end_matches('\n'))
}

/// The first `limit` characters of `text`, and whether it was cut.
fn cut(text: &str, limit: usize) -> (&str, bool) {
    match text.char_indices().nth(limit) {
        Some((at, _)) => (&text[..at], true),
        None => (text, false),
    }
}

fn sign(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Gained => "➕ gained",
        ChangeKind::Lost => "➖ lost",
        ChangeKind::Weaker => "⚠️ weaker",
        ChangeKind::Stronger => "stronger",
        ChangeKind::Changed => "changed",
    }
}

impl Report {
    /// The report as a GitHub pull-request comment (GitHub-flavoured Markdown), at most
    /// `MARKDOWN_MAX_CHARS` long.
    pub fn markdown(&self) -> String {
        let mut blocks: Vec<String> = Vec::new();
        let searched: Vec<&super::Change> = self.changes.iter().filter(|c| c.when.is_some()).collect();
        let mut head = format!("{MARKDOWN_MARKER}\n### Access policy: effective changes\n\n");
        if self.is_unchanged() {
            head.push_str("**No effective change in access.**\n");
        } else {
            let mut counts = vec![format!("{} access changes", self.groups.len())];
            if !self.links.is_empty() {
                counts.push(format!("{} linked accounts changed", self.links.len()));
            }
            if !self.cedar_policies.is_empty() {
                counts.push(format!("{} Cedar policies changed", self.cedar_policies.len()));
            }
            if !searched.is_empty() {
                counts.push(format!("{} probe requests decided differently", searched.len()));
            }
            let _ = writeln!(
                head,
                "**{}.** Review each before approving this pull request.",
                counts.join(", ")
            );
        }
        blocks.push(head);

        if !self.groups.is_empty() {
            let mut table = String::from(
                "#### Who may do what\n\n| Change | Who | Ability | Action | On | Before | After |\n|---|---|---|---|---|---|---|\n",
            );
            for g in self.groups.iter().take(ROWS_SHOWN) {
                let mut on = escape(&g.set());
                if g.count > 1 {
                    let names: Vec<String> = g.resources.iter().take(NAMES_PER_ROW).map(|r| escape(r)).collect();
                    let _ = write!(on, ": {}", names.join(", "));
                    if g.resources.len() > NAMES_PER_ROW {
                        let _ = write!(on, ", and {} more", g.resources.len() - NAMES_PER_ROW);
                    }
                }
                let _ = writeln!(
                    table,
                    "| {} | {} | {} | {} | {on} | {} | {} |",
                    sign(g.kind),
                    escape(&g.subject),
                    escape(&g.ability),
                    escape(&g.action),
                    escape(&g.before),
                    escape(&g.after)
                );
            }
            if self.groups.len() > ROWS_SHOWN {
                let _ = writeln!(
                    table,
                    "\n{} more changes: the job's log has them all.",
                    self.groups.len() - ROWS_SHOWN
                );
            }
            blocks.push(table);
        }

        if !self.links.is_empty() {
            let mut list = String::from(
                "#### Who may decide from GitHub or Slack\n\nA linked account approves and denies as its principal: \
                 whoever holds it gets the principal's say.\n\n",
            );
            for l in &self.links {
                let account = |a: &Option<String>| {
                    a.as_deref()
                        .map_or("none".to_string(), |a| format!("`{}`", code_span(a)))
                };
                let _ = write!(
                    list,
                    "- {} **{}** `{}`: {} → {}",
                    sign(l.kind),
                    escape(&l.principal),
                    l.link.as_str(),
                    account(&l.before),
                    account(&l.after)
                );
                if !l.groups.is_empty() {
                    let groups: Vec<String> = l.groups.iter().map(|g| escape(g)).collect();
                    let _ = write!(list, " (groups {})", groups.join(", "));
                }
                list.push('\n');
            }
            blocks.push(list);
        }

        if !self.catalog.is_empty() {
            let title = if self.is_unchanged() {
                "Catalog edits that change no access"
            } else {
                "Catalog edits"
            };
            let mut list = format!("#### {title}\n\n");
            for e in self.catalog.iter().take(super::EDITS_SHOWN) {
                let word = match e.edit {
                    Edit::Added => "added",
                    Edit::Removed => "removed",
                    Edit::Edited => "edited",
                };
                let _ = write!(list, "- {word} **{}**", escape(&e.resource));
                match (&e.before, &e.after) {
                    (Some(b), Some(a)) => {
                        let _ = write!(list, ": {} → {}", escape(b), escape(a));
                    }
                    (Some(x), None) | (None, Some(x)) => {
                        let _ = write!(list, ": {}", escape(x));
                    }
                    (None, None) => {}
                }
                list.push('\n');
            }
            if self.catalog.len() > super::EDITS_SHOWN {
                let _ = writeln!(
                    list,
                    "- and {} more: the job's log has them all",
                    self.catalog.len() - super::EDITS_SHOWN
                );
            }
            blocks.push(list);
        }

        if !self.cedar_policies.is_empty() {
            blocks.push(format!(
                "#### Cedar policies changed ({})\n\nEvery added, removed or edited policy is a change, whatever the search below finds: read each.\n",
                self.cedar_policies.len()
            ));
            for c in &self.cedar_policies {
                let word = match c.edit {
                    Edit::Added => "added",
                    Edit::Removed => "removed",
                    Edit::Edited => "edited",
                };
                let (text, was_cut) = cut(&c.text, CEDAR_SHOWN_CHARS);
                let mut block = format!(
                    "- **{word}** `{}` at `{}:{}`: {} {}\n\n",
                    code_span(&c.id),
                    code_span(&c.file),
                    c.line,
                    escape(&c.effect),
                    escape(&c.scope)
                );
                block.push_str(&indent(&fenced("cedar", text)));
                if was_cut {
                    let _ = writeln!(
                        block,
                        "\n  (cut at {CEDAR_SHOWN_CHARS} characters: the file has the rest)"
                    );
                }
                if let Some(was) = &c.was {
                    let (text, _) = cut(&was.text, CEDAR_SHOWN_CHARS);
                    let _ = writeln!(block, "\n  was, at `{}:{}`:\n", code_span(&was.file), was.line);
                    block.push_str(&indent(&fenced("cedar", text)));
                }
                blocks.push(block);
            }
            if let Some(search) = &self.search {
                blocks.push(format!("**Consequences searched:** {}\n", escape(&search.to_string())));
            }
            if searched.is_empty() {
                blocks.push(
                    "No probe request is decided differently; the change may still matter for requests not searched: review the policies above.\n"
                        .to_string(),
                );
            } else {
                let mut list = format!("#### Requests decided differently ({})\n\n", searched.len());
                for c in searched.iter().take(ROWS_SHOWN) {
                    let _ = writeln!(list, "- {}", escape(&c.to_string()));
                }
                if searched.len() > ROWS_SHOWN {
                    let _ = writeln!(
                        list,
                        "- and {} more: the job's log has them all",
                        searched.len() - ROWS_SHOWN
                    );
                }
                blocks.push(list);
            }
        }

        // Whole blocks only, so no table, list or fence is ever cut open.
        let mut out = String::new();
        let mut left_out = 0;
        let reserve = 200;
        for block in blocks {
            let size = out.chars().count() + block.chars().count() + 1;
            if left_out > 0 || size + reserve > MARKDOWN_MAX_CHARS {
                left_out += 1;
                continue;
            }
            out.push_str(&block);
            out.push('\n');
        }
        if left_out > 0 {
            let _ = writeln!(
                out,
                "_{left_out} more sections do not fit in a comment: run `jitgate policy diff` on the two versions, or read the job's log._"
            );
        }
        out
    }
}

/// Text inside a single-backtick code span: no backtick can end it early (each becomes `'`),
/// no line break can split it, and odd characters are visible escapes.
fn code_span(text: &str) -> String {
    code_text(text).replace(['`', '\n', '\r'], "'")
}

/// A block indented under a list item.
fn indent(block: &str) -> String {
    block
        .lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_string()
            } else {
                format!("  {l}\n")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{code_span, escape, fenced};

    #[test]
    fn names_cannot_mention_link_or_break_a_table() {
        assert_eq!(escape("@org/team"), "\\@org/team");
        assert_eq!(escape("a|b"), "a\\|b");
        assert_eq!(escape("[x](https://evil)"), "\\[x\\]\\(https\\://evil\\)");
        assert_eq!(escape("<img src=x>"), "\\<img src=x\\>");
        assert_eq!(escape("a\nb"), "a\\\\nb");
        assert_eq!(escape("prod\u{202e}bd"), "prod\\\\u\\{202e\\}bd");
        assert_eq!(escape("#12"), "\\#12");
    }

    #[test]
    fn code_cannot_close_its_fence_or_hide_characters() {
        let text = "permit(principal, action, resource)\nwhen { context.reason == \"```` \u{202e}\" };";
        let block = fenced("cedar", text);
        assert!(block.starts_with("`````cedar\n"), "{block}");
        assert!(block.ends_with("\n`````\n"));
        assert!(block.contains("\\u{202e}") && !block.contains('\u{202e}'));
        assert_eq!(code_span("a`b\u{0}c"), "a'b\\u{0000}c");
    }
}
