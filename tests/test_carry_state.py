"""scripts/carry_state.py: which runs' fp32 state a stop commits so a fresh checkout resumes them."""

import importlib.util
import json
import subprocess
import sys

import torch
import yaml

from hinet.checkpoint import save_checkpoint
from hinet.registry import create_model
from hinet.runs import PROJECT_ROOT

spec = importlib.util.spec_from_file_location("carry_state", PROJECT_ROOT / "scripts" / "carry_state.py")
carry_state = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = carry_state
spec.loader.exec_module(carry_state)

ALL = ("model.safetensors", "train_state.safetensors", "best.safetensors")


def _run(parent, name, step, steps, files=ALL, extra=()):
    run_dir = parent / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"steps": steps}))
    (run_dir / "train_state.json").write_text(json.dumps({"step": step, "train_seconds": 1.0}))
    for file in (*files, *extra):
        (run_dir / file).write_bytes(b"x")
    return run_dir


def test_runs_that_still_need_their_fp32_state_are_carried_and_delivered_ones_are_not(tmp_path):
    results = tmp_path / "results"
    half = _run(results / "defaults", "denoise", step=1250, steps=40000)
    unshipped = _run(results / "defaults", "jpeg", step=40000, steps=40000)  # finished, not shipped yet
    shipped = _run(results / "defaults", "derain", step=40000, steps=40000)
    torch.manual_seed(0)
    source = str(shipped.relative_to(PROJECT_ROOT)) if shipped.is_relative_to(PROJECT_ROOT) else str(shipped)
    save_checkpoint(
        results / "models" / "derain.safetensors", create_model("tiny_none"), metadata={"source_run": source}
    )
    _run(results / "defaults" / "pilot", "pilot_a", step=100, steps=100)  # a finished pilot candidate
    scored = _run(results / "runs", "norm3k__denoise__hin__s0", step=3000, steps=3000, extra=("eval.csv",))
    unscored = _run(results / "runs", "norm3k__denoise__hin__s1", step=3000, steps=3000)
    failed = _run(results / "runs", "lr-x__lr0.01__s0", step=40, steps=300, extra=("failed.txt",))
    young = _run(results / "runs", "young", step=10, steps=3000, files=("model.safetensors",))
    searched = _run(results / "runs", "lr-norm3k__denoise__hin__lr0.001__s0", step=500, steps=500)  # never scored
    half_search = _run(results / "runs", "lr-norm3k__denoise__hin__lr0.003__s0", step=100, steps=500)
    _run(results / "defaults" / "deblur_lr_check", "lr3e-3", step=4900, steps=40000)  # stopped on purpose
    configs = tmp_path / "configs"
    carried = carry_state.runs_to_carry(results, configs)
    assert carried == [half, unshipped, half_search, unscored, young]
    # a shipped default whose config now plans more steps (trained on after a missed bar) carries again
    configs.mkdir()
    (configs / "default_derain.yaml").write_text("task: derain\nsteps: 80000\n")
    assert carry_state.runs_to_carry(results, configs) == [half, shipped, unshipped, half_search, unscored, young]
    assert searched not in carried and scored not in carried and failed not in carried and shipped not in carried
    assert carry_state.state_files([half, young]) == [*(half / f for f in ALL), young / "model.safetensors"]
    assert carry_state.companion_files([half]) == [half / "train_state.json", half / "config.yaml"]


def test_a_large_state_file_travels_in_parts_and_is_rebuilt_byte_for_byte(tmp_path, monkeypatch):
    monkeypatch.setattr(carry_state, "PART_BYTES", 10)
    big, small = tmp_path / "train_state.safetensors", tmp_path / "model.safetensors"
    big.write_bytes(bytes(range(25)))
    small.write_bytes(b"tiny")
    committed = carry_state.split_large([big, small])
    parts = [tmp_path / f"train_state.safetensors.part0{i}" for i in range(3)]
    assert committed == [*parts, small] and [p.stat().st_size for p in parts] == [10, 10, 5]
    big.unlink()  # a fresh clone holds only the parts
    assert carry_state.join_parts(parts) == [big]
    assert big.read_bytes() == bytes(range(25)) and not any(p.exists() for p in parts)


def _git(repo, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True
    )


def test_a_fresh_clone_gets_back_the_state_a_mid_session_save_committed_and_untracked(tmp_path, monkeypatch):
    monkeypatch.setattr(carry_state, "PART_BYTES", 10)
    repo = tmp_path / "repo"
    run = _run(repo / "results" / "defaults", "jpeg", step=500, steps=40000)
    other = _run(repo / "results" / "defaults", "derain", step=500, steps=40000)
    kept = {"train_state.safetensors": bytes(range(25)), "model.safetensors": b"weights", "log.jsonl": b"a\n"}
    for name, data in kept.items():
        (run / name).write_bytes(data)
        (other / name).write_bytes(data)
    _git(repo, "init", "-q")
    (repo / ".gitignore").write_text("*.safetensors\n")  # as results/ ignores them
    files = carry_state.split_large([run / n for n in ("train_state.safetensors", "model.safetensors")])
    files += carry_state.split_large([other / n for n in ("train_state.safetensors", "model.safetensors")])
    _git(repo, "add", "--force", "--", *(str(f.relative_to(repo)) for f in files), ".")
    _git(repo, "commit", "-q", "-m", "keep")  # what `save` commits first ...
    _git(repo, "rm", "-r", "--cached", "-q", "--", *(str(f.relative_to(repo)) for f in files))
    _git(repo, "commit", "-q", "-m", "release")  # ... and then untracks
    (run / "train_state.json").write_text(json.dumps({"step": 900, "train_seconds": 2.0}))  # a later commit
    (run / "log.jsonl").write_bytes(b"a\nb\n")  # continues the kept log: the same run
    (other / "log.jsonl").write_bytes(b"z\n")  # started over in the same folder: not the kept run
    _git(repo, "commit", "-q", "-am", "progress")
    for path in [*repo.rglob("*.safetensors*")]:
        path.unlink()  # a fresh clone
    restored = carry_state.restore_from_history([run, other], repo)
    assert list(restored) == [run]
    assert (run / "train_state.safetensors").read_bytes() == bytes(range(25)) and not list(run.glob("*.part*"))
    assert (run / "model.safetensors").read_bytes() == b"weights"
    assert json.loads((run / "train_state.json").read_text())["step"] == 500  # from the same commit
    assert (run / "log.jsonl").read_bytes() == b"a\n"
    assert not (other / "train_state.safetensors").exists()
    assert carry_state.restore_from_history([run], repo) == {}  # state on disk: nothing to do
