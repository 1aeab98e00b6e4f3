"""txflow batch: one Airflow task per input file.

Lists the .csv files under a folder or S3 prefix (leaving out those an earlier
run finished, unless the run is asked to reprocess), runs `txflow batch` on
each in its own mapped task with TXFLOW_RUN_ID = "<Airflow run id>.<map index>",
and ends with a check of the `runs` table that fails the DAG run when any
file failed or went over the error budget.

Settings, read when a task runs (an Airflow Variable wins over the
environment variable of the same meaning):

  Variable txflow_input            / TXFLOW_INPUT            folder, file or s3://bucket/prefix/ (required)
  Connection txflow_db (its URI), Variable txflow_database_url
                                   / DATABASE_URL            postgres://... (default: sqlite://txflow.db)
  Variable txflow_bin              / TXFLOW_BIN              the txflow binary (default: txflow on PATH)
  Variable txflow_max_error_rate   / TXFLOW_MAX_ERROR_RATE   e.g. 0.01 (default: no limit)
  Variable txflow_pushgateway      / TXFLOW_PUSHGATEWAY      http://host:9091: each file's run pushes
                                   its metrics, grouped by dag=<dag id> and file=<file> (default: none)

S3 endpoint and credentials come from the usual AWS_* environment variables of
the worker. Read when the DAG is parsed, from the environment only:

  TXFLOW_SCHEDULE        cron expression or preset (default @daily)
  TXFLOW_TASK_RETRIES    retries of a failed file task (default 2)
  TXFLOW_TASK_TIMEOUT_MINUTES   per task (default 60)

Parameters of a run (trigger with config): "input" overrides the input,
"reprocess": true reads every file again (the writes are idempotent, so
nothing is duplicated).
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta

import pendulum
from airflow.sdk import Param, Variable, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

# Exit status of `txflow batch` when more rows were invalid than allowed:
# retrying cannot help, so the task fails at once.
EXIT_ERROR_RATE = 3


def _setting(variable: str, env: str, default: str | None = None) -> str | None:
    value = Variable.get(variable, default=None)
    if value in (None, ""):
        value = os.environ.get(env, default)
    return value


def _database_url() -> str:
    try:
        from airflow.sdk import BaseHook

        return BaseHook.get_connection("txflow_db").get_uri()
    except Exception:  # no such connection: fall back to a variable or the environment
        return _setting("txflow_database_url", "DATABASE_URL", "sqlite://txflow.db")


def _txflow(*args: str, run_id: str | None = None) -> subprocess.CompletedProcess[str]:
    binary = _setting("txflow_bin", "TXFLOW_BIN", "txflow")
    env = dict(os.environ, DATABASE_URL=_database_url(), TXFLOW_LOG_FORMAT="json")
    if run_id is not None:
        env["TXFLOW_RUN_ID"] = run_id
    command = [binary, *args]
    print("running", " ".join(command))
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    # txflow logs to stderr and prints its summary on stdout: both go to the task log.
    if result.stderr:
        print(result.stderr)
    if result.stdout:
        print(result.stdout)
    return result


@dag(
    dag_id="txflow_batch",
    description="Validate, classify and store transaction CSV files with txflow, one task per file",
    schedule=os.environ.get("TXFLOW_SCHEDULE", "@daily"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": int(os.environ.get("TXFLOW_TASK_RETRIES", "2")),
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(minutes=int(os.environ.get("TXFLOW_TASK_TIMEOUT_MINUTES", "60"))),
    },
    params={
        "input": Param(None, type=["null", "string"], description="overrides txflow_input"),
        "reprocess": Param(False, type="boolean", description="read files an earlier run finished"),
    },
    tags=["txflow"],
)
def txflow_batch():
    @task
    def list_files() -> list[str]:
        params = get_current_context()["params"]
        source = params.get("input") or _setting("txflow_input", "TXFLOW_INPUT")
        if not source:
            raise AirflowFailException("no input: set the Variable txflow_input or TXFLOW_INPUT")
        args = ["list", "--json", source]
        if not params.get("reprocess"):
            args.append("--skip-done")
        result = _txflow(*args)
        if result.returncode != 0:
            raise RuntimeError(f"txflow list failed with status {result.returncode}")
        files = json.loads(result.stdout)
        print(f"{len(files)} file(s) to process")
        return files

    @task(map_index_template="{{ file }}")
    def process(file: str) -> dict:
        context = get_current_context()
        run_id = f"{context['run_id']}.{context['ti'].map_index}"
        args = ["batch", file, "--no-progress", "--summary-json", "-"]
        max_rate = _setting("txflow_max_error_rate", "TXFLOW_MAX_ERROR_RATE")
        if max_rate:
            args += ["--max-error-rate", max_rate]
        gateway = _setting("txflow_pushgateway", "TXFLOW_PUSHGATEWAY")
        if gateway:
            # One group per DAG and file: mapped tasks do not overwrite each
            # other, and each file keeps its last success time.
            dag_id = context["dag"].dag_id
            args += ["--pushgateway", gateway,
                     "--pushgateway-label", f"dag={dag_id}", "--pushgateway-label", f"file={file}"]
        result = _txflow(*args, run_id=run_id)
        if result.returncode == EXIT_ERROR_RATE:
            raise AirflowFailException(f"{file}: more invalid rows than the error budget allows")
        if result.returncode != 0:
            raise RuntimeError(f"{file}: txflow batch failed with status {result.returncode}")
        summary = result.stdout[result.stdout.index("{"):]
        return json.loads(summary)

    @task(trigger_rule="all_done")
    def check(files: list[str]) -> None:
        prefix = f"{get_current_context()['run_id']}."
        result = _txflow("runs", "--prefix", prefix, "--check", "--expect", str(len(files)))
        if result.returncode != 0:
            raise AirflowFailException(
                f"some of the {len(files)} file(s) of this run failed or went over the error budget"
            )

    files = list_files()
    done = process.expand(file=files)
    done >> check(files)


txflow_batch()
