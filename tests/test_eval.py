"""The whole evaluation on a tiny random world model (the real Generator) through `patchworld eval --quick`:
every figure lands in metrics.json and report.md, pictures are written, trained seeds are refused."""

import json
import math
from dataclasses import asdict

import pytest
import torch

from simulator.checkpoint import save_checkpoint
from simulator.cli import main as cli_main
from simulator.eval.cli import parse_seeds
from simulator.eval.idm import IDM_PRESETS, InverseDynamics
from simulator.eval.pipeline import check_seeds
from simulator.eval.probes import PROBES
from simulator.eval.report import load_png
from simulator.models.dit import build_dit
from simulator.models.tokenizer import Tokenizer, preset

TRAIN_SEEDS = [0, 1, 2, 3]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("ckpt")
    Tokenizer(preset("tiny")).save(root / "world" / "tokenizer")
    dit = build_dit("tiny")
    save_checkpoint(root / "world", dit.state_dict(),
                    {"kind": "world_model", "model": dit.config_dict(), "tokenizer": "tokenizer",
                     "resolution": [64, 64], "train_seeds": TRAIN_SEEDS, "generator": {"steps": 2, "bf16": False}})
    InverseDynamics(IDM_PRESETS["tiny"]).save(root / "idm", heldout_accuracy={"action": 0.5})
    return root


@pytest.fixture(scope="module")
def report(checkpoints, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    rc = cli_main(["eval", "--checkpoint", str(checkpoints / "world"), "--seeds", "100-102", "--out", str(out),
                   "--quick", "--idm", str(checkpoints / "idm"), "--threads", "1"])
    assert rc == 0
    return out, json.loads((out / "metrics.json").read_text()), (out / "report.md").read_text()


def _finite(x) -> bool:
    if isinstance(x, list):  # a per-tick series
        return len(x) > 0 and all(map(_finite, x))
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_metrics_json_holds_every_figure(report):
    _, m, _ = report
    assert m["seeds"] == [100, 101, 102]
    for key in ("psnr", "ssim", "sharpness", "true_sharpness", "fd"):
        assert _finite(m["tokenizer"][key]), key
    for method in ("model", "copy-last", "copy-last-tokenizer", "copy-warped-last"):
        for key in ("psnr", "ssim", "sharpness", "fd"):
            assert _finite(m["teacher_forced"][method][key]), (method, key)
    kinds = m["teacher_forced"]["by_action"]  # every predicted frame in one kind; the model's error shared out
    assert sum(v["frames"] for v in kinds.values()) == m["teacher_forced"]["frames"]
    assert sum(v["model_error_share"] for v in kinds.values()) == pytest.approx(1.0)
    roll = m["rollout"]
    assert roll["horizons"] == list(range(1, 9)) and roll["episodes"] == 3
    for method in ("model", "copy-last", "copy-last-tokenizer", "tokenizer-reconstruction"):
        for key in ("psnr_mean", "psnr_p25", "psnr_p75", "ssim_mean", "sharpness_mean"):
            assert len(roll["methods"][method][key]) == 8 and all(map(_finite, roll["methods"][method][key]))
    assert all(_finite(band[name]) for band in roll["fd_bands"] for name in ("model", "copy-last"))
    for span in m["control"].values():
        assert set(span) == {"engine", "generated", "ratio"} and _finite(span["generated"]["action"])
    cam = m["camera"]["methods"]
    assert set(cam) == {"model", "copy-last", "tokenizer-reconstruction", "engine-blurred-4x"}
    assert [b["band"] for b in cam["model"]["bands"]] == [[1, 4], [5, 8]] and cam["model"]["all"]["band"] == [1, 8]
    for axis in ("yaw", "pitch"):
        assert _finite(cam["model"]["all"][axis]["slope"]) and cam["copy-last"]["all"][axis]["slope"] == 0.0, axis
        assert cam["model"]["all"][axis]["ticks"] == 3 * 8
    assert len(m["camera"]["shifts"]["model"]) == 3 and len(m["camera"]["shifts"]["model"][0]) == 8
    assert set(m["probes"]) == set(PROBES)
    for probe in m["probes"].values():
        assert all(map(_finite, probe["mean"].values()))
    stab = m["stability"]
    assert len(stab["series"]["model"]["sharpness"]) == 33 and stab["windows"]
    assert all(_finite(w["fd"]) for w in stab["windows"])
    assert set(stab["collapse_onset"]) == {"blur", "frozen", "colour_drift", "flat"}
    assert m["speed"]["frames_per_second"] > 0
    for key in ("generated_sharpness_ratio_min", "tokenizer_sharpness_ratio", "generated_fd_max_over_tokenizer_fd"):
        assert _finite(m["issue8"][key]), key
    assert m["issue8"]["generated_sharpness_ratio_max"] >= m["issue8"]["generated_sharpness_ratio_min"]
    behind = m["issue8"]["first_horizon_behind_copy_last"]  # consistent with the per-horizon figures
    model, copy = (m["rollout"]["methods"][k]["psnr_mean"] for k in ("model", "copy-last"))
    assert m["issue8"]["beats_copy_last_at_every_horizon"] == (behind is None) == all(a > b for a, b in zip(model, copy))
    if behind is not None:
        assert model[behind - 1] <= copy[behind - 1] and all(a > b for a, b in zip(model[:behind - 1], copy))


def test_report_markdown_and_pictures(report):
    out, m, md = report
    for heading in ("## 1. Tokenizer", "## 2. Fidelity", "## 3. Action following", "## 4. Consistency probes",
                    "## 5. Stability", "## 6. Speed", "## Issue 8 targets"):
        assert heading in md
    assert f"{m['teacher_forced']['model']['psnr']:.2f}" in md
    assert "### The camera without the IDM: image shift" in md
    for name in ("rollout_psnr", "rollout_ssim", "rollout_sharpness", "stability_colour", "stability_sharpness",
                 "stability_motion", "stability_fd", "sharpness", "camera_shift_scatter", "camera_slope",
                 *(f"probe_{p}" for p in PROBES)):
        assert f"({name}.png)" in md, name
        img = load_png(out / f"{name}.png")
        assert img.ndim == 3 and img.std() > 5, name  # something was drawn
    grid = load_png(out / "sharpness.png")
    assert grid.shape[0] > grid.shape[1]  # 2 episodes x (true, tokenizer, generated) rows, 2 horizon columns
    assert "(stability_frames.png)" in md
    long = load_png(out / "stability_frames.png")  # engine and model rows per long rollout, up to its last frame
    assert long.std() > 5 and long.shape[1] > long.shape[0]


def test_trained_seeds_are_refused(checkpoints, tmp_path):
    with pytest.raises(ValueError, match=r"seeds \[2, 3\] are in the checkpoint's train_seeds"):
        cli_main(["eval", "--checkpoint", str(checkpoints / "world"), "--seeds", "2-5", "--out", str(tmp_path),
                  "--quick", "--idm", "none"])
    check_seeds([10, 11], {"train_seeds": TRAIN_SEEDS})  # disjoint: accepted
    check_seeds([1], {})  # a checkpoint that lists no training seeds refuses nothing
    with pytest.raises(ValueError, match=r"seeds \[7\]"):
        check_seeds([7, 8], {"world_seeds": [5, 6, 7]})  # the key the world-model trainer writes


def test_parse_seeds():
    assert parse_seeds(["7", "10-12"]) == [7, 10, 11, 12]
    with pytest.raises(ValueError, match="neither an integer"):
        parse_seeds(["12-10"])
    with pytest.raises(ValueError, match="repeat"):
        parse_seeds(["1", "0-2"])


def test_eval_compare_tables_settings_with_their_seed_spread(report, tmp_path, capsys):
    """`patchworld eval-compare` reads metrics.json folders: one run gives its figures, several the
    mean ±half range; figures a run did not measure (a quick eval's horizon 16) read '-'."""
    import shutil

    from simulator.eval.compare import compare_table, parse_setting

    out, m, _ = report
    other = tmp_path / "other"
    shutil.copytree(out, other)
    shifted = json.loads((other / "metrics.json").read_text())
    shifted["teacher_forced"]["model"]["psnr"] += 1.0
    (other / "metrics.json").write_text(json.dumps(shifted))
    table = compare_table([parse_setting(f"one={out}"), parse_setting(f"two={out},{other}")])
    one, two = table.splitlines()[2:]
    tf = m["teacher_forced"]["model"]["psnr"]
    assert one.startswith(f"| one (1 run) | {tf:.2f} |") and two.startswith(f"| two (2 runs) | {tf + 0.5:.2f} ±0.50 |")
    h1 = m["rollout"]["methods"]["model"]["psnr_mean"][0]
    assert f"| {h1:.2f} |" in one and "| - |" in one  # horizon 1 measured; horizon 16 not (8-frame quick eval)
    assert f"| {m['issue8']['generated_sharpness_ratio_min']:.2f} |" in one  # issue 8's sharpness target, beside PSNR
    assert f"| {m['issue8']['generated_sharpness_ratio_max']:.2f} |" in one  # and its other side
    still = m["probes"]["stand_still"]["mean"]["return_sharpness_ratio"]
    assert f"| {still:.2f} |" in one
    del shifted["issue8"], shifted["probes"]  # an evaluation from before these figures: the maximum still reads
    (other / "metrics.json").write_text(json.dumps(shifted))
    older = compare_table([parse_setting(f"older={other}")]).splitlines()[2]
    assert f"| {m['issue8']['generated_sharpness_ratio_max']:.2f} |" in older and "| - |" in older
    assert cli_main(["eval-compare", f"one={out}"]) == 0 and "| one (1 run) |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no metrics.json"):
        cli_main(["eval-compare", f"none={tmp_path / 'missing'}"])


def test_generator_options_parse_numbers_and_booleans():
    from simulator.eval.cli import parse_options

    assert parse_options(["steps=3", "eta=0.5", "context=reuse", "reencode=False", "x=true"]) == \
        {"steps": 3, "eta": 0.5, "context": "reuse", "reencode": False, "x": True}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_options(["steps"])
