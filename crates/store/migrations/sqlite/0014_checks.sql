-- Checks (issue 18). A plan task may name check commands (`_Verify: cargo test -p auth_`),
-- kept with the task; the task's workspace_config may name a project check. When a work
-- session's turn ends, its checks run in its workspace and each run is a row here: which task
-- named it (NULL: the project check), the command, how it ended, the tail of its output, how
-- long it took, whether it ran in the agent's sandbox, and the session's check round (1 for
-- the first turn's checks, 2 after the first follow-up, ...).

ALTER TABLE spec_task_implementation_tasks ADD COLUMN checks TEXT NOT NULL DEFAULT '[]';

CREATE TABLE check_runs (
    id VARCHAR(255) PRIMARY KEY,
    spec_task_id VARCHAR(255) NOT NULL REFERENCES spec_tasks(id) ON DELETE CASCADE,
    work_session_id VARCHAR(255) NOT NULL REFERENCES spec_task_work_sessions(id) ON DELETE CASCADE,
    turn_id VARCHAR(255) NOT NULL,
    task_key VARCHAR(255),
    command TEXT NOT NULL,
    status VARCHAR(32) NOT NULL,
    exit_code INTEGER,
    output_tail TEXT NOT NULL,
    output_bytes INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    sandboxed BOOLEAN NOT NULL,
    round INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_check_runs_task ON check_runs(spec_task_id, created_at);
CREATE INDEX idx_check_runs_session ON check_runs(work_session_id, round);
