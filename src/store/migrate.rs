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
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn versions_are_increasing_and_match_file_names() {
        // PostgreSQL's are numbered 1, 2, 3, ...; SQLite's skip the
        // versions that are PostgreSQL's alone.
        for (i, m) in POSTGRES.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
        }
        for list in [POSTGRES, SQLITE] {
            for pair in list.windows(2) {
                assert!(pair[0].version < pair[1].version, "{}", pair[1].name);
            }
            for m in list {
                assert!(!m.sql.trim().is_empty());
            }
        }
    }

    /// The statements that make a migration a contract one, as they read
    /// once comments are gone and spaces are single.
    const CONTRACT_STATEMENTS: &[&str] = &[
        "DROP ",
        "RENAME ",
        "SET NOT NULL",
        " TYPE ",
        "ADD CONSTRAINT",
        "TRUNCATE ",
        "DELETE FROM",
    ];

    /// Contract statements in expand migrations, each read and found safe
    /// for the code that ran before it: `(backend, version, statement, why)`.
    const REVIEWED: &[(&str, i64, &str, &str)] = &[
        (
            "postgres",
            1,
            " TYPE ",
            "widens the seed's integer columns to bigint; the seed's app reads and writes them as before",
        ),
        (
            "postgres",
            1,
            "SET NOT NULL",
            "on columns the migration has just filled in every row, and that the seed's app only updates",
        ),
        (
            "postgres",
            1,
            "ADD CONSTRAINT",
            "the primary key and unique slug of the adopted table, which its rows satisfy after the backfill",
        ),
        (
            "postgres",
            5,
            "ADD CONSTRAINT",
            "base_count >= 0 on a column added by this migration, which no older code writes",
        ),
        (
            "postgres",
            5,
            "DELETE FROM",
            "drops hour buckets that exceed their site's count, which no older code reads as a total",
        ),
        (
            "sqlite",
            5,
            "DELETE FROM",
            "drops hour buckets that exceed their site's count, which no older code reads as a total",
        ),
    ];

    /// A migration's statements with comments removed, upper case, single
    /// spaces.
    fn statements(sql: &str) -> String {
        let code: Vec<&str> = sql
            .lines()
            .map(|l| l.split("--").next().unwrap_or_default())
            .collect();
        let text = code.join(" ").to_uppercase();
        format!(
            " {} ",
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        )
    }

    /// Every migration so far is an expand one: 0001 creates (or adopts
    /// the seed's table as) the first schema, and 0002-0007 add tables,
    /// columns with defaults or nullable ones, and indexes, which older code
    /// ignores. All seven shipped in 0.1.0, the first release, so none ever
    /// ran while an older tally release served. A new migration with a
    /// contract statement fails here until it is marked `Kind::Contract` or
    /// its statement is reviewed above.
    #[test]
    fn expand_migrations_hold_no_unreviewed_contract_statement() {
        for (backend, list) in [("postgres", POSTGRES), ("sqlite", SQLITE)] {
            for m in list.iter().filter(|m| m.kind == Kind::Expand) {
                let text = statements(m.sql);
                for statement in CONTRACT_STATEMENTS {
                    let reviewed = REVIEWED
                        .iter()
                        .any(|r| (r.0, r.1, r.2) == (backend, m.version, *statement));
                    assert!(
                        reviewed || !text.contains(statement),
                        "{backend} migration {} ({}) is an expand one but has {statement:?}: \
                         mark it Kind::Contract (it then ships a release after the code that \
                         stopped using what it changes) or review the statement",
                        m.version,
                        m.name
                    );
                }
            }
        }
        // A review that no longer matches anything is stale.
        for (backend, version, statement, why) in REVIEWED {
            let list = if *backend == "postgres" {
                POSTGRES
            } else {
                SQLITE
            };
            let m = &list[*version as usize - 1];
            assert!(
                statements(m.sql).contains(statement),
                "stale review of {backend} {version} {statement:?}: {why}"
            );
        }
    }

    /// `(version, schema)` of each release in `RELEASES`.
    fn releases() -> Vec<(&'static str, i64)> {
        include_str!("../../RELEASES")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                let schema = fields
                    .get(2)
                    .and_then(|f| f.strip_prefix("schema="))
                    .and_then(|v| v.parse().ok());
                match (fields.len(), schema) {
                    (3, Some(schema)) => (fields[0], schema),
                    _ => panic!("RELEASES: not `version commit schema=N`: {l:?}"),
                }
            })
            .collect()
    }

    /// Why `list` breaks the release rule for contract migrations: each
    /// follows the code of a release already out, and is not part of that
    /// release. So it never ships with the change in the code that made it
    /// safe.
    fn misplaced_contracts(list: &[Migration], releases: &[(&str, i64)]) -> Vec<String> {
        let mut wrong = Vec::new();
        for m in list {
            let Kind::Contract { after } = m.kind else {
                continue;
            };
            match releases.iter().find(|r| r.0 == after) {
                None => wrong.push(format!(
                    "contract migration {} ({}) follows release {after}, which is not out yet: \
                     ship it in the release after {after}",
                    m.version, m.name
                )),
                Some(&(_, schema)) if m.version <= schema => wrong.push(format!(
                    "contract migration {} ({}) is part of release {after} itself",
                    m.version, m.name
                )),
                Some(_) => {}
            }
        }
        wrong
    }

    #[test]
    fn contract_migrations_ship_a_release_after_the_code_they_follow() {
        let releases = releases();
        assert_eq!(releases, [("0.1.0", 7), ("0.2.0", 9)]);
        for w in releases.windows(2) {
            assert!(w[0].1 <= w[1].1, "schemas go down in RELEASES: {w:?}");
        }
        let newest = releases[releases.len() - 1].1;
        // What was released is still here: a release never loses one
        // (RELEASES gives the PostgreSQL schema).
        assert!(schema_version(POSTGRES) >= newest);
        for list in [POSTGRES, SQLITE] {
            assert_eq!(misplaced_contracts(list, &releases), Vec::<String>::new());
        }

        // The rule itself, on lists of its own.
        let contract = |version, after| Migration {
            version,
            name: "drop_old",
            kind: Kind::Contract { after },
            sql: "SELECT 1",
        };
        let released = [("0.1.0", 7), ("0.2.0", 9)];
        assert!(misplaced_contracts(&[contract(8, "0.1.0")], &released).is_empty());
        assert!(misplaced_contracts(&[contract(10, "0.2.0")], &released).is_empty());
        assert_eq!(
            misplaced_contracts(&[contract(8, "0.3.0"), contract(9, "0.2.0")], &released),
            [
                "contract migration 8 (drop_old) follows release 0.3.0, which is not out yet: \
                 ship it in the release after 0.3.0",
                "contract migration 9 (drop_old) is part of release 0.2.0 itself",
            ]
        );
    }

    #[test]
    fn every_migration_so_far_is_an_expand_one_and_both_stores_agree() {
        // SQLite's schema is PostgreSQL's but for 8 and 9 (request ids
        // recorded per batch), PostgreSQL's alone, where replicas contend:
        // a version both have is the same migration.
        let lite: Vec<i64> = SQLITE.iter().map(|m| m.version).collect();
        let pg: Vec<i64> = POSTGRES
            .iter()
            .map(|m| m.version)
            .filter(|v| ![8, 9].contains(v))
            .collect();
        assert_eq!(lite, pg);
        for m in POSTGRES.iter().chain(SQLITE) {
            assert_eq!(m.kind, Kind::Expand, "{}", m.name);
        }
        assert_eq!(schema_version(POSTGRES), 10);
        assert_eq!(schema_version(SQLITE), 10);
    }

    #[test]
    fn the_mark_is_announced_and_read_back() {
        assert_eq!(application_name(None, 7), "tally schema=7");
        assert_eq!(application_name(Some(""), 7), "tally schema=7");
        assert_eq!(application_name(Some("tally"), 7), "tally schema=7");
        assert_eq!(
            application_name(Some("web-eu"), 12),
            "web-eu tally schema=12"
        );
        assert_eq!(
            application_name(Some("caf\u{e9} x"), 7),
            "caf? x tally schema=7"
        );
        let long = application_name(Some(&"a".repeat(100)), 123);
        assert_eq!(long.len(), 63);
        assert!(long.ends_with(" tally schema=123"), "{long}");

        assert_eq!(announced("tally"), Some(Announced::Unmarked));
        assert_eq!(announced("tally schema=7"), Some(Announced::Schema(7)));
        assert_eq!(announced(&long), Some(Announced::Schema(123)));
        assert_eq!(
            announced("web-eu tally schema=12"),
            Some(Announced::Schema(12))
        );
        for other in [
            "",
            "psql",
            "tallyho",
            "mytally schema=3",
            "tally schema=",
            "tally schema=7x",
        ] {
            assert_eq!(announced(other), None, "{other:?}");
        }
    }

    const EXTRA: &[Migration] = &[
        Migration {
            version: 1,
            name: "one",
            kind: Kind::Expand,
            sql: "SELECT 1",
        },
        Migration {
            version: 2,
            name: "drop_old",
            kind: Kind::Contract { after: "0.1.0" },
            sql: "SELECT 2",
        },
        Migration {
            version: 3,
            name: "three",
            kind: Kind::Expand,
            sql: "SELECT 3",
        },
    ];

    fn holder(pid: i32, schema: Option<i64>) -> Holder {
        Holder {
            pid,
            address: Some("127.0.0.1:5000".into()),
            application_name: "tally".into(),
            schema,
            since: None,
        }
    }

    fn versions(apply: &[&Migration]) -> Vec<i64> {
        apply.iter().map(|m| m.version).collect()
    }

    #[test]
    fn a_contract_migration_waits_for_older_sessions_and_expand_ones_do_not() {
        let done = HashSet::from([1]);
        assert!(contract_pending(EXTRA, &done));
        assert!(!contract_pending(EXTRA, &HashSet::from([2])));

        // Sessions built for schema 2 or later do not hold migration 2.
        let (apply, held) = plan(EXTRA, &done, Contracts::WhenSafe, &[holder(1, Some(2))]);
        assert_eq!(versions(&apply), [2, 3]);
        assert!(held.is_none());

        // An unmarked session and one built for schema 1 do; 3 runs past it.
        let holders = [holder(1, None), holder(2, Some(1)), holder(3, Some(3))];
        let (apply, held) = plan(EXTRA, &done, Contracts::WhenSafe, &holders);
        assert_eq!(versions(&apply), [3]);
        let held = held.expect("held");
        assert_eq!(held.migrations.len(), 1);
        assert_eq!(held.migrations[0].version, 2);
        assert_eq!(held.holders, [holder(1, None), holder(2, Some(1))]);
        assert_eq!(
            held.to_string(),
            "contract migration 2 (drop_old) not applied: 2 sessions of an older tally release \
             still use this database:\n  \
             - pid 1 from 127.0.0.1:5000, application_name \"tally\" (a release that announces no schema)\n  \
             - pid 2 from 127.0.0.1:5000, application_name \"tally\" (schema 1)"
        );

        // Forced, it runs whoever is connected.
        let (apply, held) = plan(EXTRA, &done, Contracts::Force, &holders);
        assert_eq!(versions(&apply), [2, 3]);
        assert!(held.is_none());
    }
}
