"""scripts/carry_state.py: which runs' fp32 state a stop commits so a fresh checkout resumes them."""

import importlib.util
import json
import sys

import yaml

from hinet.runs import PROJECT_ROOT

spec = importlib.util.spec_from_file_location("carry_state", PROJECT_ROOT / "scripts" / "carry_state.py")
carry_state = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = carry_state
spec.loader.exec_module(carry_state)


def _run(parent, name, step, steps, files=("model.safetensors", "train_state.safetensors", "best.safetensors")):
    run_dir = parent / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"steps": steps}))
    (run_dir / "train_state.json").write_text(json.dumps({"step": step, "train_seconds": 1.0}))
    for file in files:
        (run_dir / file).write_bytes(b"x")
    return run_dir


def test_only_unfinished_runs_carry_their_weights_optimizer_and_best(tmp_path):
    half = _run(tmp_path / "defaults", "denoise", step=1250, steps=40000)
    _run(tmp_path / "runs", "norm3k__denoise__hin__s0", step=3000, steps=3000)  # finished: fp16 ships instead
    no_best_yet = _run(tmp_path / "runs", "young", step=10, steps=3000, files=("model.safetensors",))
    (tmp_path / "runs" / "never_started").mkdir()
    assert carry_state.unfinished_runs(tmp_path) == [half, no_best_yet]
    assert carry_state.state_files(carry_state.unfinished_runs(tmp_path)) == [
        half / "model.safetensors",
        half / "train_state.safetensors",
        half / "best.safetensors",
        no_best_yet / "model.safetensors",
    ]
