"""scripts/background.sh: the session's background job runs from a frozen copy, stops with one signal to
its training (which saves), and `save` commits the training state and starts the same job again."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hinet.runs import PROJECT_ROOT

pytestmark = pytest.mark.skipif(shutil.which("pgrep") is None or not Path("/proc").is_dir(), reason="needs procps")

# A training that saves on SIGTERM like hinet.train: counts the signals it got, exits 130 after a stop.
FAKE_TRAIN = """
import signal, sys, time
from pathlib import Path
log = Path("results/train.log")
signals = []
signal.signal(signal.SIGTERM, lambda *_: signals.append(1))
with log.open("a") as f:
    f.write("started\\n")
while not signals:
    time.sleep(0.05)
time.sleep(0.3)  # saving takes a moment; a second signal now would lose the checkpoint
with log.open("a") as f:
    f.write(f"saved after {len(signals)} signal(s)\\n")
# results/finished: the first run was finished and only reported, so the signal did not stop the job
sys.exit(0 if Path("results/finished").exists() and "configs/x.yaml" in sys.argv else 130)
"""

FAKE_JOB = """#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD"
echo "job code: $(cat VERSION)" >> results/train.log
"$PYTHON" -m hinet.train --config configs/x.yaml
"$PYTHON" -m hinet.train --config configs/y.yaml
"""

# Stands in for carry_state.py: --keep stages the state file, --release untracks it.
FAKE_CARRY = """
import subprocess, sys
from pathlib import Path
Path("results/run").mkdir(parents=True, exist_ok=True)
if sys.argv[1] == "--keep":
    Path("results/run/train_state.json").write_text('{"step": 7}')
    Path("results/run/model.safetensors").write_bytes(b"weights")
    subprocess.run(["git", "add", "--force", "results/run"], check=True)
else:
    subprocess.run(["git", "rm", "--cached", "--quiet", "results/run/model.safetensors"], check=True)
"""


def _git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "hinet").mkdir()
    (repo / "results").mkdir()
    (repo / "configs").mkdir()
    shutil.copy(PROJECT_ROOT / "scripts" / "background.sh", repo / "scripts" / "background.sh")
    (repo / "scripts" / "long_runs.sh").write_text(FAKE_JOB)
    (repo / "scripts" / "long_runs.sh").chmod(0o755)
    (repo / "scripts" / "carry_state.py").write_text(FAKE_CARRY)
    (repo / "hinet" / "__init__.py").write_text("")
    (repo / "hinet" / "train.py").write_text(FAKE_TRAIN)
    (repo / "VERSION").write_text("one")
    (repo / ".gitignore").write_text("*.safetensors\n")
    _git(repo, "init", "--quiet")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "--quiet", "-m", "init")
    yield repo
    _background(repo, "stop")


def _background(repo, *args):
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "JOB_COPY": str(repo.parent / "copy"),
        "JOB_LOG": str(repo.parent / "job.log"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    done = subprocess.run(
        ["bash", str(repo / "scripts" / "background.sh"), *args], env=env, capture_output=True, text=True, timeout=120
    )
    return done.returncode, done.stdout + done.stderr


def _wait_for(path, text, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().count(text) >= 1:
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {path}")


def test_the_job_runs_frozen_code_and_stops_with_one_signal_to_its_training(repo):
    log = repo / "results" / "train.log"
    code, out = _background(repo, "start")
    assert code == 0, out
    _wait_for(log, "started")
    (repo / "VERSION").write_text("two")  # an edit made while it runs does not reach it
    assert _background(repo, "status")[1].startswith("running: scripts/long_runs.sh")
    code, out = _background(repo, "start")
    assert code == 1 and "already running" in out

    code, out = _background(repo, "stop")
    assert code == 0, out
    text = log.read_text()
    assert "job code: one" in text
    assert "saved after 1 signal(s)" in text
    assert text.count("started") == 1  # the job ended with its training: the second one never started
    assert _background(repo, "status")[1].startswith("not running")
    assert _background(repo, "stop")[1].strip() == "no background job running"


def test_save_commits_the_state_untracks_it_again_and_restarts_the_same_job(repo):
    log = repo / "results" / "train.log"
    assert _background(repo, "start")[0] == 0
    _wait_for(log, "started")
    commits = len(_git(repo, "log", "--oneline").splitlines())

    code, out = _background(repo, "save")
    assert code == 0, out
    log_lines = _git(repo, "log", "--format=%s").splitlines()
    assert len(log_lines) == commits + 2
    assert log_lines[1] == "Carry the background trainings' state: results/run at step 7"
    carried = _git(repo, "show", "--name-only", "--format=", "HEAD~1").split()
    assert "results/run/model.safetensors" in carried and "results/run/train_state.json" in carried
    assert "results/run/model.safetensors" not in _git(repo, "ls-files")  # untracked again, still on disk
    assert (repo / "results" / "run" / "model.safetensors").is_file()
    assert _background(repo, "status")[1].startswith("running: scripts/long_runs.sh")
    deadline = time.monotonic() + 20
    while log.read_text().count("started") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log.read_text().count("started") == 2


def test_save_refuses_while_something_else_is_staged(repo):
    (repo / "notes.txt").write_text("work in progress")
    _git(repo, "add", "notes.txt")
    code, out = _background(repo, "save")
    assert code == 1 and "staged already" in out


def test_save_restarts_the_same_frozen_code_and_leaves_a_stopped_job_stopped(repo):
    log = repo / "results" / "train.log"
    assert _background(repo, "start")[0] == 0
    _wait_for(log, "started")
    (repo / "VERSION").write_text("half-done edit")  # the checkout changes while the job runs
    code, out = _background(repo, "save")
    assert code == 0, out
    deadline = time.monotonic() + 20
    while log.read_text().count("job code") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log.read_text().count("job code: one") == 2 and "half-done" not in log.read_text()

    assert _background(repo, "stop")[0] == 0
    code, out = _background(repo, "save")
    assert code == 0 and "not restarted" in out, out
    assert _background(repo, "status")[1].startswith("not running")


def test_stop_also_signals_a_training_the_job_starts_after_the_first_signal(repo):
    log = repo / "results" / "train.log"
    (repo / "results" / "finished").write_text("")
    assert _background(repo, "start")[0] == 0
    _wait_for(log, "started")
    code, out = _background(repo, "stop")
    assert code == 0, out
    text = log.read_text()
    assert text.count("started") == 2 and text.count("saved after 1 signal(s)") == 2
    assert _background(repo, "status")[1].startswith("not running")


def test_a_job_outside_scripts_is_refused(repo):
    (repo / "job.sh").write_text("#!/usr/bin/env bash\nsleep 60\n")
    (repo / "job.sh").chmod(0o755)
    code, out = _background(repo, "start", "job.sh")
    assert code == 2 and "under scripts/" in out
