//! Trained models end to end: `txflow train` on a slice of the labeled
//! file (`../shared/data/labeled`), `txflow evaluate` checked against the
//! test's own count, model files refused when damaged, and one model's
//! answers in process (from a file and from S3) and through `txflow
//! serve`, stored in SQLite and PostgreSQL with its 17 categories.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use txflow_core::REFERENCE_LABELS;
use txflow_learn::{Input, LearnedModel};

use crate::harness::{Bucket, Database, txflow};
use crate::serve::Serve;

/// The labeled file beside the repository.
fn labeled_file() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/labeled/transactions_labeled_us.csv");
    assert!(
        path.exists(),
        "the labeled file {} is missing: it lives in ../shared/data/labeled beside the repository",
        path.display()
    );
    path
}

/// (description, category) of every `step`-th row from `offset`.
pub fn rows(offset: usize, step: usize) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(labeled_file()).expect("the labeled file");
    text.lines()
        .skip(1)
        .skip(offset)
        .step_by(step)
        .map(|line| {
            let (d, c) = line.rsplit_once(',').expect("description,category");
            (d.to_owned(), c.to_owned())
        })
        .collect()
}

pub fn write_labeled(path: &Path, rows: &[(String, String)]) {
    let mut text = String::from("description,category\n");
    for (d, c) in rows {
        let _ = writeln!(text, "{d},{c}");
    }
    std::fs::write(path, text).expect("writing a labeled file");
}

/// A small model trained by the binary on every 12th row, once for all the
/// tests (training is their slowest step): (path, model).
pub fn trained(_: &Path) -> (PathBuf, LearnedModel) {
    static MODEL: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    let (_, model) = MODEL.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir");
        let model = train_fixture(dir.path());
        (dir, model)
    });
    let bytes = std::fs::read(model).expect("the model file");
    let decoded = txflow_learn::file::decode(&bytes).expect("a valid model");
    (model.clone(), decoded)
}

fn train_fixture(dir: &Path) -> PathBuf {
    let train = dir.join("train.csv");
    write_labeled(&train, &rows(0, 12));
    let model = dir.join("fixture.txm");
    let run = txflow(
        dir,
        &[
            "train",
            train.to_str().expect("utf-8"),
            "--output",
            model.to_str().expect("utf-8"),
            "--iterations",
            "25",
            "--hash-bits",
            "16",
        ],
    );
    run.assert_code(0);
    assert!(run.stdout.contains("trained fixture@"), "{}", run.stdout);
    model
}

#[tokio::test]
async fn evaluate_reports_the_numbers_an_independent_count_of_the_predictions_gives() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (model_path, model) = trained(dir.path());
    assert_eq!(model.labels().len(), 17);
    let test_rows = rows(5, 25);
    let test = dir.path().join("test.csv");
    write_labeled(&test, &test_rows);
    let html = dir.path().join("report.html");
    let run = txflow(
        dir.path(),
        &[
            "evaluate",
            "--model",
            model_path.to_str().expect("utf-8"),
            test.to_str().expect("utf-8"),
            "--json",
            "--html",
            html.to_str().expect("utf-8"),
        ],
    );
    run.assert_code(0);
    let e: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");

    // The test's own count, from the model's probabilities.
    let names = model.labels().names();
    let k = names.len();
    let mut confusion = vec![vec![0u64; k]; k];
    let mut bins = vec![(0u64, 0f64, 0u64); 15];
    for (description, category) in &test_rows {
        let p = model.probabilities_of(&Input {
            description,
            ..Input::default()
        });
        let truth = names
            .iter()
            .position(|n| n == category)
            .expect("a known category");
        let (best, confidence) = p
            .iter()
            .enumerate()
            .fold((0, -1.0), |b, (i, &q)| if q > b.1 { (i, q) } else { b });
        confusion[truth][best] += 1;
        // Bin b holds (b/15, (b+1)/15].
        let mut b = 0;
        while b < 14 && confidence > (b + 1) as f64 / 15.0 {
            b += 1;
        }
        bins[b].0 += 1;
        bins[b].1 += confidence;
        bins[b].2 += u64::from(truth == best);
    }
    let n = test_rows.len() as f64;
    let right: u64 = (0..k).map(|i| confusion[i][i]).sum();
    let mut f1s = Vec::new();
    for (i, row) in confusion.iter().enumerate() {
        let support: u64 = row.iter().sum();
        let predicted: u64 = confusion.iter().map(|r| r[i]).sum();
        if support + predicted == 0 {
            continue;
        }
        let tp = row[i] as f64;
        let f1 = 2.0 * tp / (support + predicted) as f64;
        f1s.push(f1);
    }
    let macro_f1 = f1s.iter().sum::<f64>() / f1s.len() as f64;
    let ece: f64 = bins
        .iter()
        .filter(|b| b.0 > 0)
        .map(|&(count, conf, right)| {
            count as f64 / n * (right as f64 / count as f64 - conf / count as f64).abs()
        })
        .sum();
    let close = |field: &str, ours: f64| {
        let theirs = e[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} in {e}"));
        assert!((theirs - ours).abs() < 1e-9, "{field}: {theirs} vs {ours}");
    };
    close("accuracy", right as f64 / n);
    close("macro_f1", macro_f1);
    close("ece", ece);
    assert_eq!(e["rows"], test_rows.len());
    assert_eq!(
        e["confusion"],
        serde_json::to_value(&confusion).expect("json")
    );
    assert_eq!(e["model_version"], model.header().version);
    // Better than chance by far on rows it never saw (17 categories).
    assert!(e["macro_f1"].as_f64().unwrap_or(0.0) > 0.5, "{e}");

    // The page as a browser reads it: headless Chromium's DOM has the
    // figures, a bar per non-empty bin, a row per category in both tables,
    // and nothing fetched from elsewhere.
    let dom = chromium_dom(&html);
    for (id, text) in [
        ("accuracy", format!("accuracy {:.3}", right as f64 / n)),
        ("macro-f1", format!("macro-F1 {macro_f1:.3}")),
        ("ece", format!("ECE {ece:.3}")),
    ] {
        assert!(
            dom.contains(&format!("<span id=\"{id}\">{text}</span>")),
            "{id}: {text} not in the DOM"
        );
    }
    let filled = bins.iter().filter(|b| b.0 > 0).count();
    assert_eq!(dom.matches("<rect class=\"bin\"").count(), filled);
    assert_eq!(dom.matches("<tr>").count(), 2 * (k + 1));
    assert!(!dom.contains("src=\"http") && !dom.contains("href=\"http"));
}

/// The DOM of a local page after headless Chromium loaded it.
fn chromium_dom(page: &Path) -> String {
    let chromium = crate::harness::harness_var("TXFLOW_TEST_CHROMIUM");
    let profile = tempfile::tempdir().expect("a profile dir");
    let output = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("running chromium");
    assert!(
        output.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(dom.contains("<html"), "chromium printed no DOM: {dom}");
    dom
}

#[tokio::test]
async fn a_truncated_corrupted_or_foreign_model_file_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (model_path, _) = trained(dir.path());
    let bytes = std::fs::read(&model_path).expect("the model");
    let test = dir.path().join("test.csv");
    write_labeled(&test, &rows(7, 500));
    let input = dir.path().join("in.csv");
    std::fs::write(
        &input,
        "id;description;amount;timestamp;merchant;operation_type;side\n\
         1;[debit] SHELL OIL 123;-40,00;2024-03-01 08:15:00;Shell;card;debit\n",
    )
    .expect("an input");

    let mut flipped = bytes.clone();
    let middle = bytes.len() / 2;
    flipped[middle] ^= 0x01;
    for (name, content, says) in [
        (
            "truncated.txm",
            bytes[..bytes.len() - 100].to_vec(),
            "truncated",
        ),
        ("corrupted.txm", flipped, "corrupted"),
        (
            "foreign.txm",
            b"description,category\nx,y\n".to_vec(),
            "not a txflow model",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("writing");
        let path = path.to_str().expect("utf-8");
        let run = txflow(
            dir.path(),
            &["evaluate", "--model", path, test.to_str().expect("utf-8")],
        );
        run.assert_code(1);
        assert!(
            run.stderr.contains(name) && run.stderr.contains(says),
            "{name}: {}",
            run.stderr
        );
        let db = format!("sqlite://{}/refused.db", dir.path().display());
        let run = txflow(
            dir.path(),
            &[
                "batch",
                input.to_str().expect("utf-8"),
                "--classifier",
                &format!("file://{path}"),
                "--database-url",
                &db,
            ],
        );
        run.assert_code(1);
        assert!(run.stderr.contains(says), "{name}: {}", run.stderr);
    }
    assert!(!dir.path().join("refused.db").exists());
}

/// A batch input of labeled descriptions: debits negative, credits positive.
fn batch_input(path: &Path, rows: &[(String, String)]) {
    let mut text = String::from("id;description;amount;timestamp;merchant;operation_type;side\n");
    for (i, (description, _)) in rows.iter().enumerate() {
        let (amount, side) = if description.starts_with("[credit]") {
            (format!("{},{:02}", 10 + i, i % 100), "credit")
        } else {
            (format!("-{},{:02}", 10 + i, i % 100), "debit")
        };
        let description = description.replace(';', " ");
        let _ = writeln!(
            text,
            "{i};{description};{amount};2024-03-01 08:15:00;;card;{side}"
        );
    }
    std::fs::write(path, text).expect("writing the input");
}

/// Runs `txflow batch INPUT --classifier C` into the SQLite file `db`, and
/// reads back its predictions.
fn batch_into_sqlite(
    dir: &Path,
    input: &str,
    classifier: &str,
    db: &Path,
) -> BTreeMap<String, (String, f64, String)> {
    txflow(
        dir,
        &[
            "batch",
            input,
            "--classifier",
            classifier,
            "--database-url",
            &format!("sqlite://{}", db.display()),
        ],
    )
    .assert_code(0);
    sqlite_predictions(db)
}

fn sqlite_predictions(path: &Path) -> BTreeMap<String, (String, f64, String)> {
    let db = rusqlite::Connection::open(path).expect("the SQLite file");
    let mut statement = db
        .prepare("SELECT transaction_id, category, confidence, model_version FROM predictions")
        .expect("a query");
    statement
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))
        .expect("rows")
        .map(|r| r.expect("a row"))
        .collect()
}

#[tokio::test]
async fn a_model_file_answers_alike_in_process_and_through_serve_and_both_databases_keep_its_categories()
 {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (model_path, model) = trained(dir.path());
    let model_url = format!("file://{}", model_path.display());
    let input = dir.path().join("in.csv");
    batch_input(&input, &rows(3, 40));
    let input = input.to_str().expect("utf-8");
    let version = model.header().version.clone();

    // In process, into SQLite.
    let local = dir.path().join("local.db");
    let in_process = batch_into_sqlite(dir.path(), input, &model_url, &local);
    assert_eq!(in_process.len(), rows(3, 40).len());

    // The same file from S3: the same answers.
    let bucket = Bucket::new();
    let s3_model = bucket
        .put(
            "models/fixture.txm",
            std::fs::read(&model_path).expect("the model"),
        )
        .await;
    let from_s3 = dir.path().join("s3.db");
    assert_eq!(
        batch_into_sqlite(dir.path(), input, &s3_model, &from_s3),
        in_process
    );

    // Through txflow serve --model, into another SQLite file.
    let serve = Serve::start_with(&["--model", &model_url]).await;
    let ready: serde_json::Value = crate::harness::get(format!("{}/ready", serve.url))
        .await
        .expect("/ready")
        .json()
        .await
        .expect("JSON");
    assert_eq!(ready["model_version"], version);
    assert_eq!(ready["labels"].as_array().map(Vec::len), Some(17));
    let remote = dir.path().join("remote.db");
    assert_eq!(
        batch_into_sqlite(dir.path(), input, &serve.url, &remote),
        in_process
    );

    // The version and the categories: the model's own, beyond the 15.
    let categories: BTreeSet<&str> = in_process.values().map(|(c, _, _)| c.as_str()).collect();
    let labels = model.labels().names();
    assert!(
        categories.iter().all(|c| labels.contains(c)),
        "{categories:?}"
    );
    assert!(
        categories.iter().any(|c| !REFERENCE_LABELS.contains(c)),
        "{categories:?}"
    );
    assert!(
        in_process
            .values()
            .all(|(_, confidence, v)| *v == version && (0.0..=1.0).contains(confidence))
    );

    // PostgreSQL keeps the same.
    let db = Database::create().await;
    txflow(
        dir.path(),
        &[
            "batch",
            input,
            "--classifier",
            &model_url,
            "--database-url",
            &db.url,
        ],
    )
    .assert_code(0);
    let stored = db
        .client
        .query(
            "SELECT category, confidence, model_version FROM predictions",
            &[],
        )
        .await
        .expect("predictions");
    let mut from_postgres: Vec<(String, f64)> = stored
        .iter()
        .map(|r| {
            assert_eq!(r.get::<_, String>(2), version);
            (r.get(0), r.get(1))
        })
        .collect();
    let mut from_sqlite: Vec<(String, f64)> = in_process
        .values()
        .map(|(c, p, _)| (c.clone(), *p))
        .collect();
    from_postgres.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    from_sqlite.sort_by(|a, b| a.partial_cmp(b).expect("numbers"));
    assert_eq!(from_postgres, from_sqlite);

    // Reclassifying with the file registers it with its label set (its
    // predictions are there already: none added).
    let reclassify = txflow(
        dir.path(),
        &[
            "reclassify",
            "--all",
            "--classifier",
            &model_url,
            "--database-url",
            &db.url,
        ],
    );
    reclassify.assert_code(0);
    assert!(
        reclassify.stdout.contains("0 prediction(s) added"),
        "{}",
        reclassify.stdout
    );
    let listed = txflow(
        dir.path(),
        &["models", "list", "--json", "--database-url", &db.url],
    );
    listed.assert_code(0);
    assert!(
        listed.stdout.contains("\"Personal Care\""),
        "{}",
        listed.stdout
    );

    // Registered as a file, it records its label set and metrics; another
    // version's name is refused.
    let register = |v: &str| {
        txflow(
            dir.path(),
            &[
                "models",
                "register",
                v,
                "--kind",
                "file",
                "--location",
                &model_url,
                "--database-url",
                &db.url,
            ],
        )
    };
    let wrong = register("fixture@000000000000");
    wrong.assert_code(1);
    assert!(wrong.stderr.contains(&version), "{}", wrong.stderr);
    register(&version).assert_code(0);
    let list = txflow(
        dir.path(),
        &["models", "list", "--json", "--database-url", &db.url],
    );
    list.assert_code(0);
    let models: serde_json::Value = serde_json::from_str(&list.stdout).expect("JSON");
    let ours = models
        .as_array()
        .and_then(|all| all.iter().find(|m| m["version"] == version))
        .unwrap_or_else(|| panic!("{version} in {models}"));
    assert_eq!(ours["kind"], "file");
    assert_eq!(ours["labels"], serde_json::json!(labels));
    assert_eq!(ours["predictions"], in_process.len());
    assert_eq!(
        ours["metrics"]["training"]["data_sha256"],
        model.header().training.data_sha256
    );
}

#[tokio::test]
async fn split_keeps_each_merchant_on_one_side_and_writes_files_train_reads() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let d = dir.path();
    let all = d.join("all.csv");
    write_labeled(&all, &rows(0, 10));
    let (train, test) = (d.join("train.csv"), d.join("test.csv"));
    let run = txflow(
        d,
        &[
            "split",
            all.to_str().expect("utf-8"),
            "--train",
            train.to_str().expect("utf-8"),
            "--test",
            test.to_str().expect("utf-8"),
        ],
    );
    run.assert_code(0);
    let read = |path: &Path| {
        txflow_csv::labeled::read_labeled(&std::fs::read(path).expect("a split file"))
            .expect("a labeled file")
    };
    let (train_rows, test_rows) = (read(&train), read(&test));
    assert_eq!(train_rows.len() + test_rows.len(), rows(0, 10).len());
    assert!(!test_rows.is_empty() && test_rows.len() < train_rows.len());
    let merchants = |rows: &[txflow_csv::labeled::LabeledRecord]| -> BTreeSet<String> {
        rows.iter()
            .map(|r| txflow_learn::split::merchant_key(&r.description, r.merchant.as_deref()))
            .collect()
    };
    let shared: Vec<String> = merchants(&train_rows)
        .intersection(&merchants(&test_rows))
        .cloned()
        .collect();
    assert!(shared.is_empty(), "merchants on both sides: {shared:?}");

    // The training side, with copies of its rows without their merchant:
    // the file says at what weight.
    let model = d.join("copies.txm");
    let train_with = |weight: &str| {
        txflow(
            d,
            &[
                "train",
                train.to_str().expect("utf-8"),
                "--output",
                model.to_str().expect("utf-8"),
                "--merchant-copies",
                weight,
                // Quick: this is about the option, not the fit.
                "--iterations",
                "3",
                "--hash-bits",
                "12",
                "--calibration",
                "slice",
                "--calibration-fraction",
                "0",
            ],
        )
    };
    train_with("0.5").assert_code(0);
    let trained =
        txflow_learn::file::decode(&std::fs::read(&model).expect("a model")).expect("a model");
    assert_eq!(trained.header().training.merchant_copies, 0.5);
    let refused = train_with("2");
    assert_ne!(refused.status, Some(0));
    assert!(
        refused.stderr.contains("--merchant-copies 2"),
        "{}",
        refused.stderr
    );
}
