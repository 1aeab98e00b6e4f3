"""Validates txflow.json offline with the Grafana foundation SDK (no Grafana
server can run here): every panel decodes into the SDK's typed models for the
Grafana version pinned in scripts/test.sh, every query is a Prometheus query,
and encoding the decoded dashboard gives back the same panels and queries.

The PromQL itself is checked by a Rust test (catalogue::tests in txflow-cli):
it parses every query and checks each metric against what txflow exports.

Usage: python check_dashboard.py txflow.json
"""

import json
import sys

from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import dashboard, prometheus, stat, timeseries

PANEL_MODELS = {"timeseries": timeseries, "stat": stat}


def fail(message: str) -> None:
    print(f"check_dashboard: {message}", file=sys.stderr)
    sys.exit(1)


def kept(panel: dict) -> tuple:
    """What must survive a decode and encode by the SDK."""
    return (
        panel.get("type"),
        panel.get("title"),
        panel.get("gridPos"),
        panel.get("options"),
        (panel.get("fieldConfig") or {}).get("defaults"),
        [(t["refId"], t["expr"], t.get("legendFormat")) for t in panel.get("targets", [])],
    )


def main(path: str) -> None:
    plugins.register_default_plugins()
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    board = dashboard.Dashboard.from_json(raw)
    if board.uid != raw.get("uid") or not board.title:
        fail("the dashboard has no uid or title")
    panels = [p for p in board.panels or [] if not isinstance(p, dashboard.RowPanel)]
    rows = [p for p in board.panels or [] if isinstance(p, dashboard.RowPanel)]
    if len(rows) < 5:
        fail(f"{len(rows)} rows; one per component is expected (stream, classifier, database, sinks, batch)")
    queries = 0
    for panel in panels:
        where = f"panel {panel.id_val} {panel.title!r}"
        model = PANEL_MODELS.get(panel.type_val)
        if model is None:
            fail(f"{where}: type {panel.type_val!r} is not one this check knows")
        if not isinstance(panel.options, model.Options):
            fail(f"{where}: its options did not decode as {panel.type_val} options")
        custom = getattr(model, "FieldConfig", type(None))
        if not isinstance(panel.field_config.defaults.custom, (type(None), custom)):
            fail(f"{where}: its field config did not decode as {panel.type_val}'s")
        if not panel.targets:
            fail(f"{where}: no query")
        for target in panel.targets:
            if isinstance(target, UnknownDataquery) or not isinstance(target, prometheus.Dataquery):
                fail(f"{where}: a query that is not a Prometheus query: {target.to_json()}")
            if not target.expr.strip():
                fail(f"{where}: an empty query")
            queries += 1
    # The SDK takes a query's type from its panel: check each query's own.
    for panel in raw["panels"]:
        for target in panel.get("targets", []):
            kind = (target.get("datasource") or panel.get("datasource") or {}).get("type")
            if kind != "prometheus":
                fail(f"panel {panel['id']} {panel['title']!r}: a query for a {kind!r} data source")
    again = json.loads(json.dumps(board.to_json(), cls=JSONEncoder))
    for before, after in zip(raw["panels"], again["panels"], strict=True):
        if kept(before) != kept(after):
            fail(f"panel {before['id']} {before['title']!r} changes when decoded and encoded again: "
                 f"{kept(before)} became {kept(after)}")
    print(f"check_dashboard: {path}: {len(rows)} rows, {len(panels)} panels, {queries} queries decode with the SDK")


if __name__ == "__main__":
    main(sys.argv[1])
