-- Planning over ACP: the agent's id of the ACP session that hosts a planning session, so every
-- turn of that session (revisions, corrections, retries after a restart) resumes the same one.

ALTER TABLE sessions ADD COLUMN agent_thread_id VARCHAR(255);
