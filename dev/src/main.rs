//! `tally-dev`: starts a PostgreSQL or Redis server of the kind the tests
//! use, in a directory and on a port of the caller's, leaves it running in
//! a session of its own, writes its pid, and prints its URL. scripts/stack
//! starts its servers with it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tally_dev::pg::{PgOptions, PgServer};
use tally_dev::redis::{RedisOptions, RedisServer};

#[derive(Debug, Parser)]
#[command(about = "Start a PostgreSQL or Redis server for tally's tests and scripts")]
struct Cli {
    #[command(subcommand)]
    server: Server,
}

#[derive(Debug, Subcommand)]
enum Server {
    /// PostgreSQL from the cached initdb template; with --user, that
    /// superuser and its database, and passwords required over TCP.
    Postgres {
        #[command(flatten)]
        common: Common,
        /// Login role to create (with --password-file and --database).
        #[arg(long, requires_all = ["password_file", "database"])]
        user: Option<String>,
        /// File whose first line is the role's password.
        #[arg(long, requires = "user")]
        password_file: Option<PathBuf>,
        /// Database to create, owned by the role.
        #[arg(long, requires = "user")]
        database: Option<String>,
        /// A server setting `name=value` (given to postgres as `-c`);
        /// repeatable.
        #[arg(long = "setting", value_name = "NAME=VALUE")]
        settings: Vec<String>,
    },
    /// Redis without persistence; arguments after `--` go to redis-server.
    Redis {
        #[command(flatten)]
        common: Common,
        #[arg(last = true)]
        redis_args: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
struct Common {
    /// The server's directory (data, socket, server log); created, kept.
    #[arg(long)]
    dir: PathBuf,
    /// Port on 127.0.0.1; default: a free one.
    #[arg(long)]
    port: Option<u16>,
    /// Where to write the server's pid.
    #[arg(long)]
    pid_file: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    let (url, pid, pid_file) = match cli.server {
        Server::Postgres {
            common,
            user,
            password_file,
            database,
            settings,
        } => {
            let server = PgServer::start_with(PgOptions {
                port: common.port,
                dir: Some(common.dir),
                detached: true,
                settings,
                ..PgOptions::default()
            });
            let url = match (user, password_file, database) {
                (Some(user), Some(file), Some(database)) => {
                    let text = std::fs::read_to_string(&file)
                        .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
                    let password = text.lines().next().unwrap_or_default();
                    server.require_password(&user, password, &database)
                }
                _ => server.url("postgres"),
            };
            (url, server.detach(), common.pid_file)
        }
        Server::Redis { common, redis_args } => {
            let server = RedisServer::start_with(RedisOptions {
                port: common.port,
                dir: Some(common.dir),
                detached: true,
                extra_args: redis_args,
                ..RedisOptions::default()
            });
            (server.url(), server.detach(), common.pid_file)
        }
    };
    if let Some(file) = pid_file {
        std::fs::write(&file, format!("{pid}\n"))
            .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
    }
    println!("{url}");
}
