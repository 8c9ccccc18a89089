//! One owning process per SQLite database: a second `tally serve` (or a
//! `tally migrate`) on a file that a server holds is refused at once, and a
//! crash of the owner frees the file for its successor.

mod support;

use std::time::Duration;

use support::app::{TOKEN, TallyProcess, run_to_exit};

#[tokio::test]
async fn a_second_process_on_one_sqlite_file_is_refused_and_a_crash_frees_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tally.db");
    let url = format!("sqlite://{}", db.display());
    let env = [("TALLY_DATABASE_URL", url.as_str())];
    let mut first = TallyProcess::spawn(&env);
    for n in 1..=5 {
        assert_eq!(first.hit_greeting().await, n);
    }

    let listen = format!("127.0.0.1:{}", support::free_port());
    let second_env = [
        ("TALLY_DATABASE_URL", url.as_str()),
        ("TALLY_LISTEN", listen.as_str()),
        ("TALLY_ADMIN_TOKEN", TOKEN),
    ];
    let second = run_to_exit(&["serve"], &second_env, Duration::from_secs(10))
        .expect("a second serve on the same file must exit, not serve");
    assert_eq!(second.status.code(), Some(1), "{}", second.stderr);
    let expected = format!(
        "the SQLite database {} is in use by another tally process (pid {})",
        db.display(),
        first.pid()
    );
    assert!(second.stderr.contains(&expected), "{}", second.stderr);
    assert!(second.stderr.contains("tally.db.lock"), "{}", second.stderr);
    // It never listened.
    assert_eq!(
        support::app::http_status(listen.parse().unwrap(), "/healthz"),
        None
    );

    // `migrate` needs the same ownership.
    let migrate = run_to_exit(&["migrate"], &env, Duration::from_secs(10))
        .expect("migrate must not wait for the lock");
    assert_eq!(migrate.status.code(), Some(1), "{}", migrate.stderr);
    assert!(migrate.stderr.contains(&expected), "{}", migrate.stderr);

    // The owner goes on counting from where it was.
    assert_eq!(first.hit_greeting().await, 6);
    assert_eq!(first.count("default").await, 6);

    // kill -9 leaves no lock behind: a successor starts and serves.
    first.signal(libc::SIGKILL);
    assert!(!first.wait(Duration::from_secs(5)).success());
    drop(first);
    let successor = TallyProcess::spawn(&env);
    assert_eq!(successor.hit_greeting().await, 7);
    drop(successor);

    // With no server left, `migrate` runs.
    let migrate = run_to_exit(&["migrate"], &env, Duration::from_secs(10)).unwrap();
    assert!(migrate.status.success(), "{}", migrate.stderr);
}

#[tokio::test]
async fn separate_sqlite_files_are_served_side_by_side() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let urls: Vec<String> = dirs
        .iter()
        .map(|d| format!("sqlite://{}/tally.db", d.path().display()))
        .collect();
    let a = TallyProcess::spawn(&[("TALLY_DATABASE_URL", &urls[0])]);
    let b = TallyProcess::spawn(&[("TALLY_DATABASE_URL", &urls[1])]);
    assert_eq!(a.hit_greeting().await, 1);
    assert_eq!(a.hit_greeting().await, 2);
    assert_eq!(b.hit_greeting().await, 1);
}
