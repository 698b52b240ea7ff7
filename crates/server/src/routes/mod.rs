//! The route tree. Each module owns one resource and returns an `OpenApiRouter`, so a route cannot
//! be added without its OpenAPI entry. Under `/api/v1`: spec tasks, planning and its approval
//! gate, specs imported from and exported to other tools ([`imports`]), the plan parser, the implementation phase, sessions, the event stream and the agent
//! profiles ([`agents`]); `/healthz`
//! ([`health`]) sits outside the prefix. [`validate`] holds the field checks they share and
//! [`lookup`] the path ids and the rows a path must name.

pub mod agents;
pub mod events;
pub mod health;
pub mod implementation;
pub mod imports;
pub mod lookup;
pub mod planning;
pub mod plans;
pub mod sessions;
pub mod spec_tasks;
pub mod validate;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// Routes under `/api/v1`.
pub fn api_v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(spec_tasks::router())
        .merge(imports::router())
        .merge(sessions::router())
        .merge(events::router())
        .merge(plans::router())
        .merge(planning::router())
        .merge(implementation::router())
        .merge(agents::router())
}
