//! The OpenAPI document, assembled from the routers' annotations and served at
//! `/api/v1/openapi.json`.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ErrorBody;
use crate::routes;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "spectask",
        description = "Spec-driven, multi-session AI coding: SpecTasks are planned, approved and \
                       implemented by parallel agent threads. Every error is \
                       `{\"error\":{\"code\",\"message\"}}` with a stable code.",
    ),
    tags(
        (name = "spec-tasks", description = "Create, list, edit and inspect SpecTasks"),
        (name = "sessions", description = "Helix sessions and their interactions"),
        (name = "events", description = "The append-only event log, live"),
        (name = "plans", description = "The implementation-plan parser"),
        (name = "planning", description = "Planning, review comments, revisions and approval"),
        (name = "implementation", description = "Work sessions, threads, spawning, progress and the implementation review"),
        (name = "agents", description = "Agent profiles, the programs found on PATH, and a handshake check"),
        (name = "health", description = "Liveness"),
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// The API routes and a router serving their document.
pub(crate) fn split(_state: AppState) -> (Router<AppState>, Router<AppState>) {
    let (api, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", routes::api_v1())
        .merge(routes::health::router())
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.paths.add_path_operation(
        "/api/v1/openapi.json",
        vec![utoipa::openapi::HttpMethod::Get],
        utoipa::openapi::path::OperationBuilder::new()
            .tag("health")
            .summary(Some("This OpenAPI document"))
            .operation_id(Some("openapi_json"))
            .response(
                "200",
                utoipa::openapi::Response::new("The OpenAPI 3 document"),
            )
            .build(),
    );
    secure(&mut doc);
    let doc = Arc::new(doc);
    let serve_doc = Router::new().route(
        "/api/v1/openapi.json",
        get(move |State(_): State<AppState>| {
            let doc = doc.clone();
            async move { Json(doc) }
        }),
    );
    (api, serve_doc)
}

/// The security scheme of the API token in the `Authorization` header.
const TOKEN_SCHEME: &str = "api_token";
/// The same token as a query parameter, accepted on the event stream only.
const QUERY_TOKEN_SCHEME: &str = "api_token_query";

/// States what `crate::guard` does to every request: the token (optional on loopback, required on
/// any other bind; a wrong one is a 401), the Host and cross-origin refusals (403) and the content
/// types (415), so the document lists every status the server can answer.
fn secure(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};

    let components = doc
        .components
        .get_or_insert_with(utoipa::openapi::Components::new);
    components.add_security_scheme(
        TOKEN_SCHEME,
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The API token (`--api-token`, or `<data-dir>/api-token`). Required when the \
                     server listens on a non-loopback address; optional on loopback, but a wrong \
                     token is refused everywhere.",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        QUERY_TOKEN_SCHEME,
        SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
            crate::guard::TOKEN_QUERY_PARAM,
            "The API token as a query parameter, on the event stream only (a browser's \
             EventSource cannot send headers).",
        ))),
    );

    for (path, item) in doc.paths.paths.iter_mut() {
        let is_health = path == "/healthz";
        let is_stream = path == crate::guard::EVENT_STREAM_PATH;
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let responses = &mut operation.responses.responses;
            responses.entry("403".into()).or_insert_with(|| {
                error_response(
                    "`forbidden_host`: the Host header names another server (DNS rebinding); \
                     `cross_origin`: the request comes from another origin (Origin, \
                     Sec-Fetch-Site)",
                )
            });
            let has_query = operation.parameters.iter().flatten().any(|parameter| {
                matches!(parameter, utoipa::openapi::RefOr::T(parameter)
                    if parameter.parameter_in == utoipa::openapi::path::ParameterIn::Query)
            });
            if operation.request_body.is_some() || has_query {
                responses.entry("400".into()).or_insert_with(|| {
                    error_response(
                        "`malformed_json`, `invalid_body`, `unknown_field`: a body that is not \
                         the JSON this operation takes; `invalid_query`: an unknown or \
                         malformed query parameter",
                    )
                });
            }
            if operation.request_body.is_some() {
                responses.entry("415".into()).or_insert_with(|| {
                    error_response(
                        "`unsupported_media_type`: a body without the Content-Type this \
                         operation takes",
                    )
                });
            }
            if is_health {
                continue;
            }
            responses.entry("401".into()).or_insert_with(|| {
                error_response(
                    "`unauthorized`: the API token is missing (on a non-loopback bind) or wrong",
                )
            });
            // `{}` first: on loopback the token is optional.
            let mut security = vec![
                SecurityRequirement::default(),
                SecurityRequirement::new(TOKEN_SCHEME, Vec::<String>::new()),
            ];
            if is_stream {
                security.push(SecurityRequirement::new(
                    QUERY_TOKEN_SCHEME,
                    Vec::<String>::new(),
                ));
            }
            operation.security = Some(security);
        }
    }
}

fn error_response(
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::response::Response> {
    utoipa::openapi::response::ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::Content::new(Some(utoipa::openapi::Ref::from_schema_name(
                "ErrorBody",
            ))),
        )
        .build()
        .into()
}
