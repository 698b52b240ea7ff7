//! `Repository`: the user's repository, opened with gix. Discovery, HEAD, branches (read and
//! compare-and-set ref transactions), ancestry, merge bases and commit walks are gix; the
//! worktree, merge and diff operations live in `worktrees.rs`, `merge.rs` and `diff.rs`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};
use gix::refs::{FullName, Target};

use crate::cli::GitDirs;
use crate::error::gix_error;
use crate::{CommitId, CommitInfo, GitError, Head, Result, is_valid_branch_name};

/// How long a ref update waits for another writer's lock before failing.
const REF_LOCK_WAIT: Duration = Duration::from_secs(3);

/// The user's repository, found from a path inside its work tree. Cheap to share across threads
/// (`Send + Sync`); each call works on its own thread-local gix handle.
#[derive(Debug, Clone)]
pub struct Repository {
    repo: gix::ThreadSafeRepository,
    pub(crate) work_tree: PathBuf,
    subdir: PathBuf,
    /// The directories every git command here runs with (the main work tree's).
    pub(crate) dirs: GitDirs,
}

impl Repository {
    /// Opens the repository whose work tree contains `path`. `Ok(None)` when `path` is not
    /// inside a git work tree, or is inside a bare repository or a `.git` directory.
    pub fn open(path: &Path) -> Result<Option<Repository>> {
        let path = std::fs::canonicalize(path)?;
        let (found, _trust) = match gix::discover::upwards(&path) {
            Ok(found) => found,
            Err(error) => {
                use gix::discover::upwards::Error as Discover;
                let not_found = matches!(
                    error.downcast_any_ref::<Discover>(),
                    Some(
                        Discover::NoGitRepository { .. }
                            | Discover::NoGitRepositoryWithinCeiling { .. }
                            | Discover::NoGitRepositoryWithinFs { .. }
                    )
                );
                if not_found {
                    return Ok(None);
                }
                return Err(GitError::Gix(format!(
                    "discovering a repository from {}: {error}",
                    path.display()
                )));
            }
        };
        let (_git_dir, work_tree) = found.into_repository_and_work_tree_directories();
        let Some(work_tree) = work_tree else {
            return Ok(None);
        };
        let work_tree = std::fs::canonicalize(&work_tree)?;
        let Ok(subdir) = path.strip_prefix(&work_tree) else {
            // Inside the `.git` directory of a work tree, or a layout we do not understand.
            return Ok(None);
        };
        if subdir
            .components()
            .next()
            .is_some_and(|c| c.as_os_str() == ".git")
        {
            return Ok(None);
        }
        let subdir = subdir.to_owned();
        let repo = gix::ThreadSafeRepository::discover(&path).map_err(gix_error(format_args!(
            "opening the repository at {}",
            path.display()
        )))?;
        let dirs = {
            let local = repo.to_thread_local();
            GitDirs {
                git_dir: std::fs::canonicalize(local.git_dir())?,
                common_dir: std::fs::canonicalize(local.common_dir())?,
                work_tree: work_tree.clone(),
            }
        };
        Ok(Some(Repository {
            repo,
            work_tree,
            subdir,
            dirs,
        }))
    }

    /// The top of the user's work tree (canonical).
    pub fn work_tree(&self) -> &Path {
        &self.work_tree
    }

    /// The opened path relative to [`work_tree`](Self::work_tree); empty at the top.
    pub fn subdir(&self) -> &Path {
        &self.subdir
    }

    pub(crate) fn gix(&self) -> gix::Repository {
        self.repo.to_thread_local()
    }

    /// Where the user's HEAD is: its commit (`None` if unborn) and branch (`None` if detached).
    pub fn head(&self) -> Result<Head> {
        let repo = self.gix();
        let head = repo.head().map_err(gix_error("reading HEAD"))?;
        let branch = head
            .referent_name()
            .map(|name| name.as_bstr().to_string())
            .map(|name| {
                name.strip_prefix("refs/heads/")
                    .map(str::to_owned)
                    .unwrap_or(name)
            });
        let commit = head.id().map(CommitId::from_oid);
        Ok(Head { commit, branch })
    }

    /// The commit `refs/heads/<branch>` points at; `None` if there is no such branch.
    pub fn branch_commit(&self, branch: &str) -> Result<Option<CommitId>> {
        let name = branch_ref(branch)?;
        let repo = self.gix();
        let found = repo
            .try_find_reference(name.as_ref())
            .map_err(gix_error(format_args!("reading branch {branch}")))?;
        match found {
            None => Ok(None),
            Some(mut reference) => {
                let id = reference
                    .peel_to_id()
                    .map_err(gix_error(format_args!("resolving branch {branch}")))?;
                Ok(Some(CommitId::from_oid(id)))
            }
        }
    }

    /// Creates `refs/heads/<branch>` at `at`. Ok if it already points at `at`;
    /// `BranchExists` if it points elsewhere.
    pub fn create_branch(&self, branch: &str, at: &CommitId) -> Result<()> {
        match self.set_branch(branch, at, None) {
            Ok(()) => Ok(()),
            Err(GitError::RefChanged { .. }) => match self.branch_commit(branch)? {
                Some(current) if &current == at => Ok(()),
                Some(current) => Err(GitError::BranchExists {
                    branch: branch.to_owned(),
                    at: current,
                }),
                None => Err(GitError::RefChanged {
                    branch: branch.to_owned(),
                }),
            },
            Err(other) => Err(other),
        }
    }

    /// Compare-and-set: points `refs/heads/<branch>` at `to` only if it currently is `expected`
    /// (`None`: it must not exist). `RefChanged` otherwise, and nothing changes.
    pub fn set_branch(
        &self,
        branch: &str,
        to: &CommitId,
        expected: Option<&CommitId>,
    ) -> Result<()> {
        let name = branch_ref(branch)?;
        let previous = match expected {
            Some(expected) => PreviousValue::MustExistAndMatch(Target::Object(expected.to_oid()?)),
            None => PreviousValue::MustNotExist,
        };
        let edit = RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: "spectask: update branch".into(),
                },
                expected: previous,
                new: Target::Object(to.to_oid()?),
            },
            name,
            deref: false,
        };
        self.commit_ref_edit(branch, edit, expected)
    }

    /// Deletes `refs/heads/<branch>`. Ok if it does not exist; refuses with `BranchCheckedOut`
    /// if a worktree (the user's or a session's) has it checked out.
    pub fn delete_branch(&self, branch: &str) -> Result<()> {
        let name = branch_ref(branch)?;
        if let Some(worktree) = self
            .worktrees()?
            .into_iter()
            .find(|worktree| worktree.branch.as_deref() == Some(branch))
        {
            return Err(GitError::BranchCheckedOut {
                branch: branch.to_owned(),
                worktree: worktree.path,
            });
        }
        let Some(current) = self.branch_commit(branch)? else {
            return Ok(());
        };
        let edit = RefEdit {
            change: Change::Delete {
                expected: PreviousValue::MustExistAndMatch(Target::Object(current.to_oid()?)),
                log: RefLog::AndReference,
            },
            name,
            deref: false,
        };
        match self.commit_ref_edit(branch, edit, Some(&current)) {
            // Moved or deleted meanwhile: deleting it is still what the caller wants, once.
            Err(GitError::RefChanged { .. }) if self.branch_commit(branch)?.is_none() => Ok(()),
            other => other,
        }
    }

    /// Applies one ref edit; a failed edit whose branch no longer has `expected` is a lost race.
    fn commit_ref_edit(
        &self,
        branch: &str,
        edit: RefEdit,
        expected: Option<&CommitId>,
    ) -> Result<()> {
        let repo = self.gix();
        let committer = gix::actor::Signature {
            name: "spectask".into(),
            email: "spectask@localhost".into(),
            time: gix::date::Time::now_utc(),
        };
        let mut time = gix::date::parse::TimeBuf::default();
        let fail = gix::lock::acquire::Fail::AfterDurationWithBackoff(REF_LOCK_WAIT);
        let result = repo
            .refs
            .transaction()
            .prepare(Some(edit), fail, fail)
            .and_then(|transaction| transaction.commit(Some(committer.to_ref(&mut time))));
        match result {
            Ok(_) => Ok(()),
            Err(error) => {
                // gix's errors do not say which expectation failed: look again.
                if self.branch_commit(branch)?.as_ref() != expected {
                    Err(GitError::RefChanged {
                        branch: branch.to_owned(),
                    })
                } else {
                    Err(GitError::Gix(format!("updating branch {branch}: {error}")))
                }
            }
        }
    }

    /// Whether `ancestor` is `of` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: &CommitId, of: &CommitId) -> Result<bool> {
        if ancestor == of {
            return Ok(true);
        }
        Ok(self.merge_base(ancestor, of)?.as_ref() == Some(ancestor))
    }

    /// The best common ancestor of `a` and `b`; `None` if their histories are unrelated.
    pub fn merge_base(&self, a: &CommitId, b: &CommitId) -> Result<Option<CommitId>> {
        let repo = self.gix();
        match repo.merge_base(a.to_oid()?, b.to_oid()?) {
            Ok(base) => Ok(base.map(CommitId::from_oid)),
            Err(error) => Err(GitError::Gix(format!("merge base of {a} and {b}: {error}"))),
        }
    }

    /// The commits reachable from `head` and not from `base`, oldest first: each commit comes
    /// after its parents, first-parent history before what merges brought in.
    pub fn commits_between(&self, base: &CommitId, head: &CommitId) -> Result<Vec<CommitInfo>> {
        let repo = self.gix();
        let walk = repo
            .rev_walk([head.to_oid()?])
            .with_hidden([base.to_oid()?])
            .all()
            .map_err(gix_error(format_args!("walking {base}..{head}")))?;
        let mut parents_of: HashMap<gix::ObjectId, Vec<gix::ObjectId>> = HashMap::new();
        for info in walk {
            let info = info.map_err(gix_error(format_args!("walking {base}..{head}")))?;
            parents_of.insert(info.id, info.parent_ids.iter().copied().collect());
        }
        let order = parents_first(head.to_oid()?, &parents_of);
        order.into_iter().map(|id| commit_info(&repo, id)).collect()
    }
}

/// Orders the commits of `parents_of` (those in range) so that parents come before children,
/// visiting first parents first; iterative, so long histories do not overflow the stack.
fn parents_first(
    head: gix::ObjectId,
    parents_of: &HashMap<gix::ObjectId, Vec<gix::ObjectId>>,
) -> Vec<gix::ObjectId> {
    let mut order = Vec::with_capacity(parents_of.len());
    let mut seen = HashSet::new();
    if !parents_of.contains_key(&head) {
        return order;
    }
    // (commit, index of the next parent to visit)
    let mut stack = vec![(head, 0usize)];
    seen.insert(head);
    while let Some((id, next)) = stack.pop() {
        let parents = parents_of.get(&id).map(Vec::as_slice).unwrap_or_default();
        match parents.get(next) {
            Some(parent) => {
                stack.push((id, next + 1));
                if parents_of.contains_key(parent) && seen.insert(*parent) {
                    stack.push((*parent, 0));
                }
            }
            None => order.push(id),
        }
    }
    order
}

fn commit_info(repo: &gix::Repository, id: gix::ObjectId) -> Result<CommitInfo> {
    let context = || format!("reading commit {id}");
    let commit = repo
        .find_commit(id)
        .map_err(|e| GitError::Gix(format!("{}: {e}", context())))?;
    let message = commit.message_raw_sloppy().to_string();
    let summary = message.lines().next().unwrap_or_default().trim().to_owned();
    let author = commit
        .author()
        .map_err(|e| GitError::Gix(format!("{}: {e}", context())))?;
    let time = author
        .time()
        .map_err(|e| GitError::Gix(format!("{}: {e}", context())))?;
    Ok(CommitInfo {
        id: CommitId::from_oid(id),
        summary,
        message,
        author_name: author.name.to_string(),
        author_email: author.email.to_string(),
        time: time.seconds,
        parents: commit.parent_ids().map(CommitId::from_oid).collect(),
    })
}

/// `refs/heads/<branch>`, after checking the name.
pub(crate) fn branch_ref(branch: &str) -> Result<FullName> {
    if !is_valid_branch_name(branch) {
        return Err(GitError::InvalidName(format!(
            "not a valid branch name: {branch:?}"
        )));
    }
    FullName::try_from(format!("refs/heads/{branch}"))
        .map_err(|error| GitError::InvalidName(format!("branch {branch:?}: {error}")))
}
