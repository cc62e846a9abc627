"""Ablation sweeps: grid planning, skip/resume/evaluate logic, the rebuilt ablation table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

import hinet.sweep as sweep_module
from hinet.errors import ConfigError, TrainingDiverged
from hinet.results_table import REQUIRED_COLUMNS, validate_ablation_table
from hinet.sweep import ABLATION_COLUMNS, main, plan, run_sweep
from hinet.train import train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _hermetic(small_sweep_world):
    pass


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_plan_names_runs_and_applies_variant_overrides(grid_file, tmp_path):
    runs = plan(grid_file, tmp_path / "results")
    assert [r.name for r in runs] == ["mini__denoise__hin__s0", "mini__denoise__none__s0"]
    assert runs[0].config.model_config().norm == "half_instance"
    assert runs[1].config.model_config().norm == "none"
    assert runs[0].run_dir == tmp_path / "results/runs/mini__denoise__hin__s0"
    assert all(r.config.steps == 8 and r.config.data.patch == 32 and r.status() == "new" for r in runs)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epochs": 3}, "unknown grid key"),
        ({"variants": [{"name": "a"}, {"name": "a"}]}, "unique name"),
        ({"seeds": [0.5]}, "seeds must be a list of integers"),
        ({"baseline": "missing"}, "baseline 'missing'"),
        ({"tasks": ["paint"]}, "unknown task"),
    ],
)
def test_bad_grids_are_config_errors(grid_file, tmp_path, change, message):
    grid = yaml.safe_load(grid_file.read_text())
    grid.update(change)
    grid_file.write_text(yaml.safe_dump(grid))
    with pytest.raises(ConfigError, match=message):
        plan(grid_file, tmp_path / "results")


def test_base_config_errors_name_the_run(grid_file, tmp_path):
    grid = yaml.safe_load(grid_file.read_text())
    grid["base"]["data"]["patchsize"] = 3
    grid_file.write_text(yaml.safe_dump(grid))
    with pytest.raises(ConfigError, match=r"run mini__denoise__hin__s0: unknown config key data\.patchsize"):
        plan(grid_file, tmp_path / "results")
    grid["base"]["data"].pop("patchsize")
    grid["base"]["seed"] = 3
    grid_file.write_text(yaml.safe_dump(grid))
    with pytest.raises(ConfigError, match="base.seed is set by the sweep"):
        plan(grid_file, tmp_path / "results")


def test_sweep_trains_evaluates_skips_and_rebuilds_the_table(grid_file, tmp_path, monkeypatch):
    results = tmp_path / "results"
    report = run_sweep([grid_file], results, echo=lambda line: None)
    assert [r["status"] for r in report] == ["new", "new"]
    table = results / "ablation.csv"
    with open(table, newline="") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == ABLATION_COLUMNS == REQUIRED_COLUMNS
    all_rows = read_rows(table)
    assert sorted({r["protocol"] for r in all_rows}) == ["local", "tiled", "whole"]
    rows = [r for r in all_rows if r["protocol"] == "whole"]
    assert sorted((r["variant"], r["image"]) for r in rows) == [
        ("hin", "checker"),
        ("hin", "gradient"),
        ("none", "checker"),
        ("none", "gradient"),
    ]
    assert len(all_rows) == 3 * len(rows) and {r["lr"] for r in all_rows} == {"0.001"}
    # the no-norm model has no statistics to compute: its three protocols agree exactly (tiled blends tiles of
    # a convolutional net, so only local is bit-identical)
    scores = {(r["variant"], r["protocol"], r["image"]): float(r["psnr"]) for r in all_rows}
    assert all(
        scores[("none", "local", i)] == pytest.approx(scores[("none", "whole", i)], abs=1e-3)
        for i in ("checker", "gradient")
    )
    for row in rows:
        assert row["ablation"] == "mini" and row["task"] == "denoise" and row["level"] == "sigma=25"
        assert row["steps"] == "8" and row["wf"] == "8" and row["depth"] == "3" and row["seed"] == "0"
        assert float(row["params"]) > 0 and float(row["macs"]) > 0 and float(row["latency_ms"]) > 0
        assert row["device"].startswith("cpu: ") and 0 < float(row["ssim"]) <= 1 and 5 < float(row["psnr"]) < 60
    by_variant = {r["variant"]: r for r in rows}
    assert by_variant["hin"]["norm"] == "half_instance" and float(by_variant["hin"]["norm_ratio"]) == 0.5
    assert by_variant["none"]["norm"] == "none" and by_variant["none"]["norm_ratio"] == ""
    assert float(by_variant["hin"]["params"]) > float(by_variant["none"]["params"])  # the affine parameters
    validate_ablation_table(pd.read_csv(table))

    # The table's scores are the runs' own eval.csv model rows.
    run_dir = results / "runs/mini__denoise__hin__s0"
    evals = {r["image"]: r for r in read_rows(run_dir / "eval.csv") if r["method"] == "hinet" and r["stats"] == "whole"}
    table_scores = {r["image"]: r["psnr"] for r in rows if r["variant"] == "hin"}
    assert table_scores == {k: v["psnr"] for k, v in evals.items() if k != "mean"}

    # Second sweep: everything is done, nothing trains.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(sweep_module, "train", no_training)
    report = run_sweep([grid_file], results, echo=lambda line: None)
    assert [r["status"] for r in report] == ["done", "done"]


def test_half_finished_run_resumes_and_trained_run_is_only_evaluated(grid_file, tmp_path):
    results = tmp_path / "results"
    first, second = plan(grid_file, results)
    seen = [0]
    train(first.config, on_event=lambda e: seen.__setitem__(0, e["step"]), should_stop=lambda: seen[0] >= 3)
    train(second.config)
    assert (first.status(), second.status()) == ("resume", "evaluate")

    lines = []
    run_sweep([grid_file], results, echo=lines.append)
    assert lines[0].endswith("mini__denoise__hin__s0: resume") and "trained to step 8" in lines[1]
    assert any(line.endswith("mini__denoise__none__s0: evaluate") for line in lines)
    evaluate_only = next(i for i, line in enumerate(lines) if line.endswith(": evaluate"))
    assert not any("trained" in line for line in lines[evaluate_only:])
    assert json.loads((first.run_dir / "train_state.json").read_text())["step"] == 8
    assert len(read_rows(results / "ablation.csv")) == 4 * 3  # 2 runs x 2 images x 3 stats protocols


def test_a_run_scored_before_protocols_existed_is_scored_again(grid_file, tmp_path):
    from hinet.sweep import scored_protocols

    results = tmp_path / "results"
    run_sweep([grid_file], results, only="*__hin__*", echo=lambda line: None)
    run = plan(grid_file, results)[0]
    assert run.status() == "done" and scored_protocols(run.run_dir) == {"whole", "tiled", "local"}
    eval_path = run.run_dir / "eval.csv"
    old_rows = [r for r in read_rows(eval_path) if r["stats"] in ("whole", "")]
    with open(eval_path, "w", newline="") as handle:  # the format of an older sweep: no stats column
        writer = csv.DictWriter(handle, fieldnames=[k for k in old_rows[0] if k != "stats"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(old_rows)
    assert scored_protocols(run.run_dir) == {"whole"} and run.status() == "evaluate"
    weights = (run.run_dir / "model.safetensors").read_bytes()
    (run.run_dir / "model.safetensors").unlink()  # a fresh clone: weights are git-ignored
    from hinet.sweep import WEIGHTLESS

    assert run.status() == WEIGHTLESS
    report = run_sweep([grid_file], results, only="*__hin__*", echo=lambda line: None)
    assert report[-1] == {"run": run.name, "status": WEIGHTLESS}  # skipped, not a failure
    (run.run_dir / "model.safetensors").write_bytes(weights)
    run_sweep([grid_file], results, only="*__hin__*", echo=lambda line: None)
    assert run.status() == "done"


def test_a_failed_run_is_reported_and_the_others_go_on(grid_file, tmp_path, capsys, monkeypatch):
    real_train = sweep_module.train

    def diverging_for_none(cfg, **kwargs):
        if "__none__" in cfg.run_name:
            raise TrainingDiverged("training diverged at step 3 (simulated)")
        return real_train(cfg, **kwargs)

    monkeypatch.setattr(sweep_module, "train", diverging_for_none)
    assert main([str(grid_file), "--results", str(tmp_path / "results")]) == 1
    out = capsys.readouterr().out
    assert "FAILED: training diverged at step 3" in out and "1 run(s) failed" in out
    assert {r["variant"] for r in read_rows(tmp_path / "results/ablation.csv")} == {"hin"}


def test_impossible_variant_is_caught_while_planning(grid_file, tmp_path):
    grid = yaml.safe_load(grid_file.read_text())
    grid["variants"][1]["model"] = {"wf": 1, "norm_ratio": 0.25}  # normalizes no channel
    grid_file.write_text(yaml.safe_dump(grid))
    with pytest.raises(ConfigError, match="run mini__denoise__none__s0: .*normalizes no channel"):
        plan(grid_file, tmp_path / "results")


def test_dry_run_and_only_filter(grid_file, tmp_path):
    results = tmp_path / "results"
    lines = []
    report = run_sweep([grid_file], results, only="*__none__*", dry_run=True, echo=lines.append)
    assert report == [{"run": "mini__denoise__none__s0", "status": "new"}]
    assert not results.exists()
    with pytest.raises(ConfigError, match="matches no run"):
        run_sweep([grid_file], results, only="nothing-like-this", dry_run=True, echo=lines.append)


def test_table_is_rebuilt_from_the_run_folders(grid_file, tmp_path):
    results = tmp_path / "results"
    run_sweep([grid_file], results, echo=lambda line: None)
    import shutil

    shutil.rmtree(results / "runs/mini__denoise__none__s0")
    assert main([str(grid_file), "--results", str(results), "--table-only"]) == 0  # the CLI's rebuild
    assert {r["variant"] for r in read_rows(results / "ablation.csv")} == {"hin"}


def test_cli_exit_code(grid_file, tmp_path, capsys):
    assert main([str(grid_file), "--results", str(tmp_path / "r"), "--dry-run"]) == 0
    assert "mini__denoise__hin__s0: new" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and err.count("\n") == 1


def test_cli_broken_grid_yaml_is_one_line_naming_the_file(tmp_path, capsys):
    path = tmp_path / "ablation_broken.yaml"
    path.write_text("ablation: x\n  seeds: [0]\n")
    assert main([str(path), "--dry-run", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {path} is not valid YAML: line 2, column 8: mapping values are not allowed here\n"


def test_a_grid_may_extend_a_shared_file(grid_file, tmp_path):
    grid = yaml.safe_load(grid_file.read_text())
    shared = {"base": grid.pop("base"), "seeds": grid.pop("seeds")}
    (tmp_path / "shared.yaml").write_text(yaml.safe_dump(shared))
    grid_file.write_text(yaml.safe_dump(dict(grid, extends="shared.yaml")))
    runs = plan(grid_file, tmp_path / "results")
    assert [r.name for r in runs] == ["mini__denoise__hin__s0", "mini__denoise__none__s0"]
    assert runs[0].config.steps == 8 and runs[0].config.data.patch == 32


EXPECTED_RUNS = {
    "ablation_norm.yaml": 30,
    "ablation_norm_3k.yaml": 30,
    "ablation_placement.yaml": 12,
    "ablation_ratio.yaml": 12,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_RUNS))
def test_shipped_grids_plan_with_equal_budgets(name, tmp_path):
    runs = plan(REPO / "configs" / name, tmp_path / "results")
    assert len(runs) == EXPECTED_RUNS[name]
    budgets = {
        (
            r.config.steps,
            r.config.data.patch,
            r.config.data.batch,
            r.config.optimizer.lr,
            json.dumps(r.config.data.__dict__, sort_keys=True),
        )
        for r in runs
    }
    assert len(budgets) == 1, "every run of a grid must get the same training budget"
    assert len({r.seed for r in runs}) == 3
    configs = {r.variant: r.config.model_config() for r in runs}
    assert len(set(configs.values())) == len(configs), "two variants build the same model"
    assert "budget" in yaml.safe_load((REPO / "configs" / name).read_text())


def test_lr_search_chooses_on_validation_and_the_runs_use_the_choice(grid_file, tmp_path, monkeypatch):
    from hinet.sweep import LR_SEARCH_FILE, lr_choices, plan_lr_search

    grid = yaml.safe_load(grid_file.read_text())
    grid["lr_search"] = {"lrs": [1e-4, 3e-3], "steps": 8, "seed": 0}
    grid["seeds"] = [0, 1]
    grid["variants"] = grid["variants"][:1]
    grid_file.write_text(yaml.safe_dump(grid))
    results = tmp_path / "results"
    searches = plan_lr_search(grid_file, results)
    assert [r.name for r in searches] == ["lr-mini__denoise__hin__lr0.0001__s0", "lr-mini__denoise__hin__lr0.003__s0"]
    assert all(r.lr_pending for r in plan(grid_file, results))  # nothing is chosen before the search ran
    assert plan(grid_file, results)[0].status().startswith("waiting")

    # A fake validation score per rate makes the expected choice known: 3e-3 scores higher.
    real_train = sweep_module.train

    def scored_train(cfg, **kwargs):
        result = real_train(cfg, **kwargs)
        state_path = cfg.run_dir / "train_state.json"
        state = json.loads(state_path.read_text())
        state["best"] = {"psnr": 30.0 if cfg.optimizer.lr == 3e-3 else 20.0, "ssim": 0.5, "step": cfg.steps}
        state_path.write_text(json.dumps(state))
        return result

    monkeypatch.setattr(sweep_module, "train", scored_train)
    lines = []
    report = run_sweep([grid_file], results, echo=lines.append)
    choice = lr_choices(grid_file, results)[("denoise", "hin")]
    assert choice["lr"] == 3e-3 and choice["best_val_psnr"] == 30.0
    table = read_rows(results / LR_SEARCH_FILE)
    assert [(float(r["lr"]), r["chosen"]) for r in table] == [(1e-4, "False"), (3e-3, "True")]
    runs = plan(grid_file, results)
    assert [r.config.optimizer.lr for r in runs] == [3e-3, 3e-3] and not any(r.lr_pending for r in runs)
    # seed 0 at the search budget is the search run itself: copied, not retrained
    assert any("copied" in line for line in lines)
    assert [r["status"] for r in report][-2:] == ["evaluate", "new"]
    rows = read_rows(results / "ablation.csv")
    assert {float(r["lr"]) for r in rows} == {3e-3} and {r["seed"] for r in rows} == {"0", "1"}


def test_a_diverging_candidate_rate_is_recorded_and_never_chosen(grid_file, tmp_path):
    from hinet.sweep import FAILED_FILE, lr_search_rows

    grid = yaml.safe_load(grid_file.read_text())
    grid["lr_search"] = {"lrs": [1e-3, 1e6], "steps": 8}
    grid["variants"] = grid["variants"][:1]
    grid_file.write_text(yaml.safe_dump(grid))
    results = tmp_path / "results"
    run_sweep([grid_file], results, only="lr-", echo=lambda line: None)
    rows = {r["lr"]: r for r in lr_search_rows(grid_file, results)}
    assert rows[1e6]["status"] == "failed" and not rows[1e6]["chosen"]
    assert (results / "runs" / rows[1e6]["run"] / FAILED_FILE).is_file()
    assert rows[1e-3]["chosen"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"lrs": []}, "distinct positive"),
        ({"lrs": [1e-3, 1e-3]}, "distinct"),
        ({"lrs": "fast"}, "list of numbers"),
        ({"steps": 8}, "lrs"),
        ({"lrs": [1e-3], "steps": 0}, "positive integer"),
    ],
)
def test_bad_lr_search_is_a_config_error(grid_file, tmp_path, spec, message):
    from hinet.sweep import plan_lr_search

    grid = yaml.safe_load(grid_file.read_text())
    grid["lr_search"] = spec
    grid_file.write_text(yaml.safe_dump(grid))
    with pytest.raises(ConfigError, match=message):
        plan_lr_search(grid_file, tmp_path / "results")


def test_a_search_candidate_that_is_an_existing_run_is_copied_not_retrained(grid_file, tmp_path, monkeypatch):
    results = tmp_path / "results"
    run_sweep([grid_file], results, only="*__hin__*", echo=lambda line: None)  # lr 1e-3, 8 steps, seed 0
    grid = yaml.safe_load(grid_file.read_text())
    grid["lr_search"] = {"lrs": [1e-3], "steps": 8, "seed": 0}
    grid_file.write_text(yaml.safe_dump(grid))

    def no_training(cfg, **kwargs):
        raise AssertionError(f"{cfg.run_name} was retrained")

    monkeypatch.setattr(sweep_module, "train", no_training)
    lines = []
    run_sweep([grid_file], results, only="lr-*__hin__*", echo=lines.append)
    assert any("the same training as mini__denoise__hin__s0: copied" in line for line in lines)
    source, copy = results / "runs/mini__denoise__hin__s0", results / "runs/lr-mini__denoise__hin__lr0.001__s0"
    assert (copy / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    assert not (copy / "eval.csv").exists()  # a search run is never scored on the test set


def test_a_search_candidate_stopped_by_a_config_problem_is_not_marked_failed(grid_file, tmp_path, monkeypatch):
    from hinet.sweep import FAILED_FILE, plan_lr_search

    grid = yaml.safe_load(grid_file.read_text())
    grid["lr_search"] = {"lrs": [1e-3], "steps": 8}
    grid["variants"] = grid["variants"][:1]
    grid_file.write_text(yaml.safe_dump(grid))

    def missing_photos(cfg, **kwargs):
        raise ConfigError("install the photo packages")

    monkeypatch.setattr(sweep_module, "train", missing_photos)
    with pytest.raises(ConfigError, match="photo packages"):
        run_sweep([grid_file], tmp_path / "results", echo=lambda line: None)
    assert not (plan_lr_search(grid_file, tmp_path / "results")[0].run_dir / FAILED_FILE).exists()


def test_a_stop_request_saves_the_run_in_progress_starts_no_other_and_the_next_sweep_resumes(grid_file, tmp_path):
    results = tmp_path / "results"
    first, second = plan(grid_file, results)
    polls = [0]

    def stop_after_three_polls() -> bool:
        polls[0] += 1
        return polls[0] > 3

    lines: list[str] = []
    report = run_sweep([grid_file], results, echo=lines.append, should_stop=stop_after_three_polls)
    assert [r["status"] for r in report] == ["stopped"]
    assert first.status() == "resume" and second.status() == "new"
    assert not (first.run_dir / "eval.csv").exists()
    assert lines[-1] == f"stopped on request during {first.name}; run the sweep again to resume it"
    report = run_sweep([grid_file], results, echo=lines.append)
    assert [r["status"] for r in report] == ["resume", "new"]
    assert first.status() == second.status() == "done"


def test_cli_exits_130_after_a_stop_request_so_chained_scripts_halt(grid_file, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "stop_on_signals", lambda: lambda: True)
    assert main([str(grid_file), "--results", str(tmp_path / "r")]) == 130
    assert not list((tmp_path / "r").rglob("eval.csv"))  # nothing was scored


def test_a_stop_request_between_runs_scores_nothing_more_and_removes_nothing(grid_file, tmp_path):
    results = tmp_path / "results"
    first, second = plan(grid_file, results)
    train(first.config)
    train(second.config)
    answers = iter([False, True])  # polled once before each run: the stop arrives while the first is scored
    report = run_sweep([grid_file], results, echo=lambda line: None, should_stop=lambda: next(answers, True))
    assert [r["status"] for r in report] == ["evaluate", "stopped"]
    assert (first.run_dir / "eval.csv").is_file() and not (second.run_dir / "eval.csv").exists()
    assert second.status() == "evaluate"  # its trained weights are still there
