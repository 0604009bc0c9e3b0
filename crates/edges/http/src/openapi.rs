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
        crate::routes::list_grants, crate::routes::revoke_grant, crate::routes::extend_grant, crate::routes::check, crate::routes::check_batch, crate::routes::use_grant,
        crate::routes::explain_policy, crate::routes::list_audit, crate::routes::verify_audit, crate::routes::healthz, crate::routes::readyz,
        crate::routes::metrics, crate::routes::create_token, crate::routes::list_tokens, crate::routes::revoke_token, crate::routes::rotate_keys, crate::routes::jwks, crate::routes::ssh_certificate, crate::routes::ssh_ca_public,
        crate::routes::database_credentials, crate::routes::done_grant, crate::routes::slack_interaction, crate::routes::github_webhook,
        crate::routes::list_checkpoints, crate::routes::sign_checkpoint, crate::routes::audit_keys, crate::routes::list_resources,
        crate::routes::accept_database_history, crate::routes::forward_auth, crate::routes::forward_auth_below,
        crate::cli_login::whoami, crate::cli_login::login_options,
        crate::scim::service_provider_config, crate::scim::resource_types, crate::scim::resource_type, crate::scim::schemas,
        crate::scim::one_schema, crate::scim::search_all, crate::scim::list_users, crate::scim::search_users, crate::scim::get_user,
        crate::scim::create_user, crate::scim::replace_user, crate::scim::patch_user, crate::scim::delete_user,
        crate::scim::list_groups, crate::scim::search_groups, crate::scim::get_group, crate::scim::create_group,
        crate::scim::replace_group, crate::scim::patch_group, crate::scim::delete_group,
    ),
    components(schemas(
        CreateRequestBody, ItemBody, ItemView, ExtendBody, DurationInput, CommentBody, ApproveBody, CheckBody, UseGrantBody, CheckAnswer, CheckBatchBody, CheckBatchAnswer,
        RequestView, GrantView, ApprovalView, NeedView, ClosedByView, RequestList, GrantList, EventView, EventList,
        VerifyAnswer, ErrorBody, ErrorDetail, CreateTokenBody, TokenView, CreatedToken, TokenList, RotatedKey, SshCertBody, SshCertAnswer, ProviderStatusView,
        DatabaseCredentials, CredentialsAnswer, DoneBody, CheckpointView, CheckpointList, SlackInteractionForm,
        ResourceList, ResourceView, RequestableActionView, HistoryAccepted, crate::forward_auth::ForwardAuthDenial,
        crate::scim::ScimDocument, crate::scim::ScimErrorBody,
        crate::github::GithubWebhookPayload, crate::github::GithubWebhookAnswer,
        crate::cli_login::WhoamiView, crate::cli_login::CredentialView, crate::cli_login::LoginOptions,
        crate::cli_login::OidcLoginOption,
    )),
    modifiers(&BearerAuth, &RefusalsEveryEndpointMayGive, &OneOperationIdPerMethod),
)]
struct ApiDoc;

/// An operation id names one operation: a handler that answers several methods (forward
/// authentication answers all of them) gets one id per method, `forward_auth_get`, ...
struct OneOperationIdPerMethod;

impl Modify for OneOperationIdPerMethod {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for item in openapi.paths.paths.values() {
            for id in operations(item).filter_map(|(_, op)| op.operation_id.clone()) {
                *seen.entry(id).or_default() += 1;
            }
        }
        for item in openapi.paths.paths.values_mut() {
            for (method, operation) in operations_mut(item) {
                if let Some(id) = operation.operation_id.as_mut() {
                    if seen.get(id.as_str()).is_some_and(|n| *n > 1) {
                        id.push('_');
                        id.push_str(method);
                    }
                }
            }
        }
    }
}

type Operation = utoipa::openapi::path::Operation;

fn operations(item: &utoipa::openapi::PathItem) -> impl Iterator<Item = (&'static str, &Operation)> {
    [
        ("get", item.get.as_ref()),
        ("post", item.post.as_ref()),
        ("put", item.put.as_ref()),
        ("delete", item.delete.as_ref()),
        ("patch", item.patch.as_ref()),
        ("head", item.head.as_ref()),
        ("options", item.options.as_ref()),
        ("trace", item.trace.as_ref()),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.map(|op| (method, op)))
}

fn operations_mut(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("post", item.post.as_mut()),
        ("put", item.put.as_mut()),
        ("delete", item.delete.as_mut()),
        ("patch", item.patch.as_mut()),
        ("head", item.head.as_mut()),
        ("options", item.options.as_mut()),
        ("trace", item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.map(|op| (method, op)))
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
            // A SCIM provisioning token (`jitgate token create --scim`): /scim/v2 only.
            components.add_security_scheme(
                "scim",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The refusals that do not depend on what an endpoint does but on how it is called, added to
/// every operation they apply to so that no route can forget one: a secured endpoint answers
/// 401 without valid credentials and 403 to a caller whose role lacks it (some role always
/// does); one with a body answers 400 (not JSON), 413 (too large), 415 (not sent as JSON) and
/// 422 (a field is wrong); one with query parameters 422 (one does not parse); one with an id
/// in its path 400 (not UTF-8 text), 404 (no such thing, or one the caller may not see) and
/// 422 (a control character, refused for every path and query by `input.rs`).
struct RefusalsEveryEndpointMayGive;

impl Modify for RefusalsEveryEndpointMayGive {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ];
            for operation in operations.into_iter().flatten() {
                let parameters = operation.parameters.as_deref().unwrap_or_default();
                let in_path = parameters.iter().any(|p| p.parameter_in == ParameterIn::Path);
                let in_query = parameters.iter().any(|p| p.parameter_in == ParameterIn::Query);
                let json_body = operation
                    .request_body
                    .as_ref()
                    .is_some_and(|b| b.content.contains_key("application/json"));
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let mut refusals = Vec::new();
                if secured {
                    refusals.push(("401", "no credentials, or ones jitgate does not accept"));
                    refusals.push(("403", "the caller's role may not call this"));
                }
                if json_body {
                    refusals.push(("400", "the body is not JSON"));
                    refusals.push(("408", "the body stopped arriving ([connections] body_timeout)"));
                    refusals.push(("413", "the body is larger than 256 KiB"));
                    refusals.push(("415", "a body sent as anything but application/json"));
                    refusals.push(("422", "a field of the body is wrong; the message names it"));
                }
                if in_query {
                    refusals.push(("422", "a query parameter is wrong; the message names it"));
                }
                if in_path {
                    refusals.push(("400", "an id in the path is not UTF-8 text"));
                    refusals.push(("404", "no such thing, or one the caller may not see"));
                    refusals.push((
                        "422",
                        "an id in the path holds a control character (a NUL byte, say); the message names it",
                    ));
                }
                for (status, when) in refusals {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(when));
                }
                if secured {
                    operation
                        .responses
                        .responses
                        .entry("503".to_string())
                        .or_insert_with(unavailable_response);
                }
            }
        }
    }
}

fn error_response(when: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(when)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .into()
}

/// 503 `unavailable`: the database (or a provider) cannot answer now, with when to ask again.
fn unavailable_response() -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, ResponseBuilder, Type};
    ResponseBuilder::new()
        .description(
            "the database (or a provider) cannot answer now: unreachable, read-only, not committing within the write bound, or its history diverged from what this replica saw. A write that answered this may still have committed: read before trying it again",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)))
                .description(Some("seconds until trying again is worth it"))
                .build(),
        )
        .into()
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::document;
    use crate::api::{GRANT_STATUSES, REQUEST_STATUSES};
    use jitgate_core::{GrantStatus, RequestStatus};

    #[test]
    fn every_path_parameter_is_in_its_path_and_every_page_size_has_its_bounds() {
        let doc = serde_json::to_value(document()).unwrap();
        let mut limits = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    let name = parameter["name"].as_str().unwrap();
                    if parameter["in"] == "path" {
                        assert!(
                            path.contains(&format!("{{{name}}}")),
                            "{method} {path}: {name} is not in the path"
                        );
                    }
                    if name == "limit" {
                        limits += 1;
                        assert_eq!(parameter["in"], "query", "{method} {path}");
                        assert_eq!(parameter["schema"]["minimum"], 1, "{method} {path}");
                        assert!(parameter["schema"]["maximum"].as_u64().is_some(), "{method} {path}");
                    }
                }
            }
        }
        assert_eq!(limits, 4, "requests, grants, audit and resources take a page size");
    }

    #[test]
    fn every_write_documents_its_429_and_when_to_come_back() {
        let doc = serde_json::to_value(document()).unwrap();
        let mut writes = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            let Some(post) = item.get("post") else { continue };
            // Checks are the services' hot path, never limited; Slack is answered 200 always.
            // A provisioning client (/scim/v2) is not a caller writes_per_minute paces: an
            // identity provider's first push writes thousands of users a minute (docs/scim.md).
            let secured = post["security"].as_array().is_some_and(|s| !s.is_empty());
            if !secured || path.starts_with("/v1/check") || path == "/v1/grants/use" || path.starts_with("/scim/v2/") {
                continue;
            }
            writes += 1;
            let too_many = &post["responses"]["429"];
            assert!(
                too_many["headers"]["Retry-After"].is_object(),
                "POST {path}: a write a caller can repeat counts against [limits] writes_per_minute; document its 429 with Retry-After"
            );
        }
        assert!(writes >= 14, "{writes} writes");
        // Every secured call may meet the database away: 503 with Retry-After.
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                if operation["security"].as_array().is_some_and(|s| !s.is_empty()) {
                    let unavailable = &operation["responses"]["503"];
                    assert!(
                        unavailable["headers"]["Retry-After"].is_object(),
                        "{method} {path}: document its 503 with Retry-After"
                    );
                }
            }
        }
        let ready = &doc["paths"]["/readyz"]["get"]["responses"]["503"];
        assert!(ready["headers"]["Retry-After"].is_object(), "{ready}");
        let wait = &doc["paths"]["/v1/requests/{id}"]["get"]["responses"]["429"];
        assert!(wait["headers"]["Retry-After"].is_object(), "{wait}");
    }

    #[test]
    fn forward_auth_is_documented_for_every_method_it_answers() {
        let doc = serde_json::to_value(document()).unwrap();
        for path in ["/v1/forward-auth", "/v1/forward-auth/{path}"] {
            let item = doc["paths"][path]
                .as_object()
                .unwrap_or_else(|| panic!("{path} is missing"));
            let methods: Vec<&str> = item.keys().map(String::as_str).collect();
            for method in ["get", "post", "put", "delete", "patch", "head", "options", "trace"] {
                assert!(methods.contains(&method), "{path}: {method} is missing: {methods:?}");
                let op = &item[method];
                // It authenticates by itself (the session cookie, a bearer token, a proxy's
                // user header): not the API's bearer scheme alone.
                assert!(op.get("security").is_none(), "{method} {path}");
                for status in ["200", "400", "401", "403"] {
                    assert!(op["responses"][status].is_object(), "{method} {path}: {status}");
                }
                let forbidden = &op["responses"]["403"];
                assert!(forbidden["content"]["text/html"].is_object(), "{method} {path}");
                assert!(
                    forbidden["headers"]["X-Jitgate-Request-Url"].is_object(),
                    "{method} {path}"
                );
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_default().to_string();
                assert!(
                    ids.insert(id.clone()),
                    "{method} {path}: operation id {id} is used twice"
                );
            }
        }
        assert!(
            ids.contains("forward_auth_trace") && ids.contains("forward_auth_below_get"),
            "{ids:?}"
        );
        assert!(ids.contains("check"), "a handler of one method keeps its name: {ids:?}");
        let denial = &doc["components"]["schemas"]["ForwardAuthDenial"];
        assert!(denial["properties"]["request_url"].is_object(), "{denial}");
    }

    #[test]
    fn documented_statuses_are_those_the_core_reads() {
        for name in REQUEST_STATUSES {
            assert!(RequestStatus::parse(name).is_some(), "{name}");
        }
        for name in GRANT_STATUSES {
            assert!(GrantStatus::parse(name).is_some(), "{name}");
        }
        // A status added to the core stops this from compiling until it is documented too.
        for status in [RequestStatus::Pending] {
            match status {
                RequestStatus::Pending
                | RequestStatus::Approved
                | RequestStatus::Denied
                | RequestStatus::Cancelled
                | RequestStatus::Expired => assert_eq!(REQUEST_STATUSES.len(), 5),
            }
        }
        for status in [GrantStatus::Active] {
            match status {
                GrantStatus::Active
                | GrantStatus::Expired
                | GrantStatus::Revoked
                | GrantStatus::Used
                | GrantStatus::Done => assert_eq!(GRANT_STATUSES.len(), 5),
            }
        }
    }
}
