//! The implementation phase (the seed's multi-session endpoints), one module per resource: the
//! work sessions and their actions ([`work_sessions`]), the Zed instance with its threads and the
//! progress against the plan ([`instance`]), the review gate at the end ([`review`]) with the
//! git diffs it reads ([`diffs`]), and the agents' permission requests ([`permission_requests`]).

pub mod diffs;
pub mod instance;
pub mod permission_requests;
pub mod review;
pub mod trace;
pub mod work_sessions;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(work_sessions::router())
        .merge(instance::router())
        .merge(review::router())
        .merge(diffs::router())
        .merge(permission_requests::router())
        .merge(trace::router())
}
