//! Web applications in the catalog: resources of kind `http`, and how a request to one (host,
//! path, method) resolves to a (resource, action) for forward authentication.
//!
//! Everything here is built once when the policy loads ([`HttpRoutes::build`]); answering a
//! request is a hash lookup of its host and a walk of the few path prefixes under it, in
//! memory. A request nothing serves is `Unroutable::NoResource`: a missing catalog entry never
//! means "allow".

use crate::catalog::{self, Resource};
use crate::workflow::PolicyError;
use jitgate_core::text;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// The kind of catalog resource that is a web application.
pub const HTTP_KIND: &str = "http";
/// The longest request target looked at, in bytes: longer ones are refused, not cut.
pub const MAX_URI_LEN: usize = 8 * 1024;
/// The longest HTTP method token accepted.
pub const MAX_METHOD_LEN: usize = 32;
/// The longest host (with its port) accepted.
pub const MAX_HOST_LEN: usize = 260;

/// Where a request goes: the catalog resource that serves it and the action it performs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub resource: String,
    pub action: String,
}

/// Why a request has no route. Reasons are plain words for logs and people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unroutable {
    /// The request's path (or its whole target) is unusable.
    #[error("{0}")]
    BadPath(String),
    /// No catalog resource of kind http serves the host and path.
    #[error("{0}")]
    NoResource(String),
    /// The method is not an HTTP method token.
    #[error("{0}")]
    BadMethod(String),
}

/// Why a path was refused by [`normalize_path`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the request target is longer than {MAX_URI_LEN} bytes")]
    TooLong,
    #[error("the request target must be a path starting with / (absolute URLs and * are not served)")]
    NotOriginForm,
    #[error("the path holds a NUL byte (raw or %00)")]
    Nul,
    #[error("the path holds an encoded / (%2F); it would name a different path to the application than to jitgate")]
    EncodedSlash,
    #[error("the path holds a backslash (raw or %5C), which some servers read as /")]
    Backslash,
    #[error("the path holds a % that does not start an escape like %41")]
    BadEscape,
    #[error("the path is percent-encoded twice (%25 followed by hex digits)")]
    DoubleEncoded,
    #[error("the path does not decode to UTF-8")]
    NotUtf8,
    #[error("the path holds a control or invisible character (U+{0:04X})")]
    Hidden(u32),
    #[error("the path climbs above the root with ..")]
    AboveRoot,
    #[error("the path holds a dot segment with parameters (like ..;), which some servers read as ..")]
    DotParameters,
}

/// The canonical form of a request's path, for routing: `raw` is an origin-form request target
/// (`/a/b?x#y`). Cut at `?` and `#`; percent-decoded; `//` collapsed; `.` and `..` resolved. A
/// trailing `/` is kept. Everything that could make the application see another path than
/// jitgate routed is refused: NUL, an encoded `/`, a `\`, double encoding, invalid UTF-8,
/// control and invisible characters, `..` above the root, `..;`. A `%`, `?` or `#` that was
/// encoded stays encoded (`%25`, `%3F`, `%23`), so the result normalizes to itself.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    if raw.len() > MAX_URI_LEN {
        return Err(PathError::TooLong);
    }
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let raw = &raw[..end];
    if !raw.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let decoded = String::from_utf8(percent_decode(raw.as_bytes())?).map_err(|_| PathError::NotUtf8)?;
    if let Some(c) = decoded
        .chars()
        .find(|c| c.is_control() || (text::is_invisible(*c) && *c != ' '))
    {
        return Err(PathError::Hidden(u32::from(c)));
    }
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = decoded.split('/').skip(1).peekable();
    // Whether the path names a folder: it ends in `/`, `.` or `..` (as RFC 3986 resolves them).
    let mut folder = false;
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        let bare = segment.split(';').next().unwrap_or(segment);
        match segment {
            "" => folder = last,
            "." => folder = last,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                folder = last;
            }
            _ if bare == "." || bare == ".." => return Err(PathError::DotParameters),
            _ => {
                segments.push(segment);
                folder = false;
            }
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for segment in &segments {
        out.push('/');
        // Keep what was encoded encoded, so normalizing again changes nothing.
        for c in segment.chars() {
            match c {
                '%' => out.push_str("%25"),
                '?' => out.push_str("%3F"),
                '#' => out.push_str("%23"),
                c => out.push(c),
            }
        }
    }
    if folder || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Decode `%XX` escapes, refusing the ones that would let the application see another path.
fn percent_decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            0 => return Err(PathError::Nul),
            b'\\' => return Err(PathError::Backslash),
            b'%' => {
                let (Some(h), Some(l)) = (
                    raw.get(i + 1).copied().and_then(hex),
                    raw.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                // Both digits are below 16: the byte fits.
                let byte = u8::try_from(h * 16 + l).map_err(|_| PathError::BadEscape)?;
                match byte {
                    0 => return Err(PathError::Nul),
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::Backslash),
                    b'%' if raw.get(i + 3).copied().and_then(hex).is_some()
                        && raw.get(i + 4).copied().and_then(hex).is_some() =>
                    {
                        return Err(PathError::DoubleEncoded)
                    }
                    _ => out.push(byte),
                }
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Why `method` is not an HTTP method token (RFC 9110 `token`), if it is not.
pub fn method_problem(method: &str) -> Option<String> {
    if method.is_empty() {
        return Some("the method is empty".into());
    }
    if method.len() > MAX_METHOD_LEN {
        return Some(format!("the method is longer than {MAX_METHOD_LEN} bytes"));
    }
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    method.chars().find(|c| !tchar(*c)).map(|c| {
        format!(
            "the method holds U+{:04X}, which is not allowed in an HTTP method token",
            u32::from(c)
        )
    })
}

/// The `http` table of a catalog resource, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSpec {
    hosts: Vec<String>,
    path_prefix: Option<String>,
    #[serde(default)]
    methods: BTreeMap<String, String>,
    #[serde(default)]
    paths: Vec<PathSpec>,
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathSpec {
    prefix: String,
    #[serde(default)]
    methods: BTreeMap<String, String>,
}

/// Methods to actions: the named methods, then `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct MethodMap {
    named: BTreeMap<String, String>,
    any: Option<String>,
}

impl MethodMap {
    fn get(&self, method: &str) -> Option<&str> {
        self.named.get(method).or(self.any.as_ref()).map(String::as_str)
    }
}

/// The action of a method no map names: reading methods read, the rest write.
fn default_action(method: &str) -> &'static str {
    match method {
        "GET" | "HEAD" | "OPTIONS" => "read",
        _ => "write",
    }
}

#[derive(Debug, Clone)]
struct PathRule {
    /// Lower case (ASCII), as paths are compared.
    prefix: String,
    methods: MethodMap,
}

/// One resource of kind http, ready to route.
#[derive(Debug, Clone)]
struct HttpApp {
    resource: String,
    /// Lower case (ASCII), as paths are compared.
    prefix: String,
    methods: MethodMap,
    /// Longest prefix first.
    rules: Vec<PathRule>,
    /// The app's link, for people.
    url: Option<String>,
}

/// A host entry of the catalog: which apps it names, and on which port (`None`: any).
type HostEntries = Vec<(Option<u16>, usize)>;

/// Every resource of kind http, by host. Built once at policy load.
#[derive(Debug, Clone, Default)]
pub struct HttpRoutes {
    apps: Vec<HttpApp>,
    /// Exact host names, lower case, without a trailing dot.
    exact: HashMap<String, HostEntries>,
    /// `*.example.test` under `example.test`.
    wildcard: HashMap<String, HostEntries>,
}

/// A host as written in the catalog, or asked for by a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct HostPattern {
    wildcard: bool,
    /// Lower case, without a trailing dot; IPv6 literals in brackets.
    name: String,
    port: Option<u16>,
}

/// Split `host[:port]` (IPv6 as `[::1]:port`) and fold it: lower case, trailing dot dropped.
/// The reason when it is no host.
fn parse_host(raw: &str) -> Result<(String, Option<u16>), String> {
    if raw.is_empty() {
        return Err("the host is empty".into());
    }
    if raw.len() > MAX_HOST_LEN {
        return Err(format!("the host is longer than {MAX_HOST_LEN} bytes"));
    }
    if let Some(c) = raw.chars().find(|c| !c.is_ascii()) {
        return Err(format!(
            "the host holds U+{:04X}; hosts are ASCII (write internationalized names in their xn-- form)",
            u32::from(c)
        ));
    }
    if let Some(c) = raw.chars().find(|c| c.is_ascii_control() || *c == ' ') {
        return Err(format!(
            "the host holds a control character or space (U+{:04X})",
            u32::from(c)
        ));
    }
    let (name, port) = if let Some(rest) = raw.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return Err("an IPv6 host must be written [address] or [address]:port".into());
        };
        let address = &rest[..close];
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("[{address}] is not an IPv6 address"));
        }
        let after = &rest[close + 1..];
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("after [address] only :port may follow")?),
        };
        (format!("[{}]", address.to_ascii_lowercase()), port)
    } else {
        match raw.rsplit_once(':') {
            Some((name, port)) => (name.to_ascii_lowercase(), Some(port)),
            None => (raw.to_ascii_lowercase(), None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("port {p:?} is not a number from 1 to 65535")),
        },
    };
    let name = name.strip_suffix('.').unwrap_or(&name).to_string();
    Ok((name, port))
}

/// Why `name` (lower case, no port, no trailing dot) is not a DNS name or IP literal.
fn dns_problem(name: &str) -> Option<String> {
    if name.starts_with('[') {
        return None; // checked as IPv6 when split off
    }
    if name.is_empty() || name.len() > 253 {
        return Some("a host name is 1 to 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Some(format!("{name:?} has an empty label or one longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Some(format!(
                "{name:?} may hold only letters, digits, - and _ between its dots"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("{name:?} has a label that starts or ends with -"));
        }
    }
    None
}

fn catalog_host(raw: &str) -> Result<HostPattern, String> {
    let (wildcard, rest) = match raw.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    if rest.contains('*') {
        return Err("a wildcard is written only as a leading *. (like *.example.test)".into());
    }
    let (name, port) = parse_host(rest)?;
    if let Some(p) = dns_problem(&name) {
        return Err(p);
    }
    if wildcard && (name.starts_with('[') || is_numeric_name(&name)) {
        return Err("a wildcard covers names, not IP addresses".into());
    }
    Ok(HostPattern { wildcard, name, port })
}

/// Whether a name ends in an all-digit label, as IPv4 addresses do and no DNS name under a
/// real top-level domain does: a wildcard never reaches into addresses.
fn is_numeric_name(name: &str) -> bool {
    name.rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// Why `prefix` is not a usable path prefix (it must be in normalized form already).
fn prefix_problem(prefix: &str) -> Option<String> {
    if !prefix.starts_with('/') {
        return Some("must start with /".into());
    }
    if let Some(c) = prefix.chars().find(|c| matches!(c, '%' | '?' | '#' | '\\')) {
        return Some(format!(
            "must not hold {c:?}; write the path as the application sees it, decoded"
        ));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| c.is_control() || (text::is_invisible(*c) && *c != ' '))
    {
        return Some(format!(
            "holds a control or invisible character (U+{:04X})",
            u32::from(c)
        ));
    }
    if prefix.split('/').any(|s| s == ".." || s == ".") {
        return Some("must not hold . or .. segments".into());
    }
    if prefix.contains("//") {
        return Some("must not hold //".into());
    }
    match normalize_path(prefix) {
        Ok(n) if n == prefix => None,
        Ok(n) => Some(format!("is not in normal form; write {n:?}")),
        Err(e) => Some(e.to_string()),
    }
}

fn method_map(field: &str, methods: &BTreeMap<String, String>, problems: &mut Vec<String>) -> MethodMap {
    let mut map = MethodMap::default();
    for (method, action) in methods {
        if let Some(p) = catalog::name_problem(action) {
            problems.push(format!("{field}.{method}: action {action:?} {p}"));
            continue;
        }
        if method == "*" {
            map.any = Some(action.clone());
            continue;
        }
        if let Some(p) = method_problem(method) {
            problems.push(format!("{field}: {p} ({method:?})"));
            continue;
        }
        if method.bytes().any(|b| b.is_ascii_lowercase()) {
            problems.push(format!(
                "{field}: method {method:?} must be upper case ({}); methods are matched exactly",
                method.to_ascii_uppercase()
            ));
            continue;
        }
        map.named.insert(method.clone(), action.clone());
    }
    map
}

/// ASCII case-insensitive `path.starts_with(prefix)`, with `prefix` already lower case.
fn has_prefix(path: &str, prefix: &str) -> bool {
    path.len() >= prefix.len() && path.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

impl HttpRoutes {
    /// Read the `http` table of every resource, check it, and index resources of kind http
    /// by host. Every problem is returned, naming file and line.
    pub(crate) fn build<'a>(resources: impl Iterator<Item = &'a Resource>) -> Result<HttpRoutes, Vec<PolicyError>> {
        let mut routes = HttpRoutes::default();
        let mut errors = Vec::new();
        // (host, port, prefix) -> the resource that claimed it, for duplicates.
        let mut claimed: HashMap<(HostPattern, String), (String, String, usize)> = HashMap::new();
        for resource in resources {
            let table = resource.settings.get(HTTP_KIND);
            let mut err = |message: String| {
                errors.push(PolicyError {
                    file: resource.file.clone(),
                    line: resource.line,
                    message: format!("resource '{}': {message}", resource.name),
                })
            };
            let table = match (resource.kind == HTTP_KIND, table) {
                // Kind http without a table predates forward authentication (an API that
                // providers reach, say): it stays valid and is simply not routed.
                (_, None) => continue,
                (false, Some(_)) => {
                    err(format!(
                        "an http table belongs to resources of kind http, not {}; set kind = \"http\" or remove the table",
                        resource.kind
                    ));
                    continue;
                }
                (true, Some(t)) => t,
            };
            let spec: HttpSpec = match table.clone().try_into() {
                Ok(s) => s,
                Err(e) => {
                    err(format!(
                        "http: {}; the table has hosts, path_prefix, methods, paths and url",
                        e.message().trim()
                    ));
                    continue;
                }
            };
            let mut problems = Vec::new();
            if spec.hosts.is_empty() {
                problems.push("http.hosts is empty: name at least one host".to_string());
            }
            let mut hosts = Vec::new();
            for raw in &spec.hosts {
                match catalog_host(raw) {
                    Ok(h) if hosts.contains(&h) => problems.push(format!("http.hosts: {raw:?} is listed twice")),
                    Ok(h) => hosts.push(h),
                    Err(p) => problems.push(format!("http.hosts: {raw:?}: {p}")),
                }
            }
            let prefix = spec.path_prefix.clone().unwrap_or_else(|| "/".into());
            if let Some(p) = prefix_problem(&prefix) {
                problems.push(format!("http.path_prefix {prefix:?} {p}"));
            }
            let prefix = prefix.to_ascii_lowercase();
            let methods = method_map("http.methods", &spec.methods, &mut problems);
            let mut rules = Vec::new();
            for (i, rule) in spec.paths.iter().enumerate() {
                let field = format!("http.paths[{i}]");
                if let Some(p) = prefix_problem(&rule.prefix) {
                    problems.push(format!("{field}.prefix {:?} {p}", rule.prefix));
                    continue;
                }
                let lower = rule.prefix.to_ascii_lowercase();
                if !has_prefix(&lower, &prefix) {
                    problems.push(format!(
                        "{field}.prefix {:?} is not under the resource's path_prefix {prefix:?}",
                        rule.prefix
                    ));
                    continue;
                }
                if rules.iter().any(|r: &PathRule| r.prefix == lower) {
                    problems.push(format!("{field}.prefix {:?} has a rule already", rule.prefix));
                    continue;
                }
                let methods = method_map(&format!("{field}.methods"), &rule.methods, &mut problems);
                rules.push(PathRule { prefix: lower, methods });
            }
            rules.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
            if let Some(url) = &spec.url {
                if let Some(p) = url_problem(url) {
                    problems.push(format!("http.url {url:?} {p}"));
                }
            }
            if !problems.is_empty() {
                for p in problems {
                    err(p);
                }
                continue;
            }
            let mut clash = false;
            for host in &hosts {
                let key = (host.clone(), prefix.clone());
                if let Some((other, f, l)) = claimed.get(&key) {
                    err(format!(
                        "serves the same host {} and path_prefix {prefix:?} as resource '{other}' at {f}:{l}; give one a longer path_prefix or remove one",
                        show_host(host)
                    ));
                    clash = true;
                } else {
                    claimed.insert(key, (resource.name.clone(), resource.file.clone(), resource.line));
                }
            }
            if clash {
                continue;
            }
            let index = routes.apps.len();
            routes.apps.push(HttpApp {
                resource: resource.name.clone(),
                prefix,
                methods,
                rules,
                url: spec.url.clone(),
            });
            for host in hosts {
                let map = if host.wildcard {
                    &mut routes.wildcard
                } else {
                    &mut routes.exact
                };
                map.entry(host.name).or_default().push((host.port, index));
            }
        }
        // Longest prefix first under every host, so the first match wins; at equal prefixes
        // an entry for one port before one for any port.
        let apps = &routes.apps;
        for entries in routes.exact.values_mut().chain(routes.wildcard.values_mut()) {
            entries
                .sort_by(|a, b| (apps[b.1].prefix.len(), b.0.is_some()).cmp(&(apps[a.1].prefix.len(), a.0.is_some())));
        }
        if errors.is_empty() {
            Ok(routes)
        } else {
            Err(errors)
        }
    }

    /// Whether no resource of kind http is declared.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// The apps serving `host` (as a request names it): exact host entries if any match,
    /// else wildcard ones. Longest path prefix first.
    fn candidates<'a>(&'a self, name: &str, port: Option<u16>) -> impl Iterator<Item = &'a HttpApp> + 'a {
        let on_port = move |(p, _): &&(Option<u16>, usize)| p.is_none() || *p == port;
        let exact: Vec<usize> = self
            .exact
            .get(name)
            .into_iter()
            .flatten()
            .filter(on_port)
            .map(|(_, i)| *i)
            .collect();
        let chosen = if exact.is_empty() {
            // `*.example.test` covers exactly one more label.
            name.split_once('.')
                .filter(|(label, _)| !label.is_empty() && !name.starts_with('[') && !is_numeric_name(name))
                .and_then(|(_, parent)| self.wildcard.get(parent))
                .into_iter()
                .flatten()
                .filter(on_port)
                .map(|(_, i)| *i)
                .collect()
        } else {
            exact
        };
        chosen.into_iter().filter_map(move |i| self.apps.get(i))
    }

    /// Resolve a request: `host` as the `Host` header gives it (with its port, if any),
    /// `raw_uri` its origin-form target, `method` its method.
    pub fn route(&self, host: &str, raw_uri: &str, method: &str) -> Result<Route, Unroutable> {
        if let Some(p) = method_problem(method) {
            return Err(Unroutable::BadMethod(p));
        }
        let path = normalize_path(raw_uri).map_err(|e| Unroutable::BadPath(e.to_string()))?;
        let no_resource = |why: &str| {
            Unroutable::NoResource(format!(
                "no catalog resource of kind http serves {} {}{why}; add one to {}",
                host.escape_debug(),
                path.escape_debug(),
                catalog::RESOURCES_FILE
            ))
        };
        let (name, port) = match parse_host(host) {
            Ok(h) => h,
            Err(p) => return Err(no_resource(&format!(" ({p})"))),
        };
        if let Some(p) = dns_problem(&name) {
            return Err(no_resource(&format!(" ({p})")));
        }
        let Some(app) = self.candidates(&name, port).find(|a| has_prefix(&path, &a.prefix)) else {
            return Err(no_resource(""));
        };
        let rule = app.rules.iter().find(|r| has_prefix(&path, &r.prefix));
        let action = rule
            .and_then(|r| r.methods.get(method))
            .or_else(|| app.methods.get(method))
            .unwrap_or_else(|| default_action(method));
        Ok(Route {
            resource: app.resource.clone(),
            action: action.to_string(),
        })
    }

    /// Whether an absolute http(s) URL's host is served by some http resource (for links back
    /// to an application: never an open redirect to anywhere else).
    pub fn serves_url(&self, url: &str) -> bool {
        let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
            return false;
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        // User information would make the host something else to a browser than to us.
        if authority.contains('@') || url.chars().any(|c| c.is_control() || c == '\\') {
            return false;
        }
        let Ok((name, port)) = parse_host(authority) else {
            return false;
        };
        if dns_problem(&name).is_some() {
            return false;
        }
        let port = port.or(if url.starts_with("https://") {
            Some(443)
        } else {
            Some(80)
        });
        self.candidates(&name, port).next().is_some()
    }

    /// The link of each http resource that has one, by resource name.
    pub fn urls(&self) -> impl Iterator<Item = (&str, &str)> {
        self.apps
            .iter()
            .filter_map(|a| a.url.as_deref().map(|u| (a.resource.as_str(), u)))
    }
}

fn show_host(h: &HostPattern) -> String {
    let star = if h.wildcard { "*." } else { "" };
    match h.port {
        Some(p) => format!("{star}{}:{p}", h.name),
        None => format!("{star}{}", h.name),
    }
}

/// Why `url` is not an absolute http(s) URL for people to follow.
fn url_problem(url: &str) -> Option<String> {
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
        return Some("must be an absolute http:// or https:// URL".into());
    };
    if url.len() > 2048 {
        return Some("is longer than 2048 bytes".into());
    }
    if url
        .chars()
        .any(|c| c.is_control() || c == ' ' || c == '\\' || text::is_invisible(c))
    {
        return Some("holds a space, backslash, control or invisible character".into());
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return Some("must not hold user information (user@)".into());
    }
    match parse_host(authority) {
        Ok((name, _)) => dns_problem(&name),
        Err(p) => Some(p),
    }
}

#[cfg(test)]
mod tests;
