//! `spectask task import DIR` and `spectask task export ID --format kiro|speckit DIR`: spec
//! folders of other tools. Import reads a Kiro folder (`requirements.md`, `design.md`,
//! `tasks.md`) or a spec-kit one (`spec.md`, `plan.md`, `tasks.md`), told apart by its files, and
//! posts the three documents as they are to `POST /spec-tasks/import`; the server checks them and
//! makes the task. Export writes what `GET /spec-tasks/{id}/export` answers (the approved
//! documents, progress in the plan's checkboxes) under the chosen layout's file names. Only file
//! names and I/O live here: no document is read or changed.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::basics::encode;
use crate::cli::SpecFormat;
use crate::client::{CliError, CliResult, Client};
use crate::output::Output;

/// The layout's name on the wire and its files: requirements, design, plan.
fn layout(format: SpecFormat) -> (&'static str, [&'static str; 3]) {
    match format {
        SpecFormat::Kiro => ("kiro", ["requirements.md", "design.md", "tasks.md"]),
        SpecFormat::Speckit => ("speckit", ["spec.md", "plan.md", "tasks.md"]),
    }
}

/// Which layout `dir` holds, by its files; a usage error naming what was expected otherwise.
fn detect(dir: &Path) -> CliResult<SpecFormat> {
    if !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "`{}` is not a directory",
            dir.display()
        )));
    }
    let complete = |format| layout(format).1.iter().all(|f| dir.join(f).is_file());
    match (complete(SpecFormat::Kiro), complete(SpecFormat::Speckit)) {
        (true, false) => Ok(SpecFormat::Kiro),
        (false, true) => Ok(SpecFormat::Speckit),
        (true, true) => Err(CliError::Usage(format!(
            "`{}` holds both a Kiro spec (requirements.md, design.md) and a spec-kit one \
             (spec.md, plan.md); import one folder per layout",
            dir.display()
        ))),
        (false, false) => Err(CliError::Usage(format!(
            "`{}` is neither a Kiro spec folder (requirements.md, design.md, tasks.md) nor a \
             spec-kit one (spec.md, plan.md, tasks.md)",
            dir.display()
        ))),
    }
}

fn read(path: &Path) -> CliResult<String> {
    std::fs::read_to_string(path)
        .map_err(|err| CliError::Usage(format!("cannot read `{}`: {err}", path.display())))
}

pub async fn import(client: &Client, out: &Output, dir: &Path, project: String) -> CliResult<()> {
    let format = detect(dir)?;
    let dir = std::fs::canonicalize(dir)
        .map_err(|err| CliError::Usage(format!("`{}` cannot be resolved: {err}", dir.display())))?;
    let (name, [requirements, design, plan]) = layout(format);
    let body = json!({
        "format": name,
        "source": dir.to_string_lossy(),
        "project_path": project,
        "requirements_spec": read(&dir.join(requirements))?,
        "technical_design": read(&dir.join(design))?,
        "implementation_plan": read(&dir.join(plan))?,
    });
    let task = client.post("/spec-tasks/import", &body).await?;
    out.print(&task, |task| {
        let id = task["id"].as_str().unwrap_or_default();
        format!(
            "Imported {} {} ({}, revision 1) from {}\nReview it: spectask task specs {id}",
            out.bold(id),
            task["name"].as_str().unwrap_or_default(),
            out.status(task["status"].as_str().unwrap_or_default()),
            dir.display(),
        )
    });
    Ok(())
}

pub async fn export(
    client: &Client,
    out: &Output,
    id: &str,
    format: SpecFormat,
    dir: &Path,
    force: bool,
) -> CliResult<()> {
    let specs = client
        .get(&format!("/spec-tasks/{}/export", encode(id)))
        .await?;
    let (_, files) = layout(format);
    let documents = [
        "requirements_spec",
        "technical_design",
        "implementation_plan",
    ];
    let targets: Vec<(PathBuf, &str)> = files
        .iter()
        .zip(documents)
        .map(|(file, field)| (dir.join(file), specs[field].as_str().unwrap_or_default()))
        .collect();
    if !force && let Some((existing, _)) = targets.iter().find(|(path, _)| path.exists()) {
        return Err(CliError::Usage(format!(
            "`{}` exists; give --force to overwrite it",
            existing.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|err| {
        CliError::Other(anyhow::anyhow!("cannot create `{}`: {err}", dir.display()))
    })?;
    for (path, text) in &targets {
        std::fs::write(path, text).map_err(|err| {
            CliError::Other(anyhow::anyhow!("cannot write `{}`: {err}", path.display()))
        })?;
    }
    let written: Vec<String> = targets
        .iter()
        .map(|(path, _)| path.display().to_string())
        .collect();
    let report = json!({
        "spec_task_id": specs["spec_task_id"],
        "revision": specs["revision"],
        "approved": specs["approved"],
        "files": written,
    });
    out.print(&report, |report| {
        let which = if report["approved"] == true {
            "approved"
        } else {
            "latest, not approved"
        };
        format!(
            "Wrote revision {} ({which}) of {id}:\n  {}",
            report["revision"],
            written.join("\n  ")
        )
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_told_apart_by_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |name: &str| std::fs::write(dir.path().join(name), "x").unwrap();
        touch("tasks.md");
        assert!(matches!(detect(dir.path()), Err(CliError::Usage(m)) if m.contains("neither")));
        touch("spec.md");
        touch("plan.md");
        assert_eq!(detect(dir.path()).unwrap(), SpecFormat::Speckit);
        touch("requirements.md");
        touch("design.md");
        assert!(matches!(detect(dir.path()), Err(CliError::Usage(m)) if m.contains("both")));
        std::fs::remove_file(dir.path().join("spec.md")).unwrap();
        assert_eq!(detect(dir.path()).unwrap(), SpecFormat::Kiro);
    }
}
