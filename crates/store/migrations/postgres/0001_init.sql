-- spectask schema, PostgreSQL. The seed's tables (spec_tasks with the multi-session columns,
-- sessions, spec_task_work_sessions, spec_task_zed_threads) with its foreign keys, unique
-- constraints and indexes, plus implementation tasks, spec revisions, interactions and the
-- append-only events log. Constraint names are shared with the SQLite schema: the store maps them
-- to domain errors.

CREATE TABLE spec_tasks (
    id VARCHAR(255) PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    type VARCHAR(50) NOT NULL,
    priority VARCHAR(50) NOT NULL,
    status VARCHAR(50) NOT NULL DEFAULT 'backlog',
    archived BOOLEAN NOT NULL DEFAULT FALSE,
    original_prompt TEXT NOT NULL,
    requirements_spec TEXT,
    technical_design TEXT,
    implementation_plan TEXT,
    spec_agent VARCHAR(255),
    implementation_agent VARCHAR(255),
    spec_session_id VARCHAR(255),
    implementation_session_id VARCHAR(255),
    spec_approved_by VARCHAR(255),
    spec_approved_at TIMESTAMPTZ,
    spec_revision_count INTEGER NOT NULL DEFAULT 0,
    -- Multi-session support (the seed's ALTER TABLE).
    zed_instance_id VARCHAR(255),
    project_path VARCHAR(500),
    workspace_config JSONB,
    created_by VARCHAR(255) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ
);

CREATE INDEX idx_spec_tasks_zed_instance ON spec_tasks(zed_instance_id);
CREATE INDEX idx_spec_tasks_status ON spec_tasks(status);
CREATE INDEX idx_spec_tasks_created ON spec_tasks(created_at DESC, id DESC);

CREATE TABLE sessions (
    id VARCHAR(255) PRIMARY KEY,
    spec_task_id VARCHAR(255) NOT NULL REFERENCES spec_tasks(id) ON DELETE CASCADE,
    role VARCHAR(50) NOT NULL,
    name VARCHAR(255) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_sessions_spec_task ON sessions(spec_task_id);

CREATE TABLE interactions (
    id VARCHAR(255) PRIMARY KEY,
    session_id VARCHAR(255) NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    prompt_message TEXT NOT NULL,
    response_message TEXT NOT NULL DEFAULT '',
    state VARCHAR(50) NOT NULL DEFAULT 'waiting',
    error TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    completed_at TIMESTAMPTZ,
    CONSTRAINT interactions_session_seq_key UNIQUE (session_id, seq)
);

CREATE TABLE spec_task_work_sessions (
    id VARCHAR(255) PRIMARY KEY,
    spec_task_id VARCHAR(255) NOT NULL REFERENCES spec_tasks(id) ON DELETE CASCADE,
    helix_session_id VARCHAR(255) NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    name VARCHAR(255),
    description TEXT,
    phase VARCHAR(50) NOT NULL,
    status VARCHAR(50) NOT NULL DEFAULT 'pending',
    implementation_task_title VARCHAR(255),
    implementation_task_description TEXT,
    implementation_task_index INTEGER,
    parent_work_session_id VARCHAR(255) REFERENCES spec_task_work_sessions(id),
    spawned_by_session_id VARCHAR(255) REFERENCES spec_task_work_sessions(id),
    agent_config JSONB,
    environment_config JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    CONSTRAINT spec_task_work_sessions_helix_session_id_key UNIQUE (helix_session_id)
);

CREATE INDEX idx_spec_work_sessions_spec_task ON spec_task_work_sessions(spec_task_id);
CREATE INDEX idx_spec_work_sessions_phase ON spec_task_work_sessions(phase);

CREATE TABLE spec_task_zed_threads (
    id VARCHAR(255) PRIMARY KEY,
    work_session_id VARCHAR(255) NOT NULL REFERENCES spec_task_work_sessions(id) ON DELETE CASCADE,
    spec_task_id VARCHAR(255) NOT NULL REFERENCES spec_tasks(id) ON DELETE CASCADE,
    zed_thread_id VARCHAR(255) NOT NULL,
    thread_config JSONB,
    status VARCHAR(50) NOT NULL DEFAULT 'pending',
    last_activity_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT spec_task_zed_threads_work_session_id_key UNIQUE (work_session_id),
    CONSTRAINT spec_task_zed_threads_spec_task_id_zed_thread_id_key UNIQUE (spec_task_id, zed_thread_id)
);

CREATE INDEX idx_spec_zed_threads_spec_task ON spec_task_zed_threads(spec_task_id);

CREATE TABLE spec_task_implementation_tasks (
    id VARCHAR(255) PRIMARY KEY,
    spec_task_id VARCHAR(255) NOT NULL REFERENCES spec_tasks(id) ON DELETE CASCADE,
    task_key VARCHAR(255) NOT NULL,
    title TEXT NOT NULL,
    description TEXT,
    acceptance_criteria TEXT,
    estimated_effort VARCHAR(50),
    priority INTEGER NOT NULL DEFAULT 0,
    task_index INTEGER NOT NULL,
    phase TEXT,
    parent_key VARCHAR(255),
    requirement_refs JSONB NOT NULL DEFAULT '[]',
    dependencies JSONB NOT NULL DEFAULT '[]',
    status VARCHAR(50) NOT NULL DEFAULT 'pending',
    assigned_work_session_id VARCHAR(255) REFERENCES spec_task_work_sessions(id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    completed_at TIMESTAMPTZ,
    CONSTRAINT spec_task_implementation_tasks_key_key UNIQUE (spec_task_id, task_key),
    CONSTRAINT spec_task_implementation_tasks_index_key UNIQUE (spec_task_id, task_index)
);

CREATE TABLE spec_revisions (
    spec_task_id VARCHAR(255) NOT NULL REFERENCES spec_tasks(id) ON DELETE CASCADE,
    revision INTEGER NOT NULL,
    requirements_spec TEXT NOT NULL,
    technical_design TEXT NOT NULL,
    implementation_plan TEXT NOT NULL,
    feedback TEXT,
    interaction_id VARCHAR(255),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT spec_revisions_pkey PRIMARY KEY (spec_task_id, revision)
);

-- Append-only: no foreign key, so the history (including `spec_task.deleted`) outlives the task.
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    spec_task_id VARCHAR(255),
    kind VARCHAR(100) NOT NULL,
    entity_id VARCHAR(255) NOT NULL,
    actor VARCHAR(255) NOT NULL,
    payload JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE INDEX idx_events_spec_task ON events(spec_task_id, id);

CREATE FUNCTION events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only';
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
