"""Reads a Delta table as analysts do, for the tests: with delta-rs (the
`deltalake` package) and with polars, and prints what they see as JSON.

    read_delta.py TABLE_URI [--version N] [--app-id ID]... [--nulls COLUMN]... [--optimize]

TABLE_URI is a local path or s3://bucket/path (AWS_* variables, with
AWS_ENDPOINT_URL for an S3-compatible server). Prints, of the latest
version: delta-rs's "version", "files", "count", "operations" (of the
history, oldest first) and "txn" (each --app-id's version); polars's
"rows", "distinct_ids", "columns", "categories", "digest" (SHA-256 of every
row, sorted), "nulls" (of each --nulls
column); "rows_at" (polars, of version N) when --version is given; with
--optimize, delta-rs first compacts the table and writes a checkpoint
("optimized": its files added and removed).
"""

import argparse
import hashlib
import json
import os

import polars as pl
from deltalake import DeltaTable


def storage_options(uri):
    if not uri.startswith("s3://"):
        return None
    options = {"AWS_ALLOW_HTTP": "true", "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        if key in os.environ:
            options[key] = os.environ[key]
    return options


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("uri")
    parser.add_argument("--version", type=int)
    parser.add_argument("--app-id", action="append", default=[])
    parser.add_argument("--nulls", action="append", default=[])
    parser.add_argument("--optimize", action="store_true")
    args = parser.parse_args()
    options = storage_options(args.uri)
    table = DeltaTable(args.uri, storage_options=options)
    optimized = None
    if args.optimize:
        # delta-rs maintaining the table as its users do: a compaction
        # commit, then a checkpoint of its own.
        optimized = table.optimize.compact()
        table.create_checkpoint()
        table = DeltaTable(args.uri, storage_options=options)
    frame = pl.read_delta(args.uri, storage_options=options)
    out = {
        "version": table.version(),
        "files": len(table.file_uris()),
        "count": table.count(),
        "operations": [h.get("operation") for h in reversed(table.history())],
        "txn": {a: table.transaction_version(a) for a in args.app_id},
        "rows": frame.height,
        "distinct_ids": frame["transaction_id"].n_unique(),
        "columns": frame.columns,
        "categories": sorted(frame["category"].unique().to_list()),
        # Every row's every value, in one order: equal digests, equal rows.
        "digest": hashlib.sha256(
            frame.select(sorted(frame.columns)).sort(["transaction_id", "kafka_partition", "kafka_offset"])
            .write_csv().encode()
        ).hexdigest(),
    }
    out["nulls"] = {c: frame[c].null_count() for c in args.nulls}
    if optimized is not None:
        out["optimized"] = {k: optimized[k] for k in ("numFilesAdded", "numFilesRemoved")}
    if args.version is not None:
        out["rows_at"] = pl.read_delta(args.uri, version=args.version, storage_options=options).height
    print(json.dumps(out))


if __name__ == "__main__":
    main()
