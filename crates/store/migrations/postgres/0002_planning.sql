-- Planning and approval: failure reasons, the approved revision, derived names, review comments,
-- and durable turns (one prompt sent to an agent, claimed under a lease).

ALTER TABLE spec_tasks ADD COLUMN error TEXT;
ALTER TABLE spec_tasks ADD COLUMN spec_approved_revision INTEGER;
ALTER TABLE spec_tasks ADD COLUMN name_derived BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE spec_comments (
    id VARCHAR(255) PRIMARY KEY,
    spec_task_id VARCHAR(255) NOT NULL REFERENCES spec_tasks(id) ON DELETE CASCADE,
    document VARCHAR(50) NOT NULL,
    quoted_text TEXT,
    line INTEGER,
    comment TEXT NOT NULL,
    revision INTEGER NOT NULL,
    resolved BOOLEAN NOT NULL DEFAULT FALSE,
    resolved_in_revision INTEGER,
    created_by VARCHAR(255) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    resolved_at TIMESTAMPTZ
);

CREATE INDEX idx_spec_comments_spec_task ON spec_comments(spec_task_id, created_at);

CREATE TABLE turns (
    id VARCHAR(255) PRIMARY KEY,
    spec_task_id VARCHAR(255) NOT NULL REFERENCES spec_tasks(id) ON DELETE CASCADE,
    session_id VARCHAR(255) NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    interaction_id VARCHAR(255) NOT NULL REFERENCES interactions(id) ON DELETE CASCADE,
    kind VARCHAR(50) NOT NULL,
    status VARCHAR(50) NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    payload JSONB NOT NULL DEFAULT '{}',
    owner VARCHAR(255),
    claim_token VARCHAR(255),
    lease_expires_at TIMESTAMPTZ,
    error TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ
);

CREATE INDEX idx_turns_queue ON turns(status, created_at);
CREATE INDEX idx_turns_spec_task ON turns(spec_task_id);
-- A session runs one turn at a time: a second live turn for the same conversation is refused by
-- the database, whatever the callers do.
CREATE UNIQUE INDEX turns_one_live_per_session ON turns(session_id) WHERE status IN ('queued', 'running');
