//! The implementation side: a task's work sessions (`sessions`), a follow-up `message`, `cancel`,
//! `retry` and `spawn` of one session, the permission requests waiting for a person
//! (`permissions`, `answer`), and a task's end of life (`archive`, `delete`).

use serde_json::{Value, json};

use super::basics::encode;
use crate::client::{CliError, CliResult, Client};
use crate::output::Output;

/// The statuses a permission request can be found in, the pending ones first.
const REQUEST_STATUSES: [&str; 3] = ["pending", "answered", "timed_out"];

pub async fn sessions(client: &Client, out: &Output, id: &str) -> CliResult<()> {
    let list = client
        .get(&format!("/spec-tasks/{}/work-sessions", encode(id)))
        .await?;
    out.print(&list, |list| {
        let sessions = list["work_sessions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if sessions.is_empty() {
            return format!(
                "{id} has no work sessions yet (they start once the spec is approved)."
            );
        }
        let rows: Vec<[String; 4]> = sessions.iter().map(session_row).collect();
        table(out, &["SESSION", "STATUS", "NAME", "WHY / NOTE"], &rows)
    });
    Ok(())
}

/// One work session as a table row: id, status, name, and why it waits or what went wrong.
pub fn session_row(ws: &Value) -> [String; 4] {
    let text = |key: &str| ws[key].as_str().unwrap_or_default().to_owned();
    let name = ws["name"]
        .as_str()
        .or(ws["implementation_task_title"].as_str())
        .unwrap_or("—");
    let note = ws["queue_reason"]
        .as_str()
        .or(ws["agent_gave_up"].as_str())
        .or(ws["error"].as_str())
        .or(ws["agent_summary"].as_str())
        .unwrap_or_default();
    let note = note.lines().next().unwrap_or_default();
    [text("id"), text("status"), name.to_owned(), note.to_owned()]
}

/// Rows under a bold header, columns padded to their widest cell; the second column is a status
/// and coloured as one.
pub fn table(out: &Output, header: &[&str; 4], rows: &[[String; 4]]) -> String {
    let mut widths = header.map(|cell| cell.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let pad = |cell: &str, width: usize| {
        let fill = width.saturating_sub(cell.chars().count());
        format!("{cell}{}", " ".repeat(fill))
    };
    let head: Vec<String> = header
        .iter()
        .zip(widths)
        .map(|(cell, width)| pad(cell, width))
        .collect();
    let mut lines = vec![out.bold(head.join("  ").trim_end())];
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(index, (cell, width))| {
                let padded = pad(cell, width);
                if index == 1 {
                    padded.replacen(cell.as_str(), &out.status(cell), 1)
                } else {
                    padded
                }
            })
            .collect();
        lines.push(cells.join("  ").trim_end().to_owned());
    }
    lines.join("\n")
}

pub async fn message(client: &Client, out: &Output, session: &str, text: &str) -> CliResult<()> {
    let path = format!("/work-sessions/{}/message", encode(session));
    let queued = client.post(&path, &json!({"text": text})).await?;
    out.print(&queued, |queued| {
        format!(
            "Queued {} for {session}: the agent reads it after its current turn.",
            out.bold(queued["turn_id"].as_str().unwrap_or_default())
        )
    });
    Ok(())
}

/// `cancel` or `retry`: a POST answered with the work session.
pub async fn session_action(
    client: &Client,
    out: &Output,
    session: &str,
    action: &str,
) -> CliResult<()> {
    let path = format!("/work-sessions/{}/{action}", encode(session));
    let ws = client.post(&path, &json!({})).await?;
    out.print(&ws, |ws| {
        let done = if action == "cancel" {
            "Cancelled"
        } else {
            "Retrying"
        };
        format!(
            "{done} {} ({})",
            out.bold(session),
            out.status(ws["status"].as_str().unwrap_or_default())
        )
    });
    Ok(())
}

pub async fn spawn(
    client: &Client,
    out: &Output,
    id: &str,
    from: &str,
    name: &str,
    description: &str,
) -> CliResult<()> {
    let path = format!(
        "/spec-tasks/{}/work-sessions/{}/spawn",
        encode(id),
        encode(from)
    );
    let body = json!({"name": name, "description": description});
    let detail = client.post(&path, &body).await?;
    out.print(&detail, |detail| {
        let ws = &detail["work_session"];
        let mut text = format!(
            "Spawned {} {} from {from} ({})",
            out.bold(ws["id"].as_str().unwrap_or_default()),
            ws["name"].as_str().unwrap_or(name),
            out.status(ws["status"].as_str().unwrap_or_default())
        );
        if let Some(reason) = ws["queue_reason"].as_str() {
            text.push_str(&format!("\n{}", out.dim(reason)));
        }
        text
    });
    Ok(())
}

pub async fn permissions(client: &Client, out: &Output, id: Option<&str>) -> CliResult<()> {
    let path = match id {
        Some(id) => format!("/spec-tasks/{}/permission-requests", encode(id)),
        None => "/permission-requests?status=pending&limit=500".to_owned(),
    };
    let list = client.get(&path).await?;
    out.print(&list, |list| {
        let requests = list["permission_requests"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let pending: Vec<&Value> = requests
            .iter()
            .filter(|request| request["status"] == "pending")
            .collect();
        if pending.is_empty() {
            return "No permission request is waiting for an answer.".into();
        }
        pending
            .iter()
            .map(|request| describe_request(request, out))
            .collect::<Vec<_>>()
            .join("\n\n")
    });
    Ok(())
}

/// A pending request: what the agent wants to do, where, and the command answering each option.
pub fn describe_request(request: &Value, out: &Output) -> String {
    let text = |key: &str| request[key].as_str().unwrap_or_default();
    let asker = request["work_session_id"].as_str().unwrap_or("planning");
    let mut lines = vec![
        format!("{}  {}", out.bold(text("id")), text("title")),
        out.dim(&format!(
            "  task {} · session {asker} · expires {}",
            text("spec_task_id"),
            text("expires_at")
        )),
    ];
    if let Some(kind) = request["tool_kind"].as_str() {
        lines.push(format!("  kind      {kind}"));
    }
    if let Some(command) = request["command"].as_str() {
        lines.push(format!("  command   {command}"));
    }
    let paths: Vec<&str> = request["locations"]
        .as_array()
        .map(|paths| paths.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !paths.is_empty() {
        lines.push(format!("  paths     {}", paths.join(", ")));
    }
    lines.push("  answer with one of:".into());
    for option in request["options"].as_array().into_iter().flatten() {
        let option_id = option["option_id"].as_str().unwrap_or_default();
        lines.push(format!(
            "    spectask task answer {} {option_id}  {}",
            text("id"),
            out.dim(&format!(
                "# {} ({})",
                option["name"].as_str().unwrap_or_default(),
                option["kind"].as_str().unwrap_or_default()
            ))
        ));
    }
    lines.join("\n")
}

pub async fn answer(client: &Client, out: &Output, request: &str, option: &str) -> CliResult<()> {
    let task = task_of_request(client, request).await?;
    let path = format!(
        "/spec-tasks/{}/permission-requests/{}",
        encode(&task),
        encode(request)
    );
    let answered = client.post(&path, &json!({"option_id": option})).await?;
    out.print(&answered, |answered| {
        format!(
            "Answered {} with {} ({})",
            out.bold(request),
            answered["choice"].as_str().unwrap_or(option),
            answered["title"].as_str().unwrap_or_default()
        )
    });
    Ok(())
}

/// The task a permission request belongs to, found in the server's lists by status (pending
/// first; an answered or timed-out one is found too, so the server says why it cannot be
/// answered again).
async fn task_of_request(client: &Client, request: &str) -> CliResult<String> {
    for status in REQUEST_STATUSES {
        let list = client
            .get(&format!("/permission-requests?status={status}&limit=500"))
            .await?;
        if let Some(task) = find_task(&list, request) {
            return Ok(task);
        }
    }
    Err(CliError::Other(anyhow::anyhow!(
        "no permission request `{request}` on this server (see `spectask task permissions`)"
    )))
}

/// The `spec_task_id` of request `id` in a `PermissionRequestList`.
pub fn find_task(list: &Value, id: &str) -> Option<String> {
    list["permission_requests"]
        .as_array()?
        .iter()
        .find(|request| request["id"] == id)
        .and_then(|request| request["spec_task_id"].as_str())
        .map(str::to_owned)
}

pub async fn archive(client: &Client, out: &Output, id: &str) -> CliResult<()> {
    let task = client
        .post(&format!("/spec-tasks/{}/archive", encode(id)), &json!({}))
        .await?;
    out.print(&task, |task| {
        format!(
            "Archived {} {} ({}); its agent stops.",
            out.bold(id),
            task["name"].as_str().unwrap_or_default(),
            out.status(task["status"].as_str().unwrap_or_default())
        )
    });
    Ok(())
}

pub async fn delete(client: &Client, out: &Output, id: &str) -> CliResult<()> {
    client
        .delete(&format!("/spec-tasks/{}", encode(id)))
        .await?;
    // The API answers 204 No Content: with --json there is no document to print.
    if !out.json {
        println!(
            "Deleted {} and everything that belonged to it.",
            out.bold(id)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_found_with_its_task() {
        let list = json!({"permission_requests": [
            {"id": "prq_1", "spec_task_id": "spt_a"},
            {"id": "prq_2", "spec_task_id": "spt_b"},
        ]});
        assert_eq!(find_task(&list, "prq_2").as_deref(), Some("spt_b"));
        assert_eq!(find_task(&list, "prq_3"), None);
        assert_eq!(find_task(&json!({}), "prq_1"), None);
    }

    #[test]
    fn the_sessions_table_is_aligned_and_says_why_a_session_waits() {
        let out = Output {
            json: false,
            color: false,
        };
        let rows = vec![
            session_row(&json!({"id": "stws_1", "status": "active", "name": "Write part one"})),
            session_row(&json!({"id": "stws_22", "status": "pending",
                "implementation_task_title": "Wire", "queue_reason": "waiting for stws_1\nmore"})),
        ];
        let text = table(&out, &["SESSION", "STATUS", "NAME", "WHY / NOTE"], &rows);
        assert_eq!(
            text,
            "SESSION  STATUS   NAME            WHY / NOTE\n\
             stws_1   active   Write part one\n\
             stws_22  pending  Wire            waiting for stws_1"
        );
    }
}
