//! The filters identity providers send (RFC 7644 3.4.2.2), and only those: `ATTR eq "VALUE"`
//! on `userName`, `externalId`, `id` (users), `displayName`, `externalId`, `id`, `members`
//! (groups), joined with `and`. Anything else is refused with `invalidFilter` naming what is
//! supported, never answered with a wrong page.

use super::error::ScimError;
use super::schema::{GROUP_SCHEMA, USER_SCHEMA};
use super::ScimQuery;

/// Which list a filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    User,
    Group,
}

/// The longest filter read.
pub const MAX_FILTER_LEN: usize = 4096;

/// A parsed filter: the query's fields set, or `impossible` when two parts can never hold
/// together (`userName eq "a" and userName eq "b"`), so the answer is an empty page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub query: ScimQuery,
    pub impossible: bool,
}

fn supported(resource: Resource) -> &'static str {
    match resource {
        Resource::User => "userName eq \"…\", externalId eq \"…\", id eq \"…\", joined with and",
        Resource::Group => {
            "displayName eq \"…\", externalId eq \"…\", id eq \"…\", members eq \"USER_ID\", joined with and"
        }
    }
}

fn refuse(resource: Resource, what: impl std::fmt::Display) -> ScimError {
    ScimError::invalid_filter(format!("{what}; jitgate supports the filters {}", supported(resource)))
}

struct Lexer<'a> {
    rest: &'a str,
}

impl<'a> Lexer<'a> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start_matches(' ');
    }

    /// A word: up to a space, a quote or a bracket.
    fn word(&mut self) -> Option<&'a str> {
        self.skip_space();
        let end = self
            .rest
            .find([' ', '"', '[', ']', '(', ')'])
            .unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(word)
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// A JSON string literal.
    fn string(&mut self) -> Option<String> {
        self.skip_space();
        if !self.rest.starts_with('"') {
            return None;
        }
        let bytes = self.rest.as_bytes();
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        if i >= bytes.len() {
            return None;
        }
        let literal = &self.rest[..=i];
        self.rest = &self.rest[i + 1..];
        serde_json::from_str(literal).ok()
    }
}

/// Strip the resource's core schema URN from an attribute path (`urn:…:User:userName`).
fn strip_urn(path: &str, resource: Resource) -> &str {
    let urn = match resource {
        Resource::User => USER_SCHEMA,
        Resource::Group => GROUP_SCHEMA,
    };
    match path.get(..urn.len() + 1) {
        Some(head) if head.eq_ignore_ascii_case(&format!("{urn}:")) => &path[urn.len() + 1..],
        _ => path,
    }
}

/// Parse `text` into the query's filter fields (paging is left as it is).
pub fn parse(text: &str, resource: Resource) -> Result<Filter, ScimError> {
    if text.len() > MAX_FILTER_LEN {
        return Err(refuse(
            resource,
            format!("the filter is longer than {MAX_FILTER_LEN} bytes"),
        ));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(refuse(
            resource,
            format!("the filter holds the control character U+{:04X}", u32::from(c)),
        ));
    }
    let mut lexer = Lexer { rest: text };
    let mut filter = Filter::default();
    loop {
        let parenthesised = lexer.eat('(');
        let path = lexer
            .word()
            .ok_or_else(|| refuse(resource, "the filter does not start with an attribute"))?;
        let path = strip_urn(path, resource);
        // `members[value eq "ID"]` is `members eq "ID"` (a value path on the one sub-attribute).
        let bracketed = lexer.eat('[');
        let attribute = if bracketed {
            let sub = lexer.word().unwrap_or_default();
            if !path.eq_ignore_ascii_case("members") || !sub.eq_ignore_ascii_case("value") {
                return Err(refuse(resource, format!("'{path}[{sub} …]' is not a supported filter")));
            }
            "members".to_string()
        } else {
            path.to_ascii_lowercase()
        };
        let op = lexer
            .word()
            .ok_or_else(|| refuse(resource, format!("'{path}' is not followed by an operator")))?;
        if !op.eq_ignore_ascii_case("eq") {
            return Err(refuse(resource, format!("the operator '{op}' is not supported")));
        }
        let value = lexer
            .string()
            .ok_or_else(|| refuse(resource, format!("'{path} eq' is not followed by a quoted string")))?;
        // Escapes may spell what the raw text may not hold: a NUL reaches no store.
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            return Err(refuse(
                resource,
                format!(
                    "the value of '{path}' holds the control character U+{:04X}",
                    u32::from(c)
                ),
            ));
        }
        if bracketed && !lexer.eat(']') {
            return Err(refuse(resource, "a '[' is not closed"));
        }
        if parenthesised && !lexer.eat(')') {
            return Err(refuse(resource, "a '(' is not closed"));
        }
        let slot = match (resource, attribute.as_str()) {
            (Resource::User, "username") => &mut filter.query.user_name,
            (Resource::Group, "displayname") => &mut filter.query.display_name,
            (_, "externalid") => &mut filter.query.external_id,
            (_, "id") => &mut filter.query.id,
            (Resource::Group, "members" | "members.value") => &mut filter.query.member,
            _ => return Err(refuse(resource, format!("filtering on '{path}' is not supported"))),
        };
        // Names compare case-insensitively (RFC 7643 caseExact false); ids exactly.
        let case_insensitive = matches!(attribute.as_str(), "username" | "displayname");
        match slot {
            Some(old) if case_insensitive && old.eq_ignore_ascii_case(&value) => {}
            Some(old) if *old == value => {}
            Some(_) => filter.impossible = true,
            None => *slot = Some(value),
        }
        lexer.skip_space();
        if lexer.rest.is_empty() {
            return Ok(filter);
        }
        match lexer.word() {
            Some(w) if w.eq_ignore_ascii_case("and") => {}
            Some(w) if w.eq_ignore_ascii_case("or") => return Err(refuse(resource, "'or' is not supported")),
            _ => return Err(refuse(resource, format!("'{}' is not understood", lexer.rest))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Result<ScimQuery, ScimError> {
        parse(text, Resource::User).map(|f| f.query)
    }

    fn group(text: &str) -> Result<ScimQuery, ScimError> {
        parse(text, Resource::Group).map(|f| f.query)
    }

    #[test]
    fn the_filters_okta_and_entra_send_parse() {
        assert_eq!(
            user(r#"userName eq "alice@example.com""#).unwrap().user_name.as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(user(r#"USERNAME EQ "a""#).unwrap().user_name.as_deref(), Some("a"));
        assert_eq!(
            user(r#"externalId eq "00u1""#).unwrap().external_id.as_deref(),
            Some("00u1")
        );
        let q = group(r#"id eq "g1" and members eq "u1""#).unwrap();
        assert_eq!((q.id.as_deref(), q.member.as_deref()), (Some("g1"), Some("u1")));
        let q = group(r#"id eq "g1" and members[value eq "u1"]"#).unwrap();
        assert_eq!(q.member.as_deref(), Some("u1"));
        let q = group(r#"displayName eq "sre" and externalId eq "x""#).unwrap();
        assert_eq!(
            (q.display_name.as_deref(), q.external_id.as_deref()),
            (Some("sre"), Some("x"))
        );
        let q = user(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "b""#).unwrap();
        assert_eq!(q.user_name.as_deref(), Some("b"));
        assert_eq!(group(r#"members.value eq "u""#).unwrap().member.as_deref(), Some("u"));
        assert_eq!(user(r#"(userName eq "p")"#).unwrap().user_name.as_deref(), Some("p"));
    }

    #[test]
    fn escapes_in_the_value_are_json_escapes() {
        assert_eq!(
            user(r#"userName eq "a\"b\\c""#).unwrap().user_name.as_deref(),
            Some("a\"b\\c")
        );
        assert_eq!(user(r#"userName eq "\u00e9""#).unwrap().user_name.as_deref(), Some("é"));
    }

    #[test]
    fn parts_that_cannot_both_hold_give_an_empty_answer() {
        assert!(
            parse(r#"userName eq "a" and userName eq "b""#, Resource::User)
                .unwrap()
                .impossible
        );
        assert!(
            !parse(r#"userName eq "a" and userName eq "A""#, Resource::User)
                .unwrap()
                .impossible
        );
        assert!(parse(r#"id eq "a" and id eq "A""#, Resource::User).unwrap().impossible);
    }

    #[test]
    fn anything_else_is_an_invalid_filter_naming_what_is_supported() {
        for text in [
            r#"userName co "a""#,
            r#"userName sw "a""#,
            r#"userName eq "a" or userName eq "b""#,
            r#"emails.value eq "a@b""#,
            r#"displayName eq "x""#,
            r#"members eq "u""#,
            "userName pr",
            r#"userName eq a"#,
            r#"userName eq "unterminated"#,
            r#"not (userName eq "a")"#,
            r#"userName eq "a" and"#,
            r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
            "",
            "userName eq \"a\u{0}\"",
            r#"userName eq "a\u0000""#,
            r#"externalId eq "\u001b[31m""#,
        ] {
            let e = user(text).unwrap_err();
            assert_eq!(e.status, 400, "{text}");
            assert_eq!(e.scim_type, Some(super::super::ScimType::InvalidFilter), "{text}");
            assert!(
                e.detail.contains("jitgate supports the filters"),
                "{text}: {}",
                e.detail
            );
        }
        assert!(group(r#"userName eq "a""#).is_err());
        assert!(group(r#"members[display eq "a"]"#).is_err());
        assert!(user(&format!("userName eq \"{}\"", "a".repeat(MAX_FILTER_LEN))).is_err());
    }
}
