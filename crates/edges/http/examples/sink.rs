//! A receiver for provider webhooks that answers 200 to every POST at once, for the expiry
//! benchmark (scripts/bench-expiry.sh): the deprovisioning lag it measures is jitgate's.
//!
//! cargo run --release -p jitgate-server --example sink -- 127.0.0.1:7490

use axum::routing::post;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:7490".into());
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/{*path}",
        post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("sink listening on {listen}");
    axum::serve(listener, app).await?;
    Ok(())
}
