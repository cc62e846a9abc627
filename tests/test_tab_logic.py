"""The feature and learn tabs' logic called directly, without Gradio, over a store of tiny untrained models."""

from __future__ import annotations

import numpy as np
import pytest

from app import feature_logic, learn_logic, learn_views as views
from app.models import ModelStore
from hinet.errors import ConfigError, ImageError

HIN, BATCH = "registry/tiny_half_instance", "registry/tiny_batch"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    empty = tmp_path_factory.mktemp("no_checkpoints")
    return ModelStore(
        results_dir=empty, runs_dir=empty, registry_prefix="tiny_", default_untrained="tiny_half_instance"
    )


def test_render_block_reuses_the_sessions_capture(store):
    source = feature_logic.restore_input_source(np.random.default_rng(0).random((40, 56, 3)).astype(np.float32))
    first = feature_logic.render_block(store, HIN, source, "centre crop 256", None, 2, 99, None)
    assert first["block"] in dict((value, label) for label, value in first["choices"])
    assert first["channel"] == first["channels"] - 1  # clamped to the block
    assert "the restore tab's current input" in first["caption"]
    again = feature_logic.render_block(store, HIN, source, "centre crop 256", first["block"], 2, 0, first["cache"])
    assert again["cache"] is first["cache"] and len(again["cache"]) == 1  # no second forward pass


def test_render_compare_and_its_errors(store):
    source = feature_logic.example_source("camera")
    result = feature_logic.render_compare(
        store, HIN, BATCH, source, "downscale to max side 256", "down_path_1.0", 2, None
    )
    assert "tiny_half_instance" in result["caption"] and "tiny_batch" in result["caption"]
    with pytest.raises(ConfigError, match="does not exist in both variants"):
        feature_logic.render_compare(store, HIN, BATCH, source, "centre crop 256", "no_such_block", 2, None)
    with pytest.raises(ImageError, match="unknown example"):
        feature_logic.example_source("nope")
    with pytest.raises(ImageError, match="no image was uploaded"):
        feature_logic.upload_source(None)


def test_variant_choices_open_on_hin_and_compare_with_another_norm(store):
    choices, a, b = feature_logic.variant_choices(store)
    assert a == HIN and store.find_entry(b).config.norm != "half_instance"
    assert {a, b} <= {value for _, value in choices}


def test_learn_experiments_use_the_stores_model_and_say_it_is_untrained(store):
    assert learn_logic.entry_for(store, "half_instance") == HIN
    result = learn_logic.render(store, views.LearnState(exp="ratio", ratio=0.5))
    assert result["caption"].endswith("Model: tiny_half_instance with untrained (random, seed 0) weights.")
    assert result["share"] == views.format_share(views.LearnState(exp="ratio", ratio=0.5))
    with pytest.raises(ConfigError, match="invalid setting"):
        learn_logic.state_from_controls("hin", "x", "batch", 4, 64, True, 0.5)
    nothing_listed = ModelStore(results_dir=store.results_dir, runs_dir=store.runs_dir, registry_prefix="none_")
    with pytest.raises(ConfigError, match="the model store has no half_instance model"):
        learn_logic.entry_for(nothing_listed, "half_instance")
