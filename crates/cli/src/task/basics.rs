//! Creating, listing and showing tasks.

use serde_json::Value;

use crate::client::{CliResult, Client};
use crate::output::Output;

pub async fn create(client: &Client, out: &Output, body: &Value) -> CliResult<()> {
    let task = client.post("/spec-tasks/from-prompt", body).await?;
    out.print(&task, |task| {
        format!(
            "Created {} {} ({})\nFollow it: spectask task follow {}",
            out.bold(task["id"].as_str().unwrap_or_default()),
            task["name"].as_str().unwrap_or_default(),
            out.status(task["status"].as_str().unwrap_or_default()),
            task["id"].as_str().unwrap_or_default(),
        )
    });
    Ok(())
}

pub async fn list(
    client: &Client,
    out: &Output,
    status: Option<String>,
    query: Option<String>,
    limit: u32,
) -> CliResult<()> {
    let mut path = format!("/spec-tasks?limit={limit}");
    if let Some(status) = status {
        path.push_str(&format!("&status={}", encode(&status)));
    }
    if let Some(query) = query {
        path.push_str(&format!("&q={}", encode(&query)));
    }
    let page = client.get(&path).await?;
    out.print(&page, |page| {
        let tasks = page["spec_tasks"].as_array().cloned().unwrap_or_default();
        if tasks.is_empty() {
            return "No tasks.".into();
        }
        let mut lines: Vec<String> = tasks
            .iter()
            .map(|task| {
                format!(
                    "{}  {:<22}  {}",
                    task["id"].as_str().unwrap_or_default(),
                    out.status(task["status"].as_str().unwrap_or_default()),
                    task["name"].as_str().unwrap_or_default()
                )
            })
            .collect();
        lines.push(out.dim(&format!("{} of {} tasks", tasks.len(), page["total"])));
        lines.join("\n")
    });
    Ok(())
}

pub async fn show(client: &Client, out: &Output, id: &str) -> CliResult<()> {
    let task = client.get(&format!("/spec-tasks/{}", encode(id))).await?;
    out.print(&task, |task| {
        let field = |key: &str| task[key].as_str().unwrap_or("—").to_owned();
        let mut lines = vec![
            format!("{} {}", out.bold(&field("id")), field("name")),
            format!("status    {}", out.status(&field("status"))),
            format!(
                "type      {} · priority {}",
                field("type"),
                field("priority")
            ),
            format!("project   {}", field("project_path")),
        ];
        if let Some(branch) = task["branch_name"].as_str() {
            lines.push(format!("branch    {branch}"));
        }
        if let Some(error) = task["error"].as_str() {
            lines.push(format!("error     {error}"));
        }
        lines.push(format!("prompt    {}", field("original_prompt")));
        lines.join("\n")
    });
    Ok(())
}

/// Percent-encodes a query or path value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
