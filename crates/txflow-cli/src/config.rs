//! The configuration file: `--config txflow.toml` (or `TXFLOW_CONFIG`).
//!
//! Settings are layered: built-in defaults, then the file, then environment
//! variables, then flags. The file has one table per command whose keys are
//! that command's long flags (`max_batch` or `max-batch`), and an `[all]`
//! table for settings any command may take (`brokers`, `database_url`):
//!
//! ```toml
//! [all]
//! database_url = "postgres://txflow@db/txflow"
//! brokers = "kafka-1:9092,kafka-2:9092"
//!
//! [consume]
//! group = "txflow"
//! max_batch = 5000
//! max_wait = "200ms"
//!
//! [kafka]                    # librdkafka settings, for every Kafka command
//! "security.protocol" = "SASL_SSL"
//! "sasl.password" = "@/run/secrets/kafka"
//! ```
//!
//! The file's values go through the same parsers as the flags, so a bad
//! duration is reported like a bad flag. An unknown table or key is an error
//! naming the file and the key, not a silent default.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use toml::{Table, Value};

/// The variable that names the file when `--config` is absent.
pub const ENV: &str = "TXFLOW_CONFIG";

/// Global flags that take a value: the command line's subcommand comes after them.
const GLOBAL_WITH_VALUE: [&str; 3] = ["--config", "--log-format", "--otlp-endpoint"];

/// The command line with the file's settings added as flags where neither a
/// flag nor an environment variable gives them. Without a file, `args` as is.
pub fn apply(args: Vec<OsString>, command: &clap::Command) -> Result<Vec<OsString>> {
    let Some(path) = config_path(&args) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the configuration file {}", path.display()))?;
    merge(args, command, &path, &text, &|name| {
        std::env::var_os(name).is_some()
    })
}

fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let arg = arg.to_string_lossy();
        if arg == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(ENV).map(PathBuf::from)
}

/// The subcommand named on the command line, and the index of its name.
fn subcommand<'c>(
    args: &[OsString],
    command: &'c clap::Command,
) -> Option<(usize, &'c clap::Command)> {
    let mut i = 1;
    while i < args.len() {
        let arg = args[i].to_string_lossy();
        if GLOBAL_WITH_VALUE.contains(&arg.as_ref()) {
            i += 2;
            continue;
        }
        if arg.starts_with('-') {
            i += 1;
            continue;
        }
        return command.find_subcommand(arg.as_ref()).map(|sub| (i, sub));
    }
    None
}

fn merge(
    mut args: Vec<OsString>,
    command: &clap::Command,
    path: &Path,
    text: &str,
    env_is_set: &dyn Fn(&str) -> bool,
) -> Result<Vec<OsString>> {
    let file = path.display();
    let table: Table = text
        .parse()
        .with_context(|| format!("{file} is not valid TOML"))?;
    for (name, value) in &table {
        if name != "all" && name != KAFKA_TABLE && command.find_subcommand(name).is_none() {
            bail!(
                "{file}: unknown table [{name}]; use [all] or a command's name (batch, consume, ...)"
            );
        }
        if !value.is_table() {
            bail!("{file}: `{name}` must be a table ([{name}]), with the command's settings in it");
        }
    }
    let Some((position, sub)) = subcommand(&args, command) else {
        return Ok(args);
    };
    let name = sub.get_name().to_owned();
    let given: Vec<String> = args[position + 1..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut added: Vec<OsString> = Vec::new();
    kafka_settings(&table, sub, &mut added, &file.to_string())?;
    let sections = [("all", table.get("all")), (name.as_str(), table.get(&name))];
    for (section, settings) in sections {
        let Some(settings) = settings.and_then(Value::as_table) else {
            continue;
        };
        for (key, value) in settings {
            let long = key.replace('_', "-");
            let arg = sub
                .get_arguments()
                .find(|a| a.get_long() == Some(long.as_str()));
            let Some(arg) = arg else {
                if section == "all" {
                    // Settings for all commands apply where they mean something.
                    if !command.get_subcommands().any(|c| {
                        c.get_arguments()
                            .any(|a| a.get_long() == Some(long.as_str()))
                    }) {
                        bail!("{file}: unknown setting `{key}` in [all]: no command has --{long}");
                    }
                    continue;
                }
                bail!(
                    "{file}: unknown setting `{key}` in [{section}]; `txflow {section} --help` lists them"
                );
            };
            // A flag on the command line, or its variable, wins over the file;
            // [<command>] wins over [all].
            let flag = format!("--{long}");
            let on_command_line = given
                .iter()
                .any(|g| g == &flag || g.starts_with(&format!("{flag}=")));
            let in_env = arg
                .get_env()
                .is_some_and(|e| env_is_set(&e.to_string_lossy()));
            let already_added = added.iter().any(|a| a.to_string_lossy() == flag);
            if on_command_line || in_env || (already_added && section == "all") {
                continue;
            }
            if already_added {
                remove_flag(&mut added, &flag);
            }
            push_setting(&mut added, &flag, value, &file.to_string(), section, key)?;
        }
    }
    args.extend(added);
    Ok(args)
}

/// A string or a number from the file, as the text a flag would carry.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

/// The table of librdkafka settings, for the commands that talk to Kafka.
const KAFKA_TABLE: &str = "kafka";

/// The [kafka] table's settings as hidden `--kafka-file-option KEY=VALUE`
/// flags, below variables and `--kafka-option` flags (see `KafkaArgs`).
fn kafka_settings(
    table: &Table,
    sub: &clap::Command,
    added: &mut Vec<OsString>,
    file: &str,
) -> Result<()> {
    let Some(settings) = table.get(KAFKA_TABLE).and_then(Value::as_table) else {
        return Ok(());
    };
    // `topics create` takes them on its own subcommand.
    let takes = |c: &clap::Command| {
        c.get_arguments()
            .any(|a| a.get_long() == Some("kafka-file-option"))
    };
    if !takes(sub) && !sub.get_subcommands().any(takes) {
        return Ok(());
    }
    for (key, value) in settings {
        let value = match value {
            Value::Boolean(b) => b.to_string(),
            other => match scalar_text(other) {
                Some(text) => text,
                None => bail!("{file}: [kafka] {key}: use a string, a number or true/false"),
            },
        };
        added.push("--kafka-file-option".into());
        added.push(format!("{key}={value}").into());
    }
    Ok(())
}

/// Drops `flag` and the values that follow it (an [all] setting that the
/// command's own table overrides).
fn remove_flag(added: &mut Vec<OsString>, flag: &str) {
    let mut out = Vec::with_capacity(added.len());
    let mut skipping = false;
    for a in added.drain(..) {
        let text = a.to_string_lossy();
        if text == flag {
            skipping = true;
            continue;
        }
        if skipping && !text.starts_with("--") {
            continue;
        }
        skipping = false;
        out.push(a);
    }
    *added = out;
}

fn push_setting(
    added: &mut Vec<OsString>,
    flag: &str,
    value: &Value,
    file: &str,
    section: &str,
    key: &str,
) -> Result<()> {
    let scalar = |v: &Value| -> Result<Option<String>> {
        match v {
            Value::Boolean(_) => Ok(None),
            other => match scalar_text(other) {
                Some(text) => Ok(Some(text)),
                None => bail!(
                    "{file}: [{section}] {key}: use a string, a number, true/false or a list of them"
                ),
            },
        }
    };
    match value {
        Value::Boolean(true) => added.push(flag.into()),
        Value::Boolean(false) => {}
        Value::Array(items) => {
            for item in items {
                if let Some(text) = scalar(item)? {
                    added.push(flag.into());
                    added.push(text.into());
                }
            }
        }
        other => {
            if let Some(text) = scalar(other)? {
                added.push(flag.into());
                added.push(text.into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{Arg, ArgAction, Command};

    use super::*;

    fn cli() -> Command {
        Command::new("txflow")
            .arg(Arg::new("config").long("config").global(true))
            .subcommand(
                Command::new("consume")
                    .arg(Arg::new("max-batch").long("max-batch"))
                    .arg(Arg::new("group").long("group").env("TXFLOW_GROUP"))
                    .arg(
                        Arg::new("database-url")
                            .long("database-url")
                            .env("DATABASE_URL"),
                    )
                    .arg(Arg::new("flat").long("flat").action(ArgAction::SetTrue)),
            )
            .subcommand(
                Command::new("produce")
                    .arg(
                        Arg::new("producer")
                            .long("producer")
                            .action(ArgAction::Append),
                    )
                    .arg(Arg::new("brokers").long("brokers")),
            )
    }

    fn run(args: &[&str], text: &str, env: &[&str]) -> Result<Vec<String>> {
        let args = args.iter().map(OsString::from).collect();
        let env_is_set = |name: &str| env.contains(&name);
        merge(args, &cli(), Path::new("txflow.toml"), text, &env_is_set)
            .map(|a| a.iter().map(|s| s.to_string_lossy().into_owned()).collect())
    }

    #[test]
    fn the_file_fills_what_flags_and_variables_leave_unset() {
        let text = r#"
            [all]
            database_url = "postgres://all"
            brokers = "k:9092"
            [consume]
            max_batch = 5000
            group = "from-file"
            database-url = "postgres://consume"
            flat = true
        "#;
        let args = run(
            &[
                "txflow",
                "--config",
                "t.toml",
                "consume",
                "--max-batch",
                "7",
            ],
            text,
            &["TXFLOW_GROUP"],
        )
        .expect("merged");
        assert_eq!(
            args,
            [
                "txflow",
                "--config",
                "t.toml",
                "consume",
                "--max-batch",
                "7",
                "--database-url",
                "postgres://consume",
                "--flat"
            ]
        );
    }

    #[test]
    fn lists_repeat_the_flag() {
        let text = "[produce]\nproducer = [\"1-10@500ms\", \"5-20@1s\"]\n";
        let args = run(&["txflow", "produce"], text, &[]).expect("merged");
        assert_eq!(
            args,
            [
                "txflow",
                "produce",
                "--producer",
                "1-10@500ms",
                "--producer",
                "5-20@1s"
            ]
        );
    }

    #[test]
    fn typos_are_errors_that_name_the_file_and_the_key() {
        let error =
            run(&["txflow", "consume"], "[consume]\nmax_bach = 1\n", &[]).expect_err("a typo");
        assert!(
            error
                .to_string()
                .contains("unknown setting `max_bach` in [consume]"),
            "{error}"
        );
        let error = run(&["txflow", "consume"], "[consumer]\n", &[]).expect_err("a typo");
        assert!(
            error.to_string().contains("unknown table [consumer]"),
            "{error}"
        );
        let error =
            run(&["txflow", "consume"], "[all]\nbrokerz = \"x\"\n", &[]).expect_err("a typo");
        assert!(
            error.to_string().contains("no command has --brokerz"),
            "{error}"
        );
        let error = run(&["txflow", "consume"], "not toml [", &[]).expect_err("bad TOML");
        assert!(
            error.to_string().contains("txflow.toml is not valid TOML"),
            "{error}"
        );
    }
}
