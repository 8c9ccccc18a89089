//! TLS to PostgreSQL: `sslmode`, `sslrootcert`, `sslcert` and `sslkey`
//! in the connection string, with the meanings libpq gives them.
//!
//! tokio-postgres knows only `disable`, `prefer` and `require`, and refuses
//! the other parameters, so [`split`] takes them out of the string (URL or
//! `key=value` form) before tokio-postgres parses the rest, and
//! [`PgTls::connector`] builds the rustls connector that checks the server
//! as the mode says. [`PgTls::refusal`] tells a connection failure that
//! these settings cause, which retrying cannot cure, from an outage.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use percent_encoding::percent_decode_str;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::{self, ClientIdentity, Roots, Verify};

/// The parameters this module takes out of a connection string.
const PARAMETERS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// libpq's `sslmode`, less `allow` (plain text first, TLS if refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text only.
    Disable,
    /// TLS if the server offers it, else plain text; nothing is verified.
    Prefer,
    /// TLS or no connection; nothing is verified unless `sslrootcert` is
    /// given, which makes it `verify-ca`.
    Require,
    /// TLS, the chain checked up to `sslrootcert`; any host name.
    VerifyCa,
    /// TLS, the chain checked and the certificate naming the host.
    VerifyFull,
}

impl SslMode {
    const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> anyhow::Result<SslMode> {
        if let Some(mode) = SslMode::ALL.into_iter().find(|m| m.name() == value) {
            return Ok(mode);
        }
        if value == "allow" {
            bail!(
                "sslmode=allow is not supported (plain text first, TLS only if the server \
                 insists): use sslmode=disable or sslmode=prefer"
            );
        }
        bail!("sslmode={value:?} is not one of disable, prefer, require, verify-ca, verify-full")
    }

    /// What tokio-postgres is told: whether to ask for TLS and whether to
    /// go on in plain text when the server has none.
    fn negotiation(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Pg;
        match self {
            SslMode::Disable => Pg::Disable,
            SslMode::Prefer => Pg::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The TLS settings of one connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    /// The mode in force: `sslmode`, else `verify-full` under
    /// `sslrootcert=system`, else libpq's default `prefer`.
    pub mode: SslMode,
    pub root: Option<Roots>,
    pub identity: Option<ClientIdentity>,
}

/// A connection string without the TLS parameters, and those parameters.
#[derive(Debug)]
pub struct Split {
    /// What tokio-postgres parses (it may hold a password: never shown).
    pub rest: String,
    pub tls: PgTls,
}

/// Takes the TLS parameters out of a PostgreSQL URL
/// (`postgres://…?sslmode=verify-full&sslrootcert=/ca.crt`) or a
/// `key=value` string (`host=db sslmode=require`). A parameter given twice
/// counts with its last value, as in libpq. Errors name the parameter and
/// never quote the string (it may hold a password).
pub fn split(conn: &str) -> anyhow::Result<Split> {
    let mut raw = Raw::default();
    let rest = if is_url(conn) {
        split_url(conn, &mut raw)
    } else {
        split_key_values(conn, &mut raw)?
    };
    Ok(Split {
        rest,
        tls: raw.settle()?,
    })
}

/// Whether `conn` is a URL rather than `key=value` pairs.
pub fn is_url(conn: &str) -> bool {
    conn.starts_with("postgres://") || conn.starts_with("postgresql://")
}

/// The TLS parameters as written, before they are checked together.
#[derive(Debug, Default)]
struct Raw {
    mode: Option<String>,
    root: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

impl Raw {
    /// Keeps `value` if `key` is one of [`PARAMETERS`]; `false` otherwise.
    fn take(&mut self, key: &str, value: Cow<'_, str>) -> bool {
        let slot = match key {
            "sslmode" => &mut self.mode,
            "sslrootcert" => &mut self.root,
            "sslcert" => &mut self.cert,
            "sslkey" => &mut self.key,
            _ => return false,
        };
        debug_assert!(PARAMETERS.contains(&key));
        *slot = Some(value.into_owned());
        true
    }

    fn settle(self) -> anyhow::Result<PgTls> {
        let mode = self.mode.as_deref().map(SslMode::parse).transpose()?;
        let root = match self.root.as_deref() {
            None => None,
            Some("") => bail!("sslrootcert is empty: give a CA file or sslrootcert=system"),
            Some("system") => Some(Roots::System),
            Some(path) => Some(Roots::File(PathBuf::from(path))),
        };
        let mode = match (mode, &root) {
            // As libpq 16: the public roots vouch for names, so a server is
            // only checked against them with its name.
            (None, Some(Roots::System)) => SslMode::VerifyFull,
            (Some(mode), Some(Roots::System)) if mode != SslMode::VerifyFull => bail!(
                "sslrootcert=system needs sslmode=verify-full (got sslmode={mode}): any \
                 server can get a certificate from a public CA, so only its name tells it apart"
            ),
            (Some(mode), _) => mode,
            (None, _) => SslMode::Prefer,
        };
        if root.is_none() && matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) {
            bail!(
                "sslmode={mode} needs sslrootcert: the CA file that signed the server's \
                 certificate (sslrootcert=/path/ca.crt), or sslrootcert=system for the \
                 public CAs"
            );
        }
        let identity = match (self.cert, self.key) {
            (None, None) => None,
            (Some(cert), Some(key)) if !cert.is_empty() && !key.is_empty() => {
                Some(ClientIdentity {
                    cert: cert.into(),
                    key: key.into(),
                })
            }
            (Some(_), _) => bail!("sslcert needs sslkey: the client certificate's private key"),
            (None, Some(_)) => bail!("sslkey needs sslcert: the client certificate"),
        };
        Ok(PgTls {
            mode,
            root,
            identity,
        })
    }
}

/// Drops the TLS parameters from a URL's query, keeping the rest as written.
fn split_url(url: &str, raw: &mut Raw) -> String {
    let Some((head, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode_str(key).decode_utf8_lossy();
            !raw.take(&key, percent_decode_str(value).decode_utf8_lossy())
        })
        .collect();
    if kept.is_empty() {
        head.to_owned()
    } else {
        format!("{head}?{}", kept.join("&"))
    }
}

/// Drops the TLS parameters from `key=value` pairs, written back quoted.
/// Reads values as libpq and tokio-postgres do: bare up to white space, or
/// in single quotes, a backslash taking the next character as it is.
fn split_key_values(conn: &str, raw: &mut Raw) -> anyhow::Result<String> {
    let mut kept = Vec::new();
    let mut chars = conn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace() && *c != '=')).collect();
        if key.is_empty() {
            if chars.peek().is_some() {
                bail!("invalid PostgreSQL connection string: a parameter has no name");
            }
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            bail!("invalid PostgreSQL connection string: {key} has no `=`");
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\'') if quoted => break,
                Some(c) if !quoted && c.is_whitespace() => break,
                Some('\\') => value.extend(chars.next()),
                Some(c) => value.push(c),
                None if quoted => {
                    bail!(
                        "invalid PostgreSQL connection string: the value of {key} has no closing quote"
                    )
                }
                None => break,
            }
        }
        if !raw.take(&key, Cow::Borrowed(&value)) {
            let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{escaped}'"));
        }
    }
    Ok(kept.join(" "))
}

impl PgTls {
    /// What tokio-postgres is told to negotiate.
    pub fn negotiation(&self) -> tokio_postgres::config::SslMode {
        self.mode.negotiation()
    }

    /// How much of the server's certificate is checked.
    fn level(&self) -> Level {
        match (self.mode, &self.root) {
            (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => Level::Nothing,
            (SslMode::Require | SslMode::VerifyCa, Some(_)) => Level::Chain,
            (SslMode::VerifyFull, Some(_)) => Level::ChainAndName,
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                unreachable!("settle refuses verify-* without sslrootcert")
            }
        }
    }

    /// Says what is checked, for the start-up log.
    pub fn describe(&self) -> &'static str {
        match (self.mode, self.level()) {
            (SslMode::Disable, _) => "plain text",
            (SslMode::Prefer, _) => "TLS if the server offers it, server not verified",
            (_, Level::Nothing) => "TLS, server not verified",
            (_, Level::Chain) => "TLS, certificate chain verified, host name not",
            (_, Level::ChainAndName) => "TLS, certificate chain and host name verified",
        }
    }

    /// The rustls connector for these settings: reads the CA and client
    /// certificate files now, so a file that cannot be used stops tally at
    /// start rather than at its first connection.
    pub fn connector(&self) -> anyhow::Result<MakeRustlsConnect> {
        let roots = || -> anyhow::Result<Arc<rustls::RootCertStore>> {
            let root = self.root.as_ref().expect("levels past Nothing have roots");
            Ok(Arc::new(root.load("sslrootcert")?))
        };
        let verify = match self.level() {
            Level::Nothing => Verify::Nothing,
            Level::Chain => Verify::Chain(roots()?),
            Level::ChainAndName => Verify::ChainAndName(roots()?),
        };
        let config = tls::client_config(verify, self.identity.as_ref(), ("sslcert", "sslkey"))?;
        Ok(MakeRustlsConnect::new(config))
    }

    /// Why a connection failed, when these settings are the cause and so no
    /// retry can succeed: a certificate that does not verify, a server
    /// without TLS under `require` or stricter, or one that takes only
    /// encrypted connections under `disable`. `None` for anything else.
    pub fn refusal(&self, error: &tokio_postgres::Error) -> Option<String> {
        let settings = self.settings();
        if let Some(db) = error.as_db_error() {
            // pg_hba.conf matched no line for a connection "no encryption"
            // ("SSL off" before PostgreSQL 12): only hostssl lines admit us.
            let unencrypted =
                db.message().ends_with("no encryption") || db.message().ends_with("SSL off");
            if db.code() == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION && unencrypted {
                return Some(format!(
                    "{settings}: the server requires TLS; it refused this connection because it \
                     is not encrypted ({}); use sslmode=require or stricter",
                    db.message()
                ));
            }
            return None;
        }
        let source = std::error::Error::source(error)?;
        if let Some(rustls) = tls::rustls_error(source) {
            return Some(format!("{settings}: {}", tls::reason(rustls)));
        }
        // tokio-postgres's words when the server answers "no TLS".
        if source.to_string() == "server does not support TLS" {
            return Some(format!(
                "{settings}: the server does not support TLS, and sslmode={} never falls back \
                 to plain text",
                self.mode
            ));
        }
        None
    }

    /// The settings in force, as a user would write them.
    fn settings(&self) -> String {
        let mut out = format!("sslmode={}", self.mode);
        if let Some(root) = &self.root
            && self.level() != Level::Nothing
        {
            out.push_str(&format!(" sslrootcert={root}"));
        }
        if let Some(identity) = &self.identity {
            out.push_str(&format!(" sslcert={}", identity.cert.display()));
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Nothing,
    Chain,
    ChainAndName,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(conn: &str) -> PgTls {
        split(conn).unwrap_or_else(|e| panic!("{conn}: {e:#}")).tls
    }

    fn refused(conn: &str) -> String {
        format!("{:#}", split(conn).unwrap_err())
    }

    #[test]
    fn every_sslmode_is_read_from_a_url() {
        let base = "postgres://tally:pw@db:5432/tally";
        for (value, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
        ] {
            let split = split(&format!("{base}?sslmode={value}")).unwrap();
            assert_eq!(split.tls.mode, mode);
            assert_eq!(split.rest, base);
        }
        for (value, mode) in [
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let split = split(&format!("{base}?sslmode={value}&sslrootcert=/ca.crt")).unwrap();
            assert_eq!(split.tls.mode, mode);
            assert_eq!(split.tls.root, Some(Roots::File("/ca.crt".into())));
            assert_eq!(split.rest, base);
        }
    }

    #[test]
    fn without_sslmode_the_default_is_prefer() {
        assert_eq!(tls("postgres://db/tally").mode, SslMode::Prefer);
        assert_eq!(tls("host=db dbname=tally").mode, SslMode::Prefer);
    }

    #[test]
    fn every_sslmode_is_read_from_key_values() {
        for mode in SslMode::ALL {
            let conn = format!("host=db  sslmode = {mode} sslrootcert='/etc/my ca.crt' user=tally");
            let split = split(&conn).unwrap();
            assert_eq!(split.tls.mode, mode);
            assert_eq!(split.tls.root, Some(Roots::File("/etc/my ca.crt".into())));
            assert_eq!(split.rest, "host='db' user='tally'");
        }
    }

    #[test]
    fn other_parameters_are_kept_as_written() {
        let split = split(
            "postgres://u:p%40ss@h1:5432,h2:5433/db?target_session_attrs=read-write\
             &sslmode=verify-full&application_name=a%20b&sslrootcert=%2Fca%20dir%2Fca.crt",
        )
        .unwrap();
        assert_eq!(
            split.rest,
            "postgres://u:p%40ss@h1:5432,h2:5433/db?target_session_attrs=read-write\
             &application_name=a%20b"
        );
        assert_eq!(split.tls.root, Some(Roots::File("/ca dir/ca.crt".into())));
        let config: tokio_postgres::Config = split.rest.parse().unwrap();
        assert_eq!(config.get_hosts().len(), 2);
        assert_eq!(config.get_application_name(), Some("a b"));
    }

    #[test]
    fn key_values_are_written_back_so_tokio_postgres_reads_the_same() {
        let split = split(
            r"host=wrong.example hostaddr=127.0.0.1 password='it\'s a \\ secret' sslmode=verify-ca sslrootcert=/ca.crt",
        )
        .unwrap();
        let config: tokio_postgres::Config = split.rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&br"it's a \ secret"[..]));
        assert_eq!(config.get_hostaddrs().len(), 1);
        assert_eq!(split.tls.mode, SslMode::VerifyCa);
    }

    #[test]
    fn the_last_value_of_a_parameter_counts() {
        assert_eq!(
            tls("postgres://db/t?sslmode=disable&sslmode=require").mode,
            SslMode::Require
        );
    }

    #[test]
    fn bad_values_name_the_parameter() {
        assert_eq!(
            refused("postgres://db/t?sslmode=verify_full"),
            "sslmode=\"verify_full\" is not one of disable, prefer, require, verify-ca, verify-full"
        );
        assert_eq!(
            refused("host=db sslmode=VERIFY-FULL"),
            "sslmode=\"VERIFY-FULL\" is not one of disable, prefer, require, verify-ca, verify-full"
        );
        assert!(refused("postgres://db/t?sslmode=").starts_with("sslmode=\"\" is not one of"));
        assert!(
            refused("postgres://db/t?sslmode=allow").starts_with("sslmode=allow is not supported")
        );
        assert!(refused("postgres://db/t?sslrootcert=").starts_with("sslrootcert is empty"));
        assert!(refused("postgres://db/t?sslcert=/c.crt").starts_with("sslcert needs sslkey"));
        assert!(refused("postgres://db/t?sslkey=/c.key").starts_with("sslkey needs sslcert"));
        assert!(
            refused("host=db password='secret")
                .contains("the value of password has no closing quote")
        );
        assert!(!refused("host=db password='secret").contains("secret'"));
    }

    #[test]
    fn verify_modes_need_a_root() {
        for mode in ["verify-ca", "verify-full"] {
            assert_eq!(
                refused(&format!("postgres://db/t?sslmode={mode}")),
                format!(
                    "sslmode={mode} needs sslrootcert: the CA file that signed the server's \
                     certificate (sslrootcert=/path/ca.crt), or sslrootcert=system for the \
                     public CAs"
                )
            );
        }
    }

    #[test]
    fn system_roots_mean_verify_full() {
        let system = tls("postgres://db/t?sslrootcert=system");
        assert_eq!(system.mode, SslMode::VerifyFull);
        assert_eq!(system.root, Some(Roots::System));
        assert_eq!(system.level(), Level::ChainAndName);
        assert_eq!(
            tls("postgres://db/t?sslrootcert=system&sslmode=verify-full").mode,
            SslMode::VerifyFull
        );
        for weaker in ["disable", "prefer", "require", "verify-ca"] {
            assert!(
                refused(&format!(
                    "postgres://db/t?sslrootcert=system&sslmode={weaker}"
                ))
                .starts_with(&format!(
                    "sslrootcert=system needs sslmode=verify-full (got sslmode={weaker})"
                ))
            );
        }
    }

    #[test]
    fn each_mode_checks_what_libpq_checks() {
        let level = |conn: &str| tls(conn).level();
        assert_eq!(level("postgres://db/t?sslmode=disable"), Level::Nothing);
        assert_eq!(
            level("postgres://db/t?sslmode=prefer&sslrootcert=/ca"),
            Level::Nothing
        );
        assert_eq!(level("postgres://db/t?sslmode=require"), Level::Nothing);
        // libpq: require with a root CA file behaves as verify-ca.
        assert_eq!(
            level("postgres://db/t?sslmode=require&sslrootcert=/ca"),
            Level::Chain
        );
        assert_eq!(
            level("postgres://db/t?sslmode=verify-ca&sslrootcert=/ca"),
            Level::Chain
        );
        assert_eq!(
            level("postgres://db/t?sslmode=verify-full&sslrootcert=/ca"),
            Level::ChainAndName
        );
        use tokio_postgres::config::SslMode as Pg;
        assert_eq!(
            tls("postgres://db/t?sslmode=disable").negotiation(),
            Pg::Disable
        );
        assert_eq!(tls("postgres://db/t").negotiation(), Pg::Prefer);
        for strict in [
            "require",
            "verify-ca&sslrootcert=/ca",
            "verify-full&sslrootcert=/ca",
        ] {
            assert_eq!(
                tls(&format!("postgres://db/t?sslmode={strict}")).negotiation(),
                Pg::Require,
                "{strict}"
            );
        }
    }

    #[test]
    fn a_client_certificate_takes_both_files() {
        let tls = tls("postgres://db/t?sslmode=require&sslcert=/c.crt&sslkey=/c.key");
        assert_eq!(
            tls.identity,
            Some(ClientIdentity {
                cert: "/c.crt".into(),
                key: "/c.key".into()
            })
        );
        assert_eq!(tls.settings(), "sslmode=require sslcert=/c.crt");
    }

    #[test]
    fn unreadable_files_stop_the_connector_naming_the_setting() {
        let tls = tls("postgres://db/t?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt");
        let message = format!("{:#}", tls.connector().err().unwrap());
        assert!(
            message.starts_with("sslrootcert=/nonexistent/ca.crt: cannot read the file"),
            "{message}"
        );
    }
}
