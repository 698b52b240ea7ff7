//! Planner profiles: which model answers a task's planning, with what extra instructions. A task's
//! `spec_agent` names a profile; tasks that name none use the default planner.

use std::collections::BTreeMap;

use spectask_runtimes::llm::{LlmClient, LlmConfig, LlmError};

use crate::error::EngineError;

/// One configured planner.
#[derive(Debug, Clone)]
pub struct PlannerProfile {
    pub name: String,
    pub client: LlmClient,
    /// Appended to the planning system prompt (house rules, stack conventions).
    pub system_prompt_extra: Option<String>,
}

impl PlannerProfile {
    pub fn new(
        name: impl Into<String>,
        config: LlmConfig,
        system_prompt_extra: Option<String>,
    ) -> Result<Self, LlmError> {
        Ok(Self {
            name: name.into(),
            client: LlmClient::new(config)?,
            system_prompt_extra,
        })
    }
}

/// Every configured planner.
#[derive(Debug, Clone, Default)]
pub struct PlannerRegistry {
    default: Option<PlannerProfile>,
    profiles: BTreeMap<String, PlannerProfile>,
}

impl PlannerRegistry {
    pub fn new(
        default: Option<PlannerProfile>,
        profiles: impl IntoIterator<Item = PlannerProfile>,
    ) -> Self {
        Self {
            default,
            profiles: profiles.into_iter().map(|p| (p.name.clone(), p)).collect(),
        }
    }

    /// The planner for a task's `spec_agent`.
    pub fn resolve(&self, spec_agent: Option<&str>) -> Result<&PlannerProfile, EngineError> {
        match spec_agent {
            None => self
                .default
                .as_ref()
                .ok_or(EngineError::PlannerNotConfigured),
            Some(name) => self
                .profiles
                .get(name)
                .ok_or_else(|| EngineError::UnknownPlanner {
                    name: name.to_owned(),
                    known: if self.profiles.is_empty() {
                        "none".to_owned()
                    } else {
                        self.names().join(", ")
                    },
                }),
        }
    }

    /// Whether a task with this `spec_agent` can be planned.
    pub fn can_plan(&self, spec_agent: Option<&str>) -> bool {
        self.resolve(spec_agent).is_ok()
    }

    /// Whether `name` is a configured profile.
    pub fn has_profile(&self, name: &str) -> bool {
        self.profiles.contains_key(name)
    }

    /// The planner of tasks that name none, if one is configured.
    pub fn default_planner(&self) -> Option<&PlannerProfile> {
        self.default.as_ref()
    }

    /// The named profiles, by name.
    pub fn profiles(&self) -> impl Iterator<Item = &PlannerProfile> {
        self.profiles.values()
    }

    pub fn names(&self) -> Vec<String> {
        self.profiles.keys().cloned().collect()
    }
}
