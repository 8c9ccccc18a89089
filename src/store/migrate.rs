//! Schema migrations, embedded in the binary, one list per backend.
//!
//! Each backend records applied versions in `tally_migrations` and applies
//! the rest inside one transaction under a lock (a PostgreSQL advisory lock,
//! SQLite's write lock), so three replicas starting at once apply each
//! migration exactly once and none of them sees a half-migrated schema.
//!
//! # Expand, then contract
//!
//! A rolling upgrade runs replicas of two releases on one PostgreSQL
//! database at once, so every migration is one of two [`Kind`]s:
//!
//! - **Expand** adds only what the release before can ignore: a table, a
//!   column that is nullable or has a default, an index on a table that
//!   the release before writes to only if it is built without holding its
//!   writers for long. It runs as soon as a new replica starts.
//! - **Contract** removes or tightens what an older release may still use:
//!   dropping or renaming a table or column, adding `NOT NULL` or a
//!   constraint that older code could violate, changing a type. It ships
//!   at least one release after the release whose code stopped using the
//!   thing, and runs only once no replica of an older release uses the
//!   database (see [`Holder`]).
//!
//! So that a pending contract migration never holds back a rolling
//! upgrade, the code of a release works both with its contract migrations
//! applied and without them, and an expand migration never depends on an
//! earlier contract migration having run: expand migrations are applied
//! past a pending contract one, which is applied later (by `tally migrate`
//! or the next replica to start once it is safe).
//!
//! On PostgreSQL every replica announces the schema it was built for in its
//! sessions' `application_name` ([`application_name`]); before a contract
//! migration runs, the migrator looks in `pg_stat_activity` for sessions of
//! an older release on the same database. A SQLite database has one owning
//! process (`serve` and `migrate` both claim it, see [`super::owner`]), so
//! no older release can be using it while a migration runs: its contract
//! migrations are always applied.

use std::fmt;

/// What a migration does to the code of the releases before it (see the
/// module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Adds only what older code can ignore: applied at once.
    Expand,
    /// Removes or tightens what older code may use: applied only when no
    /// older release is connected. `after` names the release whose code
    /// stopped using what it removes; that release must be in `RELEASES`
    /// already, so the migration ships at least one release after it.
    Contract { after: &'static str },
}

impl Kind {
    pub fn is_contract(self) -> bool {
        matches!(self, Kind::Contract { .. })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub kind: Kind,
    pub sql: &'static str,
}

pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "adopt_visitors",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/postgres/0001_adopt_visitors.sql"),
    },
    Migration {
        version: 2,
        name: "hits_hourly",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/postgres/0002_hits_hourly.sql"),
    },
    Migration {
        version: 3,
        name: "generation",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/postgres/0003_generation.sql"),
    },
    Migration {
        version: 4,
        name: "hit_requests",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/postgres/0004_hit_requests.sql"),
    },
    Migration {
        version: 5,
        name: "series_base",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/postgres/0005_series_base.sql"),
    },
    Migration {
        version: 6,
        name: "revoked_sessions",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/postgres/0006_revoked_sessions.sql"),
    },
    Migration {
        version: 7,
        name: "pages",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/postgres/0007_pages.sql"),
    },
    Migration {
        version: 8,
        name: "hit_batches",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/postgres/0008_hit_batches.sql"),
    },
    Migration {
        version: 9,
        name: "last_batch",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/postgres/0009_last_batch.sql"),
    },
    Migration {
        version: 10,
        name: "site_settings",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/postgres/0010_site_settings.sql"),
    },
    Migration {
        version: 11,
        name: "breakdowns",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/postgres/0011_breakdowns.sql"),
    },
    Migration {
        version: 12,
        name: "site_aliases",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/postgres/0012_site_aliases.sql"),
    },
];

pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "visitors",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/sqlite/0001_visitors.sql"),
    },
    Migration {
        version: 2,
        name: "hits_hourly",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/sqlite/0002_hits_hourly.sql"),
    },
    Migration {
        version: 3,
        name: "generation",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/sqlite/0003_generation.sql"),
    },
    Migration {
        version: 4,
        name: "hit_requests",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/sqlite/0004_hit_requests.sql"),
    },
    Migration {
        version: 5,
        name: "series_base",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/sqlite/0005_series_base.sql"),
    },
    Migration {
        version: 6,
        name: "revoked_sessions",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/sqlite/0006_revoked_sessions.sql"),
    },
    Migration {
        version: 7,
        name: "pages",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/sqlite/0007_pages.sql"),
    },
    Migration {
        version: 10,
        name: "site_settings",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/sqlite/0010_site_settings.sql"),
    },
    Migration {
        version: 11,
        name: "breakdowns",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/sqlite/0011_breakdowns.sql"),
    },
    Migration {
        version: 12,
        name: "site_aliases",
        kind: Kind::Expand,
        sql: include_str!("../../migrations/sqlite/0012_site_aliases.sql"),
    },
];

pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS tally_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL
)";

/// The migrations this binary holds for `backend`.
pub fn list(backend: super::Backend) -> &'static [Migration] {
    match backend {
        super::Backend::Postgres => POSTGRES,
        super::Backend::Sqlite => SQLITE,
    }
}

/// The schema version a binary is built for: the highest version it knows.
pub fn schema_version(list: &[Migration]) -> i64 {
    list.iter().map(|m| m.version).max().unwrap_or(0)
}

/// What the migrator may do with a pending contract migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contracts {
    /// Apply it only when no session of an older release is connected;
    /// otherwise leave it pending (expand migrations are applied anyway).
    WhenSafe,
    /// Apply it whoever is connected (`tally migrate --force`): for an
    /// operator who knows that the sessions seen do not use what it removes.
    Force,
}

/// What one run of the migrator did.
#[derive(Debug, Clone, Default)]
pub struct Migrated {
    /// The versions applied, in order.
    pub applied: Vec<i64>,
    /// The contract migrations left pending, if any, and who held them.
    pub held: Option<Held>,
}

/// Contract migrations left pending because sessions of an older release
/// use the database.
#[derive(Debug, Clone)]
pub struct Held {
    pub migrations: Vec<Migration>,
    pub holders: Vec<Holder>,
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .migrations
            .iter()
            .map(|m| format!("{} ({})", m.version, m.name))
            .collect();
        let s = if self.holders.len() == 1 { "" } else { "s" };
        write!(
            f,
            "contract migration {} not applied: {} session{s} of an older tally release still use{} this database:",
            names.join(", "),
            self.holders.len(),
            if s.is_empty() { "s" } else { "" },
        )?;
        for holder in &self.holders {
            write!(f, "\n  - {holder}")?;
        }
        Ok(())
    }
}

/// A database session of an older tally release, as `pg_stat_activity`
/// shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    /// `host:port`, or `local socket`; `None` when the migrating role may
    /// not see it (PostgreSQL shows other roles' sessions only in part).
    pub address: Option<String>,
    pub application_name: String,
    /// The schema it announced; `None` for a release from before
    /// announcements, which names itself plain `tally`.
    pub schema: Option<i64>,
    /// When the session started (RFC 3339), if the role may see it.
    pub since: Option<String>,
}

impl Holder {
    /// Whether this session keeps contract migration `version` pending:
    /// it belongs to a release built for an older schema.
    pub fn holds_back(&self, version: i64) -> bool {
        self.schema.unwrap_or(0) < version
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} from {}, application_name {:?}",
            self.pid,
            self.address.as_deref().unwrap_or("(address not visible)"),
            self.application_name
        )?;
        match self.schema {
            Some(v) => write!(f, " (schema {v})")?,
            None => write!(f, " (a release that announces no schema)")?,
        }
        match &self.since {
            Some(t) => write!(f, ", connected since {t}"),
            None => Ok(()),
        }
    }
}

/// What precedes the schema version in an announced `application_name`.
pub const MARK: &str = "tally schema=";

/// PostgreSQL keeps at most this many bytes of an `application_name`.
const NAME_MAX: usize = 63;

/// The `application_name` of a replica built for `schema`: `tally
/// schema=7`, after the operator's own name when the URL sets one (`web
/// tally schema=7`). The operator's part is cut to fit and kept to
/// printable ASCII, so the mark always survives PostgreSQL's 63 bytes
/// (servers replace or escape other characters, which lengthens them).
pub fn application_name(operator: Option<&str>, schema: i64) -> String {
    let mark = format!("{MARK}{schema}");
    let own = operator
        .map(str::trim)
        .filter(|name| !name.is_empty() && *name != "tally");
    match own {
        None => mark,
        Some(name) => {
            let room = NAME_MAX.saturating_sub(mark.len() + 1);
            let clean: String = name
                .chars()
                .map(|c| {
                    if c == ' ' || c.is_ascii_graphic() {
                        c
                    } else {
                        '?'
                    }
                })
                .take(room)
                .collect();
            format!("{} {mark}", clean.trim_end())
        }
    }
}

/// Whose a session is, by its `application_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    /// Plain `tally`: a release from before schema announcements.
    Unmarked,
    /// A replica built for this schema version.
    Schema(i64),
}

/// How a session with `application_name` `name` announced itself; `None`
/// for a session that is not tally's.
pub fn announced(name: &str) -> Option<Announced> {
    if name == "tally" {
        return Some(Announced::Unmarked);
    }
    let (before, version) = name.rsplit_once(MARK)?;
    let whole_word = before.is_empty() || before.ends_with(' ');
    let digits = !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit());
    if !(whole_word && digits) {
        return None;
    }
    version.parse().ok().map(Announced::Schema)
}

/// The migrations of `list` not in `done`, in order, split into those to
/// apply now and the contract ones that `holders` keep pending.
pub fn plan<'a>(
    list: &'a [Migration],
    done: &std::collections::HashSet<i64>,
    contracts: Contracts,
    holders: &[Holder],
) -> (Vec<&'a Migration>, Option<Held>) {
    let mut apply = Vec::new();
    let mut held = Vec::new();
    for m in list.iter().filter(|m| !done.contains(&m.version)) {
        let blocked = m.kind.is_contract()
            && contracts == Contracts::WhenSafe
            && holders.iter().any(|h| h.holds_back(m.version));
        if blocked {
            held.push(*m);
        } else {
            apply.push(m);
        }
    }
    if held.is_empty() {
        return (apply, None);
    }
    // Whoever holds back any of them; the last has the highest version.
    let last = held[held.len() - 1].version;
    let holders = holders
        .iter()
        .filter(|h| h.holds_back(last))
        .cloned()
        .collect();
    (
        apply,
        Some(Held {
            migrations: held,
            holders,
        }),
    )
}

/// Whether any migration of `list` not in `done` is a contract one: only
/// then does the migrator look for older sessions.
pub fn contract_pending(list: &[Migration], done: &std::collections::HashSet<i64>) -> bool {
    list.iter()
        .any(|m| m.kind.is_contract() && !done.contains(&m.version))
}

#[cfg(test)]
mod tests;
