//! The spec review: read a revision's documents (`specs`), what changed between two (`diff`),
//! comment on a passage, approve or ask the planner for changes. A decision is always bound to
//! a revision: the one given, else the latest one read just before, so the server refuses it
//! (`stale_revision`) if the planner produced another in between.

use std::io::IsTerminal;

use serde_json::{Value, json};

use super::basics::encode;
use crate::cli::Doc;
use crate::client::{CliError, CliResult, Client};
use crate::output::Output;

/// The API's name of a document, and the field of `SpecsResponse`/`SpecRevision` holding it.
pub fn doc_fields(doc: Doc) -> (&'static str, &'static str) {
    match doc {
        Doc::Requirements => ("requirements", "requirements_spec"),
        Doc::Design => ("design", "technical_design"),
        Doc::Plan => ("plan", "implementation_plan"),
    }
}

const ALL_DOCS: [Doc; 3] = [Doc::Requirements, Doc::Design, Doc::Plan];

pub async fn specs(
    client: &Client,
    out: &Output,
    id: &str,
    revision: Option<u32>,
    doc: Option<Doc>,
) -> CliResult<()> {
    let path = match revision {
        Some(n) => format!("/spec-tasks/{}/revisions/{n}", encode(id)),
        None => format!("/spec-tasks/{}/specs", encode(id)),
    };
    let specs = client.get(&path).await?;
    let docs = doc.map_or(ALL_DOCS.to_vec(), |doc| vec![doc]);
    let markdown = documents(&specs, &docs);
    if !out.json && markdown.trim().is_empty() {
        return Err(CliError::Other(anyhow::anyhow!(
            "{id} has no spec yet (status {}): wait for the planner with `spectask task follow {id}`",
            specs["status"].as_str().unwrap_or("unknown")
        )));
    }
    out.print(&specs, |_| {
        if !std::io::stdout().is_terminal() {
            // Piped or redirected: the Markdown itself, so `> requirements.md` works.
            return markdown.clone();
        }
        let header = out.dim(&format!(
            "{id} · revision {}{}",
            specs["revision"],
            specs["status"]
                .as_str()
                .map(|status| format!(" · {status}"))
                .unwrap_or_default()
        ));
        format!("{header}\n\n{}", render_markdown(&markdown, out.color))
    });
    Ok(())
}

/// The chosen documents' Markdown, in order, separated by a blank line.
pub fn documents(specs: &Value, docs: &[Doc]) -> String {
    docs.iter()
        .filter_map(|doc| specs[doc_fields(*doc).1].as_str())
        .map(|text| text.trim_end())
        .filter(|text| !text.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Markdown for a terminal, laid out by termimad (unstyled without colours).
fn render_markdown(markdown: &str, color: bool) -> String {
    let skin = if color {
        termimad::MadSkin::default()
    } else {
        termimad::MadSkin::no_style()
    };
    skin.term_text(markdown).to_string()
}

pub async fn diff(
    client: &Client,
    out: &Output,
    id: &str,
    from: Option<u32>,
    to: Option<u32>,
) -> CliResult<()> {
    let to = match to {
        Some(to) => to,
        None => latest_revision(client, id).await?.ok_or_else(|| {
            CliError::Other(anyhow::anyhow!("{id} has no revision yet: nothing to diff"))
        })?,
    };
    let from = match from {
        Some(from) => from,
        None if to > 1 => to - 1,
        None => {
            return Err(CliError::Other(anyhow::anyhow!(
                "{id} has one revision only: nothing to diff yet"
            )));
        }
    };
    let path = format!("/spec-tasks/{}/revisions/{from}/diff/{to}", encode(id));
    let diff = client.get(&path).await?;
    out.print(&diff, |diff| {
        let text: String = ["requirements", "design", "plan"]
            .iter()
            .filter_map(|key| diff[*key].as_str())
            .collect();
        if text.trim().is_empty() {
            return format!("No changes between revision {from} and revision {to}.");
        }
        colour_diff(&text, out)
    });
    Ok(())
}

/// A unified diff with its headers bold, hunks cyan, additions green and removals red (when
/// colours are on).
pub fn colour_diff(text: &str, out: &Output) -> String {
    if !out.color {
        return text.to_owned();
    }
    text.lines()
        .map(|line| {
            let code = if line.starts_with("+++") || line.starts_with("---") {
                "1"
            } else if line.starts_with("@@") {
                "36"
            } else if line.starts_with('+') {
                "32"
            } else if line.starts_with('-') {
                "31"
            } else {
                return line.to_owned();
            };
            format!("\x1b[{code}m{line}\x1b[0m")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn comment(
    client: &Client,
    out: &Output,
    id: &str,
    doc: Doc,
    quote: Option<String>,
    text: String,
) -> CliResult<()> {
    let mut body = json!({"document": doc_fields(doc).0, "comment": text});
    if let Some(quote) = quote {
        body["quoted_text"] = json!(quote);
    }
    let path = format!("/spec-tasks/{}/comments", encode(id));
    let comment = client.post(&path, &body).await?;
    out.print(&comment, |comment| {
        format!(
            "Commented on the {} of revision {}: {}\nIt goes to the planner with the next \
             `spectask task request-changes {id} …`.",
            comment["document"].as_str().unwrap_or_default(),
            comment["revision"],
            out.bold(comment["id"].as_str().unwrap_or_default()),
        )
    });
    Ok(())
}

/// Approves (`why` is `None`) or asks for changes, bound to `revision` or the latest.
pub async fn decide(
    client: &Client,
    out: &Output,
    id: &str,
    revision: Option<u32>,
    why: Option<String>,
) -> CliResult<()> {
    let revision = match revision {
        Some(n) => Some(n),
        None => latest_revision(client, id).await?,
    };
    let mut body = json!({"approved": why.is_none()});
    if let Some(n) = revision {
        body["revision"] = json!(n);
    }
    if let Some(why) = &why {
        body["comments"] = json!(why);
    }
    let path = format!("/spec-tasks/{}/approve-specs", encode(id));
    let task = client
        .post(&path, &body)
        .await
        .map_err(|err| stale_hint(err, id))?;
    out.print(&task, |task| {
        let status = out.status(task["status"].as_str().unwrap_or_default());
        let revision = revision.map_or_else(String::new, |n| format!(" revision {n} of"));
        if why.is_none() {
            format!(
                "Approved{revision} {} ({status}); implementation starts next.\n\
                 Follow it: spectask task follow {id}",
                out.bold(id)
            )
        } else {
            format!(
                "Asked for changes to{revision} {} ({status}); the planner writes the next \
                 revision.\nSee what changed, once it is there: spectask task diff {id}",
                out.bold(id)
            )
        }
    });
    Ok(())
}

/// The newest revision's number (`None` before the first draft).
async fn latest_revision(client: &Client, id: &str) -> CliResult<Option<u32>> {
    let specs = client
        .get(&format!("/spec-tasks/{}/specs", encode(id)))
        .await?;
    Ok(specs["revision"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok()))
}

/// A `stale_revision` refusal, with what to read instead.
fn stale_hint(err: CliError, id: &str) -> CliError {
    match err {
        CliError::Refused {
            status,
            code,
            message,
            body,
        } if code == "stale_revision" => {
            let latest = &body["error"]["latest_revision"];
            let message = format!(
                "{message} (read revision {latest} with `spectask task specs {id}` and \
                 `spectask task diff {id}`)"
            );
            CliError::Refused {
                status,
                code,
                message,
                body,
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_joined_in_order_and_filtered_by_doc() {
        let specs = json!({
            "requirements_spec": "# Requirements\n\nR\n",
            "technical_design": "# Design\n\nD\n",
            "implementation_plan": "# Plan\n\n- [ ] 1. P\n",
        });
        assert_eq!(
            documents(&specs, &ALL_DOCS),
            "# Requirements\n\nR\n\n# Design\n\nD\n\n# Plan\n\n- [ ] 1. P"
        );
        assert_eq!(documents(&specs, &[Doc::Design]), "# Design\n\nD");
        assert_eq!(
            documents(&json!({"requirements_spec": null}), &ALL_DOCS),
            ""
        );
    }

    #[test]
    fn markdown_is_laid_out_for_a_terminal() {
        let text = render_markdown("# Requirements\n\nSay **hello**.\n", false);
        assert!(
            text.contains("Requirements") && text.contains("Say hello."),
            "{text}"
        );
        assert!(!text.contains("**") && !text.contains('#'), "{text}");
        let coloured = render_markdown("Say **hello**.\n", true);
        assert!(coloured.contains("\x1b["), "{coloured:?}");
    }

    #[test]
    fn a_diff_is_coloured_by_line_kind_only_with_colours() {
        let text = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n same";
        let plain = Output {
            json: false,
            color: false,
        };
        assert_eq!(colour_diff(text, &plain), text);
        let coloured = colour_diff(
            text,
            &Output {
                json: false,
                color: true,
            },
        );
        let lines: Vec<&str> = coloured.lines().collect();
        assert_eq!(lines[0], "\x1b[1m--- a/x\x1b[0m");
        assert_eq!(lines[2], "\x1b[36m@@ -1 +1 @@\x1b[0m");
        assert_eq!(lines[3], "\x1b[31m-old\x1b[0m");
        assert_eq!(lines[4], "\x1b[32m+new\x1b[0m");
        assert_eq!(lines[5], " same");
    }
}
