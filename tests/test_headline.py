"""The DVC metrics: the headline that `evaluate` writes beside `metrics/eval.json`, and dvc.yaml declaring it alone."""

from __future__ import annotations

import yaml

from stages.evaluate import headline_metrics, split_metrics
from tests.conftest import REPO_ROOT

SCORED = {"acc_gqa": 12.34567, "miop": 30.0, "acc_qa": 55.55555}


def test_the_headline_is_acc_qa_and_posthoc_acc_gqa_per_split_to_two_decimals():
    labelled = split_metrics(
        {"n": 9, "acc_qa": 55.55555, "rules": {"prehoc": {"overall": SCORED}, "posthoc": {"overall": SCORED}}}
        | {"references": {}},
        {"ci95": {}},
    )
    unlabelled = {"n": 3, "acc_qa": 100.0 / 3, "ci95": {}}  # no grounding labels: no rule was scored
    assert headline_metrics({"test_iid": labelled, "test": unlabelled}) == {
        "test_iid": {"qa": 55.56, "gqa": 12.35},
        "test": {"qa": 33.33},
    }


def test_dvc_yaml_declares_only_the_headline_as_metrics():
    dvc_yaml = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    assert dvc_yaml["metrics"] == ["${paths.headline}"]
    evaluate_outs = [
        next(iter(out)) if isinstance(out, dict) else out for out in dvc_yaml["stages"]["evaluate"]["outs"]
    ]
    assert {"${paths.metrics}", "${paths.headline}"} <= set(evaluate_outs)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert params["paths"]["headline"] == "metrics/headline.json"
