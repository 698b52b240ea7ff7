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
