//! The workspace projection of the specs: the current revision's documents written to
//! `<project_path>/.spectask/specs/<task id>/{requirements,design,tasks}.md`. The database is the
//! canonical store; these files are a copy for the humans and agents working in the checkout, so
//! a failure to write them is reported, not fatal.

use std::path::{Path, PathBuf};

use spectask_domain::{SpecRevision, SpecTaskId};

/// Where a task's spec files live inside its project.
pub fn spec_dir(project_path: &Path, id: &SpecTaskId) -> PathBuf {
    project_path
        .join(".spectask")
        .join("specs")
        .join(id.as_str())
}

/// Writes one file atomically (a temporary file renamed into place), creating its directory.
pub async fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temporary = path.with_file_name(format!(".{name}.tmp"));
    let mut body = text.to_owned();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    tokio::fs::write(&temporary, body).await?;
    tokio::fs::rename(&temporary, path).await
}

/// Writes the three documents, each atomically (a temporary file renamed into place).
pub async fn write_specs(project_path: &Path, revision: &SpecRevision) -> std::io::Result<PathBuf> {
    let dir = spec_dir(project_path, &revision.spec_task_id);
    tokio::fs::create_dir_all(&dir).await?;
    for (file, text) in [
        ("requirements.md", &revision.requirements_spec),
        ("design.md", &revision.technical_design),
        ("tasks.md", &revision.implementation_plan),
    ] {
        let target = dir.join(file);
        let temporary = dir.join(format!(".{file}.tmp"));
        let mut body = text.clone();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        tokio::fs::write(&temporary, body).await?;
        tokio::fs::rename(&temporary, &target).await?;
    }
    Ok(dir)
}
