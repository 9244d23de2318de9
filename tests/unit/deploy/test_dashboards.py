"""Grafana dashboards: committed JSON equals the generator's output and every query names an exported metric."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

from prometheus_client import CollectorRegistry

from aitbc.coordinator.metrics import CoordinatorMetrics
from aitbc.exchange.metrics import ExchangeMetrics
from aitbc.node.metrics import NodeMetrics
from aitbc.poolhub.metrics import PoolHubMetrics
from aitbc.wallet.metrics import WalletMetrics

ROOT = Path(__file__).resolve().parents[3]
GRAFANA = ROOT / "deploy" / "grafana"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exported_metric_names() -> set[str]:
    """Sample names the services really expose (counters as *_total, histograms as *_bucket/_sum/_count)."""
    names: set[str] = set()
    for metrics in (NodeMetrics(), CoordinatorMetrics(), PoolHubMetrics(), WalletMetrics(), ExchangeMetrics()):
        registry: CollectorRegistry = metrics.registry
        for family in registry.collect():
            names.add(family.name)
            names.update(s.name for s in family.samples)
            if family.type == "histogram":
                names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
            if family.type == "counter":
                names.add(f"{family.name}_total")
    return names


def test_committed_dashboards_match_the_generator() -> None:
    rendered = generator().render()
    committed = {p.name: p.read_text(encoding="utf-8") for p in (GRAFANA / "dashboards").glob("*.json")}
    assert committed == rendered, "run: .venv/bin/python deploy/grafana/build_dashboards.py"


def test_every_query_uses_a_metric_the_services_export() -> None:
    exported = exported_metric_names()
    assert "aitbc_chain_height" in exported and "aitbc_jobs_submitted_total" in exported
    assert "exchange_trades_total" in exported
    functions = {"rate", "sum", "max", "by", "histogram_quantile", "le", "instance", "state", "reason", "method"}
    functions |= {"model", "result", "outcome", "asset", "chain"}
    for path in (GRAFANA / "dashboards").glob("*.json"):
        board = json.loads(path.read_text())
        assert board["panels"], path.name
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = re.sub(r"\[\d+[smh]\]", "", target["expr"])  # range selectors like [5m]
                for word in re.findall(r"[a-z_][a-z0-9_]*", expr):
                    if word.startswith(("aitbc_", "exchange_")):  # the exchange's metrics are exchange_*
                        assert word in exported, f"{path.name} / {panel['title']}: {word} is not exported"
                    else:
                        assert word in functions or word.isdigit(), f"{path.name}: unexpected term {word}"


def test_a_missing_metric_would_be_caught() -> None:
    assert "aitbc_no_such_metric_total" not in exported_metric_names()
    assert "exchange_no_such_metric_total" not in exported_metric_names()


def test_every_service_has_its_dashboard() -> None:
    names = {p.stem for p in (GRAFANA / "dashboards").glob("*.json")}
    assert {"chain", "consensus", "coordinator", "miners", "poolhub", "exchange"} <= names
