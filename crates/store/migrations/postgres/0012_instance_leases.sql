-- Several replicas on one database (issue 17). A SpecTask's agent instance is owned by one
-- replica process at a time: only the owner of an unexpired lease claims the task's turns, and
-- renews it every worker tick while it holds the instance. A dead owner's leases expire and
-- another replica takes the instance over. Each replica also says it is alive and how many
-- instances it takes, so the cluster's capacity is the sum over the live ones.

CREATE TABLE instance_leases (
    spec_task_id VARCHAR(255) PRIMARY KEY REFERENCES spec_tasks(id) ON DELETE CASCADE,
    owner VARCHAR(255) NOT NULL,
    lease_expires_at TIMESTAMPTZ NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX idx_instance_leases_owner ON instance_leases(owner);

CREATE TABLE replicas (
    owner VARCHAR(255) PRIMARY KEY,
    max_active_instances INTEGER NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
