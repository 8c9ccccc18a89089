//! Surviving a primary failover: which server to connect to, which errors
//! mean "nothing was written" and which leave a commit's outcome unknown.
//!
//! New connections try the URL's hosts in order and, with
//! `target_session_attrs=read-write`, keep only a server that takes writes,
//! so a pool whose connections broke with the old primary finds the new one
//! by itself. A server that refuses a write as read-only (a standby, or a
//! primary being fenced) wrote nothing: its connection is dropped, and the
//! next one finds the primary.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::error::{DbError, Severity, SqlState};

use super::super::StoreError;

/// With several hosts and no `target_session_attrs`, connect only to one
/// that takes writes. libpq's default, `any`, would keep the first host
/// that answers, standby or not, and every hit would then fail; tally
/// always writes, so it asks for `read-write` unless the URL names another
/// choice. Returns whether it did.
pub(super) fn prefer_writable(config: &mut tokio_postgres::Config, raw: &str) -> bool {
    let hosts = config.get_hosts().len().max(config.get_hostaddrs().len());
    if hosts < 2 || raw.contains("target_session_attrs") {
        return false;
    }
    config.target_session_attrs(TargetSessionAttrs::ReadWrite);
    true
}

/// Set while a write's commit is in flight: from the moment its `COMMIT`
/// (or the one autocommit statement that counts a batch) is sent until its
/// answer is read. A failure while it is set may have committed.
#[derive(Debug, Default)]
pub(super) struct CommitSent(AtomicBool);

impl CommitSent {
    /// Runs the statement that commits, marking it in flight until its
    /// answer says whether it committed.
    pub(super) async fn commit<T>(
        &self,
        statement: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, tokio_postgres::Error> {
        self.0.store(true, Ordering::Release);
        let result = statement.await;
        let answered = match &result {
            Ok(_) => true,
            Err(e) => Failure::of(e).refused(),
        };
        if answered {
            self.0.store(false, Ordering::Release);
        }
        result
    }

    /// Whether a commit was sent and no answer to it was read.
    pub(super) fn in_flight(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What an error says about the server and the connection: all that its
/// meaning depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    /// The server's SQLSTATE, if it answered with an error.
    pub code: Option<SqlState>,
    /// That answer's severity (`None` if there was none, or it is unknown).
    pub severity: Option<Severity>,
    pub message: String,
    /// The connection closed or broke: no answer came.
    pub lost: bool,
}

/// What a failed operation means for its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Meaning {
    /// Nothing was written; a retry may work.
    NothingWritten(String),
    /// A commit was sent and no answer came: it may have committed.
    OutcomeUnknown(String),
    /// A unique constraint refused the write.
    Conflict,
    /// A bug or a broken schema.
    Bug,
}

impl Failure {
    pub(super) fn of(e: &tokio_postgres::Error) -> Failure {
        let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
        let db = e.as_db_error();
        Failure {
            code: e.code().cloned(),
            severity: db.and_then(DbError::parsed_severity),
            message: db.map_or_else(|| e.to_string(), |db| db.message().to_owned()),
            lost: e.is_closed() || io,
        }
    }

    /// The server answered with an error that rolled the statement back:
    /// an `ERROR` ends the transaction (or the autocommit statement) with
    /// nothing written, whereas `FATAL` and `PANIC` end the session,
    /// perhaps after the commit (a backend told to stop while it waited for
    /// its synchronous standby has committed locally).
    fn refused(&self) -> bool {
        self.code.is_some() && self.severity == Some(Severity::Error)
    }

    /// The server refused a write because it takes none: a hot standby, or
    /// a server with `default_transaction_read_only` ("cannot execute
    /// UPDATE in a read-only transaction", "... during recovery").
    pub(super) fn read_only(&self) -> bool {
        self.code == Some(SqlState::READ_ONLY_SQL_TRANSACTION)
    }

    /// The connection must not be used again: it is broken, or it leads to
    /// a server that takes no writes, and the next one may find the
    /// primary.
    pub(super) fn drops_connection(&self) -> bool {
        self.lost || self.read_only()
    }

    /// What the failure means, given whether a commit was in flight.
    pub(super) fn meaning(&self, commit_in_flight: bool) -> Meaning {
        let ended = self.lost || self.code.is_some();
        if commit_in_flight && ended && !self.refused() {
            return Meaning::OutcomeUnknown(self.message.clone());
        }
        if self.read_only() {
            return Meaning::NothingWritten(format!(
                "the server takes no writes (a standby?): {}",
                self.message
            ));
        }
        match &self.code {
            Some(code) => match &code.code()[..2] {
                "08" | "40" | "53" | "57" | "58" => Meaning::NothingWritten(self.message.clone()),
                "23" if code == &SqlState::UNIQUE_VIOLATION => Meaning::Conflict,
                // A lock waited past the session's `lock_timeout` (an
                // operator's setting, or another session holding a row):
                // the statement, and its transaction, wrote nothing.
                "55" if code == &SqlState::LOCK_NOT_AVAILABLE => {
                    Meaning::NothingWritten(self.message.clone())
                }
                _ => Meaning::Bug,
            },
            None if self.lost => Meaning::NothingWritten(self.message.clone()),
            None => Meaning::Bug,
        }
    }
}

/// What an error means to the caller, given whether a commit was in
/// flight when it happened.
pub(super) fn classify(e: tokio_postgres::Error, commit_in_flight: bool) -> StoreError {
    match Failure::of(&e).meaning(commit_in_flight) {
        Meaning::NothingWritten(why) => StoreError::Unavailable(why),
        Meaning::OutcomeUnknown(why) => StoreError::OutcomeUnknown(why),
        Meaning::Conflict => StoreError::Conflict,
        Meaning::Bug => StoreError::Internal(anyhow::anyhow!(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_hosts_without_a_choice_connect_only_to_a_writable_one() {
        let url = "postgres://tally@h1:5432,h2:5433/db";
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        assert_eq!(config.get_hosts().len(), 2);
        assert_eq!(config.get_ports(), [5432, 5433]);
        assert!(prefer_writable(&mut config, url));
        assert_eq!(
            config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );

        let kv = "host=a,b port=1,2 user=tally dbname=db";
        let mut config: tokio_postgres::Config = kv.parse().unwrap();
        assert_eq!(config.get_ports(), [1, 2]);
        assert!(prefer_writable(&mut config, kv));
        assert_eq!(
            config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
    }

    #[test]
    fn an_explicit_choice_or_a_single_host_is_left_alone() {
        let url = "postgres://h1,h2/db?target_session_attrs=any";
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        assert!(!prefer_writable(&mut config, url));
        assert_eq!(config.get_target_session_attrs(), TargetSessionAttrs::Any);

        let url = "postgres://h1:5432,h2:5432/db?target_session_attrs=read-write";
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        assert!(!prefer_writable(&mut config, url));
        assert_eq!(
            config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );

        let url = "postgres://h1/db";
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        assert!(!prefer_writable(&mut config, url));
        assert_eq!(config.get_target_session_attrs(), TargetSessionAttrs::Any);
    }

    fn answered(code: SqlState, severity: Severity) -> Failure {
        Failure {
            code: Some(code),
            severity: Some(severity),
            message: "the server said no".into(),
            lost: false,
        }
    }

    fn connection_lost() -> Failure {
        Failure {
            code: None,
            severity: None,
            message: "connection closed".into(),
            lost: true,
        }
    }

    #[test]
    fn a_read_only_server_wrote_nothing_and_its_connection_is_dropped() {
        let read_only = answered(SqlState::READ_ONLY_SQL_TRANSACTION, Severity::Error);
        assert!(read_only.drops_connection());
        for in_flight in [false, true] {
            assert_eq!(
                read_only.meaning(in_flight),
                Meaning::NothingWritten(
                    "the server takes no writes (a standby?): the server said no".into()
                )
            );
        }
        // Other errors of class 25 remain bugs, on a connection kept.
        let aborted = answered(SqlState::IN_FAILED_SQL_TRANSACTION, Severity::Error);
        assert!(!aborted.drops_connection());
        assert_eq!(aborted.meaning(false), Meaning::Bug);
    }

    #[test]
    fn a_connection_lost_during_the_commit_leaves_the_outcome_unknown() {
        let lost = connection_lost();
        assert!(lost.drops_connection());
        assert_eq!(
            lost.meaning(true),
            Meaning::OutcomeUnknown("connection closed".into())
        );
        // Before the commit was sent, the server rolls the transaction back.
        assert_eq!(
            lost.meaning(false),
            Meaning::NothingWritten("connection closed".into())
        );
    }

    #[test]
    fn a_session_ended_by_the_server_during_the_commit_may_have_committed() {
        // A backend stopped while it waits for its synchronous standby has
        // committed locally: FATAL, not ERROR.
        let stopped = answered(SqlState::ADMIN_SHUTDOWN, Severity::Fatal);
        assert_eq!(
            stopped.meaning(true),
            Meaning::OutcomeUnknown("the server said no".into())
        );
        assert_eq!(
            stopped.meaning(false),
            Meaning::NothingWritten("the server said no".into())
        );
        let panic = answered(SqlState::INTERNAL_ERROR, Severity::Panic);
        assert_eq!(
            panic.meaning(true),
            Meaning::OutcomeUnknown("the server said no".into())
        );
    }

    #[test]
    fn an_error_answered_to_the_commit_rolled_it_back() {
        let serialization = answered(SqlState::T_R_SERIALIZATION_FAILURE, Severity::Error);
        assert_eq!(
            serialization.meaning(true),
            Meaning::NothingWritten("the server said no".into())
        );
        let taken = answered(SqlState::UNIQUE_VIOLATION, Severity::Error);
        assert_eq!(taken.meaning(true), Meaning::Conflict);
        let bug = answered(SqlState::DIVISION_BY_ZERO, Severity::Error);
        assert_eq!(bug.meaning(true), Meaning::Bug);
    }

    #[test]
    fn a_lock_that_timed_out_wrote_nothing_on_a_connection_kept() {
        let timed_out = answered(SqlState::LOCK_NOT_AVAILABLE, Severity::Error);
        assert!(!timed_out.drops_connection());
        for in_flight in [false, true] {
            assert_eq!(
                timed_out.meaning(in_flight),
                Meaning::NothingWritten("the server said no".into())
            );
        }
        // The rest of class 55 stays a bug.
        let in_use = answered(SqlState::OBJECT_IN_USE, Severity::Error);
        assert_eq!(in_use.meaning(false), Meaning::Bug);
    }

    #[test]
    fn a_client_side_error_is_a_bug_even_during_the_commit() {
        let decode = Failure {
            code: None,
            severity: None,
            message: "error deserializing column 0".into(),
            lost: false,
        };
        assert!(!decode.drops_connection());
        assert_eq!(decode.meaning(true), Meaning::Bug);
        assert_eq!(decode.meaning(false), Meaning::Bug);
    }

    #[test]
    fn only_a_unique_violation_of_class_23_is_a_conflict() {
        let taken = answered(SqlState::UNIQUE_VIOLATION, Severity::Error);
        assert_eq!(taken.meaning(false), Meaning::Conflict);
        for other in [
            SqlState::FOREIGN_KEY_VIOLATION,
            SqlState::NOT_NULL_VIOLATION,
            SqlState::CHECK_VIOLATION,
        ] {
            assert_eq!(
                answered(other, Severity::Error).meaning(false),
                Meaning::Bug
            );
        }
    }
}
