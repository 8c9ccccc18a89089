//! Schema migrations, embedded in the binary, one list per backend.
//!
//! Each backend records applied versions in `tally_migrations` and applies
//! the rest inside one transaction under a lock (a PostgreSQL advisory lock,
//! SQLite's write lock), so three replicas starting at once apply each
//! migration exactly once and none of them sees a half-migrated schema.

#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "adopt_visitors",
        sql: include_str!("../../migrations/postgres/0001_adopt_visitors.sql"),
    },
    Migration {
        version: 2,
        name: "hits_hourly",
        sql: include_str!("../../migrations/postgres/0002_hits_hourly.sql"),
    },
    Migration {
        version: 3,
        name: "generation",
        sql: include_str!("../../migrations/postgres/0003_generation.sql"),
    },
    Migration {
        version: 4,
        name: "hit_requests",
        sql: include_str!("../../migrations/postgres/0004_hit_requests.sql"),
    },
    Migration {
        version: 5,
        name: "series_base",
        sql: include_str!("../../migrations/postgres/0005_series_base.sql"),
    },
    Migration {
        version: 6,
        name: "revoked_sessions",
        sql: include_str!("../../migrations/postgres/0006_revoked_sessions.sql"),
    },
    Migration {
        version: 7,
        name: "pages",
        sql: include_str!("../../migrations/postgres/0007_pages.sql"),
    },
];

pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "visitors",
        sql: include_str!("../../migrations/sqlite/0001_visitors.sql"),
    },
    Migration {
        version: 2,
        name: "hits_hourly",
        sql: include_str!("../../migrations/sqlite/0002_hits_hourly.sql"),
    },
    Migration {
        version: 3,
        name: "generation",
        sql: include_str!("../../migrations/sqlite/0003_generation.sql"),
    },
    Migration {
        version: 4,
        name: "hit_requests",
        sql: include_str!("../../migrations/sqlite/0004_hit_requests.sql"),
    },
    Migration {
        version: 5,
        name: "series_base",
        sql: include_str!("../../migrations/sqlite/0005_series_base.sql"),
    },
    Migration {
        version: 6,
        name: "revoked_sessions",
        sql: include_str!("../../migrations/sqlite/0006_revoked_sessions.sql"),
    },
    Migration {
        version: 7,
        name: "pages",
        sql: include_str!("../../migrations/sqlite/0007_pages.sql"),
    },
];

pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS tally_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL
)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing_and_match_file_names() {
        for list in [POSTGRES, SQLITE] {
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1);
                assert!(!m.sql.trim().is_empty());
            }
        }
    }
}
