//! The dependency graph between work sessions, derived from the plan's implementation tasks:
//! a work session owns a top-level task and its sub-tasks; it waits for the work sessions owning
//! the tasks any of them depends on. Spawned sessions own no task and wait for nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use spectask_domain::{
    SpecTaskImplementationTask, SpecTaskWorkSession, WorkSessionId, WorkSessionStatus,
};

/// Who waits for whom, within one SpecTask.
#[derive(Debug, Default)]
pub struct SessionGraph {
    /// Work session → the work sessions it waits for.
    waits_for: HashMap<WorkSessionId, BTreeSet<WorkSessionId>>,
    /// Work session → the task keys it waits for (for `queue_reason`).
    waits_for_keys: HashMap<WorkSessionId, BTreeSet<String>>,
}

/// The key of `key`'s top-level ancestor.
fn top_level<'a>(key: &'a str, parents: &HashMap<&'a str, &'a str>) -> &'a str {
    let mut current = key;
    // Bounded by the number of tasks, so a malformed parent chain cannot loop for ever.
    for _ in 0..=parents.len() {
        match parents.get(current) {
            Some(parent) => current = parent,
            None => break,
        }
    }
    current
}

impl SessionGraph {
    pub fn new(tasks: &[SpecTaskImplementationTask]) -> Self {
        let parents: HashMap<&str, &str> = tasks
            .iter()
            .filter_map(|t| t.parent_key.as_deref().map(|p| (t.key.as_str(), p)))
            .collect();
        let owner_of_top: HashMap<&str, &WorkSessionId> = tasks
            .iter()
            .filter(|t| t.parent_key.is_none())
            .filter_map(|t| {
                t.assigned_work_session_id
                    .as_ref()
                    .map(|ws| (t.key.as_str(), ws))
            })
            .collect();
        let mut graph = SessionGraph::default();
        for task in tasks {
            let top = top_level(&task.key, &parents);
            let Some(&owner) = owner_of_top.get(top) else {
                continue;
            };
            for dependency in &task.dependencies {
                let dependency_top = top_level(dependency, &parents);
                if dependency_top == top {
                    continue; // inside the same thread: order is the agent's business
                }
                if let Some(&other) = owner_of_top.get(dependency_top) {
                    graph
                        .waits_for
                        .entry(owner.clone())
                        .or_default()
                        .insert(other.clone());
                    graph
                        .waits_for_keys
                        .entry(owner.clone())
                        .or_default()
                        .insert(dependency.clone());
                }
            }
        }
        graph
    }

    /// The work sessions `ws` waits for.
    pub fn waits_for(&self, ws: &WorkSessionId) -> impl Iterator<Item = &WorkSessionId> {
        self.waits_for.get(ws).into_iter().flatten()
    }

    /// Task keys `ws` waits for whose owning session is not completed yet.
    pub fn unmet(
        &self,
        ws: &WorkSessionId,
        sessions: &BTreeMap<WorkSessionId, &SpecTaskWorkSession>,
    ) -> Vec<WorkSessionId> {
        self.waits_for(ws)
            .filter(|other| {
                sessions
                    .get(*other)
                    .is_none_or(|s| s.status != WorkSessionStatus::Completed)
            })
            .cloned()
            .collect()
    }

    pub fn waits_for_keys(&self, ws: &WorkSessionId) -> Vec<String> {
        self.waits_for_keys
            .get(ws)
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every work session that waits, directly or transitively, for `ws`.
    pub fn dependants(&self, ws: &WorkSessionId) -> Vec<WorkSessionId> {
        let mut found: BTreeSet<WorkSessionId> = BTreeSet::new();
        let mut frontier = vec![ws.clone()];
        while let Some(current) = frontier.pop() {
            for (waiter, targets) in &self.waits_for {
                if targets.contains(&current) && found.insert(waiter.clone()) {
                    frontier.push(waiter.clone());
                }
            }
        }
        found.remove(ws);
        found.into_iter().collect()
    }
}
