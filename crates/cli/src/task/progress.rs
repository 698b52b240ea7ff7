//! `task follow`'s view of implementation: one line per work session (an indicatif spinner while
//! it runs: its status, the agent's plan steps done / total, the last tool call), a bar of the
//! plan's tasks done / total, and the dependency graph as a compact tree (structure only, no statuses), printed
//! once and again when it changes. Without a terminal the same lines are printed when they change.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::client::{CliResult, Client};
use crate::output::Output;
use crate::task::basics::encode;

/// One work session's line.
#[derive(Default)]
struct Line {
    bar: Option<ProgressBar>,
    name: String,
    status: String,
    helix_session: String,
    interaction: Option<String>,
    last_seq: Option<i64>,
    plan: Option<(usize, usize)>,
    last_tool: Option<String>,
    shown: String,
    finished: bool,
}

/// The implementation view of one task.
pub struct WorkView {
    out: Output,
    /// Bars on a terminal; `None` prints changed lines instead.
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    overall_shown: String,
    lines: BTreeMap<String, Line>,
    by_helix: HashMap<String, String>,
    tree: String,
}

impl WorkView {
    pub fn new(out: Output, terminal: bool) -> Self {
        let multi = terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Self {
            out,
            multi,
            overall: None,
            overall_shown: String::new(),
            lines: BTreeMap::new(),
            by_helix: HashMap::new(),
            tree: String::new(),
        }
    }

    /// Prints a line above the bars (or plainly without them).
    pub fn say(&self, text: &str) {
        match &self.multi {
            Some(multi) => {
                if multi.println(text).is_err() {
                    println!("{text}");
                }
            }
            None => println!("{text}"),
        }
    }

    /// Runs `f` (a prompt) with the bars hidden.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.multi {
            Some(multi) => multi.suspend(f),
            None => f(),
        }
    }

    /// Re-reads the work sessions, the progress and the plan's tasks.
    pub async fn refresh(&mut self, client: &Client, task_id: &str) -> CliResult<()> {
        let id = encode(task_id);
        let tasks = client
            .get(&format!("/spec-tasks/{id}/implementation-tasks"))
            .await?;
        self.draw_tree(&tasks["implementation_tasks"]);
        let progress = client.get(&format!("/spec-tasks/{id}/progress")).await?;
        let done = progress["completed_tasks"].as_u64().unwrap_or(0);
        let total = progress["total_tasks"].as_u64().unwrap_or(0);
        self.draw_overall(done, total);
        let sessions = client
            .get(&format!("/spec-tasks/{id}/work-sessions"))
            .await?;
        for ws in sessions["work_sessions"].as_array().into_iter().flatten() {
            let Some(ws_id) = ws["id"].as_str() else {
                continue;
            };
            let line = self.lines.entry(ws_id.to_owned()).or_default();
            line.name = ws["name"]
                .as_str()
                .or(ws["implementation_task_title"].as_str())
                .unwrap_or(ws_id)
                .to_owned();
            line.status = ws["status"].as_str().unwrap_or_default().to_owned();
            line.helix_session = ws["helix_session_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            self.by_helix
                .insert(line.helix_session.clone(), ws_id.to_owned());
        }
        let sessions: Vec<(String, String)> = self
            .lines
            .iter()
            .filter(|(_, line)| line.interaction.is_none() && !line.helix_session.is_empty())
            .map(|(id, line)| (id.clone(), line.helix_session.clone()))
            .collect();
        for (ws_id, helix) in sessions {
            self.read_latest(client, &ws_id, &helix).await?;
        }
        let ids: Vec<String> = self.lines.keys().cloned().collect();
        for id in ids {
            self.draw_line(&id);
        }
        Ok(())
    }

    /// An `interaction.*` event of Helix session `helix`: reads its new entries if it is a work
    /// session's. Returns whether it was.
    pub async fn on_interaction(
        &mut self,
        client: &Client,
        helix: &str,
        interaction: Option<&str>,
    ) -> CliResult<bool> {
        let Some(ws_id) = self.by_helix.get(helix).cloned() else {
            return Ok(false);
        };
        let known = self.lines.get(&ws_id).and_then(|l| l.interaction.clone());
        match (interaction, known) {
            (Some(new), Some(old)) if new == old => {
                self.read_entries(client, &ws_id, helix, new).await?;
            }
            _ => self.read_latest(client, &ws_id, helix).await?,
        }
        self.draw_line(&ws_id);
        Ok(true)
    }

    /// Stops the spinners (the lines stay as they were last drawn).
    pub fn finish(&mut self) {
        for line in self.lines.values_mut() {
            if let Some(bar) = line.bar.take() {
                bar.finish();
            }
        }
        if let Some(bar) = self.overall.take() {
            bar.finish();
        }
    }

    async fn read_latest(&mut self, client: &Client, ws_id: &str, helix: &str) -> CliResult<()> {
        let session = client.get(&format!("/sessions/{}", encode(helix))).await?;
        let Some(last) = session["interactions"]
            .as_array()
            .and_then(|all| all.last())
            .and_then(|i| i["id"].as_str())
        else {
            return Ok(());
        };
        self.read_entries(client, ws_id, helix, last).await
    }

    async fn read_entries(
        &mut self,
        client: &Client,
        ws_id: &str,
        helix: &str,
        interaction: &str,
    ) -> CliResult<()> {
        let Some(line) = self.lines.get_mut(ws_id) else {
            return Ok(());
        };
        if line.interaction.as_deref() != Some(interaction) {
            line.interaction = Some(interaction.to_owned());
            line.last_seq = None;
        }
        loop {
            let mut path = format!(
                "/sessions/{}/interactions/{}/entries?limit=500",
                encode(helix),
                encode(interaction)
            );
            if let Some(seq) = line.last_seq {
                path.push_str(&format!("&after_seq={seq}"));
            }
            let page = client.get(&path).await?;
            let entries = page["entries"].as_array().cloned().unwrap_or_default();
            for entry in &entries {
                line.last_seq = entry["seq"].as_i64().or(line.last_seq);
                let payload = &entry["payload"];
                match entry["kind"].as_str() {
                    Some("tool_call") => {
                        let title = payload["title"].as_str().unwrap_or("a tool");
                        line.last_tool = Some(match payload["status"].as_str() {
                            Some(status) => format!("{title} ({status})"),
                            None => title.to_owned(),
                        });
                    }
                    Some("plan") => {
                        let steps = payload["entries"].as_array().cloned().unwrap_or_default();
                        let done = steps.iter().filter(|s| s["status"] == "completed").count();
                        line.plan = Some((done, steps.len()));
                    }
                    _ => {}
                }
            }
            if entries.len() < 500 {
                return Ok(());
            }
        }
    }

    fn draw_line(&mut self, ws_id: &str) {
        let out = self.out;
        let Some(line) = self.lines.get_mut(ws_id) else {
            return;
        };
        let mut text = format!("{:<28} {}", clip(&line.name, 28), out.status(&line.status));
        if let Some((done, total)) = line.plan {
            text.push_str(&format!("  steps {done}/{total}"));
        }
        if let Some(tool) = &line.last_tool {
            text.push_str(&out.dim(&format!("  last: {}", clip(tool, 48))));
        }
        let ended = matches!(line.status.as_str(), "completed" | "failed" | "cancelled");
        if text == line.shown && ended == line.finished {
            return;
        }
        line.shown = text.clone();
        let Some(multi) = &self.multi else {
            println!("  {} {text}", mark(&line.status));
            line.finished = ended;
            return;
        };
        let bar = line.bar.get_or_insert_with(|| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        if ended && !line.finished {
            bar.set_style(
                ProgressStyle::with_template("  {prefix} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(mark(&line.status));
            bar.finish_with_message(text);
        } else {
            bar.set_message(text);
        }
        line.finished = ended;
    }

    fn draw_overall(&mut self, done: u64, total: u64) {
        if total == 0 {
            return;
        }
        let shown = format!("{done}/{total}");
        if shown == self.overall_shown {
            return;
        }
        self.overall_shown = shown;
        let Some(multi) = &self.multi else {
            println!("tasks done {done}/{total}");
            return;
        };
        let bar = self.overall.get_or_insert_with(|| {
            let bar = multi.insert(0, ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template("tasks [{bar:30}] {pos}/{len} done")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("#>-"),
            );
            bar
        });
        bar.set_length(total);
        bar.set_position(done);
    }

    /// Prints the plan's dependency graph when it differs from the last one printed.
    fn draw_tree(&mut self, tasks: &Value) {
        let tasks = tasks.as_array().cloned().unwrap_or_default();
        if tasks.is_empty() {
            return;
        }
        let tree = tree(&tasks);
        if tree == self.tree {
            return;
        }
        self.tree = tree.clone();
        self.say(&format!("{}\n{}", self.out.bold("Plan"), tree.trim_end()));
    }
}

/// The plan's tasks as a compact tree: a task under the last of its dependencies (the others
/// named after it), tasks without dependencies at the top.
pub fn tree(tasks: &[Value]) -> String {
    let key = |t: &Value| t["key"].as_str().unwrap_or_default().to_owned();
    let keys: Vec<String> = tasks.iter().map(key).collect();
    let mut children: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut roots = Vec::new();
    for (index, task) in tasks.iter().enumerate() {
        let deps: Vec<String> = task["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(str::to_owned))
            .filter(|d| keys.contains(d))
            .collect();
        match deps.last() {
            Some(parent) => children.entry(parent.clone()).or_default().push(index),
            None => roots.push(index),
        }
    }
    let mut text = String::new();
    let mut seen = vec![false; tasks.len()];
    for (n, &root) in roots.iter().enumerate() {
        walk(
            tasks,
            &children,
            root,
            "",
            n + 1 == roots.len(),
            &mut seen,
            &mut text,
        );
    }
    // Whatever a cycle kept out of the walk, listed flat.
    for (index, task) in tasks.iter().enumerate() {
        if !seen[index] {
            text.push_str(&format!("{}\n", label(task)));
        }
    }
    text
}

fn walk(
    tasks: &[Value],
    children: &BTreeMap<String, Vec<usize>>,
    index: usize,
    indent: &str,
    last: bool,
    seen: &mut Vec<bool>,
    text: &mut String,
) {
    if seen[index] {
        return;
    }
    seen[index] = true;
    let task = &tasks[index];
    let branch = if last { "└─ " } else { "├─ " };
    text.push_str(&format!("{indent}{branch}{}\n", label(task)));
    let below = format!("{indent}{}", if last { "   " } else { "│  " });
    let key = task["key"].as_str().unwrap_or_default();
    let kids = children.get(key).cloned().unwrap_or_default();
    for (n, &child) in kids.iter().enumerate() {
        walk(
            tasks,
            children,
            child,
            &below,
            n + 1 == kids.len(),
            seen,
            text,
        );
    }
}

fn label(task: &Value) -> String {
    let deps: Vec<&str> = task["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut label = format!(
        "{}. {}",
        task["key"].as_str().unwrap_or_default(),
        task["title"].as_str().unwrap_or_default(),
    );
    if deps.len() > 1 {
        label.push_str(&format!(" (after {})", deps.join(", ")));
    }
    label
}

/// A status's mark, so colour is never the only signal.
fn mark(status: &str) -> &'static str {
    match status {
        "completed" => "✓",
        "failed" => "✗",
        "cancelled" => "–",
        "blocked" => "!",
        _ => "·",
    }
}

fn clip(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= max {
        return line.to_owned();
    }
    let mut clipped: String = line.chars().take(max.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn the_tree_puts_a_task_under_its_last_dependency() {
        let tasks = [
            json!({"key": "1", "title": "One", "status": "completed", "dependencies": []}),
            json!({"key": "2", "title": "Two", "status": "pending", "dependencies": []}),
            json!({"key": "3", "title": "Three", "status": "pending", "dependencies": ["1", "2"]}),
        ];
        assert_eq!(
            super::tree(&tasks),
            "├─ 1. One\n└─ 2. Two\n   └─ 3. Three (after 1, 2)\n"
        );
    }
}
