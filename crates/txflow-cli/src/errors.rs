//! How the binary prints an error: the message and its causes on one line,
//! each told once.
//!
//! A typed error of ours says its cause in its own message (so that a log
//! line with `%error` is whole) and also returns it from `source()` (so that
//! the chain can be walked); `{:#}` then printed the cause twice. Here a
//! cause whose text is already in what is printed is left out.

/// `error: cause: cause…`, without repeats (an `anyhow::Error` with its
/// contexts: `chain(e.as_ref())`); the core's, which the batch run's summary
/// uses too.
pub use txflow_core::error::chain;

#[cfg(test)]
mod tests {
    use super::chain;

    /// As our `thiserror` types are: the cause in the message and in
    /// `source()`.
    #[derive(Debug)]
    struct Open {
        path: String,
        source: std::io::Error,
    }

    impl std::fmt::Display for Open {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "opening {}: {}", self.path, self.source)
        }
    }

    impl std::error::Error for Open {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    fn not_found() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
    }

    #[test]
    fn a_cause_the_message_already_says_is_printed_once() {
        let e = anyhow::Error::new(Open {
            path: "a.db".into(),
            source: not_found(),
        })
        .context("migrating the database");
        assert_eq!(
            format!("{e:#}"),
            "migrating the database: opening a.db: no such file: no such file"
        );
        assert_eq!(
            chain(e.as_ref()),
            "migrating the database: opening a.db: no such file"
        );
    }

    #[test]
    fn causes_the_message_does_not_say_are_all_kept_in_order() {
        let e = anyhow::Error::new(not_found())
            .context("reading b.csv")
            .context("run 7");
        assert_eq!(chain(e.as_ref()), "run 7: reading b.csv: no such file");
        assert_eq!(chain(anyhow::anyhow!("alone").as_ref()), "alone");
    }
}
