-- A streaming reply is appended in pieces rather than by rewriting the growing reply: each
-- output write of a turn adds one row here (seq from interactions.piece_count), so its cost no
-- longer grows with the reply already written. An interaction's reply is response_message
-- followed by its pieces in seq order; ending the turn stores the whole reply in
-- response_message and deletes the pieces.

CREATE TABLE interaction_reply_pieces (
    interaction_id VARCHAR(255) NOT NULL REFERENCES interactions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (interaction_id, seq)
);

ALTER TABLE interactions ADD COLUMN piece_count INTEGER NOT NULL DEFAULT 0;
