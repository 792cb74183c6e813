"""The evaluation report: report.md with PNG charts and pictures, beside metrics.json.

Every number in the markdown comes from the results dict that is also written as
metrics.json, so the two never disagree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from simulator.benchlog import markdown_table, record
from simulator.eval.idm import IDM_BUTTONS
from simulator.eval.plot import LineChart, Series, image_grid
from simulator.eval.predictors import BASELINES

TABLE_HORIZONS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
METHOD_LABELS = {"model": "model", "copy-last": "copy-last", "copy-last-tokenizer": "copy-last via tokenizer",
                 "copy-warped-last": "copy-warped-last",
                 "tokenizer-reconstruction": "true via tokenizer", "engine-blurred-4x": "engine blurred 4x"}


def _f(v: object, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _json_safe(x: object) -> object:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None  # JSON has no NaN
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def write_metrics(results: dict, path: Path) -> Path:
    path.write_text(json.dumps(_json_safe(results), indent=1) + "\n")
    return path


# --- charts --------------------------------------------------------------------------------

def _horizon_chart(roll: dict, metric: str, title: str, y_label: str) -> LineChart:
    x = np.array(roll["horizons"])
    chart = LineChart(title, "horizon (frames after the context)", y_label)
    for name, m in roll["methods"].items():
        band = (np.array(m[f"{metric}_p25"]), np.array(m[f"{metric}_p75"])) if name == "model" else (None, None)
        chart.add(Series(METHOD_LABELS.get(name, name), x, np.array(m[f"{metric}_mean"]), *band, dashed=name != "model"))
    return chart


def _sharpness_chart(roll: dict) -> LineChart:
    x = np.array(roll["horizons"])
    chart = LineChart("Sharpness per horizon (mean |Laplacian|)", "horizon (frames)", "sharpness")
    chart.add(Series("model", x, np.array(roll["methods"]["model"]["sharpness_mean"])))
    chart.add(Series("engine (true)", x, np.array(roll["true_sharpness_mean"]), dashed=True))
    return chart


def _stability_charts(stab: dict) -> dict[str, LineChart]:
    s = stab["series"]
    T = len(s["model"]["sharpness"])
    x = np.arange(T)
    colour = LineChart("Mean colour per frame (R, G, B): model vs engine", "frame", "mean level (0-255)")
    rgb = ((200, 30, 30), (30, 150, 30), (30, 60, 200))  # each channel drawn in its own colour
    for c, name in enumerate("RGB"):
        colour.add(Series(f"model {name}", x, np.array(s["model"]["colour_mean"])[:, c], colour=rgb[c]))
    for c, name in enumerate("RGB"):
        colour.add(Series(f"engine {name} (dashed)", x, np.array(s["engine"]["colour_mean"])[:, c], dashed=True,
                          colour=rgb[c]))
    sharp = LineChart("Sharpness per frame", "frame", "mean |Laplacian|")
    sharp.add(Series("model", x, np.array(s["model"]["sharpness"])))
    sharp.add(Series("engine", x, np.array(s["engine"]["sharpness"]), dashed=True))
    motion = LineChart("Motion per frame (mean |change from previous frame|)", "frame", "level (0-255)")
    motion.add(Series("model", x[1:], np.array(s["model"]["motion"])[1:]))
    motion.add(Series("engine", x[1:], np.array(s["engine"]["motion"])[1:], dashed=True))
    charts = {"stability_colour": colour, "stability_sharpness": sharp, "stability_motion": motion}
    windows = [w for w in stab["windows"] if w.get("fd") is not None]
    if windows:
        fd = LineChart("Frechet distance to the engine over sliding windows (IDM features)", "window start (frame)", "FD")
        fd.add(Series("model vs engine", np.array([w["start"] for w in windows]), np.array([w["fd"] for w in windows])))
        charts["stability_fd"] = fd
    return charts


def _camera_charts(cam: dict) -> dict[str, LineChart]:
    """A scatter of the model's image shift against the engine's per tick, and the slope per horizon band."""
    shifts = {k: np.array(v) for k, v in cam["shifts"].items()}  # [E, horizon, 2] each
    eng, gen = shifts["engine"].reshape(-1, 2), shifts["model"].reshape(-1, 2)
    scatter = LineChart("Image shift per tick: model vs engine (same actions)", "engine shift (px)", "model shift (px)")
    for i, axis in enumerate(("yaw (x)", "pitch (y)")):
        scatter.add(Series(axis, eng[:, i], gen[:, i], points=True))
    lim = float(np.nanmax(np.abs(eng))) if eng.size else 1.0
    scatter.add(Series("same as the engine", np.array([-lim, lim]), np.array([-lim, lim]), dashed=True, colour=(0, 0, 0)))
    slope = LineChart("Slope of model shift on engine shift per horizon band (1 = follows, 0 = ignores)",
                      "horizon (band end)", "slope")
    for name, m in cam["methods"].items():
        if name == "copy-last":
            continue
        x = np.array([b["band"][1] for b in m["bands"]])
        for axis in ("yaw", "pitch"):
            slope.add(Series(f"{METHOD_LABELS.get(name, name)} {axis}", x,
                             np.array([b[axis]["slope"] for b in m["bands"]], dtype=float)))  # 5 points: no dashes
    return {"camera_shift_scatter": scatter, "camera_slope": slope}


def _pictures(pictures: dict, out: Path, model_label: str) -> dict[str, Path]:
    paths = {}
    pic = pictures["sharpness"]
    rows, labels = [], []
    for e in range(len(pic["true"])):
        kinds = [("true", pic["true"][e])]
        if pic["reconstructed"] is not None:
            kinds.append(("tokenizer", pic["reconstructed"][e]))
        kinds.append((model_label, pic["generated"][e]))
        for kind, frames in kinds:
            rows.append(list(frames))
            labels.append(f"ep {e} {kind}")
    grid = image_grid(rows, labels, [f"horizon {h}" for h in pic["horizons"]])
    paths["sharpness"] = out / "sharpness.png"
    grid.save(paths["sharpness"])
    long = pictures["long_rollout"]
    rows, labels = [], []
    for e in range(len(long["engine"])):
        rows += [list(long["engine"][e]), list(long["model"][e])]
        labels += [f"ep {e} engine", f"ep {e} {model_label}"]
    paths["stability_frames"] = out / "stability_frames.png"
    image_grid(rows, labels, [f"frame {h}" for h in long["horizons"]]).save(paths["stability_frames"])
    for name, frames in pictures["probes"].items():
        S = len(frames["engine"])
        cols = sorted({0, S // 4, S // 2, 3 * S // 4, S - 1})
        grid = image_grid([[frames["engine"][i] for i in cols], [frames["model"][i] for i in cols]],
                          ["engine", model_label], [f"tick {i + 1}" for i in cols])
        paths[f"probe_{name}"] = out / f"probe_{name}.png"
        grid.save(paths[f"probe_{name}"])
    return paths


# --- markdown ------------------------------------------------------------------------------

def _fidelity_md(r: dict) -> list[str]:
    lines = ["## 2. Fidelity", "", "PSNR here is the PSNR of the mean squared error over the frames (metrics.json also "
             "holds the mean of per-frame PSNRs, `psnr_frame_mean`, which identical frames at the 100 dB cap inflate).", "",
             f"Teacher-forced next frame ({r['teacher_forced']['frames']} frames, true past as context):", ""]
    tf = r["teacher_forced"]
    rows = [[METHOD_LABELS.get(k, k), _f(v["psnr"]), _f(v["ssim"], 3), _f(v["sharpness"]), _f(v.get("fd"))]
            for k, v in tf.items() if isinstance(v, dict) and "psnr" in v]
    rows.append(["true frames", "", "", _f(tf["true"]["sharpness"]), ""])
    lines += [markdown_table(["method", "PSNR dB", "SSIM", "sharpness", "FD"], rows), "",
              f"The model beats copy-last on {100 * tf['model']['beats_copy_last']:.0f}% of frames.", ""]
    if tf.get("by_action"):
        methods = [m for m in ("model", "copy-last", "copy-warped-last", "copy-last-tokenizer") if m in tf]
        rows = [[kind, v["frames"], _f(v["model_error_share"]), *[_f(v.get(m)) for m in methods]]
                for kind, v in tf["by_action"].items()]
        lines += ["By what the player does in the predicted tick (PSNR dB of the pooled error; 'share' = the share of "
                  "the model's squared error in those frames):", "",
                  markdown_table(["action", "frames", "share", *[METHOD_LABELS.get(m, m) for m in methods]], rows), ""]
    roll = r["rollout"]
    hs = [h for h in TABLE_HORIZONS if h <= len(roll["horizons"])]
    lines += [f"Autoregressive rollouts ({roll['episodes']} episodes, engine actions, no engine frames after the context):", ""]
    header = ["method / horizon"] + [str(h) for h in hs]
    rows = []
    for name, m in roll["methods"].items():
        label = METHOD_LABELS.get(name, name)
        rows.append([f"{label} PSNR"] + [_f(m["psnr_mean"][h - 1]) for h in hs])
        rows.append([f"{label} SSIM"] + [_f(m["ssim_mean"][h - 1], 3) for h in hs])
        rows.append([f"{label} sharpness"] + [_f(m["sharpness_mean"][h - 1]) for h in hs])
    rows.append(["true sharpness"] + [_f(roll["true_sharpness_mean"][h - 1]) for h in hs])
    lines += [markdown_table(header, rows), "", "![PSNR](rollout_psnr.png)", "", "![SSIM](rollout_ssim.png)", "",
              "![sharpness](rollout_sharpness.png)", ""]
    if roll["fd_bands"]:
        names = [k for k in roll["fd_bands"][0] if k != "band"]
        rows = [[f"{b['band'][0]}-{b['band'][1]}"] + [_f(b[n]) for n in names] for b in roll["fd_bands"]]
        lines += ["Frechet distance to the engine's frames per horizon band (IDM features of frame pairs):", "",
                  markdown_table(["horizons"] + [METHOD_LABELS.get(n, n) for n in names], rows), ""]
    return lines


def _control_md(r: dict) -> list[str]:
    lines = ["## 3. Action following (inverse dynamics)", ""]
    if "control" not in r:
        return lines + ["No IDM was given: not measured.", ""]
    idm = r.get("idm") or {}
    held = idm.get("heldout_accuracy")
    if held:
        shown = ", ".join(f"{k} {_f(held[k], 3)}" for k in ("action", "yaw_balanced", "yaw_moving_within1",
                                                             "pitch_balanced", "forward", "attack") if k in held)
        lines += [f"IDM accuracy on its own held-out engine worlds: {shown}.", ""]
    heads = ["action", "yaw_balanced", "yaw_exact", "yaw_moving_within1", "pitch_balanced", "pitch_exact",
             "pitch_moving_within1", *IDM_BUTTONS]
    for span, c in r["control"].items():
        copy = r["control_copy_last"][span]
        rows = [[h, _f(c["engine"][h], 3), _f(c["generated"][h], 3), _f(c["ratio"][h], 3), _f(copy["generated"][h], 3)]
                for h in heads]
        lines += [f"Transitions {span.replace('_', ' ')} of every rollout (buttons: balanced accuracy, 0.5 = chance):", "",
                  markdown_table(["head", "engine", "generated", "ratio (controllability)", "copy-last"], rows), ""]
    return lines + _camera_md(r)


def _camera_md(r: dict) -> list[str]:
    cam = r.get("camera")
    if cam is None:
        return []
    lines = ["### The camera without the IDM: image shift", "",
             "Per tick, the image shift between consecutive frames (phase correlation of the grey frames, sub-pixel), "
             "on the engine's frames and on the generated frames driven by the same actions. Slope: least squares of "
             "the model's shift on the engine's (1 = turns as far as the engine, 0 = ignores the camera, negative = the "
             "wrong way); corr: their correlation; sign: on ticks where the engine's image moves by more than "
             f"{cam['config']['turn_px']} px, the share where the model's moves the same way by at least "
             f"{cam['config']['agree_px']} px (frozen = 0). `true via tokenizer` and `engine blurred 4x` are the "
             "engine's own frames through the tokenizer and blurred (4x down, then up): what a model that turns "
             "exactly right scores when it draws through the tokenizer or as blurrily as that.", ""]
    rows = []
    for name, m in cam["methods"].items():
        for b in m["bands"] + [m["all"]]:
            if name == "copy-last" and b is not m["all"]:
                continue
            y, p = b["yaw"], b["pitch"]
            rows.append([f"{b['band'][0]}-{b['band'][1]}", METHOD_LABELS.get(name, name), _f(y["slope"]), _f(y["corr"]),
                         _f(y["sign_agreement"]), _f(p["slope"]), _f(p["corr"]), _f(p["sign_agreement"]),
                         f"{y['turning_ticks']} / {p['turning_ticks']} of {y['ticks']}"])
    lines += [markdown_table(["horizons", "frames", "yaw slope", "yaw corr", "yaw sign", "pitch slope", "pitch corr",
                              "pitch sign", "engine-turning ticks (yaw / pitch)"], rows), ""]
    a = cam["methods"]["model"]["all"]
    lines += [f"Shift per commanded degree (all horizons): yaw engine {_f(a['yaw']['engine_px_per_degree'])}, model "
              f"{_f(a['yaw']['generated_px_per_degree'])} px/deg; pitch engine {_f(a['pitch']['engine_px_per_degree'])}, "
              f"model {_f(a['pitch']['generated_px_per_degree'])} px/deg.", "",
              "![camera shift scatter](camera_shift_scatter.png)", "", "![camera slope](camera_slope.png)", ""]
    return lines


def _probes_md(r: dict) -> list[str]:
    lines = ["## 4. Consistency probes", "",
             "Mean PSNR against the engine over the whole script; PSNR of the return frame against the engine's "
             "return frame and against the model's own anchor frame (the start, or right after the break); and the "
             "engine's own return-vs-anchor PSNR for reference (100 = the engine comes back exactly); the return "
             "frame's sharpness over the engine's (below 1 faded, above 1 sharpened into noise).", ""]
    rows = [[name, len(p["per_seed"]), _f(p["mean"]["path_vs_engine_psnr"]), _f(p["mean"]["return_vs_engine_psnr"]),
             _f(p["mean"]["return_vs_engine_ssim"], 3),
             _f(p["mean"]["return_vs_own_anchor_psnr"]), _f(p["mean"]["engine_return_vs_anchor_psnr"]),
             _f(p["mean"].get("return_sharpness_ratio"), 2)]
            for name, p in r["probes"].items()]
    lines += [markdown_table(["probe", "seeds", "whole path vs engine PSNR", "return vs engine PSNR",
                              "return vs engine SSIM", "return vs own anchor PSNR",
                              "engine vs anchor PSNR", "return sharpness / engine's"], rows), ""]
    lines += [f"![{name}](probe_{name}.png)" for name in r["probes"]] + [""]
    return lines


def _stability_md(r: dict, charts: list[str]) -> list[str]:
    s = r["stability"]
    lines = ["## 5. Stability", "", f"{s['episodes']} rollout(s) of {s['horizon']} frames.", ""]
    def flags(w: dict) -> str:
        return ", ".join([k for k in ("blur", "frozen", "flat") if w[k]] + ["colour drift"] * w["colour_drift_flag"])

    rows = [[f"{w['start']}-{w['end']}", _f(w["sharpness_model"]), _f(w["sharpness_engine"]), _f(w["motion_model"]),
             _f(w["motion_engine"]), _f(w["contrast_model"]), _f(w["contrast_engine"]), _f(w["colour_drift"]),
             _f(w.get("fd")), flags(w)]
            for w in s["windows"]]
    lines += [markdown_table(["frames", "sharp model", "sharp engine", "motion model", "motion engine", "contrast model",
                              "contrast engine", "colour drift", "FD", "flags"], rows), ""]
    onset = ", ".join(f"{k}: {'never' if v is None else f'from frame {v}'}" for k, v in s["collapse_onset"].items())
    lines += [f"Collapse onset: {onset}.", "", "Frames of the long rollouts, engine above model, from the first "
              "generated frame to the last:", "", "![long rollouts](stability_frames.png)", ""]
    lines += [f"![{c}]({c}.png)" for c in charts] + [""]
    return lines


def write_report(results: dict, pictures: dict, out_dir: str | Path) -> Path:
    """Write metrics.json, the PNGs and report.md into `out_dir`; returns the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(results, out / "metrics.json")
    roll = results["rollout"]
    charts = {"rollout_psnr": _horizon_chart(roll, "psnr", "PSNR against the engine per horizon (band: episodes p25-p75)", "PSNR dB"),
              "rollout_ssim": _horizon_chart(roll, "ssim", "SSIM against the engine per horizon (band: episodes p25-p75)", "SSIM"),
              "rollout_sharpness": _sharpness_chart(roll)}
    stab_charts = _stability_charts(results["stability"])
    if "camera" in results:
        charts.update(_camera_charts(results["camera"]))
    for name, chart in {**charts, **stab_charts}.items():
        chart.save(out / f"{name}.png")
    _pictures(pictures, out, results["checkpoint"] if results["checkpoint"] in BASELINES else "generated")

    r = results
    lines = [f"# Evaluation of `{r['checkpoint']}`", "",
             f"Seeds {r['seeds']} (none trained on), {r['config']['resolution'][0]}x{r['config']['resolution'][1]}, "
             f"context {r['config']['context']} frames, exploration policy `{r['config']['policy']}`. "
             f"Machine: {r['machine']}. {r['date']}.", ""]
    lines += ["## 1. Tokenizer", ""]
    tok = r.get("tokenizer")
    if tok:
        lines += [markdown_table(["PSNR dB", "SSIM", "sharpness", "true sharpness", "FD"],
                                 [[_f(tok["psnr"]), _f(tok["ssim"], 3), _f(tok["sharpness"]), _f(tok["true_sharpness"]),
                                   _f(tok["fd"])]]), ""]
    else:
        lines += ["No tokenizer: not measured.", ""]
    lines += _fidelity_md(r) + _control_md(r) + _probes_md(r) + _stability_md(r, list(stab_charts))
    sp = r["speed"]
    lines += ["## 6. Speed", "", f"{_f(sp['frames_per_second'], 1)} frames/s over {sp['streams']} stream(s); one step "
              f"(all streams) takes {_f(sp['step_latency_ms_median'], 1)} ms median, {_f(sp['step_latency_ms_p95'], 1)} ms p95 "
              f"({sp['steps_timed']} steps, measured during the long rollouts).", ""]
    lines += ["## Issue 8 targets (sharp frames)", "", "![true | tokenizer | generated](sharpness.png)", "",
              markdown_table(["target", "value"], [[k, _f(v, 3)] for k, v in r["issue8"].items()]), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def load_png(path: str | Path) -> np.ndarray:
    """A report PNG as uint8 [H, W, 3] (tests read pictures back with it)."""
    return np.asarray(Image.open(path).convert("RGB"))


def record_headline(results: dict, notes: str = "") -> None:
    """Append the headline figures (fidelity beside its baselines, sharpness, FD, control) to docs/benchmarks.md."""
    r, roll = results, results["rollout"]
    hs = [h for h in (1, 8, 32, 64) if h <= len(roll["horizons"])]
    rows = []
    for name, m in roll["methods"].items():
        tf = r["teacher_forced"].get(name, {})
        rows.append([METHOD_LABELS.get(name, name), _f(tf.get("psnr")), _f(tf.get("sharpness"))]
                    + [f"{_f(m['psnr_mean'][h - 1])} / {_f(m['sharpness_mean'][h - 1], 1)}" for h in hs])
    rows.append(["true frames", "", _f(r["teacher_forced"]["true"]["sharpness"]), *[
        f"- / {_f(roll['true_sharpness_mean'][h - 1], 1)}" for h in hs]])
    table = markdown_table(["method", "teacher-forced PSNR", "TF sharpness",
                            *[f"rollout h={h} PSNR / sharpness" for h in hs]], rows)
    control = r.get("control", {})
    extra = [f"{span}: IDM action accuracy engine {_f(c['engine']['action'], 3)}, generated {_f(c['generated']['action'], 3)}"
             for span, c in control.items()]
    if "camera" in r:
        a = r["camera"]["methods"]["model"]["all"]
        extra.append("camera image shift, model on engine, horizons 1-" + str(a["band"][1]) + ": " + "; ".join(
            f"{axis} slope {_f(a[axis]['slope'])}, corr {_f(a[axis]['corr'])}, sign {_f(a[axis]['sign_agreement'])}"
            for axis in ("yaw", "pitch")))
    record(f"Evaluation of {r['checkpoint']} (seeds {r['seeds'][0]}..{r['seeds'][-1]}, {len(r['seeds'])} worlds)", table,
           notes="\n".join(filter(None, [notes, *extra, f"Full report: metrics.json / report.md written by the same run."])))
