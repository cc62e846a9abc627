"""scripts/validation_baselines.py: the classical methods on exactly the pairs a run validates on."""

import csv
import importlib.util
import sys

import pytest

from hinet.config import load_config
from hinet.metrics import default_protocol
from hinet.runs import PROJECT_ROOT
from hinet.trainer import input_scores
from hinet.training_data import prepare_training_data

spec = importlib.util.spec_from_file_location(
    "validation_baselines", PROJECT_ROOT / "scripts" / "validation_baselines.py"
)
validation_baselines = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = validation_baselines
spec.loader.exec_module(validation_baselines)

CONFIG = PROJECT_ROOT / "configs" / "tiny_test.yaml"
OVERRIDES = ["task=derain", "strength={}", "data.photos=none"]


def test_the_input_row_is_the_trainers_own_input_score_and_rows_are_replaced_by_key(tmp_path):
    out = tmp_path / "validation_baselines.csv"
    assert validation_baselines.main([str(CONFIG), *(f"--set={o}" for o in OVERRIDES), "--out", str(out)]) == 0
    with open(out, newline="") as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"input", "median5"}  # derain's classical baseline (hinet.tasks)
    cfg = load_config(CONFIG, OVERRIDES)
    pairs = prepare_training_data(cfg, cfg.model_config().size_multiple).val_pairs
    expected = input_scores(pairs, default_protocol("derain"))
    assert float(rows["input"]["val_psnr"]) == pytest.approx(expected["psnr"], abs=1e-4)
    assert int(rows["input"]["pairs"]) == len(pairs) and rows["input"]["val_size"] == "64"
    assert float(rows["median5"]["val_psnr"]) != float(rows["input"]["val_psnr"])
    # Measured again: the same key's rows are replaced, not duplicated.
    assert validation_baselines.main([str(CONFIG), *(f"--set={o}" for o in OVERRIDES), "--out", str(out)]) == 0
    with open(out, newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2
