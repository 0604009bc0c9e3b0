use super::*;
use crate::catalog::Catalog;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn catalog(text: &str) -> Result<Catalog, Vec<PolicyError>> {
    Catalog::parse(&[("resources.toml".to_string(), text.to_string())], &BTreeSet::new())
}

fn routes(text: &str) -> HttpRoutes {
    catalog(text).unwrap_or_else(|e| panic!("{e:?}")).http_routes().clone()
}

/// Every message of a refused catalog, as `file:line: message`.
fn refused(text: &str) -> Vec<String> {
    match catalog(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e
            .iter()
            .map(|e| format!("{}:{}: {}", e.file, e.line, e.message))
            .collect(),
    }
}

fn route(r: &HttpRoutes, host: &str, uri: &str, method: &str) -> Option<(String, String)> {
    r.route(host, uri, method).ok().map(|r| (r.resource, r.action))
}

fn to(resource: &str, action: &str) -> Option<(String, String)> {
    Some((resource.to_string(), action.to_string()))
}

const GRAFANA: &str = r#"
[[resource]]
name = "grafana"
kind = "http"
http = { hosts = ["grafana.example.test"], path_prefix = "/", url = "https://grafana.example.test/" }

[[resource]]
name = "grafana-admin"
kind = "http"
[resource.http]
hosts = ["grafana.example.test"]
path_prefix = "/admin"
methods = { GET = "read", HEAD = "read", OPTIONS = "read", "*" = "admin" }
[[resource.http.paths]]
prefix = "/admin/api/users"
methods = { "*" = "users" }
[[resource.http.paths]]
prefix = "/admin/api"
methods = { GET = "api-read" }

[[resource]]
name = "apps"
kind = "http"
http = { hosts = ["*.apps.example.test"] }

[[resource]]
name = "kibana-exact"
kind = "http"
http = { hosts = ["kibana.apps.example.test"], path_prefix = "/logs" }

[[resource]]
name = "on-port"
kind = "http"
http = { hosts = ["ports.example.test:8443"] }

[[resource]]
name = "any-port"
kind = "http"
http = { hosts = ["ports.example.test"], path_prefix = "/any" }

[[resource]]
name = "loopback"
kind = "http"
http = { hosts = ["127.0.0.1:9000", "[::1]:9000"] }

[[resource]]
name = "db"
kind = "postgres"
"#;

#[test]
fn normalization_resolves_dots_and_collapses_slashes() {
    for (raw, want) in [
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a/b/", "/a/b/"),
        ("/a//b", "/a/b"),
        ("//a", "/a"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/public/../admin", "/admin"),
        ("/a/b?x=1#y", "/a/b"),
        ("/a?x=/../..", "/a"),
        ("/%61dmin", "/admin"),
        ("/x/%2e%2e/admin", "/admin"),
        ("/x/%2E./admin", "/admin"),
        ("/caf%C3%A9", "/café"),
        ("/a%20b", "/a b"),
        ("/a%3Fb", "/a%3Fb"),
        ("/a%25b", "/a%25b"),
        ("/a%23b", "/a%23b"),
        ("/a;jsessionid=1", "/a;jsessionid=1"),
    ] {
        assert_eq!(normalize_path(raw).as_deref(), Ok(want), "{raw}");
    }
}

#[test]
fn normalization_refuses_what_could_reach_another_path() {
    for (raw, want) in [
        ("", PathError::NotOriginForm),
        ("*", PathError::NotOriginForm),
        ("http://evil.test/admin", PathError::NotOriginForm),
        ("admin", PathError::NotOriginForm),
        ("/a\0b", PathError::Nul),
        ("/a%00b", PathError::Nul),
        ("/a%2Fb", PathError::EncodedSlash),
        ("/a%2fb", PathError::EncodedSlash),
        ("/a\\..\\admin", PathError::Backslash),
        ("/a%5C..%5Cadmin", PathError::Backslash),
        ("/a%5c", PathError::Backslash),
        ("/a%zz", PathError::BadEscape),
        ("/a%4", PathError::BadEscape),
        ("/a%", PathError::BadEscape),
        ("/%252e%252e/admin", PathError::DoubleEncoded),
        ("/%C3%28", PathError::NotUtf8),
        ("/%FF", PathError::NotUtf8),
        ("/a%0Ab", PathError::Hidden(0x0A)),
        ("/a\rb", PathError::Hidden(0x0D)),
        ("/ad\u{200b}min", PathError::Hidden(0x200B)),
        ("/ad%E2%80%8Bmin", PathError::Hidden(0x200B)),
        ("/a\u{202e}b", PathError::Hidden(0x202E)),
        ("/..", PathError::AboveRoot),
        ("/a/../..", PathError::AboveRoot),
        ("/%2e%2e/%2e%2e", PathError::AboveRoot),
        ("/%2e%2e/", PathError::AboveRoot),
        ("/public/..;/admin", PathError::DotParameters),
        ("/public/.;x/admin", PathError::DotParameters),
    ] {
        assert_eq!(normalize_path(raw), Err(want), "{raw:?}");
    }
    let long = format!("/{}", "a".repeat(MAX_URI_LEN));
    assert_eq!(normalize_path(&long), Err(PathError::TooLong));
    // Exactly the limit is still served.
    assert!(normalize_path(&long[..MAX_URI_LEN]).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn normalized_paths_are_canonical(raw in "(/|[a-zA-Z.;~ é\\\\%?#\u{0}\u{7}\u{200b}]|%2[eEfF5]|%5[cC]|%00|%0[aA]|%[0-9a-fA-F]{2}|\\.\\.|//){0,24}") {
        if let Ok(path) = normalize_path(&raw) {
            prop_assert!(path.starts_with('/'), "{path:?}");
            prop_assert!(!path.split('/').any(|s| s == ".." || s == "."), "{raw:?} -> {path:?}");
            prop_assert!(!path.contains("//"), "{raw:?} -> {path:?}");
            prop_assert!(!path.contains('\0') && !path.contains('\\'), "{raw:?} -> {path:?}");
            prop_assert!(!path.chars().any(|c| c.is_control() || (text::is_invisible(c) && c != ' ')), "{raw:?} -> {path:?}");
            prop_assert_eq!(normalize_path(&path), Ok(path.clone()), "not idempotent for {:?}", raw);
        }
    }

    #[test]
    fn any_text_normalizes_or_is_refused_without_panicking(raw in "\\PC{0,64}") {
        if let Ok(path) = normalize_path(&raw) {
            prop_assert_eq!(normalize_path(&path), Ok(path.clone()));
        }
    }
}

#[test]
fn the_longest_prefix_wins_and_path_rules_refine_it() {
    let r = routes(GRAFANA);
    let h = "grafana.example.test";
    assert_eq!(route(&r, h, "/", "GET"), to("grafana", "read"));
    assert_eq!(route(&r, h, "/d/abc?orgId=1", "POST"), to("grafana", "write"));
    assert_eq!(route(&r, h, "/admin", "GET"), to("grafana-admin", "read"));
    assert_eq!(route(&r, h, "/admin/settings", "DELETE"), to("grafana-admin", "admin"));
    // String prefixes, ASCII case-insensitive: the safe direction.
    assert_eq!(route(&r, h, "/administrator", "POST"), to("grafana-admin", "admin"));
    assert_eq!(route(&r, h, "/ADMIN/x", "PUT"), to("grafana-admin", "admin"));
    assert_eq!(route(&r, h, "/AdMiN", "GET"), to("grafana-admin", "read"));
    // Per-path rules: the longest matching one, then the resource's map, then the default.
    assert_eq!(route(&r, h, "/admin/api/users/7", "GET"), to("grafana-admin", "users"));
    assert_eq!(route(&r, h, "/admin/api/users", "PATCH"), to("grafana-admin", "users"));
    assert_eq!(route(&r, h, "/admin/api/orgs", "GET"), to("grafana-admin", "api-read"));
    assert_eq!(route(&r, h, "/admin/api/orgs", "POST"), to("grafana-admin", "admin"));
    // Dots and encodings cannot step out of a prefix.
    assert_eq!(route(&r, h, "/public/../admin/x", "GET"), to("grafana-admin", "read"));
    assert_eq!(route(&r, h, "/%61dmin/x", "POST"), to("grafana-admin", "admin"));
    assert_eq!(route(&r, h, "/x/%2e%2e/admin", "POST"), to("grafana-admin", "admin"));
    assert_eq!(route(&r, h, "//admin", "POST"), to("grafana-admin", "admin"));
    // Methods are case-sensitive tokens: `get` is not GET and falls to the default (write).
    assert_eq!(route(&r, h, "/", "get"), to("grafana", "write"));
    assert_eq!(route(&r, h, "/", "PROPFIND"), to("grafana", "write"));
    assert_eq!(route(&r, h, "/", "HEAD"), to("grafana", "read"));
    assert_eq!(route(&r, h, "/", "OPTIONS"), to("grafana", "read"));
}

#[test]
fn hosts_match_exactly_before_wildcards_with_ports_and_case_folded() {
    let r = routes(GRAFANA);
    assert_eq!(route(&r, "GRAFANA.Example.TEST", "/", "GET"), to("grafana", "read"));
    assert_eq!(route(&r, "grafana.example.test.", "/", "GET"), to("grafana", "read"));
    assert_eq!(
        route(&r, "grafana.example.test:8080", "/", "GET"),
        to("grafana", "read")
    );
    // A wildcard covers exactly one more label.
    assert_eq!(route(&r, "wiki.apps.example.test", "/", "GET"), to("apps", "read"));
    assert_eq!(route(&r, "a.b.apps.example.test", "/", "GET"), None);
    assert_eq!(route(&r, "apps.example.test", "/", "GET"), None);
    // Exact beats wildcard: kibana's exact entry serves only /logs, and the wildcard does not
    // step in for its other paths.
    assert_eq!(
        route(&r, "kibana.apps.example.test", "/logs/x", "GET"),
        to("kibana-exact", "read")
    );
    assert_eq!(route(&r, "kibana.apps.example.test", "/other", "GET"), None);
    // An entry with a port serves only that port.
    assert_eq!(route(&r, "ports.example.test:8443", "/", "GET"), to("on-port", "read"));
    assert_eq!(route(&r, "ports.example.test", "/", "GET"), None);
    assert_eq!(route(&r, "ports.example.test:8444", "/", "GET"), None);
    assert_eq!(
        route(&r, "ports.example.test:8444", "/any/x", "GET"),
        to("any-port", "read")
    );
    assert_eq!(route(&r, "127.0.0.1:9000", "/", "GET"), to("loopback", "read"));
    assert_eq!(route(&r, "[::1]:9000", "/", "GET"), to("loopback", "read"));
    assert_eq!(route(&r, "127.0.0.1", "/", "GET"), None);
}

#[test]
fn unserved_and_forged_hosts_are_unrouted_with_a_reason() {
    let r = routes(GRAFANA);
    let Err(Unroutable::NoResource(why)) = r.route("grafana.example.test.evil", "/x", "GET") else {
        panic!("routed");
    };
    assert_eq!(
        why,
        "no catalog resource of kind http serves grafana.example.test.evil /x; add one to resources.toml"
    );
    let overlong = format!("{}.example.test", "a.".repeat(MAX_HOST_LEN / 2));
    for host in [
        overlong.as_str(),
        "gr\u{0430}fana.example.test", // Cyrillic а
        "grafana.example.test\u{200b}",
        "ｇrafana.example.test",
        "grafana.example.test\0",
        "grafana.example.test\r\nX-Evil: 1",
        "grafana.example.test evil",
        "",
        "grafana.example.test:0",
        "grafana.example.test:99999",
        "grafana.example.test:80x",
        "user@grafana.example.test",
        "*.apps.example.test",
    ] {
        match r.route(host, "/", "GET") {
            Err(Unroutable::NoResource(why)) => {
                assert!(
                    !why.contains('\0') && !why.contains('\r') && !why.contains('\u{200b}'),
                    "{why}"
                )
            }
            other => panic!("{host:?}: {other:?}"),
        }
    }
    assert!(matches!(
        r.route("grafana.example.test", "/a%2Fb", "GET"),
        Err(Unroutable::BadPath(_))
    ));
    assert!(matches!(
        r.route("grafana.example.test", "/..", "GET"),
        Err(Unroutable::BadPath(_))
    ));
    for method in ["", "GE T", "GET\0", "GET\r\n", "GÉT", "G\u{200b}ET", &"X".repeat(33)] {
        assert!(
            matches!(
                r.route("grafana.example.test", "/", method),
                Err(Unroutable::BadMethod(_))
            ),
            "{method:?}"
        );
    }
}

#[test]
fn urls_are_served_only_on_catalog_hosts() {
    let r = routes(GRAFANA);
    assert!(!r.is_empty());
    assert!(HttpRoutes::default().is_empty());
    for ok in [
        "https://grafana.example.test/",
        "https://grafana.example.test/d/1?x=2",
        "http://GRAFANA.example.test",
        "https://wiki.apps.example.test/x",
        "https://ports.example.test:8443/",
    ] {
        assert!(r.serves_url(ok), "{ok}");
    }
    for bad in [
        "https://evil.test/",
        "https://grafana.example.test@evil.test/",
        "https://grafana.example.test.evil.test/",
        "//grafana.example.test/",
        "javascript:alert(1)",
        "ftp://grafana.example.test/",
        "https://gr\u{0430}fana.example.test/",
        "https://grafana.example.test\\@evil.test/",
        "https://grafana.example.test/\r\nx",
        "https://127.0.0.1/",
    ] {
        assert!(!r.serves_url(bad), "{bad}");
    }
    assert_eq!(
        r.urls().collect::<Vec<_>>(),
        [("grafana", "https://grafana.example.test/")]
    );
}

#[test]
fn bad_http_tables_are_refused_naming_file_line_and_fix() {
    let one = |http: &str| format!("[[resource]]\nname = \"app\"\nkind = \"http\"\nhttp = {http}\n");
    for (http, want) in [
        ("{ hosts = [] }", "http.hosts is empty"),
        ("{ path_prefix = \"/\" }", "missing field `hosts`"),
        ("{ hosts = [\"a.test\"], prefix = \"/\" }", "unknown field `prefix`"),
        ("{ hosts = [\"a.test\"], path_prefix = \"admin\" }", "must start with /"),
        (
            "{ hosts = [\"a.test\"], path_prefix = \"/a/../b\" }",
            "must not hold . or .. segments",
        ),
        ("{ hosts = [\"a.test\"], path_prefix = \"/a%2e\" }", "must not hold '%'"),
        ("{ hosts = [\"a.test\"], path_prefix = \"/a?x\" }", "must not hold '?'"),
        ("{ hosts = [\"a.test\"], path_prefix = \"/a#x\" }", "must not hold '#'"),
        (
            "{ hosts = [\"a.test\"], path_prefix = \"/a\\\\b\" }",
            "must not hold '\\\\'",
        ),
        ("{ hosts = [\"a.test\"], path_prefix = \"/a//b\" }", "must not hold //"),
        ("{ hosts = [\"a.test\"], path_prefix = \"/a\\u200bb\" }", "U+200B"),
        ("{ hosts = [\"a.test\"], path_prefix = \"/a\\u0000b\" }", "U+0000"),
        ("{ hosts = [\"gr\u{0430}fana.test\"] }", "U+0430"),
        ("{ hosts = [\"a.test\\u0000\"] }", "control character"),
        ("{ hosts = [\"a b.test\"] }", "control character or space"),
        ("{ hosts = [\"a.test:0\"] }", "from 1 to 65535"),
        ("{ hosts = [\"a.test:http\"] }", "from 1 to 65535"),
        ("{ hosts = [\"a.*.test\"] }", "leading *."),
        ("{ hosts = [\"*.10.0.0.1\"] }", "not IP addresses"),
        ("{ hosts = [\"*.0.1\"] }", "not IP addresses"),
        ("{ hosts = [\"-a.test\"] }", "starts or ends with -"),
        ("{ hosts = [\"a..test\"] }", "empty label"),
        ("{ hosts = [\"a/b.test\"] }", "letters, digits"),
        ("{ hosts = [\"[::zz]\"] }", "not an IPv6 address"),
        ("{ hosts = [\"a.test\", \"A.test\"] }", "listed twice"),
        (
            "{ hosts = [\"a.test\"], methods = { get = \"read\" } }",
            "must be upper case (GET)",
        ),
        (
            "{ hosts = [\"a.test\"], methods = { \"G T\" = \"read\" } }",
            "HTTP method token",
        ),
        ("{ hosts = [\"a.test\"], methods = { GET = \"\" } }", "is empty"),
        (
            "{ hosts = [\"a.test\"], methods = { GET = \"re\\u200bad\" } }",
            "invisible",
        ),
        (
            "{ hosts = [\"a.test\"], path_prefix = \"/api\", paths = [{ prefix = \"/other\" }] }",
            "is not under the resource's path_prefix",
        ),
        (
            "{ hosts = [\"a.test\"], paths = [{ prefix = \"/x\", method = {} }] }",
            "unknown field `method`",
        ),
        (
            "{ hosts = [\"a.test\"], paths = [{ prefix = \"/x\" }, { prefix = \"/X\" }] }",
            "has a rule already",
        ),
        (
            "{ hosts = [\"a.test\"], url = \"javascript:alert(1)\" }",
            "absolute http:// or https:// URL",
        ),
        (
            "{ hosts = [\"a.test\"], url = \"https://u@a.test/\" }",
            "user information",
        ),
        ("\"a.test\"", "unknown key 'http'"),
    ] {
        let errors = refused(&one(http));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("resources.toml:1: resource 'app': ") && e.contains(want)),
            "{http}: want {want:?} in {errors:?}"
        );
    }
}

#[test]
fn an_http_table_on_another_kind_is_refused() {
    let errors = refused("[[resource]]\nname = \"db\"\nkind = \"postgres\"\nhttp = { hosts = [\"db.test\"] }\n");
    assert_eq!(
        errors,
        ["resources.toml:1: resource 'db': an http table belongs to resources of kind http, not postgres; set kind = \"http\" or remove the table"]
    );
}

#[test]
fn kind_http_without_a_table_stays_valid_and_is_not_routed() {
    let r = routes("[[resource]]\nname = \"api\"\nkind = \"http\"\n");
    assert!(r.is_empty());
    assert!(matches!(
        r.route("api.test", "/", "GET"),
        Err(Unroutable::NoResource(_))
    ));
}

#[test]
fn two_resources_on_the_same_host_and_prefix_are_refused_naming_both() {
    let text = "[[resource]]\nname = \"one\"\nkind = \"http\"\nhttp = { hosts = [\"a.test\"], path_prefix = \"/x\" }\n\n\
                [[resource]]\nname = \"two\"\nkind = \"http\"\nhttp = { hosts = [\"b.test\", \"A.test.\"], path_prefix = \"/X\" }\n";
    let errors = refused(text);
    assert_eq!(
        errors,
        ["resources.toml:6: resource 'two': serves the same host a.test and path_prefix \"/x\" as resource 'one' at resources.toml:1; give one a longer path_prefix or remove one"]
    );
    // Other ports, other prefixes and wildcards beside exact names are distinct.
    routes(
        "[[resource]]\nname = \"one\"\nkind = \"http\"\nhttp = { hosts = [\"a.test\", \"*.a.test\"] }\n\
         [[resource]]\nname = \"two\"\nkind = \"http\"\nhttp = { hosts = [\"a.test:8080\"] }\n\
         [[resource]]\nname = \"three\"\nkind = \"http\"\nhttp = { hosts = [\"a.test\"], path_prefix = \"/y\" }\n",
    );
}

#[test]
fn a_port_entry_beats_an_any_port_entry_at_the_same_prefix() {
    let r = routes(
        "[[resource]]\nname = \"any\"\nkind = \"http\"\nhttp = { hosts = [\"a.test\"] }\n\
         [[resource]]\nname = \"admin-port\"\nkind = \"http\"\nhttp = { hosts = [\"a.test:9443\"] }\n",
    );
    assert_eq!(route(&r, "a.test:9443", "/", "GET"), to("admin-port", "read"));
    assert_eq!(route(&r, "a.test", "/", "GET"), to("any", "read"));
}
