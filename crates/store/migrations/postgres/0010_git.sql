-- Git isolation (issue 13). A task entering implementation records how its work sessions share
-- the project (`worktree` or `shared`) and, in worktree isolation, its task branch, the branch
-- and commit it started from and the tip as of the last merge. A work session records its branch,
-- its worktree (while it exists), the task-branch commit it started from, its tip as last merged,
-- the conflict follow-ups used and the files of a merge conflict that blocks it. Its commits are
-- rows of work_session_commits (recorded at merge time); the files running sessions touch are
-- rows of work_session_files (overlap detection).

ALTER TABLE spec_tasks ADD COLUMN isolation VARCHAR(32);
ALTER TABLE spec_tasks ADD COLUMN branch_name VARCHAR(255);
ALTER TABLE spec_tasks ADD COLUMN base_branch VARCHAR(255);
ALTER TABLE spec_tasks ADD COLUMN base_commit VARCHAR(64);
ALTER TABLE spec_tasks ADD COLUMN head_commit VARCHAR(64);

ALTER TABLE spec_task_work_sessions ADD COLUMN branch_name VARCHAR(255);
ALTER TABLE spec_task_work_sessions ADD COLUMN worktree_path TEXT;
ALTER TABLE spec_task_work_sessions ADD COLUMN base_commit VARCHAR(64);
ALTER TABLE spec_task_work_sessions ADD COLUMN head_commit VARCHAR(64);
ALTER TABLE spec_task_work_sessions ADD COLUMN merge_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE spec_task_work_sessions ADD COLUMN conflict_files TEXT;
-- Overlap policy `serialize`: the session a running session waits for (cleared when that one
-- ends), and the last overlap wait (the other session, the file, the interrupted turn), kept for
-- the note the resumed turn's prompt starts with.
ALTER TABLE spec_task_work_sessions ADD COLUMN waiting_for VARCHAR(255);
ALTER TABLE spec_task_work_sessions ADD COLUMN overlap_wait_with VARCHAR(255);
ALTER TABLE spec_task_work_sessions ADD COLUMN overlap_wait_path TEXT;
ALTER TABLE spec_task_work_sessions ADD COLUMN overlap_wait_turn VARCHAR(255);

CREATE TABLE work_session_commits (
    work_session_id VARCHAR(255) NOT NULL REFERENCES spec_task_work_sessions(id) ON DELETE CASCADE,
    commit_id VARCHAR(64) NOT NULL,
    seq INTEGER NOT NULL,
    summary TEXT NOT NULL,
    author TEXT NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT work_session_commits_pkey PRIMARY KEY (work_session_id, commit_id)
);

CREATE TABLE work_session_files (
    work_session_id VARCHAR(255) NOT NULL REFERENCES spec_task_work_sessions(id) ON DELETE CASCADE,
    spec_task_id VARCHAR(255) NOT NULL REFERENCES spec_tasks(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT work_session_files_pkey PRIMARY KEY (work_session_id, path)
);
CREATE INDEX idx_work_session_files_task_path ON work_session_files(spec_task_id, path);
