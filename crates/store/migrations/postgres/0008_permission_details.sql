-- Permission requests of planning threads, and what a human sees of a request: the Helix
-- session that asked (planning or implementation; `work_session_id` only for implementation),
-- and the tool call's kind, command, raw input and locations.

ALTER TABLE permission_requests ADD COLUMN session_id VARCHAR(255) REFERENCES sessions(id) ON DELETE CASCADE;
UPDATE permission_requests p SET session_id = w.helix_session_id
    FROM spec_task_work_sessions w WHERE w.id = p.work_session_id;
ALTER TABLE permission_requests ALTER COLUMN session_id SET NOT NULL;
ALTER TABLE permission_requests ALTER COLUMN work_session_id DROP NOT NULL;
ALTER TABLE permission_requests ADD COLUMN tool_kind VARCHAR(50);
ALTER TABLE permission_requests ADD COLUMN command TEXT;
ALTER TABLE permission_requests ADD COLUMN raw_input JSONB;
ALTER TABLE permission_requests ADD COLUMN locations JSONB NOT NULL DEFAULT '[]';

CREATE INDEX idx_permission_requests_spec_task ON permission_requests(spec_task_id, status);
