//! Writing task progress back into the plan's Markdown. Only the state character inside a
//! task's checkbox changes (`[ ]` → `[x]`); every other byte stays as it was, so the agents' and
//! the authors' text survives any number of updates.
//!
//! An update that cannot be shown is left out of the Markdown and reported in
//! [`RenderedProgress::skipped`]: a key the plan does not have, a task written without a
//! checkbox (heading and numbered-list plans keep their progress elsewhere; a box is never
//! inserted, since that would rewrite the author's line), or the status `none`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::assemble::analyse;
use super::deps::norm_key;
use super::model::{PlanFormat, PlanTaskStatus};
use crate::enums::string_enum;

string_enum! {
    /// Why an update was not written.
    pub enum SkipReason as "progress skip reason" {
        /// No task has this key.
        UnknownKey = "unknown_key",
        /// The task has no checkbox to tick.
        NoCheckbox = "no_checkbox",
        /// `none` is not a state a checkbox can show.
        NotACheckboxState = "not_a_checkbox_state",
    }
}

/// An update [`render_progress_report`] did not write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SkippedUpdate {
    pub key: String,
    pub status: PlanTaskStatus,
    pub reason: SkipReason,
}

/// The plan with progress written in, and the updates that could not be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RenderedProgress {
    pub markdown: String,
    pub skipped: Vec<SkippedUpdate>,
}

/// Rewrites the checkboxes of the given tasks (by key, as [`super::parse_plan`] reports them)
/// and nothing else. Updates that cannot be shown are ignored; see [`render_progress_report`].
/// With several updates for one key, the last wins.
pub fn render_progress<K: AsRef<str>>(
    plan_markdown: &str,
    updates: impl IntoIterator<Item = (K, PlanTaskStatus)>,
) -> String {
    render_progress_report(plan_markdown, updates).markdown
}

/// [`render_progress`], also listing the updates it could not write.
pub fn render_progress_report<K: AsRef<str>>(
    plan_markdown: &str,
    updates: impl IntoIterator<Item = (K, PlanTaskStatus)>,
) -> RenderedProgress {
    let analysis = analyse(plan_markdown);
    let plan = &analysis.plan;
    let mut by_key: HashMap<String, usize> = HashMap::with_capacity(plan.tasks.len());
    for (i, t) in plan.tasks.iter().enumerate() {
        by_key.entry(norm_key(&t.key).into_owned()).or_insert(i);
    }
    let bytes = plan_markdown.as_bytes();
    let mut edits: BTreeMap<usize, u8> = BTreeMap::new();
    let mut skipped = Vec::new();
    for (key, status) in updates {
        let key = key.as_ref();
        let skip = |reason| SkippedUpdate {
            key: key.to_owned(),
            status,
            reason,
        };
        let Some(&i) = by_key.get(norm_key(key).as_ref()) else {
            skipped.push(skip(SkipReason::UnknownKey));
            continue;
        };
        let Some(offset) = analysis.checkboxes.get(i).copied().flatten() else {
            skipped.push(skip(SkipReason::NoCheckbox));
            continue;
        };
        let current = bytes.get(offset).copied().unwrap_or(b' ');
        let ch = match status {
            PlanTaskStatus::Pending => b' ',
            // Keep the author's spelling of a state the box already shows.
            PlanTaskStatus::Completed if matches!(current, b'x' | b'X') => current,
            PlanTaskStatus::Completed if plan.format == PlanFormat::SpecKit => b'X',
            PlanTaskStatus::Completed => b'x',
            PlanTaskStatus::InProgress if matches!(current, b'~' | b'-' | b'/') => current,
            // Kiro reads `[-]` as in progress and `[~]` as queued.
            PlanTaskStatus::InProgress if plan.format == PlanFormat::Kiro => b'-',
            PlanTaskStatus::InProgress => b'~',
            PlanTaskStatus::NoCheckbox => {
                skipped.push(skip(SkipReason::NotACheckboxState));
                continue;
            }
        };
        edits.insert(offset, ch);
    }
    let mut markdown = String::with_capacity(plan_markdown.len());
    let mut last = 0;
    for (offset, ch) in edits {
        // Offsets point at ASCII state characters, so both slices fall on char boundaries.
        markdown.push_str(plan_markdown.get(last..offset).unwrap_or(""));
        markdown.push(char::from(ch));
        last = offset + 1;
    }
    markdown.push_str(plan_markdown.get(last..).unwrap_or(""));
    RenderedProgress { markdown, skipped }
}
