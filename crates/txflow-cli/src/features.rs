//! What a build without the `kafka` cargo feature
//! (`cargo build --no-default-features`) cannot do, said when asked for.

use std::ffi::OsString;

use anyhow::{Error, anyhow};

/// The commands the `kafka` feature brings.
pub const KAFKA_COMMANDS: &[&str] = &["consume", "dlq", "lake", "produce", "sink", "topics"];

/// The error for the command line `args` (the command's name first) that
/// names no command of this build.
pub fn missing(args: &[OsString]) -> Error {
    let name = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    if KAFKA_COMMANDS.contains(&name.as_str()) {
        anyhow!(
            "`txflow {name}` needs Kafka, which this txflow was built without \
             (--no-default-features); build it with its default features: \
             `cargo build --release` (or add `--features kafka`)"
        )
    } else {
        anyhow!("unknown command {name:?}: `txflow --help` lists the commands")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kafka_command_names_the_feature_and_anything_else_is_unknown() {
        let message = missing(&["consume".into(), "--brokers".into()]).to_string();
        assert!(
            message.contains("`txflow consume` needs Kafka"),
            "{message}"
        );
        assert!(message.contains("cargo build --release"), "{message}");
        let message = missing(&["cosnume".into()]).to_string();
        assert!(message.contains("unknown command \"cosnume\""), "{message}");
    }
}
