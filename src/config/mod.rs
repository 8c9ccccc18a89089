//! Settings from flags and `TALLY_*` environment variables.
//!
//! Every setting is both a flag and an environment variable so that `--help`
//! documents the whole surface. Secrets (admin token, database and Redis URLs,
//! which may hold passwords) can also come from `*_FILE` variables, the way
//! Compose and Kubernetes mount secrets, and are wrapped in [`Secret`] so that
//! `Debug` output and logs never show them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

pub mod reference;

use crate::net::NetList;
use crate::secret::Secret;

/// What `tally --version` prints after the name: the version, and the
/// commit the binary was built from (`scripts/build-id`: the commit, with
/// `+dirty.<digest>` when the sources differed from it, or `unknown`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TALLY_BUILD_ID"),
    ")"
);

/// The command line: `tally [serve] | migrate | healthcheck | config`.
#[derive(Debug, Parser)]
#[command(
    name = "tally",
    version = VERSION,
    about = "A self-hosted hit counter with exact, durable counts.",
    long_about = "A self-hosted hit counter with exact, durable counts.\n\n\
        Every flag can also be given as the TALLY_* environment variable shown \
        beside it. Secrets can be read from a file named by the matching *_FILE \
        variable. With no subcommand, tally serves.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: ServeSettings,
}

// Built once at start-up; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP (the default): run migrations, then count hits.
    Serve(ServeSettings),
    /// Apply pending database migrations and exit.
    Migrate(MigrateSettings),
    /// Exit 0 if the local server answers /healthz (for container HEALTHCHECKs).
    Healthcheck(HealthcheckSettings),
    /// Print every setting at its default as an environment file (with
    /// --markdown: the reference table of docs/configuration.md).
    Config(ConfigSettings),
}

#[derive(Debug, Clone, Args)]
pub struct ConfigSettings {
    /// Print the reference as a Markdown table instead.
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    /// Address to listen on (0.0.0.0:8000 in a container).
    #[arg(long, env = "TALLY_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub store: StoreSettings,

    #[command(flatten)]
    pub cache: CacheSettings,

    /// The word after "Hello" on the seed's `/` page.
    #[arg(long, env = "TALLY_GREETING", default_value = "Linode")]
    pub greeting: String,

    /// Bearer token for admin actions (reset, site create/delete, set count,
    /// import, the dashboard's sign-in): at least 16 bytes, with no
    /// whitespace around it, or tally refuses to start, naming the setting
    /// and never the value. Unset or empty: admin actions are refused.
    #[arg(long, env = "TALLY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// File holding the admin token (a Compose or Kubernetes secret). One
    /// trailing newline (\n or \r\n) is not part of it; any other
    /// whitespace is refused as for TALLY_ADMIN_TOKEN.
    #[arg(long, env = "TALLY_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,

    /// Failed authentications (wrong admin token, by Bearer header or the
    /// dashboard's sign-in) per client per minute, on each replica (1 to
    /// 100); past them, every attempt from that client gets 429
    /// auth_rate_limited until its oldest failure is a minute old.
    #[arg(long, env = "TALLY_AUTH_FAILURE_LIMIT", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub auth_failure_limit: u32,

    /// How long a stop (SIGTERM/SIGINT) may take to finish in-flight requests
    /// and commit pending hits. Keep it below the orchestrator's own grace.
    #[arg(long, env = "TALLY_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Hits that may wait for a commit at once; past this, hits get 503.
    #[arg(long, env = "TALLY_WRITE_QUEUE", default_value_t = 16384, value_parser = clap::value_parser!(u32).range(1..))]
    pub write_queue: u32,

    /// Most hits committed in one transaction.
    #[arg(long, env = "TALLY_MAX_BATCH", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch: u32,

    /// Distinct pages one site may have (1 to 1 000 000). Hits naming a new
    /// page past it count towards the site and its one overflow page,
    /// `(other)`.
    #[arg(long, env = "TALLY_PAGE_LIMIT", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub page_limit: u32,

    /// New pages one client may create per TALLY_NEW_PAGE_WINDOW, on each
    /// replica (0: no limit). Past it, its hits on a page the site does not
    /// have yet count on `(other)`; pages the site has count by name.
    #[arg(long, env = "TALLY_NEW_PAGES_PER_CLIENT", default_value_t = 60)]
    pub new_pages_per_client: u32,

    /// New pages one site may get per TALLY_NEW_PAGE_WINDOW from all its
    /// clients, on each replica (0: no limit); past it, as past a client's.
    #[arg(long, env = "TALLY_NEW_PAGES_PER_SITE", default_value_t = 1000)]
    pub new_pages_per_site: u32,

    /// The window of the new-page budgets.
    #[arg(long, env = "TALLY_NEW_PAGE_WINDOW", default_value = "1h", value_parser = parse_duration)]
    pub new_page_window: Duration,

    /// Largest request body accepted, in bytes (an import's has its own
    /// limit, TALLY_MAX_IMPORT_BYTES).
    #[arg(long, env = "TALLY_MAX_BODY_BYTES", default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,

    /// Largest import body (POST /api/v1/import), in bytes: an export of
    /// many sites and their hours is far larger than any other request. The
    /// body is parsed as it arrives, never held whole.
    #[arg(long, env = "TALLY_MAX_IMPORT_BYTES", default_value_t = 256 << 20)]
    pub max_import_bytes: usize,

    /// Most client connections open at once. At the cap, a new connection
    /// pushes out the one that has waited longest without a whole request;
    /// if all are being answered, a few more are served for /healthz,
    /// /readyz and /metrics only. Lowered at start to what the open-file
    /// limit allows.
    #[arg(long, env = "TALLY_MAX_CONNECTIONS", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Longest a client may take to send a request's head (from its first
    /// byte); past it, the connection is closed.
    #[arg(long, env = "TALLY_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Longest a client may take to send a request's body (from the end of
    /// its head), and longest it may leave a response unread.
    #[arg(long, env = "TALLY_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// How long a keep-alive connection may wait for its next request. Keep
    /// it above the keep-alive timeout of a proxy in front (NGINX's
    /// upstream keepalive_timeout, 15 s in tally's configuration), so that
    /// the proxy closes first.
    #[arg(long, env = "TALLY_IDLE_TIMEOUT", default_value = "75s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Largest request head (request line and headers), in bytes; past it,
    /// 431.
    #[arg(long, env = "TALLY_MAX_HEADER_BYTES", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u32).range(1024..=1024 * 1024))]
    pub max_header_bytes: u32,

    /// Peers (comma-separated IPs or CIDRs) that are proxies: their
    /// X-Forwarded-For is read from the right, and the first address in it
    /// that is not itself trusted is the client. Others are taken to be the
    /// client themselves. The default is loopback and the private ranges,
    /// where a reverse proxy in front of tally lives (a Compose network, a
    /// pod network, a LAN); narrow it where clients reach tally directly
    /// from a private address.
    #[arg(
        long,
        env = "TALLY_TRUSTED_PROXIES",
        default_value = DEFAULT_TRUSTED_PROXIES
    )]
    pub trusted_proxies: NetList,

    /// Trusted proxies (comma-separated IPs or CIDRs; a peer must be in
    /// TALLY_TRUSTED_PROXIES too) whose X-Real-IP names the client, before
    /// X-Forwarded-For. For proxies that set X-Real-IP and not
    /// X-Forwarded-For, such as the seed's NGINX. The default is the private
    /// ranges without loopback: a proxy on the same host as tally that
    /// passed a client's own X-Real-IP through would let it pick any
    /// address. Empty: X-Real-IP is never read.
    #[arg(
        long,
        env = "TALLY_REAL_IP_FROM",
        default_value = DEFAULT_REAL_IP_FROM
    )]
    pub real_ip_from: NetList,

    /// Requests per client per minute to the routes that read (counts,
    /// series, site lists, export, uniques, the dashboard), per replica;
    /// past it, 429. 0 turns it off.
    #[arg(long, env = "TALLY_READ_RATE_LIMIT", default_value_t = 3000)]
    pub read_rate_limit: u32,

    /// How long hourly hit counts are kept for the series and the dashboard.
    /// Older hours are folded into the site's total, which never changes.
    /// At least 2 days.
    #[arg(long, env = "TALLY_SERIES_RETENTION", default_value = "400days", value_parser = parse_duration)]
    pub series_retention: Duration,

    /// Show /dashboard to anyone. Off by default: the dashboard shows every
    /// site's counts, so it asks for the admin token (a sign-in form). Also
    /// the default of a site's `public` setting.
    #[arg(
        long,
        env = "TALLY_DASHBOARD_PUBLIC",
        default_value = "false",
        default_missing_value = "true",
        num_args = 0..=1,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub dashboard_public: bool,

    /// Leave hits from known crawlers, link previewers and headless
    /// browsers uncounted, answering them as if counted: on badges, and on
    /// API hits sent with an Origin (a page's script). GitHub's image proxy
    /// counts; so does every hit on the seed's `/`. `false` counts them all.
    #[arg(
        long,
        env = "TALLY_BOT_FILTER",
        default_value = "true",
        default_missing_value = "true",
        num_args = 0..=1,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub bot_filter: bool,

    /// Count where each counted hit came from and who read it (referrer,
    /// campaign, browser, system, device, country, screen, language), per
    /// site, page and day (/api/v1/sites/{slug}/breakdown/{dimension});
    /// `false` counts hits and pages only.
    #[arg(
        long,
        env = "TALLY_BREAKDOWNS",
        default_value = "true",
        default_missing_value = "true",
        num_args = 0..=1,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub breakdowns: bool,

    /// Distinct values one site keeps per breakdown dimension per day (1 to
    /// 10 000), `(none)`, `(unknown)` and `(other)` aside. Past it, hits
    /// with a new value count under `(other)`.
    #[arg(long, env = "TALLY_BREAKDOWN_LIMIT", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub breakdown_limit: u32,

    /// A MaxMind-format country database (GeoLite2 or GeoIP2 Country or
    /// City, DB-IP's country lite) for the `country` breakdown: each
    /// counted hit's address is looked up and only the country's code
    /// kept. Unset: every country is `(unknown)`.
    #[arg(long, env = "TALLY_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,

    #[command(flatten)]
    pub log: LogSettings,
}

#[derive(Debug, Clone, Args)]
pub struct StoreSettings {
    /// Durable store: sqlite://PATH (default) or postgres://USER:PASS@HOST:PORT/DB;
    /// several PostgreSQL hosts (postgres://U:P@H1:5432,H2:5432/DB, or
    /// host=H1,H2 port=5432,5432 ...) are tried in order, keeping only one
    /// that takes writes (target_session_attrs=read-write unless set).
    /// TLS to PostgreSQL as libpq's query parameters: sslmode
    /// (disable, prefer, require, verify-ca, verify-full), sslrootcert (a CA
    /// file, or `system` for the built-in public CAs), sslcert and sslkey.
    #[arg(
        long,
        env = "TALLY_DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://data/tally.db"
    )]
    pub database_url: Secret,

    /// File holding the database URL (overrides TALLY_DATABASE_URL).
    #[arg(long, env = "TALLY_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,

    /// PostgreSQL connections per process.
    #[arg(long, env = "TALLY_DB_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,

    /// Longest wait on the store for one operation (connect, commit, query);
    /// past it the request gets 503. A hit's commit is tried again within
    /// this time of its arrival, so a quick failover costs no error.
    #[arg(long, env = "TALLY_STORE_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub store_timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct CacheSettings {
    /// Redis as the shared cache: redis://[USER:PASS@]HOST:PORT[/DB], or
    /// rediss://… for TLS (an ACL user, or `:PASS@` for the default user).
    /// Without it, an in-process cache. Redis is never needed for
    /// correctness.
    #[arg(long, env = "TALLY_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,

    /// File holding the Redis URL.
    #[arg(long, env = "TALLY_REDIS_URL_FILE", conflicts_with = "redis_url")]
    pub redis_url_file: Option<PathBuf>,

    /// PEM file of the CA (one or more certificates) that signs the Redis
    /// server's certificate, for a rediss:// URL; the bundled public roots
    /// are then not trusted. Without it, rediss:// trusts the public roots.
    /// With a plain redis:// URL it is refused at start.
    #[arg(long, env = "TALLY_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,

    /// Longest wait on Redis for one call; past it, tally stops using Redis
    /// until a background probe sees it answer again.
    #[arg(long, env = "TALLY_CACHE_TIMEOUT", default_value = "50ms", value_parser = parse_duration)]
    pub cache_timeout: Duration,

    /// Counted hits per client per minute (sliding window, shared by all
    /// replicas through Redis); past it, 429. 0 turns limiting off.
    #[arg(long, env = "TALLY_RATE_LIMIT", default_value_t = 600)]
    pub rate_limit: u32,
}

impl CacheSettings {
    /// The Redis URL from the flag, env var or file; `None` if unset or empty.
    pub fn redis_url(&self) -> anyhow::Result<Option<Secret>> {
        let url = match &self.redis_url_file {
            Some(path) => Some(read_secret_file(path)?),
            None => self.redis_url.clone(),
        };
        Ok(url.filter(|u| !u.expose().is_empty()))
    }
}

#[derive(Debug, Clone, Args)]
pub struct MigrateSettings {
    #[command(flatten)]
    pub store: StoreSettings,

    /// Apply contract migrations (which drop or tighten what older releases
    /// may use) even while sessions of an older tally release are connected.
    /// Without it, `migrate` names those sessions and exits 1.
    #[arg(
        long,
        env = "TALLY_MIGRATE_FORCE",
        default_value = "false",
        default_missing_value = "true",
        num_args = 0..=1,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub force: bool,

    #[command(flatten)]
    pub log: LogSettings,
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckSettings {
    /// The server's listen address; 0.0.0.0 and :: are checked on loopback.
    #[arg(long, env = "TALLY_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Give up after this long.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct LogSettings {
    /// Log filter (tracing's directives), e.g. `info` or `info,tally=debug`.
    #[arg(long = "log", env = "TALLY_LOG", default_value = DEFAULT_LOG_FILTER)]
    pub filter: String,

    /// Log format: `text` (coloured on a terminal) or `json` (one object per
    /// line).
    #[arg(long, env = "TALLY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The seed app logged its reset at debug level and showed it: so do we.
pub const DEFAULT_LOG_FILTER: &str = "info,tally::http::seed=debug";

/// Loopback, and the private ranges of RFC 1918 and RFC 4193: a proxy in
/// front of tally (the seed's NGINX on a Compose network, an ingress in a
/// pod network) is trusted with no setting.
pub const DEFAULT_TRUSTED_PROXIES: &str =
    "127.0.0.0/8,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7";

/// The private ranges without loopback: where the seed's NGINX (which sets
/// only X-Real-IP) sits on a Compose network.
pub const DEFAULT_REAL_IP_FROM: &str = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl StoreSettings {
    /// The database URL, read from `TALLY_DATABASE_URL_FILE` when given.
    pub fn database_url(&self) -> anyhow::Result<Secret> {
        match &self.database_url_file {
            Some(path) => read_secret_file(path),
            None => Ok(self.database_url.clone()),
        }
    }
}

impl ServeSettings {
    /// The admin token from the flag, the env var or the file; `None` if the
    /// variable is unset or empty. A token that is short or has whitespace
    /// around it is refused, naming the setting, never showing the value.
    pub fn admin_token(&self) -> anyhow::Result<Option<Secret>> {
        let (token, setting) = match &self.admin_token_file {
            Some(path) => {
                let raw = std::fs::read_to_string(path)
                    .with_context(|| format!("reading secret file {}", path.display()))?;
                // Editors and `echo` end a file with one newline; that is
                // not part of the token. Anything more is.
                let token = raw
                    .strip_suffix("\r\n")
                    .or_else(|| raw.strip_suffix('\n'))
                    .unwrap_or(&raw);
                let setting = format!("TALLY_ADMIN_TOKEN_FILE ({})", path.display());
                (Secret::new(token), setting)
            }
            None => match &self.admin_token {
                Some(token) if !token.expose().is_empty() => {
                    (token.clone(), "TALLY_ADMIN_TOKEN".to_owned())
                }
                _ => return Ok(None),
            },
        };
        check_admin_token(token.expose(), &setting)?;
        Ok(Some(token))
    }
}

/// Shortest admin token accepted, in bytes.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 16;

fn check_admin_token(token: &str, setting: &str) -> anyhow::Result<()> {
    if token.trim() != token {
        bail!(
            "{setting}: the admin token starts or ends with whitespace, which no \
             Authorization header can carry; remove it"
        );
    }
    if token.len() < MIN_ADMIN_TOKEN_BYTES {
        bail!(
            "{setting}: the admin token is {} bytes; use at least {MIN_ADMIN_TOKEN_BYTES} \
             (e.g. `head -c 24 /dev/urandom | base64`)",
            token.len()
        );
    }
    Ok(())
}

fn read_secret_file(path: &std::path::Path) -> anyhow::Result<Secret> {
    let raw = std::fs::read_to_string(path)
        .with_context(|| format!("reading secret file {}", path.display()))?;
    Ok(Secret::new(raw.trim_end_matches(['\r', '\n'])))
}

fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// Validates settings clap cannot check alone.
pub fn validate(settings: &ServeSettings) -> anyhow::Result<()> {
    if settings.max_batch > settings.write_queue {
        bail!(
            "TALLY_MAX_BATCH ({}) cannot exceed TALLY_WRITE_QUEUE ({})",
            settings.max_batch,
            settings.write_queue
        );
    }
    if settings.series_retention < crate::domain::MIN_RETENTION {
        bail!(
            "TALLY_SERIES_RETENTION ({}) must be at least 2 days",
            humantime::format_duration(settings.series_retention)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_tokens_are_long_and_bare() {
        let ok = "0123456789abcdef";
        assert!(check_admin_token(ok, "X").is_ok());
        for (bad, why) in [
            ("0123456789abcde", "15 bytes"),
            ("", "0 bytes"),
            (" 0123456789abcdef", "whitespace"),
            ("0123456789abcdef\n", "whitespace"),
            ("0123456789abcdef\t", "whitespace"),
        ] {
            let message = check_admin_token(bad, "TALLY_ADMIN_TOKEN")
                .unwrap_err()
                .to_string();
            assert!(message.starts_with("TALLY_ADMIN_TOKEN: "), "{message}");
            assert!(message.contains(why), "{bad:?}: {message}");
            if !bad.trim().is_empty() {
                assert!(
                    !message.contains(bad.trim()),
                    "the token is not shown: {message}"
                );
            }
        }
    }

    #[test]
    fn bot_filtering_is_on_unless_turned_off() {
        let bot_filter = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["tally", "serve"][..], args].concat()).unwrap();
            match cli.command {
                Some(Command::Serve(s)) => s.bot_filter,
                _ => unreachable!("asked for serve"),
            }
        };
        assert!(bot_filter(&[]));
        assert!(bot_filter(&["--bot-filter"]));
        assert!(bot_filter(&["--bot-filter", "true"]));
        assert!(!bot_filter(&["--bot-filter", "false"]));
        assert!(!bot_filter(&["--bot-filter=0"]));
        assert!(!bot_filter(&["--bot-filter=no"]));
        assert!(Cli::try_parse_from(["tally", "serve", "--bot-filter=maybe"]).is_err());
    }

    #[test]
    fn migrate_forces_contract_migrations_only_when_asked() {
        let force = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Some(Command::Migrate(m)) => m.force,
            _ => unreachable!("asked for migrate"),
        };
        assert!(!force(&["tally", "migrate"]));
        assert!(force(&["tally", "migrate", "--force"]));
        assert!(force(&["tally", "migrate", "--force=true"]));
        assert!(!force(&["tally", "migrate", "--force=false"]));
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
