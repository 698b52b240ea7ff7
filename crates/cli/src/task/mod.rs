//! `spectask task …`: each subcommand is a few API calls and a printout (see [`crate::output`]).
//! `review.rs` holds the spec-review commands, `work.rs` the implementation ones, `follow.rs`
//! the live view, `import.rs` the Kiro and spec-kit folders.

pub mod basics;
pub mod events;
pub mod follow;
mod import;
mod progress;
mod review;
mod work;

use serde_json::json;

use crate::cli::{TaskArgs, TaskCommand};
use crate::client::{CliError, CliResult, Client};
use crate::output::Output;

/// Runs one `task` subcommand.
pub async fn run(args: TaskArgs) -> CliResult<()> {
    let client = Client::new(&args.client)?;
    let out = Output::new(&args.client);
    match args.command {
        TaskCommand::Create {
            prompt,
            project,
            planner,
            agent,
            task_type,
            priority,
            no_start,
        } => {
            let project = project_path(project)?;
            let mut body = json!({"prompt": prompt, "project_path": project});
            let fields = [
                ("spec_agent", planner),
                ("implementation_agent", agent),
                ("type", task_type),
                ("priority", priority),
            ];
            for (key, value) in fields {
                if let Some(value) = value {
                    body[key] = json!(value);
                }
            }
            if no_start {
                body["auto_start"] = json!(false);
            }
            basics::create(&client, &out, &body).await
        }
        TaskCommand::List {
            status,
            query,
            limit,
        } => basics::list(&client, &out, status, query, limit).await,
        TaskCommand::Show { id } => basics::show(&client, &out, &id).await,
        TaskCommand::Follow { id } => follow::command(&client, &out, &id).await,
        TaskCommand::Import { dir, project } => {
            import::import(&client, &out, &dir, project_path(project)?).await
        }
        TaskCommand::Export {
            id,
            format,
            dir,
            force,
        } => import::export(&client, &out, &id, format, &dir, force).await,
        TaskCommand::Specs { id, revision, doc } => {
            review::specs(&client, &out, &id, revision, doc).await
        }
        TaskCommand::Diff { id, from, to } => review::diff(&client, &out, &id, from, to).await,
        TaskCommand::Comment {
            id,
            doc,
            quote,
            comment,
        } => review::comment(&client, &out, &id, doc, quote, comment).await,
        TaskCommand::Approve { id, revision } => {
            review::decide(&client, &out, &id, revision, None).await
        }
        TaskCommand::RequestChanges { id, why, revision } => {
            review::decide(&client, &out, &id, revision, Some(why)).await
        }
        TaskCommand::Sessions { id } => work::sessions(&client, &out, &id).await,
        TaskCommand::Message { session, text } => {
            work::message(&client, &out, &session, &text).await
        }
        TaskCommand::Cancel { session } => {
            work::session_action(&client, &out, &session, "cancel").await
        }
        TaskCommand::Retry { session } => {
            work::session_action(&client, &out, &session, "retry").await
        }
        TaskCommand::Spawn {
            id,
            from,
            name,
            description,
        } => work::spawn(&client, &out, &id, &from, &name, &description).await,
        TaskCommand::Permissions { id } => work::permissions(&client, &out, id.as_deref()).await,
        TaskCommand::Answer { request, option } => {
            work::answer(&client, &out, &request, &option).await
        }
        TaskCommand::Archive { id } => work::archive(&client, &out, &id).await,
        TaskCommand::Delete { id } => work::delete(&client, &out, &id).await,
    }
}

/// The canonical project path: the given one, or the current directory.
pub fn project_path(given: Option<std::path::PathBuf>) -> CliResult<String> {
    let path = match given {
        Some(path) => path,
        None => std::env::current_dir()
            .map_err(|err| CliError::Other(anyhow::anyhow!("no current directory: {err}")))?,
    };
    let canonical = std::fs::canonicalize(&path).map_err(|err| {
        CliError::Usage(format!(
            "project `{}` cannot be resolved: {err}",
            path.display()
        ))
    })?;
    Ok(canonical.to_string_lossy().into_owned())
}
