"""The train tab through gradio_client: a tiny run streams progress, finishes and is listed; a second request
is refused while a run holds the slot; Cancel stops a run cleanly and keeps its checkpoint."""

from __future__ import annotations

import time

import pytest

from app_harness import serve_tiny_app, tiny_store

pytestmark = [pytest.mark.app, pytest.mark.slow]

TINY_DATA = dict(
    skimage=True, pywt=False, dead_leaves=8, dead_leaves_size=64, patch=16, batch=2, val_images=2, val_size=32
)
# task, norm, ratio, first level, last level, decoder norm, affine, wf, depth
TINY_MODEL = ("denoise", "half_instance", 0.5, 0, 2, False, True, 8, 3)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    store = tiny_store(runs_dir)
    with serve_tiny_app(store, **{"train_logic.UI_DATA": TINY_DATA}) as url:
        yield url, store


def _client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def _wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_tiny_run_streams_progress_and_is_listed(served):
    url, store = served
    runs_dir = store.runs_dir
    client = _client(url)
    job = client.submit(*TINY_MODEL, 12, 0, api_name="/train")
    outputs = _wait_for(lambda: job.done() and job.outputs(), 120, "the tiny run to finish")
    statuses = [status for _, status in outputs]
    assert len(outputs) >= 2  # at least the "preparing" update and the final one
    assert "Preparing the training data" in statuses[0]
    final = statuses[-1]
    assert "**Finished** at step 12/12" in final and "Best validation PSNR" in final
    run = final.split("**")[1]
    assert (runs_dir / run / "model.safetensors").is_file() and (runs_dir / run / "log.jsonl").is_file()
    note, table, _, choice = client.predict(api_name="/user_runs")
    assert run in [row[0] for row in table["data"]]
    assert choice["value"] == f"runs/{run}"  # the newest run is preselected for "open in restore"
    entry_ids = [e.id for e in store.list_entries("denoise")]
    assert f"runs/{run}" in entry_ids

    from app.ablation_tab import apply_pending, open_in_restore

    task_update, variants_update, pending, tabs = open_in_restore(store, f"runs/{run}", "deblur")
    assert task_update["value"] == "denoise" and pending[0] == f"runs/{run}" and tabs.selected == "restore"
    assert apply_pending(store, pending, ["registry/tiny_half_instance"], "denoise")[0]["value"] == [f"runs/{run}"]
    task_update, variants_update, pending, tabs = open_in_restore(store, f"runs/{run}", "denoise")
    assert variants_update["value"] == [f"runs/{run}"] and pending is None
    assert f"runs/{run}" in [value for _, value in variants_update["choices"]]


def test_second_request_is_refused_and_cancel_keeps_the_checkpoint(served):
    from app import train_logic

    url, _ = served
    owner = _client(url)
    job = owner.submit(*TINY_MODEL, train_logic.MAX_STEPS, 1, api_name="/train")
    _wait_for(
        lambda: train_logic.SLOT.total == train_logic.MAX_STEPS and train_logic.SLOT.step >= 3,
        120,
        "the long run to make progress",
    )
    streamed = _wait_for(lambda: [s for _, s in job.outputs() if "/5000 · loss" in s], 30, "a streamed step")
    assert "step 0/" not in streamed[-1]

    other = _client(url)
    with pytest.raises(Exception, match=r"training run is in progress \(step \d+/5000\)"):
        other.predict(*TINY_MODEL, 5, 2, api_name="/train")
    assert "Only they can cancel" not in other.predict(api_name="/training_status")

    message = owner.predict(api_name="/cancel_training")
    assert message.startswith("Cancelled at step"), message
    stopped_at = int(message.split("step ")[1].split("/")[0])
    assert 3 <= stopped_at < train_logic.MAX_STEPS
    assert not train_logic.SLOT.lock.locked()
    run_dir = train_logic.SLOT.run_dir
    assert (run_dir / "model.safetensors").is_file()
    from hinet.checkpoint import read_metadata

    assert int(read_metadata(run_dir / "model.safetensors")["steps"]) == stopped_at
    job.cancel()
    # the slot is free again: a new run is accepted
    done = other.predict(*TINY_MODEL, 3, 3, api_name="/train")
    assert "**Finished** at step 3/3" in done[1]
