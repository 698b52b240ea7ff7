//! Running the `git` command: an argument vector (never a shell), `-C <dir>`, a C locale, no
//! terminal prompt, hooks and signing off, and the environment variables that would redirect git
//! (`GIT_DIR`, `GIT_INDEX_FILE`, …, as set when spectask itself runs inside a hook) removed.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::{GitError, Result, Signature};

/// Variables that point git somewhere other than `-C <dir>` says, or date its commits.
const REDIRECTING_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_CEILING_DIRECTORIES",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_DATE",
    "GIT_EXTERNAL_DIFF",
    "GIT_DIFF_OPTS",
    "GIT_EDITOR",
    "GIT_SEQUENCE_EDITOR",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
];

/// A `git` invocation in one directory.
#[derive(Debug)]
pub(crate) struct Git {
    dir: PathBuf,
    identity: Option<Signature>,
}

impl Git {
    pub(crate) fn new(dir: &Path) -> Git {
        Git {
            dir: dir.to_owned(),
            identity: None,
        }
    }

    /// Commits made by the commands carry `signature` as author and committer, whatever the
    /// user's configuration says.
    pub(crate) fn with_identity(dir: &Path, signature: &Signature) -> Git {
        Git {
            dir: dir.to_owned(),
            identity: Some(signature.clone()),
        }
    }

    fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new("git");
        command.arg("-C").arg(&self.dir);
        // Hooks, signing, fsmonitor daemons and rerere would make the result depend on the
        // user's set-up; merge.conflictStyle fixes the marker lines `commit_all` looks for.
        for config in [
            "core.hooksPath=/dev/null",
            "commit.gpgsign=false",
            "tag.gpgsign=false",
            "core.fsmonitor=false",
            "rerere.enabled=false",
            "merge.conflictStyle=merge",
            "core.quotePath=false",
            "diff.noprefix=false",
            "diff.mnemonicPrefix=false",
            "color.ui=false",
        ] {
            command.arg("-c").arg(config);
        }
        let identity = self.identity.clone().unwrap_or_default();
        command
            .arg("-c")
            .arg(format!("user.name={}", identity.name))
            .arg("-c")
            .arg(format!("user.email={}", identity.email));
        command.args(args);
        for variable in REDIRECTING_ENV {
            command.env_remove(variable);
        }
        command
            .env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_LITERAL_PATHSPECS", "1")
            .env("GIT_AUTHOR_NAME", &identity.name)
            .env("GIT_AUTHOR_EMAIL", &identity.email)
            .env("GIT_COMMITTER_NAME", &identity.name)
            .env("GIT_COMMITTER_EMAIL", &identity.email)
            .stdin(Stdio::null());
        command
    }

    /// Runs git and returns its whole output, whatever the exit status.
    pub(crate) fn output<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Output> {
        let mut command = self.command(args);
        tracing::debug!(dir = %self.dir.display(), args = %join(args), "git");
        Ok(command.output()?)
    }

    /// Runs git and returns its stdout, or `GitError::Command` when it exits unsuccessfully.
    pub(crate) fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Vec<u8>> {
        let output = self.output(args)?;
        check(args, output)
    }

    /// Like [`run`](Self::run), as text (lossy UTF-8).
    pub(crate) fn run_text<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.run(args)?).into_owned())
    }
}

/// Ok(stdout) for a successful exit, `GitError::Command` otherwise.
pub(crate) fn check<S: AsRef<OsStr>>(args: &[S], output: Output) -> Result<Vec<u8>> {
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(command_error(args, &output))
    }
}

pub(crate) fn command_error<S: AsRef<OsStr>>(args: &[S], output: &Output) -> GitError {
    GitError::Command {
        args: join(args),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    }
}

fn join<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|arg| arg.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits `-z` output into its NUL-terminated fields (a missing final NUL is tolerated).
pub(crate) fn nul_fields(bytes: &[u8]) -> Vec<String> {
    let mut fields: Vec<String> = bytes
        .split(|b| *b == 0)
        .map(|field| String::from_utf8_lossy(field).into_owned())
        .collect();
    if bytes.last() == Some(&0) || bytes.is_empty() {
        fields.pop();
    }
    fields
}
