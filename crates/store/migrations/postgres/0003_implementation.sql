-- Implementation: turns belong to work sessions; a session may queue several turns (a human
-- follow-up while the agent works) but runs at most one at a time; work sessions keep their last
-- failure reason.

ALTER TABLE turns ADD COLUMN work_session_id VARCHAR(255) REFERENCES spec_task_work_sessions(id) ON DELETE CASCADE;
CREATE INDEX idx_turns_work_session ON turns(work_session_id);
DROP INDEX turns_one_live_per_session;
CREATE UNIQUE INDEX turns_one_running_per_session ON turns(session_id) WHERE status = 'running';

ALTER TABLE spec_task_work_sessions ADD COLUMN error TEXT;
