-- Imported specs (issue 15). A task whose three documents were imported from another tool's
-- folder (Kiro, spec-kit) instead of planned records the layout and where they came from.

ALTER TABLE spec_tasks ADD COLUMN import_format VARCHAR(32);
ALTER TABLE spec_tasks ADD COLUMN import_source TEXT;
