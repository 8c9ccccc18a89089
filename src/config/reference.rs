//! The settings' reference, made from their own definitions (the flags'
//! names, variables, defaults and help), so that it cannot drift from
//! them: `tally config --markdown` prints the table of
//! `docs/configuration.md` (a test holds the two equal), and `tally config`
//! prints an environment file with every setting at its default.

use clap::CommandFactory;

use super::Cli;

/// One setting: its variable, its flag, its default and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub variable: String,
    /// The flag, with the subcommand that takes it when that is not
    /// `serve` (`tally migrate --force`).
    pub flag: String,
    /// The default, as the flag would be given; empty when there is none.
    pub default: String,
    /// The help, on one line.
    pub help: String,
}

/// Every setting that has a variable, in the order `tally serve --help`
/// lists them, then those only another subcommand takes.
pub fn settings() -> Vec<Setting> {
    let cli = Cli::command();
    let mut found: Vec<Setting> = Vec::new();
    let commands = std::iter::once((None, &cli)).chain(
        cli.get_subcommands()
            .filter(|c| c.get_name() != "serve")
            .map(|c| (Some(c.get_name()), c)),
    );
    for (name, command) in commands {
        for arg in command.get_arguments() {
            let (Some(variable), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            let variable = variable.to_string_lossy().into_owned();
            if found.iter().any(|s| s.variable == variable) {
                continue;
            }
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| one_line(&h.to_string()))
                .unwrap_or_default();
            let default = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(",");
            let flag = match name {
                Some(sub) => format!("tally {sub} --{long}"),
                None => format!("--{long}"),
            };
            found.push(Setting {
                variable,
                flag,
                default,
                help,
            });
        }
    }
    found
}

/// The help on one line, as a sentence (clap drops the full stop of a
/// one-sentence help).
fn one_line(text: &str) -> String {
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if !line.is_empty() && !line.ends_with('.') {
        line.push('.');
    }
    line
}

/// The reference as a Markdown table.
pub fn markdown() -> String {
    let code = |s: &str| {
        if s.is_empty() {
            String::new()
        } else {
            format!("`{s}`")
        }
    };
    let mut out = String::from("| Variable | Flag | Default | What it does |\n|---|---|---|---|\n");
    for s in settings() {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            code(&s.variable),
            code(&s.flag),
            code(&s.default),
            s.help.replace('|', "\\|")
        ));
    }
    out
}

/// The reference as an environment file: each setting's help as a
/// comment, then the setting at its default, commented out.
pub fn env_file() -> String {
    let mut out = String::from(
        "# tally's settings, each at its default (commented out). Give them as\n\
         # environment variables or, with --flags, on the command line.\n",
    );
    for s in settings() {
        out.push('\n');
        let mut line = String::from("#");
        for word in s.help.split(' ') {
            if line.len() + 1 + word.len() > 76 && line.len() > 1 {
                out.push_str(&line);
                out.push('\n');
                line = String::from("#");
            }
            line.push(' ');
            line.push_str(word);
        }
        out.push_str(&line);
        out.push('\n');
        if s.flag.starts_with("tally ") {
            out.push_str(&format!("# ({})\n", s.flag));
        }
        out.push_str(&format!("#{}={}\n", s.variable, s.default));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_listed_once_with_its_flag_and_default() {
        let all = settings();
        let listen = all.iter().find(|s| s.variable == "TALLY_LISTEN").unwrap();
        assert_eq!(listen.flag, "--listen");
        assert_eq!(listen.default, "127.0.0.1:8000");
        let force = all
            .iter()
            .find(|s| s.variable == "TALLY_MIGRATE_FORCE")
            .unwrap();
        assert_eq!(force.flag, "tally migrate --force");
        assert_eq!(force.default, "false");
        let mut names: Vec<&str> = all.iter().map(|s| s.variable.as_str()).collect();
        assert_eq!(names.first(), Some(&"TALLY_LISTEN"));
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a variable listed twice");
        assert!(
            all.iter()
                .all(|s| !s.help.is_empty() && !s.help.contains('\n'))
        );
    }

    #[test]
    fn the_env_file_sets_nothing_and_wraps_its_comments() {
        let file = env_file();
        assert!(file.lines().all(|l| l.is_empty() || l.starts_with('#')));
        assert!(
            file.lines().all(|l| l.len() <= 80 || !l.contains(' ')),
            "{file}"
        );
        assert!(file.contains("\n#TALLY_RATE_LIMIT=600\n"));
        assert!(file.contains("\n# (tally migrate --force)\n#TALLY_MIGRATE_FORCE=false\n"));
    }
}
