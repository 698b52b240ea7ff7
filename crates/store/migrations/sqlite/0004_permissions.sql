-- Permission requests agents made under the `ask` policy, waiting for a human.

CREATE TABLE permission_requests (
    id VARCHAR(255) PRIMARY KEY,
    spec_task_id VARCHAR(255) NOT NULL REFERENCES spec_tasks(id) ON DELETE CASCADE,
    work_session_id VARCHAR(255) NOT NULL REFERENCES spec_task_work_sessions(id) ON DELETE CASCADE,
    zed_thread_id VARCHAR(255) NOT NULL,
    tool_call_id VARCHAR(255) NOT NULL,
    title TEXT NOT NULL,
    options TEXT NOT NULL,
    status VARCHAR(50) NOT NULL DEFAULT 'pending',
    choice VARCHAR(255),
    answered_by VARCHAR(255),
    created_at TEXT NOT NULL,
    answered_at TEXT,
    expires_at TEXT NOT NULL
);

CREATE INDEX idx_permission_requests_work_session ON permission_requests(work_session_id, status);
