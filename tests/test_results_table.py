"""hinet.results_table and scripts/make_results_readme.py on small synthetic tables with known answers."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hinet import results_table as rt
from hinet.training_data import validation_id

ROOT = Path(__file__).resolve().parents[1]

BASE_KNOBS = dict(
    norm="half_instance",
    norm_ratio=0.5,
    hin_position_left=0,
    hin_position_right=3,
    norm_in_decoder=False,
    norm_affine=True,
    wf=16,
    depth=4,
    steps=100,
    lr=1e-3,
)

# variant -> (ablation, knob overrides, true PSNR effect vs HIN in dB)
SYNTHETIC_VARIANTS = {
    "small_hin": ("norm", {}, 0.0),
    "small_batch": ("norm", dict(norm="batch", norm_ratio=None), -1.0),
    "small_layer": ("norm", dict(norm="layer", norm_ratio=None), -0.5),
    "small_instance": ("norm", dict(norm="instance", norm_ratio=None), -0.3),
    "small_none": ("norm", dict(norm="none", norm_ratio=None), -0.7),
    "small_hin_shallow": ("placement", dict(hin_position_right=1), -0.4),
    "small_hin_encdec": ("placement", dict(norm_in_decoder=True), -0.2),
}


def row(variant, seed, image, psnr, ssim=0.8, ablation="norm", run=None, protocol="whole", **knobs):
    values = dict(BASE_KNOBS, **knobs)
    return dict(
        run=run or f"{variant}_s{seed}",
        ablation=ablation,
        variant=variant,
        task="denoise",
        level="25",
        seed=seed,
        **values,
        train_seconds=60.0 + seed,
        params=1000 + len(variant),
        macs=2e9,
        latency_ms=10.0,
        device="cpu",
        protocol=protocol,
        image=image,
        psnr=psnr,
        ssim=ssim,
    )


def synthetic_table(seeds=(0, 1, 2), images=("a", "b", "c", "d"), noise=0.05, rng_seed=1) -> pd.DataFrame:
    """Every variant = 30 dB + image offset + seed offset + its true effect + small noise."""
    rng = np.random.default_rng(rng_seed)
    image_offset = {img: 2.0 * i for i, img in enumerate(images)}
    rows = []
    for variant, (ablation, knobs, effect) in SYNTHETIC_VARIANTS.items():
        for seed in seeds:
            for image in images:
                psnr = 30 + image_offset[image] + 0.3 * seed + effect + rng.normal(0, noise)
                rows.append(row(variant, seed, image, psnr, 0.8 + effect / 100, ablation=ablation, **knobs))
    # the HIN baseline is shared by both ablations, as a sweep that reuses its runs would write it
    placement_hin = [dict(r, ablation="placement") for r in rows if r["variant"] == "small_hin"]
    return pd.DataFrame(rows + placement_hin)


def handmade_table() -> pd.DataFrame:
    """Two variants, two seeds, two images, exact numbers."""
    return rt.validate_ablation_table(
        pd.DataFrame(
            [
                row("A", 0, "x", 30.0),
                row("A", 0, "y", 32.0),
                row("A", 1, "x", 31.0),
                row("A", 1, "y", 33.0),
                row("B", 0, "x", 29.0, norm="batch"),
                row("B", 0, "y", 31.5, norm="batch"),
                row("B", 1, "x", 30.5, norm="batch"),
                row("B", 1, "y", 32.0, norm="batch"),
            ]
        )
    )


def test_summary_mean_std_and_paired_delta_are_exact():
    summary = rt.summarize(handmade_table(), baseline="A").set_index("variant")
    assert summary.loc["A", "psnr_mean"] == pytest.approx(31.5)
    assert summary.loc["A", "psnr_std"] == pytest.approx(math.sqrt(0.5))  # seed means 31 and 32
    assert summary.loc["B", "psnr_mean"] == pytest.approx(30.75)
    assert summary.loc["B", "psnr_std"] == pytest.approx(math.sqrt(0.5))  # seed means 30.25 and 31.25
    assert summary.loc["B", "delta_psnr"] == pytest.approx(-0.75)  # pairs: -1, -0.5, -0.5, -1
    assert summary.loc["B", "n_pairs"] == 4
    assert summary.loc["A", "delta_psnr"] == 0.0
    low, high = summary.loc["B", ["delta_psnr_low", "delta_psnr_high"]]
    assert -1.0 <= low <= -0.75 <= high <= -0.5


def test_paired_differences_match_on_seed_and_image_only():
    table = handmade_table()
    table = table[~((table["variant"] == "B") & (table["seed"] == 1) & (table["image"] == "y"))]
    diffs = rt.paired_differences(table, "B", "A")
    assert sorted(diffs["diff"]) == [-1.0, -0.5, -0.5]


def seed_image_diffs(seed_offsets, image_deviations) -> pd.DataFrame:
    """Paired differences = the seed's offset + the image's deviation (the same image spread in every seed)."""
    return pd.DataFrame(
        [
            dict(seed=seed, image=f"i{k}", diff=offset + deviation)
            for seed, offset in enumerate(seed_offsets)
            for k, deviation in enumerate(image_deviations)
        ]
    )


def test_hierarchical_interval_is_wider_when_seeds_disagree():
    image_spread = [-0.2, -0.1, 0.0, 0.1, 0.2, 0.05, -0.05, 0.0]
    agree = seed_image_diffs([0.3, 0.3, 0.3, 0.3], image_spread)
    disagree = seed_image_diffs([0.9, 0.5, 0.1, -0.3], image_spread)  # same mean difference, 0.3
    assert agree["diff"].mean() == pytest.approx(disagree["diff"].mean())
    low_a, high_a = rt.hierarchical_bootstrap_ci(agree)
    low_d, high_d = rt.hierarchical_bootstrap_ci(disagree)
    assert low_a < 0.3 < high_a and low_d < 0.3 < high_d
    assert high_d - low_d > 3 * (high_a - low_a)
    assert low_d < 0 < low_a  # only the seeds that agree make the difference significant
    assert rt.hierarchical_bootstrap_ci(disagree) == (low_d, high_d)  # fixed generator seed: reproducible
    assert rt.hierarchical_bootstrap_ci(disagree, seed=1) != (low_d, high_d)


def test_hierarchical_interval_shrinks_with_more_seeds_and_needs_two_pairs():
    rng = np.random.default_rng(3)
    few = seed_image_diffs(-0.4 + rng.normal(0, 0.3, 3), rng.normal(0, 0.2, 6))
    many = seed_image_diffs(-0.4 + rng.normal(0, 0.3, 40), rng.normal(0, 0.2, 6))
    low_f, high_f = rt.hierarchical_bootstrap_ci(few)
    low_m, high_m = rt.hierarchical_bootstrap_ci(many)
    assert low_m < -0.4 < high_m
    assert high_m - low_m < 0.6 * (high_f - low_f)
    assert all(math.isnan(v) for v in rt.hierarchical_bootstrap_ci(seed_image_diffs([0.1], [0.0])))
    # one seed: only images are resampled, so the interval is the image spread's
    low_1, high_1 = rt.hierarchical_bootstrap_ci(seed_image_diffs([0.5], [-0.1, 0.1, 0.0, 0.05]))
    assert 0.4 <= low_1 < 0.5 < high_1 <= 0.6


def test_hierarchical_interval_resamples_each_seed_with_its_own_images():
    """A seed that lost an image still draws among its own images only (never another seed's)."""
    diffs = seed_image_diffs([1.0, 2.0], [0.0, 0.0, 0.0])
    diffs = diffs[~((diffs["seed"] == 1) & (diffs["image"] == "i2"))]
    low, high = rt.hierarchical_bootstrap_ci(diffs)
    assert low == pytest.approx(1.0) and high == pytest.approx(2.0)  # only seed-level values can appear


def test_per_seed_delta_values_are_the_seeds_image_means():
    """B - A per (seed, image) is known; each seed's Δ is the mean over its images."""
    gaps = {0: (0.50, 0.32), 1: (0.20, 0.04), 2: (-0.10, 0.00)}  # seed means +0.41, +0.12, -0.05
    rows = []
    for seed, (gap_x, gap_y) in gaps.items():
        for image, base, gap in (("x", 30.0 + seed, gap_x), ("y", 25.0 - seed, gap_y)):
            rows += [row("A", seed, image, base), row("B", seed, image, base + gap, norm="batch")]
    table = rt.validate_ablation_table(pd.DataFrame(rows))
    delta = rt.paired_delta(table, "B", "A")
    assert list(delta.per_seed) == [0, 1, 2]
    assert [delta.per_seed[s] for s in (0, 1, 2)] == pytest.approx([0.41, 0.12, -0.05])
    assert delta.mean == pytest.approx((0.41 + 0.12 - 0.05) / 3) and delta.n_pairs == 6 and delta.n_seeds == 3
    summary = rt.summarize(table, "A").set_index("variant")
    assert summary.loc["B", "delta_psnr_per_seed"] == delta.per_seed
    assert rt.format_seed_deltas(delta.per_seed) == "+0.41 / +0.12 / -0.05"
    assert rt.format_seed_deltas({0: 0.41, 2: -0.05}, seeds=[0, 1, 2]) == "+0.41 / n/a / -0.05"
    shown = rt.display_table(summary.reset_index(), "A").set_index("variant")
    assert shown.loc["B", "Δ per seed (seeds 0 / 1 / 2)"] == "+0.41 / +0.12 / -0.05"
    assert "| +0.41 / +0.12 / -0.05 |" in rt.markdown_summary(summary.reset_index(), "A")


def test_one_seed_is_said_not_hidden():
    table = rt.select(handmade_table(), seeds=[0])
    summary = rt.summarize(table, "A")
    assert summary.set_index("variant").loc["B", "n_paired_seeds"] == 1
    assert "(1 seed: image spread only)" in rt.markdown_summary(summary, "A")
    assert "(1 seed: image spread only)" in rt.display_table(summary, "A")["Δ 95% CI"].iloc[1]


def test_default_baseline_is_the_hin_variant_and_summary_recovers_effects():
    table = rt.select(rt.validate_ablation_table(synthetic_table()), ablation="norm")
    baseline = rt.default_baseline(table)
    assert baseline == "small_hin"
    summary = rt.summarize(table, baseline).set_index("variant")
    for variant in ("small_batch", "small_layer", "small_instance", "small_none"):
        effect = SYNTHETIC_VARIANTS[variant][2]
        assert summary.loc[variant, "delta_psnr"] == pytest.approx(effect, abs=0.05)
        low, high = summary.loc[variant, ["delta_psnr_low", "delta_psnr_high"]]
        assert low < summary.loc[variant, "delta_psnr"] < high < 0  # every effect is far from zero
        assert high - low < 0.15  # noise sd 0.05 per pair, 3 seeds x 4 images
    assert summary.loc["small_hin", "psnr_std"] == pytest.approx(0.3, abs=0.05)  # seed offsets 0, .3, .6


def test_config_differences_show_only_changed_knobs():
    table = rt.select(rt.validate_ablation_table(synthetic_table()), ablation="placement")
    diff = rt.config_differences(table, "small_hin").set_index("variant")
    assert list(diff.columns) == ["role", "hin_position_right", "norm_in_decoder"]
    assert diff.loc["small_hin", "role"] == "baseline"
    assert diff.loc["small_hin", "hin_position_right"] == "3"
    assert diff.loc["small_hin_shallow", "hin_position_right"] == "1"
    assert diff.loc["small_hin_shallow", "norm_in_decoder"] == ""
    assert diff.loc["small_hin_encdec", "norm_in_decoder"] == "True"
    full = rt.config_differences(table, "small_hin", only_differing=False)
    assert set(rt.KNOB_COLUMNS) <= set(full.columns)


def test_per_image_delta_and_pareto_front():
    table = rt.validate_ablation_table(synthetic_table())
    heat = rt.per_image_delta(rt.select(table, ablation="norm"), "small_hin")
    assert list(heat.index) == ["a", "b", "c", "d"]
    assert "small_hin" not in heat.columns
    assert heat["small_batch"].mean() == pytest.approx(-1.0, abs=0.05)
    mask = rt.pareto_front([1, 2, 3, 2], [10, 12, 11, 12.5])
    assert mask.tolist() == [True, False, False, True]


def test_validation_curves_spread_across_seeds():
    logs = pd.DataFrame(
        {
            "run": ["r0", "r0", "r1", "r1", "r1"],
            "step": [10, 20, 10, 20, 25],
            "val_psnr": [20.0, 22.0, 21.0, 25.0, np.nan],
        }
    )
    curves = rt.validation_curves(logs, {"r0": "v", "r1": "v"}).set_index("step")
    assert curves.loc[10, "mean"] == pytest.approx(20.5)
    assert curves.loc[20, "min"] == 22.0 and curves.loc[20, "max"] == 25.0
    assert curves.loc[20, "n"] == 2 and 25 not in curves.index


def test_run_logs_are_read_from_jsonl(tmp_path):
    run = tmp_path / "r0"
    run.mkdir()
    lines = [{"step": 10, "loss": 0.1, "lr": 1e-3}, {"step": 20, "loss": 0.05, "lr": 1e-3, "val_psnr": 25.0}]
    (run / "log.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    logs = rt.read_run_logs(tmp_path, ["r0", "missing"])
    assert logs["step"].tolist() == [10, 20] and logs["val_psnr"].iloc[1] == 25.0
    (run / "log.jsonl").write_text("{not json\n")
    with pytest.raises(rt.ResultsError, match="line 1 is not JSON"):
        rt.read_run_log(run / "log.jsonl")


def test_malformed_csv_gives_clear_errors(tmp_path):
    with pytest.raises(rt.ResultsError, match="does not exist"):
        rt.read_ablation_csv(tmp_path / "absent.csv")
    missing = tmp_path / "missing.csv"
    synthetic_table().drop(columns=["psnr", "macs"]).to_csv(missing, index=False)
    with pytest.raises(rt.ResultsError, match="lacks the columns macs, psnr"):
        rt.read_ablation_csv(missing)
    garbled = tmp_path / "garbled.csv"
    table = synthetic_table()
    table["psnr"] = table["psnr"].astype(object)
    table.loc[3, "psnr"] = "oops"
    table.to_csv(garbled, index=False)
    with pytest.raises(rt.ResultsError, match="'psnr' has a value that is not a number in data row 4"):
        rt.read_ablation_csv(garbled)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b'a,b\n"unterminated\n')
    with pytest.raises(rt.ResultsError):
        rt.read_ablation_csv(binary)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(rt.ResultsError, match="not a readable CSV"):
        rt.read_ablation_csv(empty)


def test_paper_claims_are_computed_from_the_numbers():
    table = rt.validate_ablation_table(synthetic_table())
    checks = {c.claim: c for c in rt.check_paper_claims(table)}
    verdicts = [c.verdict for c in checks.values()]
    assert verdicts == ["reproduces", "reproduces", "reproduces", "reproduces"], checks
    # flip the data: batch norm now the best -> claims 1 and 2 must fail
    flipped = table.copy()
    flipped.loc[flipped["variant"] == "small_batch", "psnr"] += 3.0
    checks = rt.check_paper_claims(flipped)
    assert checks[0].verdict == "does not reproduce"
    assert checks[1].verdict == "does not reproduce"
    assert "small_batch" in checks[0].evidence
    # without the batch variant the BN claim cannot be tested
    no_bn = table[table["variant"] != "small_batch"]
    assert rt.check_paper_claims(no_bn)[1].verdict == "not tested"


def test_claims_ignore_a_renamed_copy_of_the_baseline_and_read_ratio_one_as_instance_norm():
    """Another grid's copy of the HIN model (same knobs) is not a placement variant, and HIN applied to
    every channel (ratio 1.0) is instance norm."""
    table = synthetic_table()
    copy = table[(table["variant"] == "small_hin") & (table["ablation"] == "norm")].assign(
        variant="r0.5", ablation="ratio", run=lambda t: "ratio_" + t["run"]
    )
    full = table[table["variant"] == "small_instance"].assign(
        variant="r1.0", ablation="ratio", norm="half_instance", norm_ratio=1.0, run=lambda t: "ratio_" + t["run"]
    )
    only_ratio_instance = pd.concat([table[table["variant"] != "small_instance"], copy, full])
    checks = rt.check_paper_claims(rt.validate_ablation_table(only_ratio_instance))
    assert "r0.5" not in checks[3].evidence and checks[3].verdict == "reproduces"
    assert checks[2].verdict == "reproduces" and "r1.0" in checks[2].evidence


def with_protocols(table: pd.DataFrame, offsets: dict[str, float]) -> pd.DataFrame:
    """The table once per protocol, every PSNR shifted by that protocol's offset (dB)."""
    return pd.concat(
        [table.assign(protocol=protocol, psnr=table["psnr"] + offset) for protocol, offset in offsets.items()],
        ignore_index=True,
    )


def test_ablation_columns_place_lr_after_steps_and_protocol_before_image():
    columns = list(rt.ABLATION_COLUMNS)
    assert columns[columns.index("steps") + 1] == "lr"
    assert columns[columns.index("image") - 1] == "protocol"
    assert rt.REQUIRED_COLUMNS == rt.ABLATION_COLUMNS
    assert set(rt.ADDED_COLUMNS) == {"lr", "train_patch", "train_batch", "protocol", "train_device", "precision"}
    assert rt.DEFAULT_PROTOCOL in rt.STATS_PROTOCOLS


def patch_table(gains: dict[str, dict[str, float]], seeds=(0, 1, 2), noise=None) -> pd.DataFrame:
    """Variants (name -> {protocol: gain over whole in dB, or a tuple of one per seed}) of HIN or BN at 64 px
    (batch 8) or, named *_p128, 128 px (batch 2); each image and seed has its own whole-image score, each
    protocol its noise (0.05 dB, or `noise[variant]`)."""
    rng = np.random.default_rng(3)
    rows = []
    for variant, gain in gains.items():
        knobs = dict(norm="batch", norm_ratio=None) if variant.startswith("bn") else {}
        size = (
            dict(train_patch=128, train_batch=2) if variant.endswith("_p128") else dict(train_patch=64, train_batch=8)
        )
        for seed in seeds:
            for index, image in enumerate("abcd"):
                whole = 28.0 + 1.5 * index + 0.4 * seed
                for protocol in ("whole", "tiled", "local"):
                    shift = gain.get(protocol, 0.0)
                    shift = shift[seed] if isinstance(shift, tuple) else shift  # a gain per seed
                    psnr = whole + shift + rng.normal(0, (noise or {}).get(variant, 0.05))
                    rows.append(row(variant, seed, image, psnr, protocol=protocol, ablation="patch", **knobs, **size))
    return rt.validate_ablation_table(pd.DataFrame(rows))


def test_patch_answers_say_whether_larger_patches_remove_the_need_for_tiled_scoring():
    table = patch_table(
        {
            "hin": {"tiled": 3.0, "local": -2.0},
            "hin_p128": {"tiled": 0.0, "local": 0.0},
            "bn": {"tiled": -0.3},
            "bn_p128": {"tiled": 1.0},
        }
    )
    verdicts = {(a.larger, a.smaller, a.protocol): a.verdict for a in rt.patch_answers(table)}
    assert verdicts == {
        ("hin_p128", "hin", "tiled"): rt.REMOVES_THE_NEED,
        ("hin_p128", "hin", "local"): rt.NO_NEED,
        ("bn_p128", "bn", "tiled"): rt.HELPS_ONLY_LARGER,
        ("bn_p128", "bn", "local"): rt.NO_NEED,
    }
    answer = next(a for a in rt.patch_answers(table) if a.larger == "hin_p128" and a.protocol == "tiled")
    assert answer.smaller_gain.mean == pytest.approx(3.0, abs=0.05) and answer.smaller_gain.low > 2.5
    assert answer.larger_gain.low < 0 < answer.larger_gain.high and answer.larger_gain.n_seeds == 3
    assert answer.change.mean == pytest.approx(-3.0, abs=0.1) and answer.change.high < -2.5
    rows = rt.patch_rows(rt.patch_answers(table), table)
    assert rows[0][:3] == ["hin_p128 (128 px, batch 2, lr 0.001)", "hin (64 px, batch 8, lr 0.001)", "`tiled`"]
    # the norm claims compare variants trained like the baseline: bn_p128 is not the batch-norm variant
    claims = rt.check_paper_claims(table, protocol="whole")
    assert "bn − hin" in claims[0].evidence and "bn_p128" not in claims[0].evidence


@pytest.mark.parametrize(
    "smaller, larger, verdict",
    [
        (3.0, 2.0, rt.STILL_NEEDED),  # smaller, yet still a significant gain
        (0.3, (1.5, -0.9, 0.3), rt.GAINS_NOT_APART),  # seeds disagree: no significant gain, nor a clear drop
        (0.0, 0.0, rt.NO_NEED),
    ],
)
def test_a_patch_verdict_weighs_both_gains_and_their_change(smaller, larger, verdict):
    table = patch_table({"hin": {"tiled": smaller}, "hin_p128": {"tiled": larger}})
    (answer,) = [a for a in rt.patch_answers(table) if a.protocol == "tiled"]
    assert answer.verdict == verdict, answer


def test_an_unrecorded_training_patch_matches_any_and_reads_unrecorded():
    table = rt.select(rt.validate_ablation_table(synthetic_table()), ablation="norm")  # an older table
    assert table["train_patch"].isna().all()
    hin = table["variant"] == "small_hin"  # only the baseline's runs recorded their patch and batch
    mixed = table.assign(train_patch=np.where(hin, 64.0, np.nan), train_batch=np.where(hin, 8.0, np.nan))
    claims = rt.check_paper_claims(mixed)
    assert claims[0].verdict == "reproduces" and "small_batch − small_hin" in claims[0].evidence
    shown = rt.config_differences(mixed, "small_hin", only_differing=False).set_index("variant")
    assert shown.loc["small_batch", "train_patch"] == rt.UNRECORDED and shown.loc["small_hin", "train_patch"] == "64"


def test_a_patch_answer_on_one_seed_or_one_protocol_is_not_a_verdict():
    one_seed = patch_table({"hin": {"tiled": 3.0}, "hin_p128": {}}, seeds=(0,))
    assert {a.verdict for a in rt.patch_answers(one_seed)} == {rt.INCONCLUSIVE_ONE_SEED}
    whole_only = one_seed[one_seed["protocol"] == "whole"]
    assert rt.patch_answers(whole_only) == []  # no other protocol to ask about
    no_tiled_twin = one_seed[~((one_seed["variant"] == "hin") & (one_seed["protocol"] == "tiled"))]
    assert {a.verdict for a in rt.patch_answers(no_tiled_twin) if a.protocol == "tiled"} == {"not tested"}


def test_knob_separation_answers_half_or_full_and_which_norm_apart():
    effects = {  # variant -> (norm, ratio, true PSNR effect vs HIN)
        "hin": ("half_instance", 0.5, 0.0),
        "instance": ("instance", None, -0.5),
        "batch": ("batch", None, -2.0),
        "half_batch": ("batch", 0.5, -1.0),
        "hin_r0.25": ("half_instance", 0.25, 0.0),
        "shallow": ("half_instance", 0.5, -0.3),  # another placement: not a norm comparison
    }
    rng = np.random.default_rng(5)
    rows = [
        row(
            v,
            seed,
            image,
            30 + i + 0.3 * seed + effect + rng.normal(0, 0.05),
            norm=norm,
            norm_ratio=ratio,
            **(dict(hin_position_right=1) if v == "shallow" else {}),
        )
        for v, (norm, ratio, effect) in effects.items()
        for seed in (0, 1, 2)
        for i, image in enumerate("abcd")
    ]
    comparisons = rt.knob_separation(rt.validate_ablation_table(pd.DataFrame(rows)))
    found = {(c.question, c.variant, c.reference): (round(c.delta.mean, 1), c.outcome) for c in comparisons}
    assert found == {
        (rt.HALF_OR_FULL, "hin", "instance"): (0.5, "above"),
        (rt.HALF_OR_FULL, "half_batch", "batch"): (1.0, "above"),
        (rt.HALF_OR_FULL, "hin_r0.25", "instance"): (0.5, "above"),
        (rt.WHICH_NORM, "half_batch", "hin"): (-1.0, "below"),
    }
    cells = rt.knob_rows(comparisons, rt.validate_ablation_table(pd.DataFrame(rows)))[1]
    assert cells[:2] == [rt.HALF_OR_FULL, "half_batch − batch"] and cells[-1] == "significant"


def test_protocol_gain_pairs_one_runs_scores_of_the_same_image():
    table = with_protocols(rt.validate_ablation_table(synthetic_table()), {"whole": 0.0, "tiled": 0.7})
    gain = rt.protocol_gain(table, "small_batch", "tiled")
    assert gain.mean == pytest.approx(0.7) and gain.low == pytest.approx(0.7) and gain.n_pairs == 12
    assert rt.protocol_gain(table, "small_batch", "whole").mean == 0.0
    assert math.isnan(rt.protocol_gain(table, "small_batch", "local").mean)


def test_old_csv_without_protocol_and_lr_reads_as_whole(tmp_path):
    old = tmp_path / "ablation.csv"
    synthetic_table().drop(columns=["protocol", "lr"]).to_csv(old, index=False)
    table = rt.read_ablation_csv(old)
    assert tuple(table.columns) == rt.ABLATION_COLUMNS
    assert set(table["protocol"]) == {"whole"} and table["lr"].isna().all()
    summary = rt.summarize(rt.select(table, ablation="norm"), "small_hin")
    assert summary["protocol"].unique().tolist() == ["whole"]
    assert rt.config_differences(rt.select(table, ablation="norm"), "small_hin").columns.tolist() == [
        "variant",
        "role",
        "norm",
        "norm_ratio",
    ]  # an unknown lr is the same for every variant
    committed = ROOT / "results" / "ablation.csv"
    if committed.is_file():  # the table the app ships with, whichever columns it has
        assert set(rt.protocols(rt.read_ablation_csv(committed))) <= set(rt.STATS_PROTOCOLS)


def test_protocol_values_are_checked_and_key_the_rows():
    table = synthetic_table()
    both = rt.validate_ablation_table(with_protocols(table, {"whole": 0.0, "tiled": 1.0}))
    assert rt.protocols(both) == ["whole", "tiled"] and rt.preferred_protocol(both) == "whole"
    assert rt.preferred_protocol(rt.select(both, protocol="tiled")) == "tiled"
    with pytest.raises(rt.ResultsError, match="protocol 'tile' in data row 1 is not one of whole, tiled, local"):
        rt.validate_ablation_table(table.assign(protocol="tile"))
    with pytest.raises(rt.ResultsError, match="protocol 'whole' in ablation 'norm'"):
        rt.validate_ablation_table(pd.concat([table, table.iloc[:1]]))


def test_a_tiled_copy_does_not_change_the_whole_statistics():
    whole = rt.select(rt.validate_ablation_table(synthetic_table()), ablation="norm")
    both = rt.validate_ablation_table(with_protocols(synthetic_table(), {"whole": 0.0, "tiled": 5.0}))
    both = rt.select(both, ablation="norm")
    reference = rt.summarize(whole, "small_hin")
    pd.testing.assert_frame_equal(rt.summarize(rt.select(both, protocol="whole"), "small_hin"), reference)
    pd.testing.assert_frame_equal(rt.seed_means(rt.select(both, protocol="whole")), rt.seed_means(whole))
    pd.testing.assert_frame_equal(
        rt.per_image_delta(rt.select(both, protocol="whole"), "small_hin"), rt.per_image_delta(whole, "small_hin")
    )
    tiled = rt.summarize(rt.select(both, protocol="tiled"), "small_hin")
    assert (tiled["psnr_mean"] - reference["psnr_mean"]).to_numpy() == pytest.approx(5.0)
    assert tiled["delta_psnr"].to_numpy() == pytest.approx(reference["delta_psnr"].to_numpy())
    assert set(tiled["protocol"]) == {"tiled"}
    for needs_one in (
        lambda t: rt.seed_means(t),
        lambda t: rt.summarize(t, "small_hin"),
        lambda t: rt.paired_differences(t, "small_batch", "small_hin"),
        lambda t: rt.per_image_delta(t, "small_hin"),
        lambda t: rt.check_paper_claims(t),
    ):
        with pytest.raises(rt.ResultsError, match="needs rows of one test-time protocol .* got whole, tiled"):
            needs_one(both)
    means = rt.means_by_protocol(both)
    assert list(means.columns) == ["whole", "tiled"] and list(means.index) == rt.variant_order(both)
    assert (means["tiled"] - means["whole"]).to_numpy() == pytest.approx(5.0)
    assert means.loc["small_batch", "whole"] == pytest.approx(
        reference.set_index("variant").loc["small_batch", "psnr_mean"]
    )


def test_paper_claims_are_checked_per_protocol():
    table = synthetic_table()
    local = table.assign(protocol="local")
    local.loc[local["variant"] == "small_batch", "psnr"] += 3.0  # under local statistics batch norm wins
    both = rt.validate_ablation_table(pd.concat([table, local], ignore_index=True))
    claims = rt.claims_by_protocol(both)
    assert list(claims) == ["whole", "local"]
    assert [c.verdict for c in claims["whole"]] == ["reproduces"] * 4
    assert [c.protocol for c in claims["local"]] == ["local"] * 4
    assert claims["local"][0].verdict == claims["local"][1].verdict == "does not reproduce"
    assert rt.check_paper_claims(both, protocol="local") == claims["local"]
    assert rt.check_paper_claims(rt.select(both, protocol="whole")) == claims["whole"]  # one protocol: no argument
    assert "per seed" in claims["whole"][0].evidence
    with pytest.raises(rt.ResultsError, match="no rows for protocol 'tiled'"):
        rt.check_paper_claims(both, protocol="tiled")


def test_claims_compare_variants_trained_at_their_own_learning_rate():
    """The sweep's learning-rate search gives each variant its own rate: still a one-knob comparison,
    and the evidence names both rates."""
    table = synthetic_table()
    table.loc[table["variant"] == "small_batch", "lr"] = 2e-3
    checks = rt.check_paper_claims(rt.validate_ablation_table(table))
    assert [c.verdict for c in checks] == ["reproduces"] * 4
    assert "small_batch − small_hin: " in checks[0].evidence and "(lr 0.002 vs 0.001)" in checks[0].evidence
    assert "small_layer − small_hin: " in checks[0].evidence and "(lr" not in checks[0].evidence.split("; ")[1]
    diff = rt.config_differences(rt.select(rt.validate_ablation_table(table), ablation="norm"), "small_hin")
    assert "lr" in diff.columns  # the knob table shows the rates that differ


def test_markdown_summary_and_protocol():
    table = rt.select(rt.validate_ablation_table(synthetic_table()), ablation="norm")
    summary = rt.summarize(table, "small_hin")
    text = rt.markdown_summary(summary, "small_hin")
    assert text.count("\n") == len(summary) + 1
    assert "±" in text and "(baseline)" in text
    display = rt.display_table(summary, "small_hin")
    assert display["PSNR (dB)"].dtype.kind == "f"
    protocol = rt.protocol_text(table)
    assert "a, b, c, d" in protocol and "2000 resamples" in protocol and "denoise at level 25" in protocol
    assert "hierarchical bootstrap" in protocol and "at learning rate 0.001" in protocol
    assert "**Normalization statistics at test time:** `whole` (how normalization" in protocol


def _write_results(results: Path, table: pd.DataFrame) -> None:
    """An ablation.csv and one log per run, as the sweep leaves them."""
    (results / "runs").mkdir(parents=True, exist_ok=True)
    table.to_csv(results / "ablation.csv", index=False)
    for run in table["run"].unique():
        (results / "runs" / run).mkdir(exist_ok=True)
        seed = int(run.rsplit("_s", 1)[1])
        lines = [
            json.dumps(
                {"step": s, "loss": 1 / s, "lr": 1e-3, "val_psnr": 20 + s / 10 + seed, "val_ssim": 0.5, "wall": s}
            )
            for s in (10, 20, 30)
        ]
        (results / "runs" / run / "log.jsonl").write_text("\n".join(lines) + "\n")


def _make_readme(results: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_results_readme.py"), "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_make_results_readme_script(tmp_path):
    results = tmp_path / "results"
    table = with_protocols(synthetic_table(), {"whole": 0.0, "tiled": 5.0, "local": -1.0})
    _write_results(results, table)
    readme = results / "README.md"
    readme.write_text(
        "# Results\n\nHand-written intro.\n\n<!-- ablation:start -->\nold\n<!-- ablation:end -->\n\nTail.\n"
    )
    completed = _make_readme(results)
    assert completed.returncode == 0, completed.stderr
    text = readme.read_text()
    assert text.startswith("# Results\n\nHand-written intro.") and text.rstrip().endswith("Tail.")
    assert "old" not in text.split("<!-- ablation:start -->")[1].split("\n")[1]
    assert "Do the paper's claims reproduce here?" in text
    assert "small_batch" in text and "±" in text
    plots = sorted(p.name for p in (results / "plots").glob("*.png"))
    assert plots == ["denoise_25_norm_val_psnr.png", "denoise_25_placement_val_psnr.png"]
    assert "plots/denoise_25_norm_val_psnr.png" in text
    # one table per ablation and protocol, each with per-seed Δ
    norm = text.split("#### Ablation: norm")[1].split("#### Ablation: placement")[0]
    assert [line for line in norm.splitlines() if line.startswith("##### ")] == [
        "##### Protocol `whole`",
        "##### Protocol `tiled`",
        "##### Protocol `local`",
    ]
    assert norm.count("Δ PSNR per seed (seeds 0 / 1 / 2)") == 3
    whole = rt.select(rt.validate_ablation_table(table), ablation="norm", protocol="whole")
    hin = rt.summarize(whole, "small_hin").set_index("variant").loc["small_hin", "psnr_mean"]
    assert (
        f"small_hin: whole {hin:.2f}, tiled {hin + 5:.2f} (+5.00), local {hin - 1:.2f} (-1.00)"
        in text.split("How much the scores move between protocols: ")[1]
    )
    assert "the variants rank the same under every protocol" in text
    claims = text.split("Do the paper's claims reproduce here?")[1]
    assert claims.count("| Batch normalization hurts the most | norm |") == 3  # one row per protocol
    assert "| Batch normalization hurts the most | norm | tiled | **reproduces** |" in claims
    # a table written before the protocol column: one protocol, said so
    _write_results(results, synthetic_table().drop(columns=["protocol", "lr"]))
    assert _make_readme(results).returncode == 0
    text = readme.read_text()
    assert "Every row here uses the `whole` protocol" in text and "##### Protocol `tiled`" not in text
    # malformed input: one plain message, no traceback
    (results / "ablation.csv").write_text("run,psnr\nx,1\n")
    completed = _make_readme(results)
    assert completed.returncode != 0 and "lacks the columns" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_a_run_started_from_other_weights_ships_only_if_it_beats_them(tmp_path):
    from hinet import create_model
    from hinet.checkpoint import save_checkpoint

    results = tmp_path / "results"
    base = {"task": "denoise", "trained": "true", "steps": 5, "device": "cpu: test", "run": "cont"}
    base.update(init_weights="results/models/denoise.safetensors", init_source_run="results/defaults/denoise_40k")
    for run, best in (("worse", 34.5), ("better", 34.8)):
        metadata = {**base, "init_val_psnr": 34.69, "val_psnr": best}
        save_checkpoint(tmp_path / run / "model.safetensors", create_model("tiny_half_instance"), metadata=metadata)
    script = [sys.executable, str(ROOT / "scripts" / "ship_model.py"), "--results", str(results), "--no-choose-stats"]
    refused = subprocess.run([*script, str(tmp_path / "worse")], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "(34.50 dB) does not beat the 34.69 dB" in refused.stderr
    assert "denoise_40k" in refused.stderr and not (results / "models").exists()
    shipped = subprocess.run([*script, str(tmp_path / "better")], capture_output=True, text=True, timeout=120)
    assert shipped.returncode == 0, shipped.stderr
    assert (results / "models" / "denoise.safetensors").is_file()


def test_ship_model_names_and_models_section_show_default_and_variant(tmp_path):
    """A run shipped under --name sits beside the task's default; the generated section names both, with
    each file's norm, and judges each against the task's bar. A --name of another task is refused."""
    from hinet import create_model
    from hinet.checkpoint import read_metadata, save_checkpoint

    results, runs = tmp_path / "results", tmp_path / "runs"
    (results / "eval").mkdir(parents=True)
    for run, variant in (("bn", "tiny_batch"), ("hin", "tiny_half_instance")):
        save_checkpoint(
            runs / run / "model.safetensors",
            create_model(variant),
            metadata={
                "task": "jpeg",
                "trained": "true",
                "steps": 5,
                "train_seconds": 60.0,
                "device": "cpu: test",
                "run": run,
            },
        )
    script = str(ROOT / "scripts" / "ship_model.py")

    def ship(*args):
        return subprocess.run(
            [
                sys.executable,
                script,
                *args,
                "--results",
                str(results),
                "--no-choose-stats",
            ],  # tests/test_stats_choice.py
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert ship(str(runs / "bn")).returncode == 0
    assert ship(str(runs / "hin"), "--name", "jpeg_hin").returncode == 0
    refused = ship(str(runs / "hin"), "--name", "denoise_hin")
    assert refused.returncode == 2 and "must be 'jpeg' or start with 'jpeg_'" in refused.stderr
    assert sorted(p.name for p in (results / "models").iterdir()) == ["jpeg.safetensors", "jpeg_hin.safetensors"]
    assert read_metadata(results / "models" / "jpeg_hin.safetensors")["config"]["norm"] == "half_instance"
    for name, ours in (("jpeg", 27.5), ("jpeg_hin", 26.8)):
        (results / "eval" / f"{name}.csv").write_text(
            "image,method,psnr,ssim,seconds,task,strength,seed,protocol\n"
            f"mean,input,26.26,0.75,0.0,jpeg,quality=10,0,RGB\nmean,hinet,{ours},0.77,1.0,jpeg,quality=10,0,RGB\n"
        )
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_results_readme.py"), "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=120,
    )  # no ablation.csv here: only the models section
    text = (results / "README.md").read_text()
    default, variant = (
        text.split("### jpeg (jpeg, the default)")[1],
        text.split("### jpeg_hin (jpeg, a comparison variant)")[1],
    )
    assert "norm `batch`" in default.split("###")[0]
    assert "Bar: PSNR >= input + 1 dB at quality=10: reached" in default.split("###")[0]
    assert "Bar: PSNR >= input + 0.5 dB at quality=30: not evaluated at quality=30" in default.split("###")[0]
    assert "norm `half_instance`" in variant and "not reached: 0.46 dB short" in variant


def _readme_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_results_readme", ROOT / "scripts" / "make_results_readme.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_before_after_section_is_computed_from_both_tables():
    readme = _readme_module()
    before = rt.validate_ablation_table(
        pd.DataFrame(
            [row("hin", s, i, 30.0 + s) for s in (0, 1) for i in ("x", "y")]
            + [row("batch", s, i, 32.0 + s, norm="batch") for s in (0, 1) for i in ("x", "y")]
        )
    )
    after = with_protocols(before.assign(psnr=before["psnr"] - 1.0), {"whole": 0.0, "tiled": 3.0})
    after.loc[(after["variant"] == "batch") & (after["protocol"] == "tiled"), "psnr"] -= 3.0  # BN ignores tiling
    text = readme.rerun_section(before, rt.validate_ablation_table(after))
    assert "| variant | before (`whole`) | now `whole` | now `tiled` |" in text
    assert (
        "| batch | 32.50 (+2.00 [+2.00, +2.00]) | 31.50 (+2.00 [+2.00, +2.00]) | 31.50 (-1.00 [-1.00, -1.00]) |" in text
    )
    assert "seeds now: 0, 1" in text
    assert "| hin | 30.50 (reference) |" in text
    one_seed = rt.validate_ablation_table(after[after["seed"] == 0])
    text = readme.rerun_section(before, one_seed)  # one paired seed: the interval is image spread only
    assert "| batch | 32.50 (+2.00 [+2.00, +2.00]) | 31.00 (+2.00 [+2.00, +2.00] (1 seed: image spread only)) |" in text


def test_stats_section_checks_the_protocol_bars_on_the_data():
    readme = _readme_module()
    scores = pd.DataFrame(
        [
            {
                "model": m,
                "task": "denoise",
                "level": "sigma=25",
                "norm": norm,
                "train_patch": 64,
                "patch_assumed": True,
                "rule": rule,
                "image": i,
                "psnr": 30.0 + shift,
                "ssim": 0.8,
            }
            for m, norm, shifts in (
                ("models/denoise_hin", "half_instance", {"whole": 0.0, "tiled": 0.5, "local": -0.4}),
                ("models/denoise", "batch", {"whole": 0.0, "tiled": 0.02, "local": 0.0}),
            )
            for rule, shift in shifts.items()
            for i in ("x", "y")
        ]
    )
    deblur = [
        dict(row("hin", s, i, 24.0 + (2.5 if p == "tiled" else 0.0), protocol=p), task="deblur")
        for s in (0, 1)
        for i in ("x", "y")
        for p in rt.STATS_PROTOCOLS
    ]
    text = readme.stats_section(scores, pd.DataFrame(deblur))
    assert "| models/denoise_hin | half_instance | 64 (assumed) | 30.00 | 30.50 (+0.50) | 29.60 (-0.40) |" in text
    assert "| 300-step HIN deblur runs: tiled - whole >= 2 dB (seed mean) | +2.50 dB over 2 seed(s) | met |" in text
    assert "| shipped denoise_hin: tiled - whole >= 0.3 dB | +0.50 dB | met |" in text
    assert "largest spread 0.020 dB | met |" in text
    worse = readme.stats_section(
        scores.assign(psnr=np.where(scores["rule"] == "tiled", 30.1, scores["psnr"])), pd.DataFrame(deblur)
    )
    assert "| shipped denoise_hin: tiled - whole >= 0.3 dB | +0.10 dB | **not met** |" in worse


def _eval_rows(lines: str):
    import io

    import pandas as pd

    return pd.read_csv(io.StringIO("image,method,psnr,ssim,seconds,task,strength,seed,protocol\n" + lines))


def test_model_bars_are_judged_per_level_from_the_rows():
    readme = _readme_module()
    rows = _eval_rows(
        "a,input,26.0,0.7,0,jpeg,quality=10,0,RGB\na,hinet,27.5,0.8,1,jpeg,quality=10,0,RGB\n"
        "b,input,28.0,0.7,0,jpeg,quality=10,0,RGB\nb,hinet,27.9,0.8,1,jpeg,quality=10,0,RGB\n"
        "mean,input,27.0,0.7,0,jpeg,quality=10,0,RGB\nmean,hinet,27.7,0.8,1,jpeg,quality=10,0,RGB\n"
    )
    mean_bar, every_bar = (
        readme.Bar({"quality": 10}, "input", 1.0),
        readme.Bar({"quality": 10}, "input", every_image=True),
    )
    assert readme.judge_bar(mean_bar, "jpeg", rows).startswith("**not reached: 0.30 dB short**")
    # per image, with the margin: a +1.5 on a, -1.1 on b (27.9 vs 28.0 + 1.0)
    assert "reached on 1 of 2 images, worst b -1.10 dB from the bar" in readme.judge_bar(mean_bar, "jpeg", rows)
    assert "1 of 2 images below it (worst b, -0.10 dB)" in readme.judge_bar(every_bar, "jpeg", rows)
    assert readme.judge_bar(readme.Bar({"quality": 10}, "input", 0.7), "jpeg", rows).startswith("reached")
    assert readme.judge_bar(readme.Bar({"quality": 30}, "input"), "jpeg", rows).startswith("not evaluated")
    denoise = _eval_rows("mean,bm3d,30.0,0.8,40,denoise,sigma=25,0,RGB\nmean,hinet,30.1,0.8,5,denoise,sigma=25,0,RGB\n")
    verdict = readme.judge_bar(readme.Bar({"sigma": 25}, "bm3d", speedup=10.0), "denoise", denoise)
    assert verdict.startswith("reached; **speed bar not reached**") and "8.0x faster" in verdict


def test_a_learning_curve_is_flat_when_its_last_fifth_gains_nothing(tmp_path):
    import json

    readme = _readme_module()

    def log(values):
        path = tmp_path / "log.jsonl"
        lines = [{"step": 10 * (i + 1), "wall": 2.0 * (i + 1), "val_psnr": v} for i, v in enumerate(values)]
        lines.insert(1, {"step": 15, "wall": 3.0, "val_psnr": None})  # a training-only line
        path.write_text("\n".join(json.dumps(line) for line in lines))
        return readme.curve_verdict(path)

    climbing = log([20, 24, 26, 27, 27.5, 27.8, 28.0, 28.1, 28.2, 28.4])
    assert climbing["flattened"] is False and climbing["gain"] == pytest.approx(0.3)
    assert climbing["steps"] == 100 and climbing["wall"] == 20.0 and "still climbing" in climbing["verdict"]
    flat = log([20, 24, 26, 27, 28, 28.3, 28.4, 28.5, 28.5, 28.49])
    assert flat["flattened"] is True and "flattened" in flat["verdict"]
    assert readme.curve_verdict(tmp_path / "missing.jsonl") is None
    assert "too few" in log([20, 21])["verdict"]


PILOT_COLUMNS = ["candidate", "overrides", "seconds_per_step", "steps", "train_seconds", "best_val_psnr"]
PILOT_COLUMNS += ["best_step", "input_val_psnr", "device", "precision", "status"]


def _pilot_world(tmp_path, rows, budget_minutes):
    """A results folder whose pilot.csv holds `rows`, and the pilot file that names the budget."""
    results = tmp_path / "results"
    (results / "defaults" / "pilot").mkdir(parents=True)
    with open(results / "defaults" / "pilot.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([PILOT_COLUMNS, *rows])
    pilot = tmp_path / "pilot.yaml"
    pilot.write_text(f"base: base.yaml\ntask: denoise\nbudget_minutes: {budget_minutes}\ntie_db: 0.1\n")
    return results, pilot


def test_pilot_section_lists_every_candidate_plots_curves_and_waits_for_all(tmp_path):
    readme = _readme_module()
    done = ["a", '{"data.patch": 64}', "0.3", "200", "1200", "32.0", "200", "20.6", "cpu", "fp32", "done"]
    waiting = ["b", '{"data.patch": 128}', "0.6", "", "0", "", "", "", "", "", "not started"]
    results, pilot = _pilot_world(tmp_path, [done, waiting], budget_minutes=30)
    runs = results / "defaults" / "pilot"
    (runs / "pilot_a").mkdir(parents=True)
    log = [{"step": s, "wall": 6.0 * s, "val_psnr": 30.0 + s / 100} for s in (100, 200)]
    (runs / "pilot_a" / "log.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")
    (runs / "costs.json").write_text(json.dumps({"scale": 1.0, "reference": [], "timing_steps": 8}))
    (tmp_path / "base.yaml").write_text("data: {val_size: 192}\n")
    validation = {"source": "photos", "crop": 192, "images": ["photos/a#0"]}
    (runs / "pilot_a" / "data_sources.json").write_text(json.dumps({"validation": validation}))
    pairs = validation_id(validation)
    references = "task,level,validation,method,val_psnr\n"
    references += (
        f"denoise,sigma=25,{pairs},bm3d,34.46\ndenoise,sigma=25,other,bm3d,99\ndenoise,sigma=25,{pairs},input,20.66\n"
    )
    (results / "defaults" / "validation_baselines.csv").write_text(references)
    text = readme.pilot_section(results, tmp_path / "plots", results, pilot_file=pilot)
    assert "bm3d 34.46 dB, input 20.66 dB." in text  # measured on these very pairs, not on others
    assert '| a | `{"data.patch": 64}` | 0.3 | 200 | 20.0 | 32.0 |' in text  # no winner before all finished
    assert "| b |" in text and "1 of 2 candidates finished: no choice yet." in text
    assert "30 minutes" in text and "sigma 0-50" in text
    assert (tmp_path / "plots" / "defaults_pilot_validation.png").is_file()
    # the text names what each candidate saw: seeds and data from every run folder, not the first one's
    (runs / "pilot_a" / "config.yaml").write_text("seed: 3\n")
    (runs / "pilot_b").mkdir()
    (runs / "pilot_b" / "config.yaml").write_text("seed: 4\n")
    (runs / "pilot_b" / "data_sources.json").write_text(json.dumps({"area_share": {"photos": 1.0}}))
    text = readme.pilot_section(results, tmp_path / "plots", results, pilot_file=pilot)
    assert "a: seed 3; b: seed 4" in text and "b: photos 100% of the sampled area" in text
    (runs / "pilot_b" / "config.yaml").write_text("seed: 3\n")
    text = readme.pilot_section(results, tmp_path / "plots", results, pilot_file=pilot)
    assert "seed 3, the same for every candidate" in text


def test_the_pilot_winner_follows_the_tie_rule_once_every_candidate_finished(tmp_path):
    readme = _readme_module()
    cheap = ["cheap", "{}", "0.3", "200", "60", "32.00", "200", "20.6", "cpu", "fp32", "done"]
    wide = ["wide", "{}", "0.6", "100", "60", "32.05", "100", "20.6", "cpu", "fp32", "done"]
    results, pilot = _pilot_world(tmp_path, [cheap, wide], budget_minutes=1)
    text = readme.pilot_section(results, tmp_path / "plots", results, pilot_file=pilot)
    assert "| cheap | `{}` | 0.3 | 200 | 1.0 | **32.00** (winner) |" in text  # within 0.1 dB of the best
    assert "| wide | `{}` | 0.6 | 100 | 1.0 | 32.05 |" in text


def test_a_shipped_model_is_shown_and_judged_under_its_default_test_time_statistics():
    import io

    import pandas as pd

    readme = _readme_module()
    header = "image,method,stats,psnr,ssim,seconds,task,strength,seed,protocol\n"
    lines = "".join(
        f"mean,{method},{stats},{psnr},0.8,1,denoise,sigma=25,0,RGB\n"
        for method, stats, psnr in (
            ("input", "", 20.0),
            ("bm3d", "", 30.0),
            ("hinet", "whole", 29.0),
            ("hinet", "tiled", 30.5),
            ("hinet", "local", 29.5),
        )
    )
    rows = pd.read_csv(io.StringIO(header + lines))
    tiled = {"inference_stats": "tiled"}
    shown, sentence = readme.rows_under_default_stats(rows, tiled)
    psnr = dict(zip(shown["method"], shown["psnr"], strict=True))
    assert psnr == {"input": 20.0, "bm3d": 30.0, "hinet (whole)": 29.0, "hinet": 30.5, "hinet (local)": 29.5}
    assert "under its default, `tiled`" in sentence and "under local, whole" in sentence
    bar = readme.Bar({"sigma": 25}, "bm3d")
    assert readme.judge_bar(bar, "denoise", shown).startswith("reached")  # 30.5 (tiled) >= 30.0
    older = _eval_rows("mean,bm3d,30.0,0.8,40,denoise,sigma=25,0,RGB\nmean,hinet,29.0,0.8,5,denoise,sigma=25,0,RGB\n")
    shown, sentence = readme.rows_under_default_stats(older, tiled)  # written before protocols: whole only
    assert list(shown["method"]) == ["bm3d", "hinet"] and "has none under its default `tiled`" in sentence
    assert readme.judge_bar(bar, "denoise", shown).startswith("**not reached")


def test_learning_rate_choices_at_the_edge_of_their_search_range_are_marked(tmp_path):
    readme = _readme_module()
    header = "ablation,task,variant,lr,steps,seed,run,status,best_val_psnr,best_step,chosen\n"
    rows = [
        ("hin", 0.001, 30.0, False),
        ("hin", 0.003, 31.0, True),
        ("batch", 0.0003, 29.0, False),
        ("batch", 0.001, 29.5, True),
        ("batch", 0.003, 28.0, False),
    ]
    body = "".join(f"g,denoise,{v},{lr},300,0,r,finished,{psnr},300,{chosen}\n" for v, lr, psnr, chosen in rows)
    (tmp_path / "lr_search.csv").write_text(header + body)
    lines = readme.lr_choice_lines(tmp_path)
    assert lines[0] == (
        "- Learning rates of `g`, denoise (searched 0.0003, 0.001, 0.003 for 300 steps, best validation PSNR): "
        "hin 0.003 (top of the range); batch 0.001."
    )
    assert "edge of its range" in lines[1] and lines[-1] == ""
    assert readme.lr_choice_lines(tmp_path / "missing") == []


def test_long_runs_section_shows_progress_against_the_classical_methods_on_the_same_pairs(tmp_path):
    readme = _readme_module()
    results = tmp_path / "results"
    run = results / "defaults" / "denoise"
    run.mkdir(parents=True)
    segments = [
        {"from_step": 0, "device": "cpu: Xeon", "precision": "bf16 autocast"},
        {"from_step": 1000, "device": "cpu: EPYC", "precision": "fp32"},
    ]
    state = {"step": 1500, "train_seconds": 7200.0, "best": {"psnr": 32.5, "step": 1500}, "segments": segments}
    (run / "train_state.json").write_text(json.dumps(state))
    (run / "config.yaml").write_text("steps: 40000\n")
    log = [{"step": s, "wall": 4.8 * s, "val_psnr": 30.0 + s / 1000} for s in (500, 1000, 1500)]
    (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")
    validation = {"source": "photos", "crop": 192, "images": ["photos/a#0"]}
    (run / "data_sources.json").write_text(json.dumps({"validation": validation}))
    pairs = validation_id(validation)
    rows = f"task,level,validation,method,val_psnr\ndenoise,sigma=25,{pairs},bm3d,34.0\ndenoise,sigma=25,{pairs},input,20.0\n"
    (results / "defaults" / "validation_baselines.csv").write_text(rows)
    text = readme.long_runs_section(results, tmp_path / "plots", results, tmp_path / "configs")
    row = next(line for line in text.splitlines() if line.startswith("| denoise |"))
    assert row.startswith(
        "| denoise | 1500 / 40000 | n/a | 2.0 | 32.50 (step 1500) | -1.50 dB vs bm3d, +12.50 dB vs input | still"
    )
    assert "from step 0: Xeon, bf16 autocast; from step 1000: EPYC, fp32 | not yet |" in row
    assert (tmp_path / "plots" / "defaults_denoise_learning_curve.png").is_file()
    assert "No long run has started yet." in readme.long_runs_section(tmp_path / "empty", tmp_path / "p", results)

    init = {"init_weights": "results/models/denoise.safetensors", "init_steps": 39000, "init_sha256": "9a34e966" * 8}
    init["init_source_run"] = "results/defaults/denoise_40k"
    (run / "train_state.json").write_text(json.dumps({**state, "init": init}))
    log = [{"step": s, "wall": 4.8 * s, "val_psnr": 30.0 - s / 1000} for s in (500, 1000, 1500)]  # a dip
    (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")
    text = readme.long_runs_section(results, tmp_path / "plots", results, tmp_path / "configs")
    row = next(line for line in text.splitlines() if line.startswith("| denoise |"))
    assert "no gain over the last 20% of its steps so far (-1.000 dB) at 4% of its schedule: judged when it ends" in row

    weak = f"task,level,validation,method,val_psnr\ndenoise,sigma=25,{pairs},bm3d,19.0\ndenoise,sigma=25,{pairs},input,20.0\n"
    (results / "defaults" / "validation_baselines.csv").write_text(weak)
    text = readme.long_runs_section(results, tmp_path / "plots", results, tmp_path / "configs")
    row = next(line for line in text.splitlines() if line.startswith("| denoise |"))
    assert "+13.50 dB vs bm3d, +12.50 dB vs input (bm3d itself scores -1.00 dB vs input on these pairs)" in row
    assert row.startswith(
        "| denoise | 1500 / 40000 (after 39000 steps: from `results/models/denoise.safetensors`, trained as "
        "`results/defaults/denoise_40k`, sha256 9a34e9669a34...) |"
    )


def test_learning_curves_draw_the_input_only_when_it_is_near_the_curve():
    readme = _readme_module()
    references = {"input": 27.5, "richardson_lucy": 25.1}
    assert readme._drawn_references(references, lowest=27.8) == references  # deblur: just under the curve
    assert readme._drawn_references({"input": 20.7, "bm3d": 34.5}, lowest=32.0) == {"bm3d": 34.5}  # denoise
    assert readme._drawn_references(references) == {"richardson_lucy": 25.1}
