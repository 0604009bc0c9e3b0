//! The resource catalog: `resources.toml` and `resources/*.toml` of the policy directory.
//!
//! Each `[[resource]]` has a name, a kind, labels, optionally a parent, a description, owner
//! groups and kind-specific tables (`postgres = { ... }`, `http = { ... }`) that are kept as
//! TOML for the providers that will read them. `[[collection]]` declares a named set of
//! resources (`env:prod`, `pci`) that resources and other collections name as their `parent`,
//! so hierarchies such as "orders-db in env:prod in prod" are written once. Resources and
//! collections share one namespace. Workflows select resources by name, glob, kind and labels
//! (see `workflow.rs`); selectors and globs are matched here.

use jitgate_core::text;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use unicode_normalization::UnicodeNormalization;

use crate::workflow::PolicyError;

pub const RESOURCES_FILE: &str = "resources.toml";
/// A folder of further catalog files, `resources/*.toml`, read in name order.
pub const RESOURCES_DIR: &str = "resources";

/// The longest resource, collection or label value accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// The longest label key accepted, in bytes.
pub const MAX_LABEL_KEY_LEN: usize = 128;

/// A declared resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub name: String,
    /// A word: `postgres`, `ssh`, `http`, `mcp`, `github-environment`, ...
    pub kind: String,
    pub labels: BTreeMap<String, String>,
    /// A resource or collection this one belongs to.
    pub parent: Option<String>,
    pub description: Option<String>,
    /// Groups whose members approve steps written `{ owners = true }`.
    pub owners: Vec<String>,
    /// The actions the resource declares, each with its labels (`read_file = { effect =
    /// "read" }`): for kind `mcp`, the MCP server's tools. Workflows select actions by these
    /// labels (`actions = { labels = { ... } }`) and Cedar reads them as
    /// `context.action_labels`. Empty when the resource declares none.
    pub actions: BTreeMap<String, BTreeMap<String, String>>,
    /// Kind-specific tables (`postgres = { roles = [...] }`), unread by the policy itself:
    /// kept as TOML so the providers of later issues can read them.
    pub settings: BTreeMap<String, toml::Value>,
    /// Where it is declared, for messages: `resources.toml` or `resources/NAME.toml`, line.
    pub file: String,
    pub line: usize,
}

/// A named set of resources, such as `env:prod`; only a name to be a parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    pub name: String,
    pub parent: Option<String>,
    pub description: Option<String>,
    pub file: String,
    pub line: usize,
}

/// The validated catalog. Empty when the directory declares no resources: workflows then
/// name bare resources, as before the catalog existed.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    resources: BTreeMap<String, Resource>,
    collections: BTreeMap<String, Collection>,
    /// Every label key some resource has, to refuse a selector on a key nobody has.
    label_keys: BTreeSet<String>,
    /// Every label key some declared action has, to name a label selector's typo.
    action_label_keys: BTreeSet<String>,
    kinds: BTreeSet<String>,
    /// Look-alike key of every declared name to the name, see [`lookalike_key`].
    lookalikes: BTreeMap<String, String>,
    /// Names of the resources with each label, and of each kind, so a selector is matched
    /// against the resources it can select rather than the whole catalog.
    by_label: HashMap<(String, String), Vec<String>>,
    by_kind: HashMap<String, Vec<String>>,
    /// Resources of kind http by host, for forward authentication.
    http: crate::http::HttpRoutes,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    resource: Vec<toml::Spanned<ResourceSpec>>,
    #[serde(default)]
    collection: Vec<toml::Spanned<CollectionSpec>>,
}

#[derive(Deserialize)]
struct ResourceSpec {
    name: String,
    kind: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    parent: Option<String>,
    description: Option<String>,
    #[serde(default)]
    owners: Vec<String>,
    /// `actions = { NAME = { LABEL = "VALUE", ... }, ... }`, read by hand so that a wrong
    /// shape is named precisely (see `parse_actions`).
    actions: Option<toml::Value>,
    /// Every other key: a kind-specific table. Anything else is refused after parsing
    /// (a typo such as `owner = [...]` must not pass silently).
    #[serde(flatten)]
    settings: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectionSpec {
    name: String,
    parent: Option<String>,
    description: Option<String>,
}

/// The key under which two names count as the same to a reader: NFKC (full-width and other
/// compatibility forms fold to their plain letters), lower case, then the Unicode
/// confusables skeleton (UTS #39: Cyrillic `а` and Latin `a`, `1` and `l` fold together).
pub fn lookalike_key(name: &str) -> String {
    let folded: String = name.nfkc().collect::<String>().to_lowercase();
    unicode_security::confusable_detection::skeleton(&folded).collect()
}

/// What is wrong with a resource or collection name, if anything.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!("is longer than {MAX_NAME_LEN} bytes"));
    }
    hidden_char(name).map(|c| {
        format!("holds a control, space or invisible character (U+{c:04X}); names are printable characters only")
    })
}

/// A character a reviewer would not see, or that would make two different names look alike.
fn hidden_char(value: &str) -> Option<u32> {
    value
        .chars()
        .find(|c| c.is_control() || text::is_invisible(*c))
        .map(u32::from)
}

fn label_key_problem(key: &str) -> Option<String> {
    if key.is_empty() || key.len() > MAX_LABEL_KEY_LEN {
        return Some(format!("must be 1 to {MAX_LABEL_KEY_LEN} bytes"));
    }
    let plain = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    (!plain).then(|| "may hold only ASCII letters, digits and _ - . /".into())
}

fn label_value_problem(value: &str) -> Option<String> {
    if value.len() > MAX_NAME_LEN {
        return Some(format!("is longer than {MAX_NAME_LEN} bytes"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() || (text::is_invisible(*c) && *c != ' '))
    {
        return Some(format!(
            "holds a control or invisible character (U+{:04X})",
            u32::from(c)
        ));
    }
    None
}

/// The longest action name accepted, in bytes (an MCP tool name is at most 128).
pub const MAX_ACTION_LEN: usize = 256;

/// What is wrong with a declared action's name, if anything: the rules of resource names, as
/// a reviewer reads the action on every request.
pub fn action_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > MAX_ACTION_LEN {
        return Some(format!("is longer than {MAX_ACTION_LEN} bytes"));
    }
    hidden_char(name).map(|c| {
        format!("holds a control, space or invisible character (U+{c:04X}); action names are printable characters only")
    })
}

/// What is wrong with a label key or value (of a resource, an action or a selector).
pub fn label_problem(key: &str, value: &str) -> Option<String> {
    label_key_problem(key)
        .map(|p| format!("label key {key:?} {p}"))
        .or_else(|| label_value_problem(value).map(|p| format!("label {key}: value {value:?} {p}")))
}

/// A resource's `actions` table: each action's name and labels, checked like resource names
/// and labels; two action names of one resource that only look alike are refused, since a
/// reviewer could not tell which one a request is for.
fn parse_actions(value: &toml::Value, problems: &mut Vec<String>) -> BTreeMap<String, BTreeMap<String, String>> {
    let shape = "actions: write actions = { NAME = { LABEL = \"VALUE\" }, ... }, like actions = { read_file = { effect = \"read\" } }";
    let Some(table) = value.as_table() else {
        problems.push(shape.into());
        return BTreeMap::new();
    };
    let mut actions = BTreeMap::new();
    let mut lookalikes: BTreeMap<String, &str> = BTreeMap::new();
    for (name, labels) in table {
        if let Some(p) = action_name_problem(name) {
            problems.push(format!("actions: action name {name:?} {p}"));
            continue;
        }
        if let Some(other) = lookalikes.insert(lookalike_key(name), name) {
            problems.push(format!(
                "actions: '{name}' looks like '{other}' (they differ only in case, width or look-alike characters); rename one"
            ));
            continue;
        }
        let Some(labels) = labels.as_table() else {
            problems.push(format!(
                "actions.{name}: give its labels as a table, like {name} = {{ effect = \"read\" }} ({name} = {{}} for none)"
            ));
            continue;
        };
        let mut parsed = BTreeMap::new();
        for (key, value) in labels {
            let Some(value) = value.as_str() else {
                problems.push(format!(
                    "actions.{name}.{key}: label values are strings, like {key} = \"read\""
                ));
                continue;
            };
            if let Some(p) = label_problem(key, value) {
                problems.push(format!("actions.{name}: {p}"));
                continue;
            }
            parsed.insert(key.clone(), value.to_string());
        }
        actions.insert(name.clone(), parsed);
    }
    actions
}

fn kind_problem(kind: &str) -> Option<String> {
    let word = kind.len() <= 64
        && kind.starts_with(|c: char| c.is_ascii_lowercase())
        && kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    (!word).then(|| {
        format!("kind {kind:?} is not a word: use lower-case ASCII letters, digits, - and _ (like postgres or github-environment)")
    })
}

/// Line numbers by offset. A catalog may hold ten thousand resources: counting line feeds
/// from the start for each would be quadratic.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Lines {
        Lines(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// The 1-based line of a byte offset.
    fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|nl| *nl < offset) + 1
    }
}

impl Catalog {
    /// Parse and validate catalog files, given as (file name, text) in reading order. Groups
    /// named in `owners` must be among `known_groups`. Every problem is returned.
    pub fn parse(files: &[(String, String)], known_groups: &BTreeSet<String>) -> Result<Catalog, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let mut catalog = Catalog::default();
        // Where each name was declared, for duplicate and look-alike messages.
        let mut declared: BTreeMap<String, (String, usize)> = BTreeMap::new();
        for (file, text_) in files {
            let lines = Lines::new(text_);
            let parsed: CatalogFile = match toml::from_str(text_) {
                Ok(p) => p,
                Err(e) => {
                    errors.push(PolicyError {
                        file: file.clone(),
                        line: e.span().map(|s| lines.of(s.start)).unwrap_or(1),
                        message: e.message().to_string(),
                    });
                    continue;
                }
            };
            let mut claim = |name: &str, line: usize, what: &str, errors: &mut Vec<PolicyError>| -> bool {
                let mut err = |message: String| {
                    errors.push(PolicyError {
                        file: file.clone(),
                        line,
                        message,
                    })
                };
                if let Some(problem) = name_problem(name) {
                    err(format!("{what} name {name:?} {problem}"));
                    return false;
                }
                if let Some((f, l)) = declared.get(name) {
                    err(format!(
                        "{what} '{name}' is already declared at {f}:{l}; names of resources and collections are unique"
                    ));
                    return false;
                }
                let key = lookalike_key(name);
                if let Some(other) = catalog.lookalikes.get(&key) {
                    let (f, l) = declared.get(other).cloned().unwrap_or_default();
                    err(format!(
                        "{what} '{name}' looks like '{other}' declared at {f}:{l} (they differ only in case, width or look-alike characters); rename one"
                    ));
                    return false;
                }
                declared.insert(name.to_string(), (file.clone(), line));
                catalog.lookalikes.insert(key, name.to_string());
                true
            };
            for spanned in &parsed.collection {
                let line = lines.of(spanned.span().start);
                let spec = spanned.get_ref();
                if claim(&spec.name, line, "collection", &mut errors) {
                    catalog.collections.insert(
                        spec.name.clone(),
                        Collection {
                            name: spec.name.clone(),
                            parent: spec.parent.clone(),
                            description: spec.description.clone(),
                            file: file.clone(),
                            line,
                        },
                    );
                }
            }
            for spanned in &parsed.resource {
                let line = lines.of(spanned.span().start);
                let spec = spanned.get_ref();
                let mut problems = Vec::new();
                if let Some(p) = kind_problem(&spec.kind) {
                    problems.push(p);
                }
                for (key, value) in &spec.labels {
                    if let Some(p) = label_key_problem(key) {
                        problems.push(format!("label key {key:?} {p}"));
                    }
                    if let Some(p) = label_value_problem(value) {
                        problems.push(format!("label {key}: value {value:?} {p}"));
                    }
                }
                for group in &spec.owners {
                    if !known_groups.contains(group) {
                        problems.push(format!(
                            "owners: unknown group '{group}'; owners are groups of directory.toml"
                        ));
                    } else if group == crate::workflow::AGENTS_GROUP {
                        problems.push(crate::workflow::AGENTS_NEVER_REVIEW.replace("FIELD", "owners"));
                    }
                }
                for (key, value) in &spec.settings {
                    if !value.is_table() {
                        problems.push(format!(
                            "unknown key '{key}': a resource has name, kind, labels, parent, description, owners, actions, and kind-specific tables such as {key} = {{ ... }}"
                        ));
                    }
                }
                let actions = match &spec.actions {
                    None => BTreeMap::new(),
                    Some(value) => parse_actions(value, &mut problems),
                };
                let name_ok = claim(&spec.name, line, "resource", &mut errors);
                if !problems.is_empty() {
                    errors.extend(problems.into_iter().map(|message| PolicyError {
                        file: file.clone(),
                        line,
                        message: format!("resource '{}': {message}", spec.name),
                    }));
                    continue;
                }
                if !name_ok {
                    continue;
                }
                catalog.kinds.insert(spec.kind.clone());
                catalog
                    .by_kind
                    .entry(spec.kind.clone())
                    .or_default()
                    .push(spec.name.clone());
                for (k, v) in &spec.labels {
                    catalog
                        .by_label
                        .entry((k.clone(), v.clone()))
                        .or_default()
                        .push(spec.name.clone());
                }
                catalog.label_keys.extend(spec.labels.keys().cloned());
                catalog
                    .action_label_keys
                    .extend(actions.values().flat_map(|labels| labels.keys().cloned()));
                catalog.resources.insert(
                    spec.name.clone(),
                    Resource {
                        name: spec.name.clone(),
                        kind: spec.kind.clone(),
                        labels: spec.labels.clone(),
                        parent: spec.parent.clone(),
                        description: spec.description.clone(),
                        owners: spec.owners.clone(),
                        actions,
                        settings: spec.settings.clone(),
                        file: file.clone(),
                        line,
                    },
                );
            }
        }
        catalog.check_parents(&mut errors);
        match crate::http::HttpRoutes::build(catalog.resources.values()) {
            Ok(routes) => catalog.http = routes,
            Err(mut e) => errors.append(&mut e),
        }
        if errors.is_empty() {
            Ok(catalog)
        } else {
            Err(errors)
        }
    }

    /// Every parent is declared, and following parents never comes back.
    fn check_parents(&self, errors: &mut Vec<PolicyError>) {
        let parents: BTreeMap<&str, (&str, &str, usize)> = self
            .resources
            .values()
            .filter_map(|r| {
                r.parent
                    .as_deref()
                    .map(|p| (r.name.as_str(), (p, r.file.as_str(), r.line)))
            })
            .chain(self.collections.values().filter_map(|c| {
                c.parent
                    .as_deref()
                    .map(|p| (c.name.as_str(), (p, c.file.as_str(), c.line)))
            }))
            .collect();
        for (name, (parent, file, line)) in &parents {
            if !self.is_declared(parent) {
                errors.push(PolicyError {
                    file: file.to_string(),
                    line: *line,
                    message: format!(
                        "'{name}': unknown parent '{parent}'; declare it as a [[resource]] or a [[collection]]"
                    ),
                });
                continue;
            }
            // Walk up; coming back to `name` is a cycle through it. Each cycle is reported
            // once, at its member first in name order.
            let mut path = vec![*name];
            let mut at = *parent;
            loop {
                if at == *name {
                    if path.iter().min() == Some(name) {
                        path.push(name);
                        errors.push(PolicyError {
                            file: file.to_string(),
                            line: *line,
                            message: format!("parents form a cycle: {}; remove one parent", path.join(" -> ")),
                        });
                    }
                    break;
                }
                if path.contains(&at) {
                    break;
                }
                path.push(at);
                match parents.get(at) {
                    Some((next, _, _)) => at = next,
                    None => break,
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// How requests to web applications (resources of kind http) resolve.
    pub fn http_routes(&self) -> &crate::http::HttpRoutes {
        &self.http
    }

    fn is_declared(&self, name: &str) -> bool {
        self.resources.contains_key(name) || self.collections.contains_key(name)
    }

    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.get(name)
    }

    /// Resources in name order.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.resources.values()
    }

    pub fn collection(&self, name: &str) -> Option<&Collection> {
        self.collections.get(name)
    }

    pub fn collections(&self) -> impl Iterator<Item = &Collection> {
        self.collections.values()
    }

    /// Whether some resource has the label key.
    pub fn has_label_key(&self, key: &str) -> bool {
        self.label_keys.contains(key)
    }

    /// Whether some declared action has the label key.
    pub fn has_action_label_key(&self, key: &str) -> bool {
        self.action_label_keys.contains(key)
    }

    /// Whether some resource has the kind.
    pub fn has_kind(&self, kind: &str) -> bool {
        self.kinds.contains(kind)
    }

    /// The resources that have every label in `labels` and, if given, the kind: found from
    /// the shortest of their indexes, then checked in full. `None` when neither is given.
    pub fn narrowed<'a>(
        &'a self,
        kind: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> Option<impl Iterator<Item = &'a Resource> + 'a> {
        let empty: &[String] = &[];
        let mut lists: Vec<&[String]> = labels
            .iter()
            .map(|(k, v)| self.by_label.get(&(k.clone(), v.clone())).map_or(empty, Vec::as_slice))
            .collect();
        if let Some(kind) = kind {
            lists.push(self.by_kind.get(kind).map_or(empty, Vec::as_slice));
        }
        let shortest = lists.into_iter().min_by_key(|l| l.len())?;
        Some(shortest.iter().filter_map(|name| self.resources.get(name)))
    }

    /// The declared name that `name` looks like without being it, if any.
    pub fn lookalike_of(&self, name: &str) -> Option<&str> {
        self.lookalikes
            .get(&lookalike_key(name))
            .map(String::as_str)
            .filter(|other| *other != name)
    }

    /// The chain of parents above a resource or collection, nearest first.
    pub fn ancestors<'a>(&'a self, name: &str) -> Vec<&'a str> {
        let mut out: Vec<&str> = Vec::new();
        let parent_of = |n: &str| -> Option<&'a str> {
            self.resources
                .get(n)
                .and_then(|r| r.parent.as_deref())
                .or_else(|| self.collections.get(n).and_then(|c| c.parent.as_deref()))
        };
        let mut at = parent_of(name);
        while let Some(p) = at {
            if out.contains(&p) {
                break;
            }
            out.push(p);
            at = parent_of(p);
        }
        out
    }
}

/// A shell-style glob over names: `*` matches any run of characters (also none), `?` exactly
/// one; everything else matches itself. No character classes, so a name never needs quoting.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    // Selectors are matched against every resource at load: ASCII (the usual case) is
    // matched on bytes without allocating.
    if pattern.is_ascii() && name.is_ascii() {
        return glob_slices(pattern.as_bytes(), name.as_bytes(), b'*', b'?');
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_slices(&p, &n, '*', '?')
}

/// Iterative matching with one backtrack point: linear in practice, never exponential.
fn glob_slices<T: PartialEq + Copy>(p: &[T], n: &[T], star_sym: T, any: T) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(c) if *c == star_sym => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(c) if *c == any || *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == star_sym)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_matches("prod-*", "prod-db"));
        assert!(glob_matches("*-db", "orders-db"));
        assert!(glob_matches("a*b*c", "aXXbYYc"));
        assert!(glob_matches("db-?", "db-1"));
        assert!(!glob_matches("db-?", "db-12"));
        assert!(!glob_matches("prod-*", "staging-db"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("a*b", "a"));
        assert!(glob_matches("é*", "école"));
        assert!(glob_matches("?cole", "école"));
    }

    #[test]
    fn lookalikes_fold_case_width_and_confusables() {
        assert_eq!(lookalike_key("Prod-DB"), lookalike_key("prod-db"));
        assert_eq!(lookalike_key("ｐｒｏｄ-db"), lookalike_key("prod-db"));
        assert_eq!(lookalike_key("\u{0440}rod-db"), lookalike_key("prod-db"));
        assert_ne!(lookalike_key("prod-db"), lookalike_key("staging-db"));
    }
}
