"""The alert rules and dashboards: their structure, and every metric and label they read is in
the contract (ops/metrics_contract.py) the processes export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.metrics_contract import CONTRACT, SERIES, Kind
from tests.ops.promql import grouping_labels, parse, problems

OPS = Path(__file__).resolve().parents[2] / "ops"
ALERTS = OPS / "prometheus" / "alerts.yml"
RUNBOOK = OPS / "README.md"
DASHBOARDS = sorted((OPS / "grafana" / "dashboards").glob("*.json"))
DATASOURCE_UID = "prometheus"
#: What issue 7 asks an alert for, each matched by the metric its rule must read.
REQUIRED_ALERTS = {
    "dead letters rising": "tsunagu_dead_letters_total",
    "consumer lag growing": "tsunagu:consumer_lag:sum",
    "a connector's outbox backing up": "tsunagu_connector_outbox_depth",
    "checkpoint too old": "tsunagu_audit_checkpoint_age_seconds",
    "chain verification failing": "tsunagu_audit_chain_ok",
    "API 5xx rate": "tsunagu:http_requests:rate5m",
}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def _recorded() -> dict[str, tuple[str, ...]]:
    """Series the recording rules make, with the labels their aggregation keeps."""
    return {r["record"]: grouping_labels(r["expr"]) for r in _rules() if "record" in r}


def _alerts() -> list[dict[str, Any]]:
    return [r for r in _rules() if "alert" in r]


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    out = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        out.add(slug)
    return out


def _duration(text: str) -> bool:
    return re.fullmatch(r"(\d+[smhdwy])+", text) is not None


# -- alert rules ----------------------------------------------------------------------------------


def test_the_rule_file_has_the_shape_prometheus_loads() -> None:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert set(document) == {"groups"}
    names = [g["name"] for g in document["groups"]]
    assert len(names) == len(set(names))
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            if "record" in rule:
                assert set(rule) <= {"record", "expr", "labels"}
                assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9_]+", rule["record"])
    alerts = _alerts()
    assert len({a["alert"] for a in alerts}) == len(alerts)


def test_every_alert_has_a_severity_a_summary_and_a_runbook_section() -> None:
    anchors = _anchors(RUNBOOK.read_text(encoding="utf-8"))
    for alert in _alerts():
        name = alert["alert"]
        assert set(alert) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert re.fullmatch(r"Tsunagu[A-Z][A-Za-z]+", name)
        assert _duration(alert["for"]), name
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        notes = alert["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        # Each alert's own section, named after it.
        assert notes["runbook"] == f"ops/README.md#{name.lower()}", name
        assert name.lower() in anchors, f"ops/README.md has no section {name}"


def test_each_alert_the_issue_asks_for_is_there() -> None:
    read = {series for a in _alerts() for series in parse(a["expr"], _recorded()).series}
    for what, series in REQUIRED_ALERTS.items():
        assert series in read, f"no alert on {what}"


def test_alert_templates_name_only_labels_the_expression_keeps() -> None:
    recorded = _recorded()
    for alert in _alerts():
        found = parse(alert["expr"], recorded)
        keeps = set(grouping_labels(alert["expr"])) or {
            label for series in found.series for label in {**SERIES, **recorded}.get(series, ())
        } | {"job", "instance"}
        for text in alert["annotations"].values():
            for label in re.findall(r"\$labels\.(\w+)", text):
                assert label in keeps, f"{alert['alert']} names $labels.{label}"


def test_every_rule_reads_only_contract_metrics_as_their_types_allow() -> None:
    recorded = _recorded()
    for rule in _rules():
        name = rule.get("alert") or rule.get("record")
        assert problems(rule["expr"], recorded) == [], name


def test_the_checker_refuses_what_it_should() -> None:
    # The checks above are only as good as this: unknown names, labels and type misuse.
    assert problems("rate(tsunagu_ingest_event_total[5m])")
    assert problems("sum by (reasons) (rate(tsunagu_dead_letters_total[5m]))")
    assert problems("rate(tsunagu_consumer_lag[5m])")  # a gauge
    assert problems("deriv(tsunagu_ingest_events_total[5m])")  # a counter
    assert problems("histogram_quantile(0.99, sum (rate(tsunagu_ingest_batch_seconds_bucket[5m])))")
    assert problems("sum(rate(tsunagu_http_requests_total{stauts=~'5..'}[5m]))")
    assert problems("sum(rate(tsunagu_http_requests_total[5m])")
    assert not problems(
        'sum by (route, le) (rate(tsunagu_http_request_seconds_bucket{method="GET"}[5m]))'
    )


def test_the_contract_names_each_metric_once_with_prometheus_naming() -> None:
    names = [m.name for m in CONTRACT]
    assert len(names) == len(set(names))
    for metric in CONTRACT:
        assert metric.name.startswith("tsunagu_")
        assert metric.name.endswith("_total") == (metric.kind is Kind.COUNTER), metric.name
        if metric.kind is Kind.HISTOGRAM:
            assert metric.name.endswith("_seconds"), metric.name


def test_every_contract_metric_is_defined_in_the_code() -> None:
    # A static check against renames; the processes' /metrics are scraped by the metrics
    # tests. Counters are declared with or without their _total.
    root = OPS.parent
    source = "\n".join(
        p.read_text(encoding="utf-8")
        for package in ("broker", "connectors", "consent")
        for p in (root / package).rglob("*.py")
    )
    for metric in CONTRACT:
        names = {metric.name, metric.name.removesuffix("_total")}
        assert any(f'"{n}"' in source for n in names), f"{metric.name} is defined nowhere"


# -- dashboards -----------------------------------------------------------------------------------


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


@pytest.fixture(params=[p.name for p in DASHBOARDS])
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Each provisioned dashboard."""
    loaded: dict[str, Any] = json.loads(
        (OPS / "grafana" / "dashboards" / request.param).read_text()
    )
    return loaded


def test_both_dashboards_are_there_with_their_own_uids() -> None:
    loaded = [json.loads(p.read_text(encoding="utf-8")) for p in DASHBOARDS]
    assert sorted(d["uid"] for d in loaded) == ["tsunagu-flows", "tsunagu-platform"]


def test_a_dashboard_has_the_structure_grafana_provisions(dashboard: dict[str, Any]) -> None:
    for key in ("uid", "title", "panels", "schemaVersion", "time", "templating"):
        assert key in dashboard, key
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        assert panel["type"] in {"row", "timeseries", "stat", "bargauge", "text", "table"}
        assert panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] >= 1 and pos["x"] + pos["w"] <= 24, panel["title"]
        assert pos["h"] >= 1 and pos["y"] >= 0
        covered = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                   for y in range(pos["y"], pos["y"] + pos["h"])}  # fmt: skip
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered


def test_every_panel_queries_the_provisioned_prometheus_for_contract_metrics(
    dashboard: dict[str, Any],
) -> None:
    recorded = _recorded()
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in _panels(dashboard):
        if panel["type"] == "text":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert problems(expr, recorded) == [], (panel["title"], expr)
            for used in re.findall(r"\$(\w+)", expr):
                assert used.startswith("__") or used in variables, (panel["title"], used)
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert problems(re.sub(r"label_values\((\w+), (\w+)\)", r"sum by (\2) (\1)",
                                   variable["query"]["query"])) == []  # fmt: skip


def test_the_datasource_has_the_uid_the_panels_use() -> None:
    path = OPS / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    (source,) = yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "prometheus"


def test_the_platform_dashboard_covers_what_the_issue_lists() -> None:
    platform = json.loads((OPS / "grafana" / "dashboards" / "platform.json").read_text())
    read = {
        s for p in _panels(platform) for t in p.get("targets", []) for s in parse(t["expr"]).series
    }
    for series in (
        "tsunagu_ingest_events_total",
        "tsunagu_consumer_lag",
        "tsunagu_dead_letters_total",
        "tsunagu_http_requests_total",
        "tsunagu_http_request_seconds_bucket",
        "tsunagu_consent_decisions_total",
        "tsunagu_connector_outbox_depth",
        "tsunagu_audit_checkpoint_age_seconds",
        "tsunagu_audit_chain_ok",
    ):
        assert series in read, series


def test_the_flows_dashboard_covers_a_municipalitys_questions() -> None:
    flows = json.loads((OPS / "grafana" / "dashboards" / "flows.json").read_text())
    exprs = [t["expr"] for p in _panels(flows) for t in p.get("targets", [])]
    assert any("tsunagu_connector_sent_total" in e and "connector" in e for e in exprs)
    assert any("tsunagu_ingest_events_total" in e and "topic" in e for e in exprs)
    assert any("tsunagu_dead_letters_total" in e and "reason" in e for e in exprs)
    assert any('result="deny"' in e and "by (reason)" in e for e in exprs)
    assert any('route=~"/v1/partner/.*"' in e for e in exprs)
    # Who read what is the auditor's flow map, which the dashboard points to.
    text = " ".join(p["options"]["content"] for p in _panels(flows) if p["type"] == "text")
    assert "/auditor" in text and "/v1/audit/flows" in text
