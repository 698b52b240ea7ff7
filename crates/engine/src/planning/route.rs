//! Which planner answers a task: its `spec_agent` names an LLM planner profile or an ACP agent
//! profile of the agent runtime; a task that names none gets the default LLM planner.
//!
//! Precedence: a planner profile wins over an agent profile of the same name. The `serve`
//! command refuses such a configuration, so the rule only matters for embedders.

use crate::planners::PlannerProfile;
use crate::{Engine, EngineError};

/// How a task's planning runs.
#[derive(Debug, Clone, Copy)]
pub enum PlanningRoute<'a> {
    /// One chat completion per turn from an OpenAI-compatible planner.
    Llm(&'a PlannerProfile),
    /// An ACP session of this agent profile, in the task's workspace, writing the documents as
    /// files ([`crate::planning::agent`]).
    Agent(&'a str),
}

impl Engine {
    /// The planner for a task's `spec_agent`.
    pub fn planning_route<'a>(
        &'a self,
        spec_agent: Option<&'a str>,
    ) -> Result<PlanningRoute<'a>, EngineError> {
        let planners = &self.inner.planners;
        match spec_agent {
            Some(name) if !planners.has_profile(name) => match &self.inner.runtime {
                Some(runtime) if runtime.knows_agent(name) => Ok(PlanningRoute::Agent(name)),
                _ => Err(EngineError::UnknownPlanner {
                    name: name.to_owned(),
                    known: format!(
                        "{}{}",
                        if planners.names().is_empty() {
                            "none".to_owned()
                        } else {
                            planners.names().join(", ")
                        },
                        if self.inner.runtime.is_some() {
                            " (or an agent profile from spectask.toml)"
                        } else {
                            ""
                        }
                    ),
                }),
            },
            other => planners.resolve(other).map(PlanningRoute::Llm),
        }
    }
}
