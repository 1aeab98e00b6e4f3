//! The decoder against the shapes of input txflow meets: chunk boundaries
//! anywhere, BOM and CRLF, quoted line breaks, blank lines, bad headers.

use txflow_core::transaction::DecimalMark;
use txflow_core::{Column, Oversized};
use txflow_csv::{Decoded, Decoder, Dialect, Error, KEPT_BYTES, MAX_RECORD_BYTES};

/// A decoded row: line, offset, raw text, and the value of each column.
type Row = (u64, u64, String, Vec<Option<String>>, usize);

/// Decodes `input` fed in chunks of `chunk` bytes.
fn decode(
    input: &[u8],
    chunk: usize,
    dialect: Option<Dialect>,
) -> Result<(Vec<Row>, Dialect), Error> {
    let mut decoder = Decoder::new(dialect);
    let mut chunks = input.chunks(chunk.max(1));
    let mut rows = Vec::new();
    loop {
        match decoder.advance()? {
            Decoded::NeedInput => match chunks.next() {
                Some(c) => decoder.push(c),
                None => decoder.finish(),
            },
            Decoded::Record => {
                let r = decoder.record();
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                rows.push((
                    r.position.line,
                    r.position.offset,
                    text(r.raw),
                    Column::ALL.iter().map(|&c| r.field(c).map(text)).collect(),
                    r.field_count,
                ));
            }
            Decoded::End => return Ok((rows, decoder.dialect())),
        }
    }
}

const REFERENCE: &str = "id;description;amount;timestamp;merchant;operation_type;side\n\
1;\"Card expense at EDF\";-952,40;\"2023-11-28 06:35:12\";\"EDF\";\"refund\";\"debit\"\n\
2;\"Purchase; at \"\"Amazon\"\"\";-749,56;\"2023-05-16 01:27:52\";\"Amazon.fr\";\"transfer\";\"debit\"";

#[test]
fn the_reference_dialect_is_detected_and_decoded() {
    let (rows, dialect) = decode(REFERENCE.as_bytes(), 1 << 16, None).expect("decodes");
    assert_eq!(dialect, Dialect::REFERENCE);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, 2);
    assert_eq!(rows[0].3[2].as_deref(), Some("-952,40"));
    assert_eq!(rows[1].3[1].as_deref(), Some("Purchase; at \"Amazon\""));
    assert_eq!(rows[1].0, 3);
    assert!(rows[1].2.starts_with("2;\"Purchase;"));
}

#[test]
fn every_chunk_size_gives_the_same_rows() {
    let (whole, _) = decode(REFERENCE.as_bytes(), 1 << 16, None).expect("decodes");
    for chunk in [1, 2, 3, 7, 64] {
        let (rows, _) = decode(REFERENCE.as_bytes(), chunk, None).expect("decodes");
        assert_eq!(rows, whole, "chunk size {chunk}");
    }
}

#[test]
fn a_bom_and_crlf_line_ends_are_handled() {
    let input = format!("\u{feff}{}\r\n", REFERENCE.replace('\n', "\r\n"));
    for chunk in [1, 5, 1 << 16] {
        let (rows, dialect) = decode(input.as_bytes(), chunk, None).expect("decodes");
        assert_eq!(dialect, Dialect::REFERENCE);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].3[0].as_deref(),
            Some("1"),
            "the BOM is not part of the id column"
        );
        assert_eq!((rows[1].0, rows[1].2.ends_with("\"debit\"")), (3, true));
        // Offsets point at the first byte of the row in the file.
        let offset = rows[1].1 as usize;
        assert!(input.as_bytes()[offset..].starts_with(b"2;"));
    }
}

#[test]
fn the_common_dialect_and_quoted_line_breaks() {
    let input = "id,description,amount,timestamp,merchant,operation_type,side,extra\n\
                 a,\"two\nlines\",-1.50,2024-01-01T00:00:00Z,,payment,debit,x\n\
                 \n\
                 b,plain,2.00,2024-01-01T00:00:00Z,Shop,refund,credit,y\n";
    let (rows, dialect) = decode(input.as_bytes(), 3, None).expect("decodes");
    assert_eq!(dialect, Dialect::COMMON);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].3[1].as_deref(), Some("two\nlines"));
    assert_eq!(rows[0].4, 8);
    // The second record starts after the quoted line break and a blank line.
    assert_eq!(rows[1].0, 5);
    assert_eq!(rows[1].3[4].as_deref(), Some("Shop"));
}

#[test]
fn a_missing_column_is_named() {
    let input = "id;description;amount;merchant;side\n1;x;-1,00;m;debit\n";
    let err = decode(input.as_bytes(), 4, None).expect_err("missing columns");
    let Error::MissingColumns { missing, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(missing, &[Column::Timestamp, Column::OperationType]);
    assert!(
        err.to_string().contains("'timestamp', 'operation_type'"),
        "{err}"
    );
}

#[test]
fn headers_match_names_in_any_case_and_order() {
    let input = "SIDE;Amount; id ;timestamp;operation_type;description\ndebit;-1;7;2024-01-01 00:00:00;payment;x\n";
    let (rows, dialect) = decode(input.as_bytes(), 1 << 10, None).expect("decodes");
    assert_eq!(rows[0].3[0].as_deref(), Some("7"));
    assert_eq!(rows[0].3[4], None, "no merchant column");
    assert_eq!(
        dialect.decimal,
        DecimalMark::Comma,
        "the usual mark of ';' files"
    );
}

#[test]
fn empty_and_header_only_inputs_have_no_rows() {
    assert!(decode(b"", 8, None).expect("empty").0.is_empty());
    let header_only = "id;description;amount;timestamp;merchant;operation_type;side\n";
    assert!(
        decode(header_only.as_bytes(), 8, None)
            .expect("header only")
            .0
            .is_empty()
    );
}

/// A decoded record: line, offset, kept raw text and oversize.
type Kept = (u64, u64, Vec<u8>, Option<Oversized>);

/// Decodes `input` in chunks, returning each record and the decoder's
/// peak buffer size.
fn decode_oversized(input: &[u8], chunk: usize) -> (Vec<Kept>, usize) {
    let mut decoder = Decoder::new(None);
    let mut chunks = input.chunks(chunk);
    let mut rows = Vec::new();
    let mut peak = 0;
    loop {
        peak = peak.max(decoder.buffered());
        match decoder.advance().expect("decodes") {
            Decoded::NeedInput => match chunks.next() {
                Some(c) => decoder.push(c),
                None => decoder.finish(),
            },
            Decoded::Record => {
                let r = decoder.record();
                rows.push((
                    r.position.line,
                    r.position.offset,
                    r.raw.to_vec(),
                    r.oversized,
                ));
            }
            Decoded::End => return (rows, peak),
        }
    }
}

#[test]
fn a_record_over_the_limit_is_handed_over_oversized_and_the_file_goes_on() {
    let header = "id,description,amount,timestamp,merchant,operation_type,side\n";
    let long = "d".repeat(2 * MAX_RECORD_BYTES);
    let input = format!(
        "{header}1,a,-1.00,2024-03-01 08:00:00,m,card,debit\n\
         2,\"{long}\",-2.00,2024-03-01 08:00:00,m,card,debit\r\n\
         3,c,-3.00,2024-03-01 08:00:00,m,card,debit\n"
    );
    for chunk in [7, 4096, 1 << 16, 3 << 20] {
        let (rows, _) = decode_oversized(input.as_bytes(), chunk);
        assert_eq!(rows.len(), 3, "chunk {chunk}");
        assert_eq!(rows[0].3, None);
        let (line, offset, kept, oversized) = &rows[1];
        assert_eq!(*line, 3);
        let start = input.find("2,\"").expect("row 2") as u64;
        assert_eq!(*offset, start);
        assert_eq!(kept.len(), KEPT_BYTES);
        assert!(kept.starts_with(b"2,\"ddd"));
        let row_length = (input.find("\r\n3,").expect("end of row 2") as u64) - start;
        assert_eq!(
            *oversized,
            Some(Oversized {
                length: row_length,
                limit: MAX_RECORD_BYTES as u64,
                unclosed_quote: false
            }),
            "chunk {chunk}"
        );
        // The row after it: right line, offset and text.
        assert_eq!(rows[2].0, 4);
        assert_eq!(rows[2].1, input.find("3,c").expect("row 3") as u64);
        assert_eq!(rows[2].2, b"3,c,-3.00,2024-03-01 08:00:00,m,card,debit");
    }
}

#[test]
fn an_unclosed_quote_running_to_the_end_is_one_oversized_record_saying_so() {
    let mut input = String::from(
        "id,description,amount,timestamp,merchant,operation_type,side\n\
         1,a,-1.00,2024-03-01 08:00:00,m,card,debit\n2,\"open",
    );
    for i in 0..400_000 {
        input.push_str(&format!("\n{i},x,-1.00,2024-03-01 08:00:00,m,card,debit"));
    }
    let (rows, peak) = decode_oversized(input.as_bytes(), 1 << 16);
    assert_eq!(rows.len(), 2);
    // Memory is bounded by the limit, not by the 18 MB the quote swallowed.
    assert!(input.len() > 16 * MAX_RECORD_BYTES);
    assert!(peak < 5 * MAX_RECORD_BYTES, "peak {peak} bytes");
    let (line, _, kept, oversized) = &rows[1];
    assert_eq!(*line, 3);
    assert!(kept.starts_with(b"2,\"open\n0,x"));
    let oversized = oversized.expect("oversized");
    assert!(oversized.unclosed_quote);
    assert_eq!(
        oversized.length,
        (input.len() - input.find("2,\"open").expect("row")) as u64
    );
}

#[test]
fn an_oversized_header_stops_the_file() {
    let mut input = String::from("id,\"description");
    input.push_str(&"x".repeat(MAX_RECORD_BYTES + 10));
    let err = decode(input.as_bytes(), 1 << 16, None).expect_err("too long");
    assert_eq!(
        err,
        Error::RecordTooLong {
            line: 1,
            limit: MAX_RECORD_BYTES
        }
    );
}

#[test]
fn a_forced_dialect_wins_over_detection() {
    let input = "id;description;amount;timestamp;merchant;operation_type;side\n1;x;-1.50;t;m;payment;debit\n";
    let forced = Dialect {
        delimiter: b';',
        decimal: DecimalMark::Point,
    };
    let (rows, dialect) = decode(input.as_bytes(), 5, Some(forced)).expect("decodes");
    assert_eq!(dialect, forced);
    assert_eq!(rows[0].3[2].as_deref(), Some("-1.50"));
}
