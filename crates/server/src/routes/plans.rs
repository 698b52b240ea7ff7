//! `/plans/parse`: the plan parser as a service, for tools and the UI.

use axum::Json;
use axum::body::Bytes;
use spectask_domain::ParsedPlan;
use spectask_domain::plan::parse_plan;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The request body's schema: text with something in it besides whitespace. No `type`: any bytes
/// that are UTF-8 are Markdown, so there is no body of a "wrong type" to refuse.
struct PlanMarkdown;

impl utoipa::PartialSchema for PlanMarkdown {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
            .pattern(Some(r"\S"))
            .into()
    }
}

impl utoipa::ToSchema for PlanMarkdown {}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(parse))
}

/// Parses an implementation plan (the raw Markdown as the body) into tasks, phases, dependencies
/// and errors. A plan with unknown references or cycles still parses; its `errors` say why it
/// could not be approved.
#[utoipa::path(
    post, path = "/plans/parse", tag = "plans",
    request_body(content = PlanMarkdown, content_type = "text/markdown", description = "The plan's Markdown (UTF-8, at most 1 MiB, not blank)"),
    responses(
        (status = 200, body = ParsedPlan),
        (status = 400, description = "Body is not UTF-8", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 422, description = "Empty plan", body = ErrorBody),
    )
)]
async fn parse(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<ParsedPlan>, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: spectask_domain::limits::MAX_BODY_BYTES,
            }
        } else {
            ApiError::InvalidBody(rejection.body_text())
        }
    })?;
    let markdown = std::str::from_utf8(&body)
        .map_err(|err| ApiError::InvalidBody(format!("plan is not valid UTF-8: {err}")))?;
    if markdown.trim().is_empty() {
        return Err(ApiError::Validation("plan is empty".into()));
    }
    // Parsing a 1 MiB plan takes milliseconds; keep it off the async workers anyway.
    let markdown = markdown.to_owned();
    let plan = tokio::task::spawn_blocking(move || parse_plan(&markdown))
        .await
        .map_err(|err| ApiError::Internal(format!("plan parser task failed: {err}")))?;
    Ok(Json(plan))
}
