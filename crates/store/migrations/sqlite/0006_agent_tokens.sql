-- Per-thread bearer tokens for spectask's MCP server, stored as SHA-256 hashes only; and what an
-- agent declared over MCP when it ended its work (a summary, or the reason it gave up).

CREATE TABLE agent_tokens (
    token_hash VARCHAR(64) PRIMARY KEY,
    work_session_id VARCHAR(255) NOT NULL REFERENCES spec_task_work_sessions(id) ON DELETE CASCADE,
    spec_task_id VARCHAR(255) NOT NULL REFERENCES spec_tasks(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL
);

CREATE INDEX idx_agent_tokens_work_session ON agent_tokens(work_session_id);

ALTER TABLE spec_task_work_sessions ADD COLUMN agent_summary TEXT;
ALTER TABLE spec_task_work_sessions ADD COLUMN agent_gave_up TEXT;
