//! `spectask run "<prompt>"`: the whole flow for one person at a terminal, as API calls.
//!
//! 1. Uses the server at `--server` if it answers `/healthz`. If it does not and the address is
//!    on this machine, starts an embedded server on the data directory, on a free loopback port,
//!    logging to `<data-dir>/run.log`.
//! 2. Creates the task and follows planning ([`crate::task::follow`]).
//! 3. Shows the three documents in a pager (`$PAGER`, default `less -R`).
//! 4. Asks: approve, request changes (with a comment: a new revision is followed and asked about
//!    again) or quit.
//! 5. Follows the implementation, then asks to approve the result.
//!
//! Exit codes as everywhere: 4 when the task ends failed, 3 when the server refuses.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};

use crate::cli::{Cli, ClientArgs, Command, RunArgs};
use crate::client::{CliError, CliResult, Client};
use crate::output::Output;
use crate::task::basics::encode;
use crate::task::follow::{Outcome, follow};

/// A server started by the command itself (`run`, `acp`), stopped when the command ends.
pub(crate) struct Embedded {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Embedded {
    /// Stops the server: it finishes its requests and shuts its agents down (30 s at most).
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(Duration::from_secs(30), &mut self.task).await {
            Ok(Ok(Err(err))) => eprintln!("the embedded server stopped with an error: {err:#}"),
            Ok(_) => {}
            Err(_) => self.task.abort(),
        }
    }
}

pub async fn run(args: RunArgs) -> CliResult<()> {
    let out = Output::new(&args.client);
    let (client, embedded) = connect(&args.client).await?;
    let result = drive(&client, &out, &args).await;
    if let Some(embedded) = embedded {
        embedded.stop().await;
    }
    result
}

/// The server to talk to: the one at `--server`, or an embedded one.
pub(crate) async fn connect(args: &ClientArgs) -> CliResult<(Client, Option<Embedded>)> {
    let client = Client::new(args)?;
    if client.healthy().await {
        return Ok((client, None));
    }
    if !client.is_local() {
        return Err(CliError::Other(anyhow::anyhow!(
            "no spectask server answers at {}",
            client.base()
        )));
    }
    let data_dir = args.data_dir.to_string_lossy().into_owned();
    let serve = match Cli::try_parse_from([
        "spectask",
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
    ]) {
        Ok(Cli {
            command: Command::Serve(serve),
            ..
        }) => serve,
        Ok(_) => {
            return Err(CliError::Other(anyhow::anyhow!(
                "cannot prepare the embedded server"
            )));
        }
        Err(err) => {
            return Err(CliError::Usage(format!(
                "cannot configure the embedded server: {err}"
            )));
        }
    };
    let (listening_tx, listening_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crate::serve::run_until(
        serve,
        Some(listening_tx),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let addr = match listening_rx.await {
        Ok(addr) => addr,
        Err(_) => {
            let reason = match task.await {
                Ok(Err(err)) => format!("{err:#}"),
                _ => "it stopped".into(),
            };
            return Err(CliError::Other(anyhow::anyhow!(
                "no server at {} and the embedded one did not start: {reason}",
                client.base()
            )));
        }
    };
    eprintln!(
        "Started a server on {} (data in {data_dir}, log in {data_dir}/run.log)",
        addr
    );
    let mut embedded_args = args.clone();
    embedded_args.server = format!("http://{addr}");
    let client = Client::new(&embedded_args)?;
    Ok((
        client,
        Some(Embedded {
            stop: Some(stop_tx),
            task,
        }),
    ))
}

async fn drive(client: &Client, out: &Output, args: &RunArgs) -> CliResult<()> {
    let mut body = json!({
        "prompt": args.prompt,
        "project_path": crate::task::project_path(args.project.clone())?,
    });
    if let Some(planner) = &args.planner {
        body["spec_agent"] = json!(planner);
    }
    if let Some(agent) = &args.agent {
        body["implementation_agent"] = json!(agent);
    }
    let task = client.post("/spec-tasks/from-prompt", &body).await?;
    let id = task["id"].as_str().unwrap_or_default().to_owned();
    println!(
        "{} {} {}",
        out.bold("Created"),
        id,
        task["name"].as_str().unwrap_or_default()
    );

    // Planning, and the review of each revision.
    loop {
        match follow(client, out, &id).await? {
            Outcome::Review(status) if status == "spec_review" => {}
            other => return finish(other),
        }
        let task = client.get(&format!("/spec-tasks/{}", encode(&id))).await?;
        let revision = latest_revision(client, &id).await?;
        page(&documents(&task, revision))?;
        let choice = choose(
            &format!("Revision {revision} of the spec"),
            &[
                &format!("Approve revision {revision}"),
                "Request changes",
                "Quit (the task waits in spec review)",
            ],
        )?;
        match choice {
            0 => {
                client
                    .post(
                        &format!("/spec-tasks/{}/approve-specs", encode(&id)),
                        &json!({"approved": true, "revision": revision}),
                    )
                    .await?;
                println!("Approved revision {revision}; implementing.");
                break;
            }
            1 => {
                let comment = ask_text("What should change?")?;
                client
                    .post(
                        &format!("/spec-tasks/{}/approve-specs", encode(&id)),
                        &json!({"approved": false, "revision": revision, "comments": comment}),
                    )
                    .await?;
                println!(
                    "Changes requested; the planner is writing revision {}.",
                    revision + 1
                );
            }
            _ => {
                println!("Left in spec review: spectask task approve {id}");
                return Ok(());
            }
        }
    }

    // Implementation, then the review of the result.
    match follow(client, out, &id).await? {
        Outcome::Review(status) if status == "implementation_review" => {}
        other => return finish(other),
    }
    let task = client.get(&format!("/spec-tasks/{}", encode(&id))).await?;
    if let Some(branch) = task["branch_name"].as_str() {
        println!("The work is on branch {branch}.");
    }
    let choice = choose(
        "The implementation is ready",
        &[
            "Approve it (keep the branch as it is)",
            "Leave it in review",
        ],
    )?;
    if choice == 0 {
        client
            .post(
                &format!("/spec-tasks/{}/approve-implementation", encode(&id)),
                &json!({"merge": "none"}),
            )
            .await?;
        println!("Approved: the task is done.");
    } else {
        println!("Left in review: spectask task show {id}");
    }
    Ok(())
}

fn finish(outcome: Outcome) -> CliResult<()> {
    match outcome {
        Outcome::Failed { status, error } => Err(CliError::TaskFailed(format!(
            "the task ended {status}: {error}"
        ))),
        Outcome::Done | Outcome::Review(_) => Ok(()),
    }
}

async fn latest_revision(client: &Client, id: &str) -> CliResult<i64> {
    let revisions = client
        .get(&format!("/spec-tasks/{}/revisions", encode(id)))
        .await?;
    Ok(revisions["revisions"]
        .as_array()
        .and_then(|list| list.iter().filter_map(|r| r["revision"].as_i64()).max())
        .unwrap_or(1))
}

/// The three documents as one Markdown text.
fn documents(task: &Value, revision: i64) -> String {
    let mut text = format!("Revision {revision}\n\n");
    for field in [
        "requirements_spec",
        "technical_design",
        "implementation_plan",
    ] {
        if let Some(doc) = task[field].as_str() {
            text.push_str(doc.trim_end());
            text.push_str("\n\n");
        }
    }
    text
}

/// Shows `text` in `$PAGER` (default `less -R`) on a terminal, or prints it.
fn page(text: &str) -> CliResult<()> {
    if !std::io::stdout().is_terminal() {
        println!("{text}");
        return Ok(());
    }
    let pager = std::env::var("PAGER")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "less -R".into());
    let spawned = std::process::Command::new("sh")
        .args(["-c", &pager])
        .stdin(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = spawned else {
        println!("{text}");
        return Ok(());
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A pager quit early closes the pipe: not an error.
        let _ = stdin.write_all(text.as_bytes());
    }
    let _ = child.wait();
    Ok(())
}

/// One choice among `items`, from the keyboard.
fn choose(prompt: &str, items: &[&str]) -> CliResult<usize> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(
            "`spectask run` asks questions: run it at a terminal (or use `spectask task …`)".into(),
        ));
    }
    tokio::task::block_in_place(|| {
        dialoguer::Select::new()
            .with_prompt(prompt)
            .items(items)
            .default(0)
            .interact()
    })
    .map_err(|err| CliError::Other(anyhow::anyhow!("cannot read the answer: {err}")))
}

fn ask_text(prompt: &str) -> CliResult<String> {
    tokio::task::block_in_place(|| {
        dialoguer::Input::<String>::new()
            .with_prompt(prompt)
            .interact_text()
    })
    .map_err(|err| CliError::Other(anyhow::anyhow!("cannot read the answer: {err}")))
}
