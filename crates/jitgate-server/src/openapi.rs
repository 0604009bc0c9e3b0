//! The OpenAPI description, generated from the handlers and wire types.

use crate::api::*;
use crate::error::{ErrorBody, ErrorDetail};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "jitgate", description = "Just-in-time access and action approval"),
    paths(
        crate::routes::create_request, crate::routes::list_requests, crate::routes::get_request,
        crate::routes::approve_request, crate::routes::deny_request, crate::routes::cancel_request, crate::routes::review_request,
        crate::routes::list_grants, crate::routes::revoke_grant, crate::routes::extend_grant, crate::routes::check, crate::routes::check_batch,
        crate::routes::explain_policy, crate::routes::list_audit, crate::routes::verify_audit, crate::routes::healthz, crate::routes::readyz,
        crate::routes::metrics, crate::routes::create_token, crate::routes::list_tokens, crate::routes::revoke_token, crate::routes::rotate_keys, crate::routes::jwks, crate::routes::ssh_certificate, crate::routes::ssh_ca_public,
        crate::routes::database_credentials, crate::routes::done_grant, crate::routes::slack_interaction,
        crate::routes::list_checkpoints, crate::routes::sign_checkpoint, crate::routes::audit_keys,
    ),
    components(schemas(
        CreateRequestBody, ExtendBody, DurationInput, CommentBody, CheckBody, CheckAnswer, CheckBatchBody, CheckBatchAnswer,
        RequestView, GrantView, ApprovalView, NeedView, ClosedByView, RequestList, GrantList, EventView, EventList,
        VerifyAnswer, ErrorBody, ErrorDetail, CreateTokenBody, TokenView, CreatedToken, TokenList, RotatedKey, SshCertBody, SshCertAnswer, ProviderStatusView,
        DatabaseCredentials, CredentialsAnswer, DoneBody, CheckpointView, CheckpointList,
    )),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
