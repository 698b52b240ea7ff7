-- The independent review (issue 18). A review work session (phase `review`) runs its reviewer
-- in an agent instance of its own profile, recorded here (NULL for every other work session,
-- which runs in its task's instance). The reviewer's verdicts, one row per verdict given (the
-- latest per criterion counts).

ALTER TABLE spec_task_work_sessions ADD COLUMN instance_id VARCHAR(255);
CREATE INDEX idx_work_sessions_instance ON spec_task_work_sessions(instance_id);

CREATE TABLE criterion_verdicts (
    id VARCHAR(255) PRIMARY KEY,
    spec_task_id VARCHAR(255) NOT NULL REFERENCES spec_tasks(id) ON DELETE CASCADE,
    work_session_id VARCHAR(255) NOT NULL REFERENCES spec_task_work_sessions(id) ON DELETE CASCADE,
    criterion_id VARCHAR(255) NOT NULL,
    verdict VARCHAR(32) NOT NULL,
    reason TEXT NOT NULL,
    reviewer VARCHAR(255) NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_criterion_verdicts_task ON criterion_verdicts(spec_task_id, id);
