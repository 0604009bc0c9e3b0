//! Who is calling over HTTP, and may they: the service authenticates the headers
//! ([`jitgate_service::auth`]) and the authorization table decides; here that becomes types.
//! A handler that takes `Allowed<op::Check>` runs only for callers the table lets check, and
//! gets the reach the table gives them.

pub use jitgate_service::auth::*;

use crate::state::Edge;
use crate::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use jitgate_core::Identity;
use jitgate_service::App;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};

/// HTTP headers are what a call presents.
pub struct Headers<'a>(pub &'a HeaderMap);

impl Presented for Headers<'_> {
    fn field(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(|v| v.as_bytes())
    }
}

/// A caller the authorization table allows operation `O`, with the reach it allows.
pub struct Allowed<O: op::Op> {
    caller: Caller,
    _operation: PhantomData<O>,
}

impl<O: op::Op> std::ops::Deref for Allowed<O> {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

/// Authenticate credentials in `headers` from `peer` (the web UI's sign-in uses this too).
pub async fn authenticate_headers(app: &App, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<Identity, ApiError> {
    Ok(app.authenticate(&Headers(headers), peer).await?)
}

impl<O: op::Op> FromRequestParts<Edge> for Allowed<O> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Edge) -> Result<Self, Self::Rejection> {
        // Borrowed, not cloned: every call passes here, and the service's shared count
        // touched by every core costs.
        let app = &state.app;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let who = authenticate_headers(app, &parts.headers, peer).await?;
        Ok(Allowed {
            caller: caller_for::<O>(who)?,
            _operation: PhantomData,
        })
    }
}
