-- One row each replica's readiness probe rewrites: a real write, so /readyz is not ready while
-- writes cannot commit (a synchronous standby gone stalls it; a read-only node refuses it).
CREATE TABLE readiness_probe (
    id INTEGER PRIMARY KEY,
    probed_at BIGINT NOT NULL
);
