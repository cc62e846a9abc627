"""The defaults' pilot (scripts/pilot_defaults.py): equal-time step counts, resumption, the choice and the
generated shape file that the task defaults extend."""

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from hinet.config import load_config

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("pilot_defaults", ROOT / "scripts" / "pilot_defaults.py")
pilot_defaults = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = pilot_defaults  # dataclasses look their module up there
spec.loader.exec_module(pilot_defaults)


@pytest.fixture
def tiny_pilot(tmp_path):
    base = yaml.safe_load((ROOT / "configs" / "tiny_test.yaml").read_text())
    base.update(out_dir=str(tmp_path / "defaults"), steps=1000, progress=False)
    base["data"]["photos"] = "none"
    del base["strength"]  # each task its default strength, as configs/default_base.yaml
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    pilot = {
        "base": "base.yaml",
        "task": "denoise",
        "budget_minutes": 0.05,
        "tie_db": 0.1,
        "candidates": [
            {"name": "small", "set": {"data.patch": 32}},
            {"name": "wide", "set": {"data.patch": 32, "model.config.wf": 12}},
        ],
    }
    path = tmp_path / "pilot.yaml"
    path.write_text(yaml.safe_dump(pilot))
    return path


def _costs_by_width(costs: dict[int, float]):
    calls = []

    def measure(configs):
        calls.append(sorted(configs))
        return {name: costs[cfg.model_config().wf] for name, cfg in configs.items()}

    return measure, calls


def test_each_candidate_trains_the_budget_over_its_cost_measured_once_for_all(tiny_pilot, monkeypatch):
    measure, calls = _costs_by_width({8: 0.03, 12: 0.06})  # s/step: the wide candidate costs twice as much
    monkeypatch.setattr(pilot_defaults, "measure_costs", measure)
    pilot = pilot_defaults.read_pilot(tiny_pilot)
    assert pilot_defaults.planned_steps(pilot) == {"small": 100, "wide": 50}  # 3 s budget each
    assert calls == [["small", "wide"]]  # one joint measurement of every candidate
    saved = json.loads(pilot.costs_path.read_text())
    assert saved["seconds_per_step"] == {"small": 0.03, "wide": 0.06} and saved["scale"] == 1.0
    # Planned again (e.g. after a stop between candidates): the saved costs, no second measurement.
    monkeypatch.setattr(pilot_defaults, "measure_costs", lambda configs: pytest.fail("measured again"))
    assert pilot_defaults.planned_steps(pilot) == {"small": 100, "wide": 50}


def test_a_candidate_fixed_before_the_joint_measurement_is_the_cost_reference(tiny_pilot, monkeypatch):
    pilot = pilot_defaults.read_pilot(tiny_pilot)
    small = pilot.candidates[0]
    run_dir = pilot.config(small, 1).run_dir
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"steps": 200}))  # planned at 0.015 s/step
    # The machine is twice as busy now: both measure twice their quiet cost; the ratio survives.
    measure, _ = _costs_by_width({8: 0.03, 12: 0.06})
    monkeypatch.setattr(pilot_defaults, "measure_costs", measure)
    assert pilot_defaults.planned_steps(pilot) == {"small": 200, "wide": 100}
    saved = json.loads(pilot.costs_path.read_text())
    assert saved["reference"] == ["small"] and saved["scale"] == pytest.approx(0.5)


def test_the_pilot_runs_resumes_with_its_fixed_steps_and_writes_the_choice(tiny_pilot, monkeypatch, tmp_path):
    monkeypatch.setattr(pilot_defaults, "measure_costs", lambda configs: dict.fromkeys(configs, 0.06))  # 50 steps
    assert pilot_defaults.main([str(tiny_pilot)]) == 0
    with open(tmp_path / "defaults" / "pilot.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["candidate"], r["steps"], r["status"]) for r in rows] == [
        ("small", "50", "done"),
        ("wide", "50", "done"),
    ]
    shape = tmp_path / pilot_defaults.SHAPE_FILE
    text = shape.read_text()
    assert text.startswith("# GENERATED")
    winner = pilot_defaults.choose(rows, 0.1)
    assert f"{winner['candidate']}." in text
    # A task default extending the shape file resolves to the winner's settings over the base.
    (tmp_path / "task.yaml").write_text(f"extends: {shape.name}\nrun_name: t\ntask: jpeg\n")
    cfg = load_config(tmp_path / "task.yaml")
    assert cfg.task == "jpeg" and cfg.data.patch == 32 and cfg.steps == 1000
    assert cfg.model_config().wf == (12 if winner["candidate"] == "wide" else 8)
    # Run again: everything is done, nothing retrains, and another cost no longer changes the steps.
    monkeypatch.setattr(pilot_defaults, "measure_costs", lambda configs: pytest.fail("measured again"))
    assert pilot_defaults.main([str(tiny_pilot)]) == 0
    # A fresh clone has no weights files (they are not committed): the rows still say where each trained.
    for weights in (tmp_path / "defaults").rglob("*.safetensors"):
        weights.unlink()
    assert pilot_defaults.main([str(tiny_pilot), "--table-only"]) == 0
    with open(tmp_path / "defaults" / "pilot.csv") as handle:
        again = list(csv.DictReader(handle))
    assert [(r["device"], r["precision"]) for r in again] == [(r["device"], r["precision"]) for r in rows]
    assert all(r["device"].startswith("cpu") and r["precision"] for r in again)


def test_the_choice_prefers_the_earlier_candidate_within_the_tie_and_waits_for_all():
    rows = [
        {"candidate": "a", "status": "done", "best_val_psnr": "30.00"},
        {"candidate": "b", "status": "done", "best_val_psnr": "30.08"},
    ]
    assert pilot_defaults.choose(rows, 0.1)["candidate"] == "a"
    assert pilot_defaults.choose(rows, 0.05)["candidate"] == "b"
    assert pilot_defaults.choose(rows + [{"candidate": "c", "status": "partial", "best_val_psnr": ""}], 0.1) is None


def test_the_step_cost_is_measured_on_the_candidates_shape(tiny_pilot):
    pilot = pilot_defaults.read_pilot(tiny_pilot)
    costs = pilot_defaults.measure_costs({c.name: pilot.config(c, 1) for c in pilot.candidates})
    assert set(costs) == {"small", "wide"} and all(0 < cost < 5 for cost in costs.values())


def test_the_shipped_pilot_and_task_defaults_parse():
    pilot = pilot_defaults.read_pilot(ROOT / "configs" / "default_pilot.yaml")
    for candidate in pilot.candidates:
        cfg = pilot.config(candidate, 100)
        assert cfg.blind and cfg.data.photos == "required" and cfg.run_dir.parts[-2] == "pilot"
    assert (pilot.name, pilot.writes, pilot.table_path) == (
        "pilot",
        "default_shape.yaml",
        Path("results/defaults/pilot.csv"),
    )


def _pilot_writes_its_winner(pilot_file: Path, overrides: dict) -> None:
    pilot = pilot_defaults.read_pilot(pilot_file)
    row = {"candidate": "picked", "overrides": json.dumps(overrides), "best_val_psnr": "30.0"}
    pilot_defaults.write_shape(pilot, row, [row])


@pytest.mark.parametrize("task", ["denoise", "deblur", "jpeg", "derain"])
def test_each_task_default_loads_over_what_the_two_pilots_write(task, tmp_path):
    for name in ("default_base.yaml", f"default_{task}.yaml", "default_pilot.yaml", "default_lr_pilot.yaml"):
        (tmp_path / name).write_text((ROOT / "configs" / name).read_text())
    shape = pilot_defaults.read_pilot(ROOT / "configs" / "default_pilot.yaml").candidates[-1]
    _pilot_writes_its_winner(tmp_path / "default_pilot.yaml", shape.overrides)  # -> default_shape.yaml
    lr_pilot = pilot_defaults.read_pilot(tmp_path / "default_lr_pilot.yaml")  # its base is the shape file
    assert lr_pilot.name == "lr_pilot" and lr_pilot.runs_dir == Path("results/defaults/lr_pilot")
    assert lr_pilot.config(lr_pilot.candidates[1], 100).model_config().wf == 32  # the shape pilot's winner
    _pilot_writes_its_winner(tmp_path / "default_lr_pilot.yaml", lr_pilot.candidates[1].overrides)
    cfg = load_config(tmp_path / f"default_{task}.yaml").validate()
    assert (cfg.task, cfg.run_name, cfg.blind, cfg.data.photos) == (task, task, True, "required")
    assert cfg.run_dir == Path("results/defaults") / task
    # the lr pilot's winner, unless the task's own file sets a rate (deblur: the early check's choice)
    own = (yaml.safe_load((ROOT / "configs" / f"default_{task}.yaml").read_text()).get("optimizer") or {}).get("lr")
    assert cfg.optimizer.lr == (float(own) if own is not None else 3.0e-4)
    assert cfg.model_config().wf == 32 and cfg.channels_last
    assert cfg.data.patch % cfg.model_config().size_multiple == 0


def test_equal_cost_candidates_share_the_mean_cost_so_timing_noise_cannot_change_their_steps(tiny_pilot, monkeypatch):
    tiny_pilot.write_text(tiny_pilot.read_text() + "equal_cost: true\n")
    measure, _ = _costs_by_width({8: 0.02, 12: 0.04})
    monkeypatch.setattr(pilot_defaults, "measure_costs", measure)
    pilot = pilot_defaults.read_pilot(tiny_pilot)
    assert pilot.equal_cost and pilot_defaults.planned_steps(pilot) == {"small": 100, "wide": 100}  # 3 s / 0.03 s
