//! The traceability matrix: every acceptance criterion of the task's requirements with the plan
//! tasks naming it, their work sessions, commits and latest check runs, and its coverage.

use axum::Json;
use axum::extract::{Path, State};
use spectask_domain::traceability::TraceMatrix;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::routes::lookup::task_id;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_trace))
}

/// The task's traceability matrix.
#[utoipa::path(
    get, path = "/spec-tasks/{id}/trace", tag = "implementation",
    params(("id" = String, Path, description = "SpecTask id")),
    responses((status = 200, body = TraceMatrix), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn get_trace(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TraceMatrix>, ApiError> {
    Ok(Json(state.engine.trace(&task_id(&id)?).await?))
}
