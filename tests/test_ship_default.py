"""scripts/ship_default.sh: the shipping steps in order, and KEEP_AS keeps the replaced model and its
evaluation under the new name."""

import os
import shutil
import subprocess

from hinet.runs import PROJECT_ROOT

# Stands in for python: logs each command line; `-m hinet.evaluate` prints an evaluation's first line.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> calls.log
if [ "$1" = "-m" ]; then echo "$3: evaluated"; fi
"""


def _repo(tmp_path):
    repo = tmp_path / "repo"
    for folder in ("scripts", "results/models", "results/eval", "results/defaults/deblur"):
        (repo / folder).mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "scripts" / "ship_default.sh", repo / "scripts")
    (repo / "fake_python").write_text(FAKE_PYTHON)
    (repo / "fake_python").chmod(0o755)
    (repo / "results/models/deblur.safetensors").write_bytes(b"old weights")
    (repo / "results/eval/deblur.csv").write_text("image,method\n")
    (repo / "results/eval/deblur.txt").write_text("deblur.safetensors: deblur (length=15)\nrows\n")
    subprocess.run(["git", "init", "--quiet"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    return repo


def _ship(repo, *args, keep_as=None, training="^no-such-process$"):
    # the trainings of this machine (a background job may run while the tests do) are not these tests' own
    env = {**os.environ, "PYTHON": str(repo / "fake_python"), "TRAINING_PROCESSES": training}
    env.pop("KEEP_AS", None)
    if keep_as:
        env["KEEP_AS"] = keep_as
    done = subprocess.run(
        ["bash", str(repo / "scripts/ship_default.sh"), *args], cwd=repo, env=env, capture_output=True, text=True
    )
    return done.returncode, done.stdout + done.stderr


def test_a_run_without_its_best_checkpoint_is_refused(tmp_path):
    code, out = _ship(_repo(tmp_path), "deblur")
    assert code == 2 and "no best checkpoint in results/defaults/deblur" in out


def test_keep_as_keeps_the_replaced_model_and_its_evaluation_then_ships_evaluates_and_records(tmp_path):
    repo = _repo(tmp_path)
    (repo / "results/defaults/deblur/best.safetensors").write_bytes(b"new weights")
    code, out = _ship(repo, "deblur", keep_as="deblur_old")
    assert code == 0, out
    assert (repo / "results/models/deblur_old.safetensors").read_bytes() == b"old weights"
    assert (repo / "results/eval/deblur_old.txt").read_text().startswith("deblur_old.safetensors: deblur")
    assert (repo / "results/eval/deblur_old.csv").is_file()
    calls = (repo / "calls.log").read_text().splitlines()
    assert calls == [
        "scripts/ship_model.py results/defaults/deblur",
        "-m hinet.evaluate results/models/deblur.safetensors --task-levels --protocol all --baselines "
        "--out-csv results/eval/deblur.csv",
        "scripts/ship_model.py results/defaults/deblur --eval-csv results/eval/deblur.csv",
        "scripts/make_results_readme.py",
    ]
    assert (repo / "results/eval/deblur.txt").read_text().startswith("results/models/deblur.safetensors: evaluated")
    code, out = _ship(repo, "deblur", keep_as="deblur_old")  # never overwrites a kept model
    assert code == 2 and "exists already" in out


def test_shipping_is_refused_while_a_training_runs(tmp_path):
    repo = _repo(tmp_path)
    (repo / "results/defaults/deblur/best.safetensors").write_bytes(b"new weights")
    trainer = subprocess.Popen(["sleep", "30"])  # stands in for a training, matched by its command line
    try:
        code, out = _ship(repo, "deblur", training="^sleep 30$")
    finally:
        trainer.kill()
    assert code == 2 and "a training is running" in out
    assert (
        not (repo / "calls.log").exists()
        and (repo / "results/models/deblur.safetensors").read_bytes() == b"old weights"
    )
