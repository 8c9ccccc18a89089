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
    include_str!("../../../RELEASES")
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
    assert_eq!(schema_version(POSTGRES), 12);
    assert_eq!(schema_version(SQLITE), 12);
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
