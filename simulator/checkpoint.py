"""Checkpoints: a folder with `model.safetensors` (weights) and `config.json` (everything needed
to rebuild the model, plus training steps and measured figures). No pickles, ever."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def save_checkpoint(directory: str | Path, state_dict: dict[str, torch.Tensor], config: dict,
                    dtype: torch.dtype | None = None) -> Path:
    """Write weights and config atomically (temp files, then rename). `dtype` casts floating
    tensors (use torch.bfloat16 for checkpoints that ship in git)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, t in state_dict.items():
        t = t.detach().cpu()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[name] = t.contiguous()
    tmp_w, tmp_c = directory / (WEIGHTS + ".tmp"), directory / (CONFIG + ".tmp")
    save_file(tensors, str(tmp_w))
    tmp_c.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_w, directory / WEIGHTS)
    os.replace(tmp_c, directory / CONFIG)
    return directory


def load_config(directory: str | Path) -> dict:
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"no {CONFIG} in checkpoint folder {directory}")
    return json.loads(path.read_text())


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = torch.float32) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, config). Floating tensors are cast to `dtype` (None keeps the stored dtype)."""
    path = Path(directory) / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no {WEIGHTS} in checkpoint folder {directory}")
    state = load_file(str(path), device=str(device))
    if dtype is not None:
        state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    return state, load_config(directory)


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def save_optimizer(opt: torch.optim.Optimizer, stem: Path) -> None:
    """Optimizer state as `<stem>.safetensors` (per-parameter tensors, keyed "<index>.<name>")
    plus `<stem>.json` (param groups and the names of scalar entries)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, state in sd["state"].items():
        for name, value in state.items():
            tensors[f"{index}.{name}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    save_tensors(tensors, stem.with_suffix(".safetensors"))
    tmp = stem.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"param_groups": sd["param_groups"]}, indent=1))
    os.replace(tmp, stem.with_suffix(".json"))


def load_optimizer(opt: torch.optim.Optimizer, stem: Path, device: torch.device) -> None:
    tensors = load_file(str(stem.with_suffix(".safetensors")), device=str(device))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        # AdamW keeps `step` on the CPU unless capturable/fused: match that
        state.setdefault(int(index), {})[name] = value.cpu() if name == "step" else value
    groups = json.loads(stem.with_suffix(".json").read_text())["param_groups"]
    opt.load_state_dict({"state": state, "param_groups": groups})
