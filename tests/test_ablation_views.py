"""The ablation explorer's figures and render function on a synthetic table (no server)."""

import json
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest

from app import ablation_tab, ablation_views as views
from app.context import AppContext
from app.models import ModelStore
from hinet import results_table as rt
from tests.test_results_table import synthetic_table, with_protocols

PROTOCOL_OFFSETS = {"whole": 0.0, "tiled": 5.0, "local": -1.0}  # dB added to every score of that protocol


@pytest.fixture
def results(tmp_path):
    """A results folder with the synthetic ablation table under three protocols and one log per run."""
    folder = tmp_path / "results"
    (folder / "runs").mkdir(parents=True)
    table = with_protocols(synthetic_table(), PROTOCOL_OFFSETS)
    table.to_csv(folder / "ablation.csv", index=False)
    for run in table["run"].unique():
        seed = int(run.rsplit("_s", 1)[1])
        (folder / "runs" / run).mkdir()
        lines = [
            {"step": s, "loss": 1 / s, "lr": 1e-3, "val_psnr": 20 + s / 10 + seed, "val_ssim": 0.5, "wall": s}
            for s in (10, 20)
        ]
        (folder / "runs" / run / "log.jsonl").write_text("\n".join(map(json.dumps, lines)))
    ablation_tab._read_cached.cache_clear()
    return folder


@pytest.fixture
def store(results, tmp_path):
    """The model store over that results folder, with the user's runs under tmp_path/user_runs."""
    return ModelStore(results_dir=results, runs_dir=tmp_path / "user_runs")


def _norm_rows():
    return rt.select(rt.validate_ablation_table(synthetic_table()), ablation="norm")


def test_psnr_by_variant_has_error_bars_and_seed_dots():
    rows = _norm_rows()
    summary = rt.summarize(rows, "small_hin")
    figure = views.psnr_by_variant_figure(summary, rt.seed_means(rows), "small_hin")
    mean_trace, seed_trace = figure.data
    assert list(mean_trace.x) == list(summary["variant"])
    assert list(mean_trace.error_y.array) == pytest.approx(list(summary["psnr_std"]))
    assert len(seed_trace.x) == len(summary) * 3  # 3 seeds per variant


def test_validation_curves_have_a_band_and_a_mean_per_variant():
    curves = pd.DataFrame(
        {
            "variant": ["a", "a", "b", "b"],
            "step": [1, 2, 1, 2],
            "mean": [1.0, 2, 3, 4],
            "std": [0.1] * 4,
            "min": [0.5, 1.5, 2.5, 3.5],
            "max": [1.5, 2.5, 3.5, 4.5],
            "n": [2] * 4,
        }
    )
    figure = views.validation_curve_figure(curves)
    names = [trace.name for trace in figure.data]
    assert names == ["a min-max high", "a min-max low", "a", "b min-max high", "b min-max low", "b"]
    assert figure.data[1].fill == "tonexty" and list(figure.data[0].y) == [1.5, 2.5]
    assert list(views.validation_curve_figure(curves, spread="std").data[0].y) == pytest.approx([1.1, 2.1])
    assert views.validation_curve_figure(curves.iloc[:0]).layout.annotations  # empty state


def test_pareto_and_heatmap_figures():
    summary = pd.DataFrame(
        {
            "variant": ["a", "b", "c"],
            "psnr_mean": [30.0, 29.0, 31.0],
            "macs": [1e9, 2e9, 3e9],
            "latency_ms": [5.0, 4.0, 9.0],
        }
    )
    figure = views.pareto_figure(summary, "macs")
    assert [t.name for t in figure.data] == ["variants", "Pareto front"]
    assert list(figure.data[1].x) == [1.0, 3.0]  # b is dominated by a
    assert list(views.pareto_figure(summary, "latency_ms").data[1].x) == [4.0, 5.0, 9.0]
    rows = _norm_rows()
    heat = views.delta_heatmap_figure(rt.per_image_delta(rows, "small_hin"), "small_hin")
    assert heat.data[0].type == "heatmap" and heat.data[0].zmid == 0
    assert list(heat.data[0].y) == ["a", "b", "c", "d"] and "small_hin" not in heat.data[0].x


def test_training_figure_has_loss_and_validation_traces():
    log = pd.DataFrame({"step": [1, 2, 3], "loss": [0.3, 0.2, 0.1], "val_psnr": [None, 25.0, 26.0]})
    figure = views.training_figure(log)
    assert [t.name for t in figure.data] == ["loss", "val PSNR"]
    assert list(figure.data[1].x) == [2, 3]


def test_render_builds_every_output(results, store):
    table, message = ablation_tab.load_table(results / "ablation.csv")
    assert message == ""
    chosen = views.scope(table, ablation="placement")
    assert chosen["baseline"] == "small_hin" and chosen["seeds"] == [0, 1, 2]
    assert chosen["protocols"] == ["whole", "tiled", "local"] and chosen["protocol"] == "whole"
    out = ablation_tab.render(
        store,
        results / "ablation.csv",
        chosen["task"],
        chosen["level"],
        "placement",
        chosen["variants"],
        chosen["seeds"],
        chosen["baseline"],
    )
    status, shown, diff, csv_file, md_file, protocol, psnr, curves, pareto, heat, open_choice = out
    assert "baseline **small_hin**" in status and "protocol **whole**" in status
    assert set(shown["variant"]) == {"small_hin (baseline)", "small_hin_shallow", "small_hin_encdec"}
    assert list(diff.columns) == ["variant", "role", "hin_position_right", "norm_in_decoder"]
    assert pd.read_csv(csv_file).shape[0] == 3 and "±" in Path(md_file).read_text()
    assert "Test images (4)" in protocol
    assert len(curves.data) == 9  # band high, band low, mean for 3 variants
    assert open_choice["choices"] == []  # no weights in the synthetic runs
    # a different baseline and a seed subset
    out = ablation_tab.render(
        store,
        results / "ablation.csv",
        chosen["task"],
        chosen["level"],
        "placement",
        chosen["variants"],
        [0, 1],
        "small_hin_shallow",
    )
    assert out[1].loc[out[1]["variant"] == "small_hin_shallow (baseline)", "Δ PSNR (dB)"].item() == 0


def test_scope_offers_the_protocols_of_the_ablation_and_keeps_the_chosen_one():
    table = rt.validate_ablation_table(with_protocols(synthetic_table(), PROTOCOL_OFFSETS))
    assert views.scope(table, protocol="tiled")["protocol"] == "tiled"
    assert views.scope(table, protocol="nonsense")["protocol"] == "whole"
    # a protocol under which one variant was not tested offers only the variants it has
    partial = table[~((table["protocol"] == "local") & (table["variant"] == "small_none"))]
    assert "small_none" not in views.scope(partial, ablation="norm", protocol="local")["variants"]
    assert "small_none" in views.scope(partial, ablation="norm", protocol="whole")["variants"]
    # without whole rows the view opens on the first protocol present, in STATS_PROTOCOLS order
    no_whole = table[table["protocol"] != "whole"]
    assert views.scope(no_whole)["protocols"] == ["tiled", "local"] and views.pick_protocol(no_whole) == "tiled"
    assert views.PROTOCOL_INFO == "How normalization statistics were computed at test time"


def test_render_filters_table_and_plots_by_protocol(results, store):
    table, _ = ablation_tab.load_table(results / "ablation.csv")
    chosen = views.scope(table, ablation="norm")
    outputs = {}
    for protocol in ("whole", "tiled", None):
        outputs[protocol] = ablation_tab.render(
            store,
            results / "ablation.csv",
            chosen["task"],
            chosen["level"],
            "norm",
            chosen["variants"],
            chosen["seeds"],
            chosen["baseline"],
            protocol=protocol,
        )
    whole, tiled, default = outputs["whole"], outputs["tiled"], outputs[None]
    assert "protocol **tiled**" in tiled[0] and "protocol **whole**" in default[0]
    pd.testing.assert_frame_equal(default[1], whole[1])  # no protocol given: whole
    assert (tiled[1]["PSNR (dB)"] - whole[1]["PSNR (dB)"]).to_numpy() == pytest.approx(5.0)
    assert list(tiled[1]["Δ PSNR (dB)"]) == list(whole[1]["Δ PSNR (dB)"])  # both runs shifted alike
    psnr_figure, heatmap = tiled[6], tiled[9]
    assert "protocol tiled" in psnr_figure.layout.title.text and "protocol tiled" in heatmap.layout.title.text
    assert list(psnr_figure.data[0].y) == pytest.approx(list(whole[6].data[0].y + 5.0))
    assert "`whole`" in whole[5] and "`tiled`" not in whole[5]  # the how-measured text names one protocol
    assert "protocol tiled" in Path(tiled[4]).read_text()  # the export says which statistics it holds


def test_missing_and_malformed_csv_give_a_message_not_a_crash(results, store):
    (results / "ablation.csv").unlink()
    out = ablation_tab.render(store, results / "ablation.csv", "denoise", "25", "norm", ["x"], [0], "x")
    assert "does not exist" in out[0] and "python -m hinet.sweep" in out[0]
    (results / "ablation.csv").write_text("run,variant\nr,v\n")
    out = ablation_tab.render(store, results / "ablation.csv", "denoise", "25", "norm", ["x"], [0], "x")
    assert "cannot be used" in out[0] and "lacks the columns" in out[0]
    (results / "ablation.csv").write_bytes(b"\x00\xff\xfe garbage")
    ablation_tab._read_cached.cache_clear()
    assert ablation_tab.load_table(results / "ablation.csv")[0] is None


def test_tab_builds_with_and_without_results(results, store):
    for present in (True, False):
        if not present:
            (results / "ablation.csv").unlink()
        with gr.Blocks() as demo:
            with gr.Tabs() as tabs:
                ctx = AppContext(tabs=tabs, store=store)
                with gr.Tab("Ablations", id="ablation"):
                    ablation_tab.build_tab(ctx)
        assert demo.fns
        (radio,) = [
            block
            for block in demo.blocks.values()
            if isinstance(block, gr.Radio) and block.label == views.PROTOCOL_LABEL
        ]
        assert radio.info == views.PROTOCOL_INFO
        if present:
            assert [value for _, value in radio.choices] == ["whole", "tiled", "local"] and radio.value == "whole"


def test_user_runs_lists_runs_dir(store, tmp_path):
    runs_dir = tmp_path / "user_runs" / "my_first"
    runs_dir.mkdir(parents=True)
    (runs_dir / "log.jsonl").write_text(json.dumps({"step": 5, "loss": 0.1, "val_psnr": 24.5, "wall": 3.0}) + "\n")
    note, table, figure, choice = ablation_tab.render_user_runs(store)
    assert table["run"].tolist() == ["my_first"] and table["best val PSNR (dB)"].item() == 24.5
    assert choice["choices"] == []  # no weights yet


def test_exports_are_written_once_and_the_folder_is_pruned(tmp_path, monkeypatch):
    import pandas as pd

    from app import ablation_tab

    monkeypatch.setattr(ablation_tab, "EXPORT_DIR", tmp_path)
    monkeypatch.setattr(ablation_tab, "EXPORT_KEEP", 4)
    frame = pd.DataFrame({"variant": ["hin"], "psnr": [28.5]})
    csv_path, md_path = ablation_tab._export(frame, "table", "ablation_denoise")
    inode = Path(csv_path).stat().st_ino
    again = ablation_tab._export(frame, "table", "ablation_denoise")
    assert again == (csv_path, md_path) and Path(csv_path).stat().st_ino == inode  # reused, not rewritten
    assert Path(md_path).read_text() == "table\n"
    for i in range(3):
        ablation_tab._export(frame, f"table {i}", "ablation_denoise")
    assert len(list(tmp_path.iterdir())) == 4  # the newest files only, and no temporary files


def test_the_tab_shows_the_patch_and_knob_answers_of_its_selection():
    from tests.test_results_table import patch_table

    table = patch_table({"hin": {"tiled": 3.0}, "hin_p128": {}, "bn": {}, "bn_p128": {}})
    text = views.answers_text(table, "denoise", "25", "patch", "tiled", None, None)
    assert "| hin_p128 (128 px, batch 2, lr 0.001) | hin (64 px, batch 8, lr 0.001) | `tiled` |" in text
    assert "**removes the need**" in text and "Each knob alone" not in text  # no half variants here
    only_64px = views.answers_text(table, "denoise", "25", "patch", "tiled", ["hin", "bn"], None)
    assert only_64px == ""  # nothing to answer without a larger-patch twin
