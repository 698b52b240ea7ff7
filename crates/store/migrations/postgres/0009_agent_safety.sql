-- Agent safety (issue 11). MCP tokens get a lifetime: an expiry (minting time plus the TTL), a
-- revocation time (its work session ended, a newer set-up of the same thread replaced it, or the
-- process that minted it is gone), the instance and the process (claim owner) that minted it.
-- Tokens minted before this migration have no expiry and are revoked here: their agents died
-- with the process that minted them.

ALTER TABLE agent_tokens ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE agent_tokens ADD COLUMN revoked_at TIMESTAMPTZ;
ALTER TABLE agent_tokens ADD COLUMN instance_id VARCHAR(255);
ALTER TABLE agent_tokens ADD COLUMN minted_by VARCHAR(255);
UPDATE agent_tokens SET revoked_at = created_at WHERE revoked_at IS NULL;
CREATE INDEX idx_agent_tokens_instance ON agent_tokens(instance_id);
CREATE INDEX idx_agent_tokens_minted_by ON agent_tokens(minted_by);

-- spawn_work_session is idempotent per parent session and name: a repeated spawn (an agent
-- re-running an interrupted turn) finds the session it already spawned. Duplicates spawned
-- before this rule keep their rows under a name made unique with their id.
UPDATE spec_task_work_sessions SET name = LEFT(name, 200) || ' (' || id || ')'
WHERE spawned_by_session_id IS NOT NULL AND name IS NOT NULL AND EXISTS (
    SELECT 1 FROM spec_task_work_sessions earlier
    WHERE earlier.spawned_by_session_id = spec_task_work_sessions.spawned_by_session_id
      AND earlier.name = spec_task_work_sessions.name
      AND earlier.id < spec_task_work_sessions.id
);
CREATE UNIQUE INDEX spec_task_work_sessions_spawned_name_key
    ON spec_task_work_sessions(spawned_by_session_id, name) WHERE spawned_by_session_id IS NOT NULL;
