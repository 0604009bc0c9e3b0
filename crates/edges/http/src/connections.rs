//! Serving connections (`[connections]`): how long a client may take to send a request, how
//! many connections are served at once, and the file descriptors that needs.
//!
//! A connection that does not finish sending its request line and headers within
//! `header_timeout` is closed; so is a keep-alive connection that stays idle that long (hyper
//! starts the same timer whenever it waits for the next request's headers). A request body
//! that stalls for `body_timeout` is answered 408 and its connection closed. Neither runs
//! while a handler works on its answer, so a long poll (`?wait=60s`) is never cut. Past
//! `max` open connections, new ones wait in the kernel's backlog until one closes, rather than
//! the server running out of file descriptors.

use serde::Deserialize;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// File descriptors the server holds besides its connections: the listener, the database
/// pool, the policy directory's watcher, outbound HTTP (notifications, providers, OIDC), logs.
pub const RESERVED_FDS: u64 = 128;

/// The `[connections]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// The longest a client may take to send a request's line and headers, and the longest a
    /// keep-alive connection may stay idle.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: String,
    /// The longest a request body may stall between two of its parts.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: String,
    /// Connections served at once.
    #[serde(default = "default_max")]
    pub max: usize,
}

fn default_header_timeout() -> String {
    "10s".into()
}

fn default_body_timeout() -> String {
    "30s".into()
}

fn default_max() -> usize {
    4096
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            header_timeout: default_header_timeout(),
            body_timeout: default_body_timeout(),
            max: default_max(),
        }
    }
}

/// `[connections]`, parsed.
#[derive(Debug, Clone, Copy)]
pub struct Connections {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max: usize,
}

impl ConnectionsConfig {
    pub fn settings(&self) -> Result<Connections, String> {
        let duration = |field: &str, text: &str| {
            jitgate_core::parse_duration(text)
                .map(|d| Duration::from_secs(d.0))
                .map_err(|m| format!("connections.{field}: {m}"))
        };
        if self.max == 0 {
            return Err("connections.max: must be at least 1".into());
        }
        Ok(Connections {
            header_timeout: duration("header_timeout", &self.header_timeout)?,
            body_timeout: duration("body_timeout", &self.body_timeout)?,
            max: self.max,
        })
    }
}

/// The soft limit on open files (Linux: `/proc/self/limits`), if it can be read.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// Say so at start when the open-files limit cannot hold `max` connections and the rest.
pub fn warn_if_too_few_files(settings: &Connections) {
    let needed = settings.max as u64 + RESERVED_FDS;
    match open_files_limit() {
        Some(limit) if limit < needed => tracing::warn!(
            open_files_limit = limit,
            needed,
            "the open-files limit (ulimit -n) is below connections.max ({}) plus {RESERVED_FDS} for the server itself; \
             raise it (systemd: LimitNOFILE={needed}) or lower connections.max, or connections past the limit will be refused",
            settings.max
        ),
        Some(limit) => tracing::debug!(open_files_limit = limit, needed, "open-files limit"),
        None => {}
    }
}

/// Serve `router` on `listener` until `shutdown` completes, then let the requests in flight
/// finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    settings: Connections,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::Service;

    let body_timeout = settings.body_timeout;
    // The peer address is kept for trusted-proxy checks and for slowing down guessers.
    let mut make_service = router.into_make_service_with_connect_info::<SocketAddr>();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.max));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // Past `max`, wait for a connection to close before accepting the next.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(service) = make_service.call(peer).await;
        // Each body is limited as hyper hands it over, in the one box axum keeps it in
        // anyway, rather than in a layer of its own with a box of its own.
        let service = tower::util::MapRequest::new(service, move |request: hyper::Request<hyper::body::Incoming>| {
            request.map(|body| axum::body::Body::new(StallLimited::new(body, body_timeout)))
        });
        let hyper_service = hyper_util::service::TowerToHyperService::new(service);
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), hyper_service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A request body stalled for longer than `[connections] body_timeout` (answered 408).
#[derive(Debug, thiserror::Error)]
#[error("the request body stopped arriving")]
pub struct BodyStalled;

/// A request body that may pause at most `limit` between two of its parts. The clock starts
/// only when the body has nothing to give: one that arrived whole with its headers (nearly
/// every call) never touches the timer, so the limit costs the check path nothing.
struct StallLimited<B> {
    inner: B,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<B> StallLimited<B> {
    fn new(inner: B, limit: Duration) -> Self {
        StallLimited {
            inner,
            limit,
            stalled: None,
        }
    }
}

impl<B> http_body::Body for StallLimited<B>
where
    B: http_body::Body<Data = axum::body::Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.stalled = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let limit = this.limit;
                let timer = this.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection that failed before it was accepted concerns only its client; anything else
/// (out of file descriptors) is logged, and accepting resumes after a pause so that closing
/// connections can free some.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; trying again in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn defaults_parse_and_nonsense_is_refused_by_name() {
        let s = ConnectionsConfig::default().settings().unwrap();
        assert_eq!(s.header_timeout, Duration::from_secs(10));
        assert_eq!(s.body_timeout, Duration::from_secs(30));
        let bad = ConnectionsConfig {
            body_timeout: "soon".into(),
            ..ConnectionsConfig::default()
        };
        assert!(bad.settings().unwrap_err().starts_with("connections.body_timeout:"));
        let none = ConnectionsConfig {
            max: 0,
            ..ConnectionsConfig::default()
        };
        assert!(none.settings().unwrap_err().starts_with("connections.max:"));
    }

    #[test]
    fn the_open_files_limit_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(open_files_limit().unwrap() > 0);
        }
    }
}
