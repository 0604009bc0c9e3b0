//! The static files, gzip-compressed for those who accept it.

use super::*;

pub(super) const APP_CSS: &str = include_str!("../../../static/app.css");
pub(super) const HTMX_JS: &str = include_str!("../../../static/htmx.min.js");
pub(super) const ICON_SVG: &str = include_str!("../../../static/icon.svg");
pub(super) const TIME_JS: &str = include_str!("../../../static/time.js");

/// The static files: name, content type, bytes.
pub(super) const ASSETS: [(&str, &str, &str); 4] = [
    ("app.css", "text/css; charset=utf-8", APP_CSS),
    ("htmx.min.js", "text/javascript; charset=utf-8", HTMX_JS),
    ("icon.svg", "image/svg+xml", ICON_SVG),
    ("time.js", "text/javascript; charset=utf-8", TIME_JS),
];

/// Each static file gzip-compressed, made once on first use (htmx is 52 KB, 15 KB
/// compressed): cheaper than compressing each answer, and no compression layer to build.
/// `None` when compressing failed: that file is then sent as it is.
pub(super) static GZIPPED: std::sync::LazyLock<[Option<Vec<u8>>; ASSETS.len()]> =
    std::sync::LazyLock::new(|| ASSETS.map(|(_, _, body)| gzip(body.as_bytes()).ok()));

pub(super) fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// Whether `Accept-Encoding` takes gzip: listed (or `*`) without `q=0`.
pub(super) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut params = coding.split(';').map(str::trim);
            let name = params.next().unwrap_or("");
            let refused = params.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|(name, _, _)| *name == file) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let (_, kind, body) = ASSETS[index];
    // The answer depends on Accept-Encoding: caches must keep the two apart.
    let fixed = [
        (header::CONTENT_TYPE, kind),
        (header::CACHE_CONTROL, "public, max-age=3600"),
        (header::VARY, "accept-encoding"),
    ];
    match &GZIPPED[index] {
        Some(gzipped) if accepts_gzip(&headers) => {
            (fixed, [(header::CONTENT_ENCODING, "gzip")], gzipped.clone()).into_response()
        }
        _ => (fixed, body).into_response(),
    }
}
