//! Running the `git` command safely on repositories whose work trees an agent can write: an
//! argument vector (never a shell), the git directory, common directory and work tree always
//! given explicitly (`--git-dir`, `GIT_COMMON_DIR`, `--work-tree`), so no `.git` file or
//! `commondir` file is ever followed; no system or global configuration (only the repository's
//! own, which the sandbox keeps read-only for agents); and every setting that would make git run
//! another program (hooks, fsmonitor, pager, editor, transports, signing, gc) overridden on the
//! command line. The environment variables that would redirect git (as set when spectask itself
//! runs inside a hook) are removed.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::{GitError, Result, Signature};

/// Variables that point git somewhere other than the explicit directories say, add
/// configuration, or date its commits.
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
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_DATE",
    "GIT_EXTERNAL_DIFF",
    "GIT_DIFF_OPTS",
    "GIT_PAGER",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_ASKPASS",
    "GIT_CONFIG",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_ATTR_SOURCE",
    "GIT_REPLACE_REF_BASE",
    "GIT_SHALLOW_FILE",
    "GIT_QUARANTINE_PATH",
];

/// Command-line configuration for every invocation (it beats every configuration file).
/// Hooks, fsmonitor daemons, signing and its verification, transports (`protocol.allow=never`:
/// we never fetch, and it also shuts the `ext::` transport), automatic gc and maintenance, and
/// the submodule recursion that would start git inside a nested repository would each run a
/// program; rerere, the conflict style and the output settings would make results depend on the
/// user's set-up (`merge.conflictStyle` fixes the marker lines `commit_all` looks for). External
/// diff drivers and text conversion are turned off per diff command (`--no-ext-diff`,
/// `--no-textconv`): `diff.external` has no "off" value.
const OVERRIDES: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "commit.gpgsign=false",
    "tag.gpgsign=false",
    "merge.verifySignatures=false",
    "protocol.allow=never",
    "submodule.recurse=false",
    "status.submoduleSummary=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "rerere.enabled=false",
    "merge.conflictStyle=merge",
    "core.quotePath=false",
    "diff.noprefix=false",
    "diff.mnemonicPrefix=false",
    "color.ui=false",
];

/// Where git finds the repository. Always explicit: git's own discovery would read a `.git`
/// file (and a `commondir` file) in a directory an agent can write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitDirs {
    /// `GIT_DIR`: the repository's `.git` directory, or a linked worktree's admin directory.
    pub(crate) git_dir: PathBuf,
    /// `GIT_COMMON_DIR`: objects, refs and config (the main `.git` directory).
    pub(crate) common_dir: PathBuf,
    /// `GIT_WORK_TREE`, also the directory git runs in.
    pub(crate) work_tree: PathBuf,
}

/// A `git` invocation on one repository and work tree.
#[derive(Debug)]
pub(crate) struct Git<'a> {
    dirs: &'a GitDirs,
    identity: Option<Signature>,
}

impl<'a> Git<'a> {
    pub(crate) fn new(dirs: &'a GitDirs) -> Git<'a> {
        Git {
            dirs,
            identity: None,
        }
    }

    /// Commits made by the commands carry `signature` as author and committer, whatever the
    /// user's configuration says.
    pub(crate) fn with_identity(dirs: &'a GitDirs, signature: &Signature) -> Git<'a> {
        Git {
            dirs,
            identity: Some(signature.clone()),
        }
    }

    fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new("git");
        let mut git_dir = std::ffi::OsString::from("--git-dir=");
        git_dir.push(&self.dirs.git_dir);
        let mut work_tree = std::ffi::OsString::from("--work-tree=");
        work_tree.push(&self.dirs.work_tree);
        command
            .arg("--no-pager")
            .arg("-C")
            .arg(&self.dirs.work_tree)
            .arg(git_dir)
            .arg(work_tree);
        for config in OVERRIDES {
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
            // Neither /etc/gitconfig nor ~/.gitconfig: commits carry an explicit identity and
            // nothing we run needs the user's preferences, while either could define programs
            // (filters, diff and merge drivers) to run on content an agent wrote.
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ATTR_NOSYSTEM", "1")
            .env("GIT_COMMON_DIR", &self.dirs.common_dir)
            .env("GIT_NO_REPLACE_OBJECTS", "1")
            // ":" is git's "no editor"; we always pass messages.
            .env("GIT_EDITOR", ":")
            .env("GIT_SEQUENCE_EDITOR", ":")
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
        tracing::debug!(
            work_tree = %self.dirs.work_tree.display(),
            git_dir = %self.dirs.git_dir.display(),
            args = %join(args),
            "git"
        );
        Ok(command.output()?)
    }

    /// Like [`run`](Self::run), with `input` on git's stdin (written from a thread, so a git
    /// that writes much before reading all of it cannot deadlock us).
    pub(crate) fn run_with_input<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        input: Vec<u8>,
    ) -> Result<Vec<u8>> {
        use std::io::Write;
        let mut command = self.command(args);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tracing::debug!(
            work_tree = %self.dirs.work_tree.display(),
            git_dir = %self.dirs.git_dir.display(),
            args = %join(args),
            "git (with input)"
        );
        let mut child = command.spawn()?;
        let writer = child
            .stdin
            .take()
            .map(|mut stdin| std::thread::spawn(move || stdin.write_all(&input)));
        let output = child.wait_with_output()?;
        if let Some(writer) = writer {
            // A git that exits early closes the pipe; its status says what went wrong.
            let _ = writer.join();
        }
        check(args, output)
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
