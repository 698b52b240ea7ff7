-- Structured interaction entries: what an agent did during a turn (message text, thoughts, tool
-- calls, plans, usage), appended in order. `interactions.entry_count` is the next entry's seq and
-- the count the session endpoints show; a retried attempt deletes the entries and zeroes it.

CREATE TABLE interaction_entries (
    interaction_id VARCHAR(255) NOT NULL REFERENCES interactions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    kind VARCHAR(50) NOT NULL,
    tool_call_id VARCHAR(255),
    payload JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT interaction_entries_pkey PRIMARY KEY (interaction_id, seq)
);

ALTER TABLE interactions ADD COLUMN entry_count INTEGER NOT NULL DEFAULT 0;
