//! Every end-to-end test of the `jitgate` binary, in one test binary: each module below used to
//! be a test binary of its own, and the dependency tree was linked eighteen times instead of
//! once. Run one module with
//! `cargo test -p jitgate --test end_to_end e2e::` (a test by its path: `e2e::some_name`).
//!
//! The tests share one process, so none may change process-wide state (environment variables,
//! the current directory): what a server needs goes to its command line or its own environment
//! (`Server::start_with_env`).

// Test code: a failed expectation should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod audit;
mod authorization;
mod cli_login;
mod cli_sso;
mod crash;
mod e2e;
mod failover;
mod forward_auth;
mod forward_auth_api;
mod github;
mod grant_tokens;
mod hostile_input;
mod http;
mod identity;
mod items;
mod limits;
mod mcp;
mod metrics;
mod notifications;
mod postgres;
mod providers;
mod replicas;
mod resources;
mod scim;
mod shift_left;
mod ssh;
mod transitions;
mod web_ui;
