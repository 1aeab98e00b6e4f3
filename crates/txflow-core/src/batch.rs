//! The batch use case: one run over a list of inputs, each read through the
//! [`BatchPipeline`], with what the run did kept in the [`RunLedger`].
//!
//! - The run is recorded as started before any input is read.
//! - An input that cannot be opened fails that file only (none of its rows
//!   written); one that becomes unreadable part way stops that file (the
//!   rows before stay written, and a rerun completes it without
//!   duplicates); anything else (the classifier, the database, the ledger,
//!   the rejected-rows log) stops the run.
//! - Each file's outcome is recorded as soon as it ends, so a scheduler can
//!   skip the files already done (`txflow list --skip-done`).
//! - At the end the rejected-rows log is closed and the run's status decided
//!   (failed files, a stopped run, the error budget) and recorded.
//!
//! How it is watched (a progress bar, logs, metrics) is a [`RunObserver`];
//! where inputs come from is a [`SourceOpener`].

use std::future::Future;

use chrono::Utc;

use crate::error::{BoxError, Error, Result, chain};
use crate::pipeline::BatchPipeline;
use crate::ports::{Classifier, RecordSource, RejectLog, RunLedger, Sink};
use crate::run::{Counts, ErrorBudget, FileOutcome, RunSummary};

/// Where a run's inputs come from.
pub trait SourceOpener: Sync {
    /// One input as the caller lists it (a located file, say).
    type Input: Sync;
    type Source: RecordSource;

    /// The input's URL, as the ledger records it.
    fn url(&self, input: &Self::Input) -> String;

    /// Opens one input for reading.
    fn open(
        &self,
        input: &Self::Input,
    ) -> impl Future<Output = std::result::Result<Self::Source, BoxError>> + Send;
}

/// How a file ended.
#[derive(Debug)]
pub enum FileEnd<'a> {
    /// Read to its end.
    Done,
    /// It could not be opened: none of its rows were written.
    NotOpened(&'a BoxError),
    /// It became unreadable part way: the rows before were written.
    Stopped(&'a Error),
    /// Something other than the input failed (the classifier, the
    /// database, the rejected-rows log): the run stops after this file.
    RunStopped(&'a Error),
}

/// What a run tells whoever watches it. Every method has a default that
/// does nothing.
pub trait RunObserver<S>: Sync {
    /// Input `index` is open and about to be read.
    fn opened(&mut self, _index: usize, _source: &S) {}

    /// After every batch: the run's counts so far and the bytes read of the
    /// current file.
    fn progress(&self, _counts: &Counts, _file_bytes: u64) {}

    /// Input `index` is over; `file` holds its counts only.
    fn file_done(&mut self, _index: usize, _file: &FileOutcome, _end: FileEnd<'_>) {}

    /// Runs the reading of input `index` (to make it a trace span, say).
    fn scope<F: Future + Send>(
        &self,
        _index: usize,
        work: F,
    ) -> impl Future<Output = F::Output> + Send {
        work
    }
}

/// A batch run: the pipeline that reads each input, the ledger that keeps
/// the run, the share of invalid rows it may have.
#[derive(Debug)]
pub struct BatchRun<'a, C, S: ?Sized, L: ?Sized> {
    pub pipeline: BatchPipeline<'a, C, S>,
    pub ledger: &'a L,
    pub budget: ErrorBudget,
}

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// As recorded in the ledger (unless recording the end failed).
    pub summary: RunSummary,
    /// The rejected-rows file and how many rows it holds, if it wrote any.
    pub rejected: Option<(String, u64)>,
    /// What stopped the run early, if anything (the summary's error says
    /// it too).
    pub error: Option<Error>,
}

impl<C: Classifier, S: Sink + ?Sized, L: RunLedger + ?Sized> BatchRun<'_, C, S, L> {
    /// Runs every input in order. `Err` only when the run's start cannot be
    /// recorded (then nothing was read); every later failure is in the
    /// outcome, with the run recorded as failed.
    pub async fn run<O, R, W>(
        &self,
        opener: &O,
        inputs: &[O::Input],
        mut rejects: R,
        observer: &mut W,
    ) -> Result<RunOutcome>
    where
        O: SourceOpener,
        R: RejectLog,
        W: RunObserver<O::Source>,
    {
        let run_id = &self.pipeline.run_id;
        let mut summary =
            RunSummary::start(run_id.clone(), self.pipeline.processing_type, Utc::now());
        self.ledger
            .start_run(&summary)
            .await
            .map_err(ledger("recording the run's start"))?;
        let mut counts = Counts::default();
        let mut error = None;
        for (index, input) in inputs.iter().enumerate() {
            let before = counts;
            let read = match opener.open(input).await {
                Err(e) => Err(Failed::NotOpened(e)),
                Ok(mut source) => {
                    observer.opened(index, &source);
                    let watcher = &*observer;
                    let mut progress = |c: &Counts, bytes| watcher.progress(c, bytes);
                    let work = self.pipeline.run_source(
                        &mut source,
                        &mut rejects,
                        &mut counts,
                        &mut progress,
                    );
                    watcher.scope(index, work).await.map_err(Failed::Read)
                }
            };
            let file = FileOutcome {
                location: opener.url(input),
                done: read.is_ok(),
                counts: counts - before,
                error: read.as_ref().err().map(ToString::to_string),
            };
            observer.file_done(index, &file, FileEnd::of(&read));
            // Only the input failed: the run goes on.
            if let Err(Failed::NotOpened(_) | Failed::Read(Error::Source { .. })) = read {
                counts.files_failed += 1;
            }
            if let Err(e) = self.ledger.record_file(run_id, &file).await {
                error = Some(ledger("recording a file of the run")(e));
                break;
            }
            if let Err(Failed::Read(e)) = read
                && !matches!(e, Error::Source { .. })
            {
                error = Some(e);
                break;
            }
        }
        summary.counts = counts;
        let rejected = match rejects.finish().await {
            Ok(file) => file,
            Err(source) => {
                error.get_or_insert(Error::RejectLog { source });
                None
            }
        };
        summary.finish(Utc::now(), error.as_ref().map(|e| chain(e)), self.budget);
        if let Err(e) = self.ledger.finish_run(&summary).await {
            error.get_or_insert(ledger("recording the run's end")(e));
        }
        Ok(RunOutcome {
            summary,
            rejected,
            error,
        })
    }
}

/// Why reading one input failed.
enum Failed {
    NotOpened(BoxError),
    Read(Error),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::NotOpened(e) => e.fmt(f),
            Failed::Read(e) => e.fmt(f),
        }
    }
}

impl FileEnd<'_> {
    fn of(read: &std::result::Result<(), Failed>) -> FileEnd<'_> {
        match read {
            Ok(()) => FileEnd::Done,
            Err(Failed::NotOpened(e)) => FileEnd::NotOpened(e),
            Err(Failed::Read(e @ Error::Source { .. })) => FileEnd::Stopped(e),
            Err(Failed::Read(e)) => FileEnd::RunStopped(e),
        }
    }
}

fn ledger(what: &'static str) -> impl FnOnce(BoxError) -> Error {
    move |source| Error::Ledger { what, source }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::model::{InProcess, ReferenceModel};
    use crate::ports::{BoxFuture, Outcome};
    use crate::run::{ProcessingType, RejectionQuery, Rejections, RunId, RunRecord, RunStatus};
    use crate::testing::{Memory, Rows, rows};
    use crate::transaction::Transaction;
    use crate::validation::RejectedRecord;

    /// An input: its rows (every `bad_every`-th invalid), whether it opens,
    /// where it breaks.
    struct Input {
        name: &'static str,
        rows: usize,
        bad_every: usize,
        opens: bool,
        breaks_at: Option<usize>,
    }

    fn input(name: &'static str, rows: usize, bad_every: usize) -> Input {
        Input {
            name,
            rows,
            bad_every,
            opens: true,
            breaks_at: None,
        }
    }

    struct Opener;

    impl SourceOpener for Opener {
        type Input = Input;
        type Source = Rows;

        fn url(&self, input: &Input) -> String {
            format!("file:///{}", input.name)
        }

        async fn open(&self, input: &Input) -> std::result::Result<Rows, BoxError> {
            if !input.opens {
                return Err(format!("{}: no such file", input.name).into());
            }
            let mut source = rows(input.rows, input.bad_every);
            source.location = Arc::from(self.url(input));
            source.breaks_at = input.breaks_at;
            Ok(source)
        }
    }

    /// The run ledger in memory; `fails` makes every call after the
    /// `fails`-th fail.
    #[derive(Default)]
    struct Ledger {
        started: Mutex<Vec<RunSummary>>,
        files: Mutex<Vec<FileOutcome>>,
        finished: Mutex<Vec<RunSummary>>,
        calls: Mutex<usize>,
        fails_after: Option<usize>,
    }

    impl Ledger {
        fn call(&self) -> std::result::Result<(), BoxError> {
            let mut calls = self.calls.lock().map_err(|e| e.to_string())?;
            *calls += 1;
            match self.fails_after {
                Some(n) if *calls > n => Err("the database went away".into()),
                _ => Ok(()),
            }
        }
    }

    impl RunLedger for Ledger {
        fn start_run<'a>(&'a self, run: &'a RunSummary) -> BoxFuture<'a, Result<(), BoxError>> {
            Box::pin(async move {
                self.call()?;
                self.started
                    .lock()
                    .map_err(|e| e.to_string())?
                    .push(run.clone());
                Ok(())
            })
        }

        fn record_file<'a>(
            &'a self,
            _run: &'a RunId,
            file: &'a FileOutcome,
        ) -> BoxFuture<'a, Result<(), BoxError>> {
            Box::pin(async move {
                self.call()?;
                self.files
                    .lock()
                    .map_err(|e| e.to_string())?
                    .push(file.clone());
                Ok(())
            })
        }

        fn finish_run<'a>(&'a self, run: &'a RunSummary) -> BoxFuture<'a, Result<(), BoxError>> {
            Box::pin(async move {
                self.call()?;
                self.finished
                    .lock()
                    .map_err(|e| e.to_string())?
                    .push(run.clone());
                Ok(())
            })
        }

        fn done_files<'a>(
            &'a self,
            _locations: &'a [String],
        ) -> BoxFuture<'a, Result<HashSet<String>, BoxError>> {
            Box::pin(async { Ok(HashSet::new()) })
        }

        fn runs<'a>(&'a self, _prefix: &'a str) -> BoxFuture<'a, Result<Vec<RunRecord>, BoxError>> {
            Box::pin(async { Ok(Vec::new()) })
        }

        fn rejections<'a>(
            &'a self,
            _query: &'a RejectionQuery,
        ) -> BoxFuture<'a, Result<Rejections, BoxError>> {
            Box::pin(async { Ok(Rejections::default()) })
        }
    }

    /// What the observer was told, in order.
    #[derive(Default)]
    struct Told {
        events: Vec<String>,
        progress: Mutex<u32>,
    }

    impl RunObserver<Rows> for Told {
        fn opened(&mut self, index: usize, source: &Rows) {
            self.events
                .push(format!("opened {index} {}", source.location));
        }

        fn progress(&self, _counts: &Counts, _file_bytes: u64) {
            if let Ok(mut n) = self.progress.lock() {
                *n += 1;
            }
        }

        fn file_done(&mut self, index: usize, file: &FileOutcome, end: FileEnd<'_>) {
            let end = match end {
                FileEnd::Done => "done",
                FileEnd::NotOpened(_) => "not opened",
                FileEnd::Stopped(_) => "stopped",
                FileEnd::RunStopped(_) => "run stopped",
            };
            self.events
                .push(format!("{index} {end}: {} written", file.counts.written));
        }
    }

    /// Fails whole batches once `after` transactions were classified.
    struct GivesUp {
        after: usize,
        seen: Mutex<usize>,
    }

    impl Classifier for GivesUp {
        async fn classify(
            &self,
            txs: &[Transaction],
        ) -> std::result::Result<Vec<Outcome>, BoxError> {
            let mut seen = self.seen.lock().map_err(|e| e.to_string())?;
            if *seen >= self.after {
                return Err("the model service is down".into());
            }
            *seen += txs.len();
            Ok(txs
                .iter()
                .map(|tx| Ok(ReferenceModel::predict(tx.id())))
                .collect())
        }
    }

    fn run_with<C: Classifier>(
        classifier: &C,
        ledger: &Ledger,
        budget: ErrorBudget,
        inputs: &[Input],
    ) -> (Result<RunOutcome>, Told, usize) {
        let sink = Memory::default();
        let run = BatchRun {
            pipeline: BatchPipeline {
                classifier,
                sink: &sink,
                batch_size: 4,
                run_id: RunId::parse("run-1").expect("a run id"),
                processing_type: ProcessingType::Batch,
                review_below: None,
            },
            ledger,
            budget,
        };
        let mut told = Told::default();
        let rejects: Vec<RejectedRecord> = Vec::new();
        let outcome = futures::executor::block_on(run.run(&Opener, inputs, rejects, &mut told));
        let written = sink
            .batches
            .into_inner()
            .expect("the batches")
            .iter()
            .map(|b| b.transactions.len())
            .sum();
        (outcome, told, written)
    }

    fn reference() -> InProcess {
        InProcess(Arc::new(ReferenceModel))
    }

    #[test]
    fn a_file_that_cannot_be_opened_or_breaks_fails_alone_and_the_run_goes_on() {
        let ledger = Ledger::default();
        let broken = Input {
            breaks_at: Some(5),
            ..input("broken.csv", 10, 100)
        };
        let missing = Input {
            opens: false,
            ..input("missing.csv", 0, 1)
        };
        let inputs = [
            input("a.csv", 10, 3),
            missing,
            broken,
            input("b.csv", 2, 100),
        ];
        let (outcome, told, written) =
            run_with(&reference(), &ledger, ErrorBudget::UNLIMITED, &inputs);
        let outcome = outcome.expect("the run");
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        let c = outcome.summary.counts;
        // a.csv: 7 valid of 10; broken.csv: its first batch (2 rows, half
        // the others) before the break; b.csv: 2.
        assert_eq!((c.files, c.files_failed), (2, 2));
        assert_eq!((c.read, c.invalid, c.written), (17, 3, 11));
        assert_eq!(written, 11);
        assert_eq!(outcome.summary.status, RunStatus::Failed);
        assert_eq!(outcome.rejected, Some(("memory".to_owned(), 3)));
        assert_eq!(
            told.events,
            [
                "opened 0 file:///a.csv",
                "0 done: 7 written",
                "1 not opened: 0 written",
                "opened 2 file:///broken.csv",
                "2 stopped: 2 written",
                "opened 3 file:///b.csv",
                "3 done: 2 written",
            ]
        );
        assert!(*told.progress.lock().expect("the count") > 0);
        let files = ledger.files.lock().expect("the files");
        let recorded: Vec<(&str, bool, u64)> = files
            .iter()
            .map(|f| (f.location.as_str(), f.done, f.counts.written))
            .collect();
        assert_eq!(
            recorded,
            [
                ("file:///a.csv", true, 7),
                ("file:///missing.csv", false, 0),
                ("file:///broken.csv", false, 2),
                ("file:///b.csv", true, 2),
            ]
        );
        assert!(
            files[1]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("no such file"))
        );
        assert!(
            files[2]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("the disk went away"))
        );
        let started = ledger.started.lock().expect("the starts");
        let finished = ledger.finished.lock().expect("the ends");
        assert_eq!((started.len(), finished.len()), (1, 1));
        assert_eq!(started[0].status, RunStatus::Running);
        assert_eq!(finished[0].status, RunStatus::Failed);
        assert_eq!(finished[0].counts, c);
    }

    #[test]
    fn a_classifier_that_gives_up_stops_the_run_after_recording_its_file() {
        let ledger = Ledger::default();
        let classifier = GivesUp {
            after: 8,
            seen: Mutex::new(0),
        };
        let inputs = [
            input("a.csv", 4, 100),
            input("b.csv", 20, 100),
            input("c.csv", 4, 100),
        ];
        let (outcome, told, _) = run_with(&classifier, &ledger, ErrorBudget::UNLIMITED, &inputs);
        let outcome = outcome.expect("the run");
        let error = outcome.error.expect("the run stopped");
        assert!(matches!(error, Error::Classify { .. }), "{error}");
        assert_eq!(outcome.summary.status, RunStatus::Failed);
        let said = outcome.summary.error.as_deref().unwrap_or_default();
        assert!(said.contains("the model service is down"), "{said}");
        // b.csv: batches of 2 (the first, half the others) and 4 are
        // classified (8 in all with a.csv's 4) and written, the third is
        // refused; c.csv is never opened.
        assert_eq!(
            told.events.last().map(String::as_str),
            Some("1 run stopped: 6 written")
        );
        assert_eq!(ledger.files.lock().expect("the files").len(), 2);
        assert_eq!(ledger.finished.lock().expect("the ends").len(), 1);
    }

    #[test]
    fn a_run_whose_start_cannot_be_recorded_reads_nothing() {
        let ledger = Ledger {
            fails_after: Some(0),
            ..Ledger::default()
        };
        let (outcome, told, written) = run_with(
            &reference(),
            &ledger,
            ErrorBudget::UNLIMITED,
            &[input("a.csv", 4, 100)],
        );
        let error = outcome.expect_err("no start");
        assert!(
            error.to_string().starts_with("recording the run's start"),
            "{error}"
        );
        assert!(told.events.is_empty());
        assert_eq!(written, 0);
    }

    #[test]
    fn a_ledger_that_fails_mid_run_stops_it_and_says_so() {
        // The start and the first file are recorded; the second file is not.
        let ledger = Ledger {
            fails_after: Some(2),
            ..Ledger::default()
        };
        let inputs = [
            input("a.csv", 4, 100),
            input("b.csv", 4, 100),
            input("c.csv", 4, 100),
        ];
        let (outcome, told, _) = run_with(&reference(), &ledger, ErrorBudget::UNLIMITED, &inputs);
        let outcome = outcome.expect("the run");
        let error = outcome.error.expect("the run stopped");
        assert!(
            error
                .to_string()
                .starts_with("recording a file of the run: the database went away"),
            "{error}"
        );
        assert_eq!(outcome.summary.status, RunStatus::Failed);
        assert_eq!(told.events.len(), 4, "{:?}", told.events);
    }

    #[test]
    fn too_many_invalid_rows_exceed_the_error_budget() {
        let ledger = Ledger::default();
        let budget = ErrorBudget::new(0.1).expect("a budget");
        let (outcome, _, _) = run_with(&reference(), &ledger, budget, &[input("a.csv", 10, 2)]);
        let outcome = outcome.expect("the run");
        assert!(outcome.error.is_none());
        assert_eq!(outcome.summary.status, RunStatus::ErrorRateExceeded);
        assert_eq!(outcome.rejected, Some(("memory".to_owned(), 5)));
    }
}
