-- Permission requests of planning threads, and what a human sees of a request: the Helix
-- session that asked (planning or implementation; `work_session_id` only for implementation),
-- and the tool call's kind, command, raw input and locations. SQLite cannot drop a NOT NULL, so
-- the table is rebuilt (nothing references it).

CREATE TABLE permission_requests_new (
    id VARCHAR(255) PRIMARY KEY,
    spec_task_id VARCHAR(255) NOT NULL REFERENCES spec_tasks(id) ON DELETE CASCADE,
    session_id VARCHAR(255) NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    work_session_id VARCHAR(255) REFERENCES spec_task_work_sessions(id) ON DELETE CASCADE,
    zed_thread_id VARCHAR(255) NOT NULL,
    tool_call_id VARCHAR(255) NOT NULL,
    title TEXT NOT NULL,
    options TEXT NOT NULL,
    status VARCHAR(50) NOT NULL DEFAULT 'pending',
    choice VARCHAR(255),
    answered_by VARCHAR(255),
    created_at TEXT NOT NULL,
    answered_at TEXT,
    expires_at TEXT NOT NULL,
    tool_kind VARCHAR(50),
    command TEXT,
    raw_input TEXT,
    locations TEXT NOT NULL DEFAULT '[]'
);

INSERT INTO permission_requests_new (id, spec_task_id, session_id, work_session_id, zed_thread_id,
    tool_call_id, title, options, status, choice, answered_by, created_at, answered_at, expires_at)
SELECT p.id, p.spec_task_id, w.helix_session_id, p.work_session_id, p.zed_thread_id, p.tool_call_id,
    p.title, p.options, p.status, p.choice, p.answered_by, p.created_at, p.answered_at, p.expires_at
FROM permission_requests p JOIN spec_task_work_sessions w ON w.id = p.work_session_id;

DROP TABLE permission_requests;
ALTER TABLE permission_requests_new RENAME TO permission_requests;

CREATE INDEX idx_permission_requests_work_session ON permission_requests(work_session_id, status);
CREATE INDEX idx_permission_requests_spec_task ON permission_requests(spec_task_id, status);
