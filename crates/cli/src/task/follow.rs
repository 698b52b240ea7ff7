//! `spectask task follow ID`: a task live, from its event stream ([`super::events`]), until it
//! reaches a review or a final status. For people: status changes, the planner's output as it
//! streams, the implementation view ([`super::progress`]), and permission requests as a prompt of
//! their options when attached to a terminal (else the `spectask task answer` command to run).
//! With `--json`: every event as one JSON line. Exit: 0 at spec_review, implementation_review or
//! done; 4 at spec_failed or implementation_failed.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};

use serde_json::{Value, json};

use super::events::{EventStream, Next};
use super::progress::WorkView;
use crate::client::{CliError, CliResult, Client};
use crate::output::Output;
use crate::task::basics::encode;

const PLANNING: [&str; 2] = ["spec_generation", "spec_revision"];
const IMPLEMENTING: [&str; 3] = ["spec_approved", "implementation_queued", "implementation"];

/// Where following stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Waiting for a person: `spec_review` or `implementation_review`.
    Review(String),
    Done,
    /// `spec_failed` or `implementation_failed`, with the task's error if any.
    Failed {
        status: String,
        error: String,
    },
}

impl Outcome {
    fn of(task: &Value) -> Option<Self> {
        let status = task["status"].as_str().unwrap_or_default();
        match status {
            "spec_review" | "implementation_review" => Some(Self::Review(status.to_owned())),
            "done" => Some(Self::Done),
            "spec_failed" | "implementation_failed" => Some(Self::Failed {
                status: status.to_owned(),
                error: task["error"].as_str().unwrap_or_default().to_owned(),
            }),
            _ => None,
        }
    }
}

/// `task follow`: follows, then the exit code of where it stopped.
pub async fn command(client: &Client, out: &Output, id: &str) -> CliResult<()> {
    match follow(client, out, id).await? {
        Outcome::Failed { status, error } => Err(CliError::TaskFailed(format!(
            "the task ended {status}{}",
            if error.is_empty() {
                String::new()
            } else {
                format!(": {error}")
            }
        ))),
        Outcome::Review(_) | Outcome::Done => Ok(()),
    }
}

/// Follows task `id` until it reaches a review or a final status.
pub async fn follow(client: &Client, out: &Output, id: &str) -> CliResult<Outcome> {
    // Connect first: every event from here on arrives, so reading the state next misses nothing.
    let mut stream = EventStream::connect(client, id).await?;
    let task = client.get(&format!("/spec-tasks/{}", encode(id))).await?;
    if out.json {
        return follow_json(client, id, task, &mut stream).await;
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let mut follower = Follower {
        client,
        out: *out,
        id: id.to_owned(),
        task: Value::Null,
        status: String::new(),
        planning: Planning::default(),
        work: None,
        asked: HashSet::new(),
        interactive,
    };
    println!(
        "{} {} {}",
        out.bold("Following"),
        task["id"].as_str().unwrap_or(id),
        task["name"].as_str().unwrap_or_default()
    );
    // The first reads may meet a server going away as well as the later ones do.
    let first = match follower.apply_task(task).await {
        Ok(Some(outcome)) => return Ok(outcome),
        Ok(None) => follower.sync().await,
        Err(err) => Err(err),
    };
    if let Err(err) = first {
        follower.recover(err, &mut stream)?;
    }
    loop {
        let handled = match stream.next().await? {
            Next::Event(event) => follower.on_event(&event).await,
            Next::Lost(reason) => {
                follower.say(&out.dim(&format!("connection lost ({reason}); reconnecting…")));
                Ok(None)
            }
            Next::Resumed => {
                follower.say(&out.dim("reconnected; resuming after the last event"));
                follower.resync().await
            }
        };
        match handled {
            Ok(Some(outcome)) => return Ok(outcome),
            Ok(None) => {}
            Err(err) => follower.recover(err, &mut stream)?,
        }
    }
}

/// `--json`: the events as JSON lines, until the task stops.
async fn follow_json(
    client: &Client,
    id: &str,
    task: Value,
    stream: &mut EventStream,
) -> CliResult<Outcome> {
    if let Some(outcome) = Outcome::of(&task) {
        return Ok(outcome);
    }
    loop {
        match stream.next().await? {
            Next::Event(event) => {
                println!("{}", serde_json::to_string(&event).unwrap_or_default());
                let kind = event["kind"].as_str().unwrap_or_default();
                if !kind.starts_with("spec_task.") {
                    continue;
                }
            }
            Next::Lost(reason) => {
                eprintln!("connection lost ({reason}); reconnecting…");
                continue;
            }
            Next::Resumed => {}
        }
        let task = client.get(&format!("/spec-tasks/{}", encode(id))).await?;
        if let Some(outcome) = Outcome::of(&task) {
            return Ok(outcome);
        }
    }
}

/// How much of the planner's latest output is printed.
#[derive(Default)]
struct Planning {
    seen: bool,
    interaction: Option<String>,
    printed: usize,
    open_line: bool,
}

struct Follower<'a> {
    client: &'a Client,
    out: Output,
    id: String,
    task: Value,
    status: String,
    planning: Planning,
    work: Option<WorkView>,
    asked: HashSet<String>,
    interactive: bool,
}

impl Follower<'_> {
    /// A read beside the stream failed. The server went away (or answers 5xx while it goes down
    /// or starts up): say so and reconnect the stream, whose resumption reads everything again.
    /// Any other error ends the follow.
    fn recover(&mut self, err: CliError, stream: &mut EventStream) -> CliResult<()> {
        let out = self.out;
        match err {
            CliError::Other(err) => {
                self.say(&out.dim(&format!("connection lost ({err}); reconnecting…")));
            }
            CliError::Refused {
                status, message, ..
            } if status >= 500 => {
                self.say(&out.dim(&format!(
                    "the server is unavailable ({status}: {message}); reconnecting…"
                )));
            }
            err => return Err(err),
        }
        stream.reconnect();
        Ok(())
    }

    /// Prints a line above any progress bars.
    fn say(&mut self, text: &str) {
        self.end_planning_line();
        match &self.work {
            Some(work) => work.say(text),
            None => println!("{text}"),
        }
    }

    fn end_planning_line(&mut self) {
        if self.planning.open_line {
            println!();
            self.planning.open_line = false;
        }
    }

    /// Takes the task's current state; its outcome when it has stopped.
    async fn apply_task(&mut self, task: Value) -> CliResult<Option<Outcome>> {
        let status = task["status"].as_str().unwrap_or_default().to_owned();
        self.task = task;
        if status == self.status {
            return Ok(None);
        }
        let first = self.status.is_empty();
        self.status = status.clone();
        if PLANNING.contains(&status.as_str()) {
            self.planning.seen = true;
        }
        // The planner's last words, before saying it has stopped.
        if self.planning.seen {
            self.refresh_planning().await?;
        }
        if IMPLEMENTING.contains(&status.as_str()) || status == "implementation_review" {
            self.refresh_work().await?;
        }
        self.end_planning_line();
        if let Some(work) = &mut self.work
            && !IMPLEMENTING.contains(&status.as_str())
        {
            work.finish();
        }
        let line = format!(
            "{} {}",
            if first { "status" } else { "→" },
            self.out.status(&status)
        );
        self.say(&line);
        let outcome = Outcome::of(&self.task);
        if let Some(Outcome::Failed { error, .. }) = &outcome
            && !error.is_empty()
        {
            self.say(&format!("error: {error}"));
        }
        Ok(outcome)
    }

    /// After a reconnection: the task, then everything a missed event could have changed.
    async fn resync(&mut self) -> CliResult<Option<Outcome>> {
        let task = self
            .client
            .get(&format!("/spec-tasks/{}", encode(&self.id)))
            .await?;
        if let Some(outcome) = self.apply_task(task).await? {
            return Ok(Some(outcome));
        }
        self.sync().await?;
        Ok(None)
    }

    /// Reads everything a missed event could have changed.
    async fn sync(&mut self) -> CliResult<()> {
        if self.planning.seen {
            self.refresh_planning().await?;
        }
        if IMPLEMENTING.contains(&self.status.as_str()) {
            self.refresh_work().await?;
        }
        self.permissions().await
    }

    async fn on_event(&mut self, event: &Value) -> CliResult<Option<Outcome>> {
        let kind = event["kind"].as_str().unwrap_or_default();
        let payload = &event["payload"];
        match kind {
            k if k.starts_with("spec_task.") => {
                let task = self
                    .client
                    .get(&format!("/spec-tasks/{}", encode(&self.id)))
                    .await?;
                return self.apply_task(task).await;
            }
            "interaction.created" | "interaction.updated" => {
                let session = payload["session_id"].as_str().unwrap_or_default();
                if Some(session) == self.task["spec_session_id"].as_str() {
                    if self.planning.seen {
                        self.refresh_planning().await?;
                    }
                } else if let Some(work) = &mut self.work {
                    let interaction = (kind == "interaction.updated")
                        .then(|| event["entity_id"].as_str())
                        .flatten();
                    work.on_interaction(self.client, session, interaction)
                        .await?;
                }
            }
            "permission.requested" => self.permissions().await?,
            k if (k.starts_with("work_session.")
                || k.starts_with("implementation_task.")
                || k.starts_with("agent."))
                && IMPLEMENTING.contains(&self.status.as_str()) =>
            {
                self.refresh_work().await?;
            }
            _ => {}
        }
        Ok(None)
    }

    /// Prints what the planner wrote since the last call.
    async fn refresh_planning(&mut self) -> CliResult<()> {
        let Some(sid) = self.task["spec_session_id"].as_str().map(str::to_owned) else {
            return Ok(());
        };
        let session = self
            .client
            .get(&format!("/sessions/{}", encode(&sid)))
            .await?;
        let Some(last) = session["interactions"]
            .as_array()
            .and_then(|all| all.last())
        else {
            return Ok(());
        };
        let id = last["id"].as_str().map(str::to_owned);
        let text = last["response_message"].as_str().unwrap_or_default();
        if id != self.planning.interaction {
            self.end_planning_line();
            println!("{}", self.out.dim("── planner output ──"));
            self.planning.interaction = id;
            self.planning.printed = 0;
        }
        if text.len() < self.planning.printed {
            self.end_planning_line();
            println!("{}", self.out.dim("── the planner started over ──"));
            self.planning.printed = 0;
        }
        if let Some(new) = text.get(self.planning.printed..)
            && !new.is_empty()
        {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(new.as_bytes());
            let _ = stdout.flush();
            self.planning.printed = text.len();
            self.planning.open_line = !text.ends_with('\n');
        }
        Ok(())
    }

    async fn refresh_work(&mut self) -> CliResult<()> {
        self.end_planning_line();
        let terminal = std::io::stdout().is_terminal();
        let work = self
            .work
            .get_or_insert_with(|| WorkView::new(self.out, terminal));
        work.refresh(self.client, &self.id).await
    }

    /// Asks about (or prints) every pending permission request not handled yet.
    async fn permissions(&mut self) -> CliResult<()> {
        let list = self
            .client
            .get(&format!(
                "/spec-tasks/{}/permission-requests",
                encode(&self.id)
            ))
            .await?;
        let pending: Vec<Value> = list["permission_requests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["status"] == "pending")
            .filter(|r| r["id"].as_str().is_some_and(|id| !self.asked.contains(id)))
            .cloned()
            .collect();
        for request in pending {
            let rid = request["id"].as_str().unwrap_or_default().to_owned();
            self.asked.insert(rid.clone());
            self.ask(&rid, &request).await?;
        }
        Ok(())
    }

    async fn ask(&mut self, rid: &str, request: &Value) -> CliResult<()> {
        let title = request["title"].as_str().unwrap_or("a tool call");
        let command = request["command"]
            .as_str()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        let options: Vec<(String, String)> = request["options"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                (
                    o["option_id"].as_str().unwrap_or_default().to_owned(),
                    o["name"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let question = format!("Permission: the agent wants to {title}{command}");
        if !self.interactive || options.is_empty() {
            let mut text = format!("{} {question}\n  answer with:", self.out.bold("?"));
            for (option, name) in &options {
                text.push_str(&format!(
                    "\n    spectask task answer {rid} {option}   # {name}"
                ));
            }
            self.say(&text);
            return Ok(());
        }
        self.end_planning_line();
        let names: Vec<&str> = options.iter().map(|(_, name)| name.as_str()).collect();
        let select = || {
            dialoguer::Select::new()
                .with_prompt(question.clone())
                .items(&names)
                .default(0)
                .interact_opt()
        };
        let choice = match &self.work {
            Some(work) => tokio::task::block_in_place(|| work.suspend(select)),
            None => tokio::task::block_in_place(select),
        }
        .map_err(|err| CliError::Other(anyhow::anyhow!("cannot read the answer: {err}")))?;
        let Some(index) = choice else {
            self.say(&format!(
                "left unanswered: spectask task answer {rid} <option>"
            ));
            return Ok(());
        };
        let (option, name) = &options[index.min(options.len() - 1)];
        let answer = self
            .client
            .post(
                &format!(
                    "/spec-tasks/{}/permission-requests/{}",
                    encode(&self.id),
                    encode(rid)
                ),
                &json!({ "option_id": option }),
            )
            .await;
        match answer {
            Ok(_) => self.say(&format!("answered: {name}")),
            // Answered elsewhere or timed out meanwhile: say so and go on.
            Err(CliError::Refused { message, .. }) => self.say(&format!("not answered: {message}")),
            Err(err) => return Err(err),
        }
        Ok(())
    }
}
