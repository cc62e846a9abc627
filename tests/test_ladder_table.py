"""The budget ladder's tables and verdicts (hinet.results_table) on synthetic rungs with known answers:
batch norm leads at the small budget, HIN at the large one, so the verdict must flip with the budget."""

import re

import numpy as np
import pandas as pd

from hinet import results_table as rt
from test_results_table import row

NORMS = {
    "hin": {},
    "batch": dict(norm="batch", norm_ratio=None),
    "layer": dict(norm="layer", norm_ratio=None),
    "instance": dict(norm="instance", norm_ratio=None),
    "none": dict(norm="none", norm_ratio=None),
}
# true PSNR effect vs HIN (dB) per budget: BN ahead early, every norm clearly behind HIN late
EFFECTS = {
    300: {"hin": 0.0, "batch": 1.5, "layer": -0.2, "instance": 0.1, "none": -0.5},
    3000: {"hin": 0.0, "batch": -1.0, "layer": -0.6, "instance": -0.4, "none": -0.8},
}


def ladder_table(effects=EFFECTS, seeds=(0, 1, 2), images=("a", "b", "c", "d"), protocols=("whole", "tiled")):
    rng = np.random.default_rng(0)
    rows = []
    for steps, by_variant in effects.items():
        ablation = f"norm{rt.format_steps(steps)}"
        for protocol in protocols:
            for variant, effect in by_variant.items():
                for seed in seeds:
                    for index, image in enumerate(images):
                        psnr = 28 + index + 0.2 * seed + effect + rng.normal(0, 0.05)
                        rows.append(
                            row(
                                variant,
                                seed,
                                image,
                                psnr,
                                ablation=ablation,
                                protocol=protocol,
                                run=f"{ablation}__{variant}__s{seed}",
                                **dict(NORMS[variant], steps=steps),
                            )
                        )
    # an ablation outside the ladder (same family prefix, no budget) is never part of it
    rows += [dict(r, ablation="norm") for r in rows if r["ablation"] == "norm300"]
    return rt.validate_ablation_table(pd.DataFrame(rows))


def test_ladder_rungs_are_found_by_budget():
    table = ladder_table()
    assert rt.ladder_ablations(table) == ["norm300", "norm3k"]
    assert [rt.format_steps(s) for s in (300, 1000, 3000, 10000, 1500)] == ["300", "1k", "3k", "10k", "1500"]


def test_budget_ladder_recovers_the_true_effects_per_budget_and_protocol():
    ladder = rt.budget_ladder(rt.select(ladder_table(), task="denoise"), n_resamples=300)
    assert set(ladder["protocol"]) == {"whole", "tiled"} and set(ladder["steps"]) == {300, 3000}
    for (steps, variant), effect in {(s, v): e for s, by in EFFECTS.items() for v, e in by.items()}.items():
        cells = ladder[(ladder["steps"] == steps) & (ladder["variant"] == variant)]
        assert len(cells) == 2 and np.allclose(cells["delta"], effect, atol=0.1)
        assert (cells["n_seeds"] == 3).all()
        if variant != "hin":
            assert ((cells["low"] <= effect + 0.1) & (cells["high"] >= effect - 0.1)).all()


def test_verdicts_flip_with_the_budget_and_follow_the_data():
    claims = rt.ladder_claims(ladder_table(), n_resamples=300)
    first = claims[claims["claim"] == rt._CLAIMS[0]].set_index(["steps", "protocol"])["verdict"]
    assert first[(300, "whole")] == "does not reproduce"  # batch is significantly ahead at 300 steps
    assert first[(3000, "whole")] == "reproduces"  # every norm significantly behind HIN at 3k
    bn_most = claims[claims["claim"] == rt._CLAIMS[1]].set_index(["steps", "protocol"])["verdict"]
    assert bn_most[(3000, "tiled")] == "reproduces" and bn_most[(300, "tiled")] == "does not reproduce"
    grid = rt.verdict_grid(claims)
    assert list(grid.columns) == ["claim", "protocol", "300", "3k"]
    assert grid.iloc[0].tolist() == [rt._CLAIMS[0], "whole", "does not reproduce", "reproduces"]

    # change the data: at 3k, layer norm now beats HIN, and the verdict must follow
    changed = {**EFFECTS, 3000: dict(EFFECTS[3000], layer=+0.8)}
    claims = rt.ladder_claims(ladder_table(changed), n_resamples=300)
    first = claims[claims["claim"] == rt._CLAIMS[0]].set_index(["steps", "protocol"])["verdict"]
    assert first[(3000, "whole")] == "does not reproduce"


def test_sentences_say_who_leads_at_each_budget():
    ladder = rt.budget_ladder(ladder_table(protocols=("whole",)), n_resamples=300)
    (sentence,) = rt.ladder_sentences(ladder)
    assert re.fullmatch(
        r"Under `whole` scoring: at 300 steps batch leads \(\+1\.[45]\d dB vs hin, significant; "
        r"3 paired seeds\); at 3k steps hin leads \(instance -0\.[34]\d dB, significant; 3 paired seeds\)\.",
        sentence,
    ), sentence


def test_a_single_seed_never_makes_a_verdict_or_a_lead_however_large_its_gap():
    """With one training seed the interval holds image spread only, so the same clear gaps that reproduce
    over 3 seeds are inconclusive over 1, and the sentence does not say "leads"."""
    table = ladder_table(seeds=(0,), protocols=("whole",))
    claims = rt.ladder_claims(table, n_resamples=300).set_index(["claim", "steps"])["verdict"]
    assert claims[(rt._CLAIMS[0], 3000)] == rt.INCONCLUSIVE_ONE_SEED == "inconclusive (1 seed)"
    assert claims[(rt._CLAIMS[1], 3000)] == rt.INCONCLUSIVE_ONE_SEED
    (sentence,) = rt.ladder_sentences(rt.budget_ladder(table, n_resamples=300))
    assert "leads" not in sentence and sentence.count("1 seed: cannot be significant") == 2, sentence
    assert "at 3k steps hin has the best mean (instance -0." in sentence
    assert rt.significance(0.5, 1.0, 1) == rt.ONE_SEED and rt.significance(0.5, 1.0, 2) == "above"
    assert rt.significance(-1.0, -0.5, 3) == "below" and rt.significance(-0.1, 0.5, 3) == "tie"


def test_runs_trained_on_two_machines_or_precisions_are_named_where_they_meet():
    table = ladder_table(protocols=("whole",))
    bf16 = table["variant"].isin(["hin", "none"]) & (table["ablation"] == "norm3k")
    table["train_device"] = np.where(bf16, "cpu: Xeon", "cpu: EPYC")
    table["precision"] = np.where(bf16, "bf16 autocast", "fp32")
    assert rt.training_setups(table) == {"EPYC, fp32": 24, "Xeon, bf16 autocast": 6}
    (note,) = rt.mixed_setup_notes(table)  # norm300 and the out-of-ladder copy trained one way only
    assert note.startswith("norm3k, denoise 25: batch, layer, instance (9 runs) on EPYC, fp32; ")
    assert "hin, none (6 runs) on Xeon, bf16 autocast." in note
    older = rt.validate_ablation_table(table.drop(columns=["train_device", "precision"]))
    assert set(older["precision"]) == {rt.UNRECORDED} and rt.mixed_setup_notes(older) == []


def test_ranking_vs_budget_figure_has_a_line_per_variant_and_a_panel_per_protocol():
    from app.ablation_views import ladder_figure, ladder_rows

    table = ladder_table()
    rows = ladder_rows(table, "denoise", "25")
    assert set(rows["ablation"]) == {"norm300", "norm3k"}  # "norm" (no budget) is not a rung
    ladder = rt.budget_ladder(rows, n_resamples=200)
    figure = ladder_figure(ladder)
    assert len(figure.data) == 5 * 2  # 5 variants x 2 protocols
    batch_whole = next(t for t in figure.data if t.name == "batch" and t.xaxis == "x")
    assert list(batch_whole.x) == [300, 3000]
    assert batch_whole.y[0] > 1.3 and batch_whole.y[1] < -0.8  # ahead early, behind late
    assert all(up >= 0 for up in batch_whole.error_y.array) and figure.layout.xaxis.type == "log"
    assert [t.showlegend for t in figure.data if t.name == "batch"] == [True, False]
    assert "No budget ladder" in ladder_figure(ladder.iloc[:0]).layout.annotations[0].text
    # the hover names the seeds Δ is paired over, beside the variant's own seed count
    assert "paired seed(s)" in batch_whole.hovertemplate and list(batch_whole.customdata[:, 2]) == [3, 3]
    fewer = rt.budget_ladder(rows[~((rows["variant"] == "hin") & (rows["seed"] == 0))], n_resamples=50)
    paired = fewer[(fewer["variant"] == "batch") & (fewer["protocol"] == "whole")]
    assert list(paired["n_seeds"]) == [3, 3] and list(paired["n_paired_seeds"]) == [2, 2]


def test_ladder_view_and_budget_picker():
    from app.ablation_views import ladder_budgets, ladder_view

    table = ladder_table()
    assert ladder_budgets(table, "denoise", "25") == [
        ("300 steps (norm300)", "norm300"),
        ("3k steps (norm3k)", "norm3k"),
    ]
    view = ladder_view(table, "denoise", "25", n_resamples=200)
    assert view["text"].startswith("- **Trained on:** machine unrecorded, precision unrecorded (30 runs)")
    assert "\n- Under `whole` scoring: at 300 steps batch leads" in view["text"]
    assert list(view["verdicts"].columns) == ["claim", "protocol", "300", "3k"]
    assert set(view["ladder"]["steps"]) == {"300", "3k"} and len(view["figure"].data) == 10
    empty = ladder_view(table, "deblur", "25")
    assert "No budget ladder" in empty["text"] and empty["verdicts"].empty


def test_the_readme_ladder_section_prints_the_computed_verdicts_and_follows_the_data(tmp_path):
    """scripts/make_results_readme.py's ladder section: the verdict grid, the sentences and the figure come
    from the table, so changing the data changes the published verdict."""
    from test_results_table import _readme_module

    readme = _readme_module()
    results, plots = tmp_path / "results", tmp_path / "results" / "plots"
    plots.mkdir(parents=True)

    def grid_row(text: str) -> str:
        return next(line for line in text.splitlines() if line.startswith(f"| {rt._CLAIMS[0]} | whole |"))

    text = readme.ladder_section(ladder_table(), results, plots, results)
    assert grid_row(text) == f"| {rt._CLAIMS[0]} | whole | does not reproduce | reproduces |"
    assert "at 300 steps batch leads" in text and "(plots/denoise_25_ladder.png)" in text
    assert (plots / "denoise_25_ladder.png").stat().st_size > 5_000
    changed = {**EFFECTS, 3000: dict(EFFECTS[3000], layer=+0.8)}  # layer norm now beats HIN at 3k
    text = readme.ladder_section(ladder_table(changed), results, plots, results)
    assert grid_row(text) == f"| {rt._CLAIMS[0]} | whole | does not reproduce | does not reproduce |"
