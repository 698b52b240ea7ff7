//! The review points of a task thread: what a prompt means at `spec_review` or
//! `implementation_review` ([`decide`]), the spec gate (links to the documents, then the
//! permission question "Approve the spec (revision N)", bound to that revision) and the summary
//! the turn ends with at `implementation_review` (each session's summary, then the diff, or the
//! files the agents touched without git).

use agent_client_protocol::Error;
use agent_client_protocol::v1::schema::{
    PermissionOption, PermissionOptionKind, StopReason, ToolCallStatus, ToolCallUpdate,
    ToolCallUpdateFields, ToolKind,
};
use serde_json::{Value, json};

use super::api_error;
use super::editor::Editor;
use super::task_turn::Turn;
use crate::client::{CliError, Client};
use crate::task::basics::encode;

const APPROVE: &str = "approve";
const REQUEST_CHANGES: &str = "request_changes";
/// How much of the task's diff the review summary quotes.
const DIFF_BYTES: usize = 48 * 1024;

/// Whether the prompt is an approval.
pub(super) fn is_approval(text: &str) -> bool {
    let word = text
        .trim()
        .trim_end_matches(['.', '!'])
        .to_ascii_lowercase();
    matches!(word.as_str(), "approve" | "approved" | "lgtm" | "yes")
}

/// What a prompt does to an existing task before the turn follows it.
pub(super) async fn decide(
    client: &Client,
    editor: &Editor,
    id: &str,
    task: &Value,
    text: &str,
) -> Result<(), Error> {
    let path = |action: &str| format!("/spec-tasks/{}/{action}", encode(id));
    match task["status"].as_str().unwrap_or_default() {
        "spec_review" => {
            let revision = latest_revision(client, id).await?;
            if is_approval(text) {
                approve_spec(client, editor, id, revision).await?;
            } else {
                client
                    .post(
                        &path("approve-specs"),
                        &json!({"approved": false, "revision": revision, "comments": text}),
                    )
                    .await
                    .map_err(api_error)?;
                editor.text(&format!(
                    "Changes requested on revision {revision}; the planner is writing revision {}.\n\n",
                    revision + 1
                ))?;
            }
        }
        "implementation_review" => {
            if is_approval(text) {
                client
                    .post(&path("approve-implementation"), &json!({}))
                    .await
                    .map_err(api_error)?;
                editor.text("Approved: the task is done.\n")?;
            } else {
                client
                    .post(&path("request-changes"), &json!({"comment": text}))
                    .await
                    .map_err(api_error)?;
                editor.text("Changes requested; the agents are back at work.\n\n")?;
            }
        }
        "backlog" | "spec_failed" => {
            client
                .post(&path("start-planning"), &json!({}))
                .await
                .map_err(api_error)?;
            editor.text("Planning (again).\n\n")?;
        }
        _ => {}
    }
    Ok(())
}

pub(super) async fn latest_revision(client: &Client, id: &str) -> Result<i64, Error> {
    let specs = client
        .get(&format!("/spec-tasks/{}/specs", encode(id)))
        .await
        .map_err(api_error)?;
    specs["revision"]
        .as_i64()
        .ok_or_else(|| Error::internal_error().data("the task has no spec revision yet"))
}

/// Approves `revision`; `false` when a newer one exists (said in the thread).
pub(super) async fn approve_spec(
    client: &Client,
    editor: &Editor,
    id: &str,
    revision: i64,
) -> Result<bool, Error> {
    let approved = client
        .post(
            &format!("/spec-tasks/{}/approve-specs", encode(id)),
            &json!({"approved": true, "revision": revision}),
        )
        .await;
    match approved {
        Ok(_) => {
            editor.text(&format!(
                "Approved revision {revision}: implementation starts.\n\n"
            ))?;
            Ok(true)
        }
        Err(CliError::Refused { code, body, .. }) if code == "stale_revision" => {
            editor.text(&format!(
                "Revision {revision} is no longer the latest (revision {} is): not approved.\n\n",
                body["error"]["latest_revision"]
            ))?;
            Ok(false)
        }
        Err(err) => Err(api_error(err)),
    }
}

impl Turn<'_> {
    /// The spec is ready: links to its documents, then the question. `Some` ends the turn.
    pub(super) async fn spec_gate(&mut self) -> Result<Option<StopReason>, Error> {
        let task = self.task().await?;
        let revision = latest_revision(self.client, &self.id).await?;
        let dir = std::path::Path::new(task["project_path"].as_str().unwrap_or_default())
            .join(".spectask")
            .join("specs")
            .join(&self.id);
        self.editor.text(&format!(
            "\n\nRevision {revision} of the spec is ready:\n\n"
        ))?;
        for file in ["requirements.md", "design.md", "tasks.md"] {
            let path = dir.join(file);
            self.editor
                .link(file, &format!("file://{}", path.display()))?;
            self.editor.text("\n")?;
        }
        let call = format!("approve-spec:{}:{revision}", self.id);
        let question = ToolCallUpdate::new(
            call.clone(),
            ToolCallUpdateFields::new()
                .title(format!("Approve the spec (revision {revision})"))
                .kind(ToolKind::Think)
                .status(ToolCallStatus::Pending)
                .raw_input(json!({"spec_task_id": self.id, "revision": revision})),
        );
        let options = vec![
            PermissionOption::new(APPROVE, "Approve", PermissionOptionKind::AllowOnce),
            PermissionOption::new(
                REQUEST_CHANGES,
                "Request changes",
                PermissionOptionKind::RejectOnce,
            ),
        ];
        let answer = tokio::select! {
            answer = self.editor.ask(question, options) => answer?,
            _ = self.cancel.wait_for(|cancelled| *cancelled) => None,
        };
        let close = |status| {
            self.editor.tool_update(ToolCallUpdate::new(
                call.clone(),
                ToolCallUpdateFields::new().status(status),
            ))
        };
        match answer.as_deref() {
            Some(APPROVE) => {
                close(ToolCallStatus::Completed)?;
                approve_spec(self.client, self.editor, &self.id, revision).await?;
                Ok(None)
            }
            Some(_) => {
                close(ToolCallStatus::Failed)?;
                self.editor.text(&format!(
                    "What should change in revision {revision}? Your next message goes to the \
                     planner as the change request (or say `approve`).\n"
                ))?;
                Ok(Some(StopReason::EndTurn))
            }
            None => {
                close(ToolCallStatus::Failed)?;
                Ok(Some(StopReason::Cancelled))
            }
        }
    }

    /// At `implementation_review`: what each session did, and the diff or the touched files.
    pub(super) async fn review_summary(&mut self) -> Result<(), Error> {
        let sessions = self
            .client
            .get(&format!("/spec-tasks/{}/work-sessions", encode(&self.id)))
            .await
            .map_err(api_error)?;
        let mut text = String::from("\n\n## Ready for review\n\n");
        for ws in sessions["work_sessions"].as_array().into_iter().flatten() {
            let name = ws["name"]
                .as_str()
                .or(ws["implementation_task_title"].as_str())
                .unwrap_or_default();
            let summary = ws["agent_summary"].as_str().unwrap_or("");
            text.push_str(&format!(
                "- **{name}** ({}){}{summary}\n",
                ws["status"].as_str().unwrap_or_default(),
                if summary.is_empty() { "" } else { ": " }
            ));
        }
        let diff = self
            .client
            .get(&format!("/spec-tasks/{}/diff?limit=200", encode(&self.id)))
            .await;
        match diff {
            Ok(diff) => text.push_str(&diff_markdown(&diff)),
            Err(CliError::Refused { message, .. }) => {
                let files = self.mirror.touched_files();
                text.push_str(&format!("\nNo diff ({message}). "));
                if files.is_empty() {
                    text.push_str("The agents named no files.\n");
                } else {
                    text.push_str("The files the agents touched:\n\n");
                    for file in files {
                        text.push_str(&format!("- `{file}`\n"));
                    }
                }
            }
            Err(err) => return Err(api_error(err)),
        }
        text.push_str(
            "\nSay `approve` to accept the work, or say what should change and the agents go \
             back to it.\n",
        );
        self.editor.text(&text)
    }
}

/// The task's diff as Markdown: a file table, then the patches up to [`DIFF_BYTES`].
fn diff_markdown(diff: &Value) -> String {
    let mut text = format!(
        "\n**{} files changed**, +{} −{} on `{}`\n\n",
        diff["total_files"],
        diff["additions"],
        diff["deletions"],
        diff["branch_name"].as_str().unwrap_or_default()
    );
    let files = diff["files"].as_array().cloned().unwrap_or_default();
    for file in &files {
        text.push_str(&format!(
            "- `{}` ({}, +{} −{})\n",
            file["path"].as_str().unwrap_or_default(),
            file["status"].as_str().unwrap_or_default(),
            file["additions"],
            file["deletions"]
        ));
    }
    let mut patches = String::new();
    for file in &files {
        if let Some(patch) = file["patch"].as_str() {
            if patches.len() + patch.len() > DIFF_BYTES {
                patches.push_str("… (the rest: `spectask task diff` or the web UI)\n");
                break;
            }
            patches.push_str(patch);
            if !patch.ends_with('\n') {
                patches.push('\n');
            }
        }
    }
    if !patches.is_empty() {
        text.push_str(&format!("\n```diff\n{patches}```\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_words_approve_and_anything_else_is_a_change_request() {
        for yes in ["approve", " Approve.", "APPROVED", "lgtm", "yes!"] {
            assert!(is_approval(yes), "{yes}");
        }
        for no in ["approve but rename it", "no", "", "Sign the parts"] {
            assert!(!is_approval(no), "{no}");
        }
    }

    #[test]
    fn the_review_quotes_the_diff_up_to_its_bound() {
        let diff = json!({
            "total_files": 2, "additions": 3, "deletions": 1, "branch_name": "spectask/x",
            "files": [
                {"path": "a.txt", "status": "added", "additions": 2, "deletions": 0,
                 "patch": "+one\n+two"},
                {"path": "b.txt", "status": "modified", "additions": 1, "deletions": 1,
                 "patch": "x".repeat(DIFF_BYTES)}
            ]
        });
        let text = diff_markdown(&diff);
        assert!(text.contains("**2 files changed**, +3 −1 on `spectask/x`"));
        assert!(text.contains("- `b.txt` (modified, +1 −1)"));
        assert!(text.contains("```diff\n+one\n+two\n… (the rest"));
    }
}
