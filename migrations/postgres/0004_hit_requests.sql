-- Recent hits by request id (NGINX's X-Request-Id), so a request retried on
-- another replica after its first replica died is counted once and gets the
-- count it was first given. Rows are pruned after minutes; no foreign key,
-- to keep the hot path to one index insert per keyed hit.
CREATE TABLE hit_requests (
    site_id bigint NOT NULL,
    request_id text NOT NULL,
    count bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, request_id)
);
CREATE INDEX hit_requests_created_at ON hit_requests (created_at);
