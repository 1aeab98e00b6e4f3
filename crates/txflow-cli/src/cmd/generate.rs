//! `txflow generate`: deterministic synthetic transactions as CSV.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use txflow_core::synth::{Generator, IdStyle};
use txflow_csv::{Dialect, write};

/// Write realistic synthetic transactions as CSV; the same seed always gives
/// the same file.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many transactions.
    #[arg(long, default_value_t = 1000)]
    rows: u64,
    /// The random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// reference: `;`, decimal comma, `YYYY-MM-DD HH:MM:SS`, integer ids (the
    /// original system's exports); common: `,`, decimal point, RFC 3339, UUIDs.
    #[arg(long, value_enum, default_value = "reference")]
    format: Format,
    /// Where to write; standard output when absent.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Reference,
    Common,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let (dialect, ids) = match args.format {
        Format::Reference => (Dialect::REFERENCE, IdStyle::Sequential),
        Format::Common => (Dialect::COMMON, IdStyle::Uuid),
    };
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut buf = Vec::with_capacity(1 << 16);
    write::transaction_header(&mut buf, dialect);
    for tx in Generator::new(args.seed, ids).take(args.rows as usize) {
        write::transaction(&mut buf, &tx, dialect);
        if buf.len() >= 1 << 15 {
            out.write_all(&buf).context("writing the sample")?;
            buf.clear();
        }
    }
    out.write_all(&buf).context("writing the sample")?;
    out.flush().context("writing the sample")?;
    Ok(ExitCode::SUCCESS)
}
