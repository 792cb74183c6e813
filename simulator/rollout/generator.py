"""The streaming generator: B independent streams over one world model, one tick at a time.

Per stream (slot): a rolling KV cache of the last `window_frames` frames, the previous frame's
latent, an absolute frame counter and a random generator. Per tick, for all requested slots in
one batched forward each:
  1. a few denoising steps of the new frame against the cache (the cache is only read);
  2. decoding of the clean latent to RGB by the tokenizer (then, with a `refiner`, the frame it makes
     of that picture and the stream's last shown frame; or with `detail_carry`, plus the pixel detail
     the stream carries where its picture stays); `step()` returns here;
  3. one pass of the finished frame at the context noise level, which appends its keys and
     values to the cache (the oldest frame falls out once the window is full). It runs in
     `flush()`: a server calls it between ticks, and the next `step()` runs it if nobody did.
The passes of one tick share their rotary tables, cache views and adaLN modulations (computed
once per tick: they depend only on noise level and action, so the last actions' are kept, up to
`MODULATION_CACHE_BYTES`: a player repeats actions, and computing them reads a third of the model's
weights). The model must not change while a generator runs it.
Deterministic for a given seed: every slot draws its noise from its own generator, reseeded
by `start()`, so a stream does not depend on which other slots run beside it.
A step can be abandoned before its first passes (`step(..., abort=...)`, when a newer action
arrived: the server restarts the tick with it): it then leaves no trace, not even in the noise
generators, so frames still depend only on the actions of the ticks that ran.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from simulator.actions import NOOP, Action, encode_many
from simulator.checkpoint import load_checkpoint
from simulator.diffusion import add_noise, sample, timesteps
from simulator.models.camera_warp import ENGINE_FOV_DEG, warp_by_camera
from simulator.models.dit import DiT, build_dit
from simulator.models.precision import autocast, bf16_weights, use_bf16
from simulator.models.refiner import Refiner
from simulator.models.tokenizer import Tokenizer, unit_to_frames


CONTEXT_MODES = ("pass", "reuse")
# modulations kept per generator, by actions (and levels): ~120 KB an action for one stream of the cpu preset
MODULATION_CACHE_BYTES = 16 << 20


@dataclass
class GeneratorConfig:
    resolution: tuple[int, int] = (64, 64)  # (H, W) of the frames
    window_frames: int = 15  # frames kept in each stream's KV cache (training clips are window + 1)
    steps: int = 4  # denoising steps per frame
    eta: float = 1.0  # fresh noise per sampler step (0 = deterministic DDIM path)
    shift: float = 1.0  # sampler timestep shift
    context_noise: float = 0.05  # noise level of finished frames in the cache (and of the previous-latent input)
    # the previous-latent input's own level, when it should differ from the cache's (None: context_noise).
    # The network adds its correction to that input, so the noise it does not remove stays in the frame
    # and adds up tick after tick; 0 (a level training draws) reads the last frame as it is
    prev_noise: float | None = None
    seed: int = 0
    precision: str = "auto"  # "auto" (bf16 where the hardware is fast at it), "bf16" or "fp32"
    # how a finished frame enters the cache: "pass" = its own pass at context_noise (as trained);
    # "reuse" = keep the last denoising pass's keys/values (one pass less per tick, frames change)
    context: str = "pass"
    # pixel detail carried from frame to frame: each stream keeps what its last shown frame holds
    # beyond the decoder's output (for a true context frame: frame - decode(encode(frame))), moves
    # it with the camera like the model's previous latent, scales it by this factor per tick and
    # adds it to the next decoded frame. 0 = off: frames are the decoder's alone
    detail_carry: float = 0.0
    # ... and only where the picture stays: the detail fades as exp(-change / detail_gate) where the
    # decoded frame differs from the last one moved by the camera (change: mean |difference| over
    # the channels, [-1, 1] units); 0 = no gate
    detail_gate: float = 0.0
    # the frame shown (decoded, plus the carried detail) is encoded again, and this share of the
    # context latent of the next frames comes from that encoding (the rest from the sampled latent):
    # 0 = off; 1 = each frame is put back on the latents the encoder makes of real pictures, carried
    # detail included. The model's own latents lose detail from frame to frame, and it reads blurry
    # context as a cue to predict blur; the encoder's latent of a sharp shown frame is sharp. One
    # encode per frame. (A chain of encode(decode(.)) alone darkens the picture by ~25 levels in 64
    # frames: docs/training.md, "Re-encoding the shown frame".)
    reencode: float = 0.0
    # history guidance, as classifier-free guidance with the model's own weaker prediction: every
    # denoising pass also runs without the cached frames (the new frame sees its previous latent
    # only, as the first frame of every training clip does), and the prediction moves away from
    # that one: x0 + guidance * (x0 - x0_without_history). Sharper frames at every horizon for
    # lower PSNR (docs/evaluation.md, "History guidance"); 0 = off, one pass per sampler step
    guidance: float = 0.0
    # ... only in the passes that start from a noise level above this (a guidance interval: the
    # structure of the frame is decided at high levels, its fine detail at low ones); 0 = every pass
    guidance_above: float = 0.0
    # run the model's streaming pass through torch.compile, one stream at a time (`DiT.compile_stream`):
    # 25-45% less time a tick of one stream on the 2-core CPU; the first tick compiles (`warm_up` does it
    # up front: ~40 s the first time on a machine, then ~2 s: the packages built ahead of time are kept),
    # and frames differ from eager ones by rounding. Live play on CPU turns it on (DreamConfig)
    compile: bool = False
    # the pixel refiner (simulator.models.refiner) that makes each shown frame from the decoded picture
    # and the stream's last shown frame: a folder, relative to the checkpoint folder in its config.json and
    # as typed on a command line; "" or "none" = none. With a refiner, detail_carry and detail_gate are not used
    refiner: str = ""

    def __post_init__(self) -> None:
        self.resolution = (int(self.resolution[0]), int(self.resolution[1]))
        if self.refiner.lower() == "none":
            self.refiner = ""
        if not 0.0 <= self.detail_carry <= 1.0:
            raise ValueError(f"detail_carry must be within [0, 1], got {self.detail_carry}")
        if self.detail_gate < 0.0:
            raise ValueError(f"detail_gate must be >= 0 (0: no gate), got {self.detail_gate}")
        if isinstance(self.reencode, bool) or not 0.0 <= self.reencode <= 1.0:
            raise ValueError(f"reencode must be a share within [0, 1], got {self.reencode!r}")
        if isinstance(self.guidance, bool) or not 0.0 <= self.guidance <= 10.0:
            raise ValueError(f"guidance must be a weight within [0, 10] (0: off), got {self.guidance!r}")
        if not 0.0 <= self.guidance_above < 1.0:
            raise ValueError(f"guidance_above is a noise level within [0, 1), got {self.guidance_above!r}")
        if self.prev_noise is not None:
            if isinstance(self.prev_noise, bool) or not 0.0 <= self.prev_noise < 1.0:
                raise ValueError(f"prev_noise is a noise level within [0, 1) (or None: context_noise), "
                                 f"got {self.prev_noise!r}")
            self.prev_noise = float(self.prev_noise)
        if self.context not in CONTEXT_MODES:
            raise ValueError(f"generator context {self.context!r} is not one of {', '.join(CONTEXT_MODES)}")
        if self.context == "reuse" and self.steps < 2:
            raise ValueError(f"context 'reuse' keeps the last denoising pass's keys/values: with {self.steps} step "
                             f"that pass sees pure noise; use steps >= 2 or context 'pass'")


class _Abandoned(Exception):
    """Raised inside a step whose `abort()` said yes; the step restores what it changed."""


def generator_config(config: dict, directory: str | Path = "checkpoint", **overrides) -> GeneratorConfig:
    """The GeneratorConfig a world-model checkpoint's `config` (config.json) plays with, `overrides` (its
    fields) on top. ValueError, naming the option, for a config that is not a world model's, an unknown
    option or a value out of range: what a command line turns into a one-line message."""
    if config.get("kind") != "world_model":
        raise ValueError(f"{directory} does not hold a world-model checkpoint (kind={config.get('kind')!r})")
    known = {f.name for f in fields(GeneratorConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown generator option {unknown[0]!r} (known: {', '.join(sorted(known))})")
    saved = {k: v for k, v in config.get("generator", {}).items() if k in known}
    if saved.get("refiner") and "refiner" not in overrides and saved["refiner"].lower() != "none":
        saved["refiner"] = str(Path(directory) / saved["refiner"])  # the checkpoint's own, next to it
    gen_config = GeneratorConfig(**{**saved, "resolution": tuple(config.get("resolution", (64, 64))), **overrides})
    if gen_config.refiner and not Path(gen_config.refiner).is_dir():
        raise ValueError(f"generator option refiner: {gen_config.refiner} is not a folder (a refiner checkpoint)")
    return gen_config


class Generator:
    """See the module docstring; the contract is in docs/CONTRACTS.md."""

    def __init__(self, model: DiT, tokenizer: Tokenizer, config: GeneratorConfig | None = None,
                 batch_size: int = 1, device: str | torch.device = "cpu", refiner: Refiner | None = None):
        """`refiner`: the pixel refiner to show frames through (`from_checkpoint` loads the one
        `config.refiner` names; here the config's field is not read)."""
        self.config = config = config or GeneratorConfig()
        self.device = torch.device(device)
        self.refiner = None if refiner is None else refiner.to(self.device).eval()
        self.model = model.to(self.device).eval()  # as given: what callers read (an eval runs the tokenizer in fp32)
        self.tokenizer = tokenizer.to(self.device).eval()
        self.bf16 = use_bf16(config.precision, self.device)
        # what the generator runs: under bf16, copies whose linear/conv weights are stored in bf16
        # (bit-identical frames, without autocast casting every weight at every call)
        self._model = bf16_weights(self.model) if self.bf16 else self.model
        self._tokenizer = bf16_weights(self.tokenizer) if self.bf16 else self.tokenizer
        if config.compile:
            if self._model is self.model:  # compiling sets an attribute: the caller's module stays as given
                self._model = copy.deepcopy(self.model)
            self._model.compile_stream()
        if model.cfg.chunk_frames != 1:
            raise ValueError(f"streaming answers one action per tick: the model's chunk_frames must be 1, "
                             f"got {model.cfg.chunk_frames}")
        if model.cfg.latent_channels != tokenizer.latent_channels:
            raise ValueError(f"model expects {model.cfg.latent_channels} latent channels, the tokenizer "
                             f"makes {tokenizer.latent_channels}")
        H, W = config.resolution
        tokenizer.check_size(H, W)
        f, p = tokenizer.stride, model.cfg.patch
        if (H // f) % p or (W // f) % p:
            raise ValueError(f"latent {H // f}x{W // f} of a {H}x{W} frame is not divisible by patch {p}")
        self.latent_shape = (model.cfg.latent_channels, H // f, W // f)  # (C, h, w)
        self.batch_size = batch_size
        cache_dtype = torch.bfloat16 if self.bf16 else torch.float32
        self.cache = model.new_cache(batch_size, config.window_frames, (H // f // p) * (W // f // p),
                                     self.device, cache_dtype)
        self.prev = torch.zeros(batch_size, *self.latent_shape, device=self.device)  # last clean latent per slot
        self.detail = torch.zeros(batch_size, 3, H, W, device=self.device)  # carried pixel detail, [-1, 1] units
        self.decoded = torch.zeros(batch_size, 3, H, W, device=self.device)  # the last decoder output per slot
        self.shown = torch.zeros(batch_size, 3, H, W, device=self.device)  # the last shown frame (refiner), [-1, 1]
        self.frame_index = torch.zeros(batch_size, dtype=torch.long, device=self.device)  # rotary t of the next frame
        self.active = [False] * batch_size
        self.rngs = [torch.Generator(device=self.device) for _ in range(batch_size)]
        # the carried detail turns with the camera as the engine's picture does (the model's own
        # warp field of view when it has one)
        self.warp_fov = model.cfg.camera_warp_fov or ENGINE_FOV_DEG
        self._pending: tuple | None = None  # the last tick's cache pass, until flush() runs it
        self._modulation_cache: OrderedDict[tuple, tuple[list[torch.Tensor], int]] = OrderedDict()  # (mods, bytes)
        self._modulation_bytes = 0

    @classmethod
    def from_checkpoint(cls, directory: str | Path, device: str | torch.device = "cpu", batch_size: int = 1,
                        **overrides) -> Generator:
        """Model + tokenizer from a world-model checkpoint folder (its config names the tokenizer folder,
        relative to the checkpoint folder unless absolute). `overrides` set GeneratorConfig fields."""
        directory = Path(directory)
        state, config = load_checkpoint(directory, device="cpu")
        gen_config = generator_config(config, directory, **overrides)
        model = build_dit(config["model"])
        model.load_state_dict(state)
        tokenizer_dir = Path(config["tokenizer"])
        tokenizer = Tokenizer.load(tokenizer_dir if tokenizer_dir.is_absolute() else directory / tokenizer_dir)
        refiner = Refiner.load(gen_config.refiner) if gen_config.refiner else None
        return cls(model, tokenizer, gen_config, batch_size=batch_size, device=device, refiner=refiner)

    def warm_up(self) -> None:
        """Start a free slot, run a tick, release it: a compiled model compiles now rather than on a
        player's first frames. Leaves no trace (`start` reseeds a slot's noise)."""
        slot = self.active.index(False) if False in self.active else None
        if slot is None:
            return
        H, W = self.resolution
        self.start(slot, np.zeros((2, H, W, 3), np.uint8), [NOOP, NOOP])
        self.step({slot: NOOP})
        self.release(slot)

    @property
    def resolution(self) -> tuple[int, int]:
        return self.config.resolution

    # --- slots ---------------------------------------------------------------------------

    def _check_slot(self, slot: int, must_be_active: bool) -> None:
        if not 0 <= slot < self.batch_size:
            raise ValueError(f"slot {slot} is outside 0..{self.batch_size - 1}")
        if must_be_active and not self.active[slot]:
            raise ValueError(f"slot {slot} was not started (call start() with context frames first)")

    @torch.inference_mode()
    def start(self, slot: int, frames: np.ndarray, actions: list[Action]) -> None:
        """Prime `slot` with context frames uint8 [T0, H, W, 3] and the T0 actions that produced them."""
        self._check_slot(slot, must_be_active=False)
        self.flush()
        H, W = self.resolution
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (H, W, 3) or len(frames) < 1:
            raise ValueError(f"context frames: expected uint8 [T0 >= 1, {H}, {W}, 3], got {frames.dtype} "
                             f"{list(frames.shape)}")
        if len(actions) != len(frames):
            raise ValueError(f"{len(frames)} context frames but {len(actions)} actions; they must match one to one")
        with self._precision():
            latents = self._tokenizer.encode(torch.from_numpy(frames).to(self.device)).float()  # [T0, C, h, w]
            self.detail[slot] = 0.0
            if self.config.detail_carry or self.refiner is not None:
                last = self._tokenizer.frames_to_input(torch.from_numpy(frames[-1:]).to(self.device))
                self.decoded[slot] = self._tokenizer.decode(latents[-1:])[0]
                self.detail[slot] = last[0] - self.decoded[slot]
                self.shown[slot] = last[0]
        buttons, camera = self._encode(actions)  # [T0, 1, .]
        self._prime(slot, latents, buttons[:, 0], camera[:, 0])

    @torch.inference_mode()
    def start_latents(self, slot: int, latents: torch.Tensor, buttons: torch.Tensor, camera: torch.Tensor) -> None:
        """Prime `slot` in latent space: context latents [T0, C, h, w] with their encoded actions
        (multi-hot buttons [T0, BUTTON_DIM], camera bins [T0, 2], as `simulator.actions.encode_many` makes
        them). With `step_latents`, rollouts that never leave the latent space (training on the model's
        own rollouts); frames and their decoded detail are not kept."""
        self._check_slot(slot, must_be_active=False)
        if latents.ndim != 4 or tuple(latents.shape[1:]) != self.latent_shape or len(latents) < 1:
            raise ValueError(f"context latents: expected [T0 >= 1, {', '.join(map(str, self.latent_shape))}], "
                             f"got {list(latents.shape)}")
        if len(buttons) != len(latents) or len(camera) != len(latents):
            raise ValueError(f"{len(latents)} context latents but {len(buttons)} / {len(camera)} actions")
        self.flush()
        self.detail[slot] = 0.0
        self._prime(slot, latents.to(self.device).float(), buttons.to(self.device).float(), camera.to(self.device))

    def _prime(self, slot: int, latents: torch.Tensor, buttons: torch.Tensor, camera: torch.Tensor) -> None:
        """Reset `slot` and fill its cache with the context latents [T0, C, h, w] and their actions."""
        self.cache.reset(slot)
        self.rngs[slot].manual_seed(self.config.seed * 1_000_003 + slot)
        self.frame_index[slot] = 0
        rows = torch.tensor([slot], device=self.device)
        # frames older than the window would fall out of the cache anyway
        for t in range(max(1, len(latents) - self.config.window_frames), len(latents)):
            self.prev[slot] = latents[t - 1]
            self._append(rows, latents[t][None, None], buttons[t:t + 1, None], camera[t:t + 1, None])
        self.prev[slot] = latents[-1]
        self.active[slot] = True

    def release(self, slot: int) -> None:
        self._check_slot(slot, must_be_active=False)
        self.flush()
        self.active[slot] = False
        self.detail[slot] = 0.0
        self.shown[slot] = 0.0
        self.cache.reset(slot)

    # --- one tick --------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self, actions: dict[int, Action],
             abort: Callable[[], bool] | None = None) -> dict[int, np.ndarray] | None:
        """One tick for the given slots -> {slot: uint8 [H, W, 3]}.

        `abort`, asked before each of the first half of the denoising passes: when it returns
        True the step is abandoned and returns None, leaving the streams exactly as they were
        (the newer action it waits for is worth more than the passes already spent)."""
        if not actions:
            return {}
        slots = sorted(actions)
        shown = self._tick(slots, *self._encode([actions[s] for s in slots]), abort, show=True)
        if shown is None:
            return None
        return {slot: shown[i] for i, slot in enumerate(slots)}

    @torch.inference_mode()
    def step_latents(self, slots: list[int], buttons: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        """One tick in latent space for the given slots, with their encoded actions (buttons [B, BUTTON_DIM],
        camera bins [B, 2]) -> the new clean latents [B, C, h, w]: `step` without decoding. The detail
        carry only changes shown frames, so it is skipped; re-encoding needs them, so it is refused."""
        if self.config.reencode:
            raise ValueError("step_latents: reencode encodes the shown frame, which latent rollouts never make")
        if len(slots) != len(buttons) or len(slots) != len(camera) or len(set(slots)) != len(slots):
            raise ValueError(f"{len(slots)} slots (each once) but {len(buttons)} / {len(camera)} actions")
        order = sorted(range(len(slots)), key=slots.__getitem__)  # ticks run over sorted slots
        back = torch.tensor(order).argsort()
        x0 = self._tick([slots[i] for i in order], buttons[order].to(self.device).float()[:, None],
                        camera[order].to(self.device)[:, None], None, show=False)
        return x0[back.to(x0.device), 0]

    def _tick(self, slots: list[int], buttons: torch.Tensor, camera: torch.Tensor,
              abort: Callable[[], bool] | None, show: bool) -> np.ndarray | torch.Tensor | None:
        """The tick of `step` for sorted slots with encoded actions [B, 1, .]: the shown frames uint8
        [B, H, W, 3] (show) or the clean latents [B, 1, C, h, w]; None when abandoned."""
        self.flush()
        for slot in slots:
            self._check_slot(slot, must_be_active=True)
        rng_states = [self.rngs[s].get_state() for s in slots] if abort is not None else None
        rows = torch.tensor(slots, device=self.device)
        prev_in, prev_level, base = self._previous(rows, buttons, camera)
        levels = timesteps(self.config.steps, self.config.shift).tolist()[:-1]  # the levels denoised from
        reuse = self.config.context == "reuse"
        try:
            with self._precision():
                # every pass of the tick shares the rotary tables and cache views, and its adaLN
                # modulation depends only on (level, action): all passes' at once, [B, passes, .]
                view = self._model.stream_view(self.cache, rows, self.frame_index[rows], 1, *self.latent_shape[1:])
                mods = self._modulations(levels + [self.config.context_noise], prev_level, buttons, camera)
                passes = iter(range(len(levels)))

                def denoise(x: torch.Tensor, t: float) -> torch.Tensor:
                    i = next(passes)
                    # nothing is written (cache, counters) before the last pass: safe to abandon
                    if abort is not None and 2 * i < len(levels) and abort():
                        raise _Abandoned
                    mod = [m[:, i:i + 1] for m in mods]
                    last = i == len(levels) - 1
                    if not self.config.guidance or t <= self.config.guidance_above:
                        return self._model.forward_stream(x, prev_in, mod, view, append=reuse and last,
                                                          base=base).float()
                    if reuse and last:  # the pass whose keys/values the cache keeps runs on its own
                        pred = self._model.forward_stream(x, prev_in, mod, view, append=True, base=base).float()
                        weak = self._model.forward_stream(x, prev_in, mod, view, append=False, history="without",
                                                          base=base).float()
                    else:
                        pred, weak = self._model.forward_stream(x, prev_in, mod, view, append=False, history="both",
                                                                base=base).float().chunk(2)
                    return pred + self.config.guidance * (pred - weak)

                x0 = sample(denoise, self._noise(rows), self.config.steps, eta=self.config.eta,
                            shift=self.config.shift, draw=lambda: self._noise(rows))  # [B, 1, C, h, w]
                frames = None
                if show:
                    shown = self._show(rows, x0[:, 0], camera, buttons)  # [B, H, W, 3] uint8
                    if self.config.reencode:
                        x0 = torch.lerp(x0, self._tokenizer.encode(shown).float()[:, None], self.config.reencode)
                    frames = shown.cpu().numpy()
        except _Abandoned:
            for slot, state in zip(slots, rng_states):
                self.rngs[slot].set_state(state)
            return None
        if reuse:
            self._finish(rows, x0)
        else:
            self._pending = (rows, x0, prev_in, [m[:, -1:] for m in mods], view)
        return frames if show else x0

    @torch.inference_mode()
    def flush(self) -> None:
        """Run the cache pass of the last tick's frames, if it has not run yet.

        `step()` returns its frames before their cache pass (it does not change them), so that a
        server can run it between ticks, off the path from action to frame; `step()`, `start()`
        and `release()` call this first, so the result does not depend on whether anyone else does."""
        if self._pending is None:
            return
        rows, x0, prev_in, mods, view = self._pending
        self._pending = None
        prev_level = torch.full((len(rows), 1), self.config.context_noise, device=self.device)  # [B, 1]
        with self._precision():
            noisy = add_noise(x0, prev_level, self._noise(rows))
            self._model.forward_stream(noisy, prev_in, mods, view, append=True)
        self._finish(rows, x0)

    def _show(self, rows: torch.Tensor, latent: torch.Tensor, camera: torch.Tensor, buttons: torch.Tensor) -> torch.Tensor:
        """Decode the clean latents [B, C, h, w] to uint8 frames [B, H, W, 3], through the refiner or plus
        the carried detail (moved as the action [B, 1, .] moves the picture, as the model moves its previous latent)."""
        if self.refiner is not None:
            decoded = self._tokenizer.decode(latent).float()
            with autocast(self.device, False):  # fp32: the refiner copies pixels frame after frame
                shown = self.refiner(decoded, self.shown[rows], self.decoded[rows], camera[:, 0], buttons[:, 0])
            self.shown[rows], self.decoded[rows] = shown, decoded
            return unit_to_frames(shown)
        if not self.config.detail_carry:
            return self._tokenizer.decode_frames(latent)
        degrees, scale = self._model.picture_motion(camera[:, 0], buttons[:, 0])  # [B, 2] (yaw, pitch), [B]
        detail = self.config.detail_carry * warp_by_camera(self.detail[rows], degrees, self.warp_fov, padding="zeros",
                                                           scale=scale)
        decoded = self._tokenizer.decode(latent)
        if self.config.detail_gate:
            moved = warp_by_camera(self.decoded[rows], degrees, self.warp_fov, scale=scale)
            change = (decoded - moved).abs().mean(dim=1, keepdim=True)  # [B, 1, H, W]
            detail = detail * torch.exp(-change / self.config.detail_gate)
        self.detail[rows], self.decoded[rows] = detail, decoded
        return unit_to_frames(decoded + detail)

    def _append(self, rows: torch.Tensor, latent: torch.Tensor, buttons: torch.Tensor, camera: torch.Tensor) -> None:
        """A cache pass on its own (priming): latent [B, 1, C, h, w] at the context noise level, under the
        encoded actions [B, 1, .]."""
        prev_in, prev_level, _ = self._previous(rows, buttons, camera)  # its prediction is not kept: no base
        with self._precision():
            view = self._model.stream_view(self.cache, rows, self.frame_index[rows], 1, *self.latent_shape[1:])
            noisy = add_noise(latent, prev_level, self._noise(rows))
            self._model.forward_stream(noisy, prev_in, self._modulations([self.config.context_noise], prev_level,
                                                                        buttons, camera), view, append=True)
        self._finish(rows, latent)

    def _finish(self, rows: torch.Tensor, latent: torch.Tensor) -> None:
        """The frame latent [B, 1, C, h, w] is in the cache: it becomes `prev`."""
        self.prev[rows] = latent[:, 0].float()
        self.frame_index[rows] += 1

    def _modulations(self, levels: list[float], prev_level: torch.Tensor, buttons: torch.Tensor,
                     camera: torch.Tensor) -> list[torch.Tensor]:
        """The model's adaLN modulations [B, P, .] for P passes at noise `levels` under one action, from
        the cache when the same levels, previous-latent levels and actions came before (the same values:
        a pure function of them; nobody writes into the returned tensors)."""
        key = (tuple(levels), prev_level.cpu().numpy().tobytes(), buttons.cpu().numpy().tobytes(),
               camera.cpu().numpy().tobytes())
        kept = self._modulation_cache.get(key)
        if kept is not None:
            self._modulation_cache.move_to_end(key)
            return kept[0]
        B, P = len(prev_level), len(levels)
        noise_level = torch.tensor(levels, device=self.device).expand(B, P)  # [B, P]
        mods = self._model.stream_modulations(noise_level, prev_level.expand(B, P), buttons.expand(B, P, -1),
                                              camera.expand(B, P, -1))
        size = sum(m.numel() * m.element_size() for m in mods)
        if size <= MODULATION_CACHE_BYTES:
            self._modulation_cache[key] = (mods, size)
            self._modulation_bytes += size
            while self._modulation_bytes > MODULATION_CACHE_BYTES:
                self._modulation_bytes -= self._modulation_cache.popitem(last=False)[1][1]
        return mods

    def _encode(self, actions: list[Action]) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions -> model inputs (buttons [B, 1, BUTTON_DIM], camera bins [B, 1, 2]) on the device."""
        hot, bins = encode_many([a.quantized() for a in actions])
        return torch.from_numpy(hot).to(self.device)[:, None], torch.from_numpy(bins).to(self.device)[:, None]

    def _previous(self, rows: torch.Tensor, buttons: torch.Tensor, camera: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The lightly noised previous latents of the given slots [B, 1, C, h, w], moved by the actions,
        their noise level [B, 1], and for a `clean_base` model the same latents moved without the noise
        (what its correction is added to; None otherwise)."""
        level = self.config.context_noise if self.config.prev_noise is None else self.config.prev_noise
        prev_level = torch.full((len(rows), 1), level, device=self.device)  # [B, 1]
        clean = self.prev[rows][:, None]  # [B, 1, C, h, w]
        prev_in = add_noise(clean, prev_level, self._noise(rows))
        prev_in = self._model.warp_previous(prev_in, camera, buttons)  # as in training: noised, then moved
        return prev_in, prev_level, self._model.clean_base(clean, camera, buttons)

    def _noise(self, rows: torch.Tensor) -> torch.Tensor:
        """Standard normal [B, 1, C, h, w], each slot from its own generator."""
        return torch.stack([torch.randn((1, *self.latent_shape), generator=self.rngs[int(r)], device=self.device)
                            for r in rows])

    def _precision(self) -> torch.autocast:
        return autocast(self.device, self.bf16)

    def describe(self) -> dict:
        return {**asdict(self.config), "batch_size": self.batch_size, "cache_bytes": self.cache.nbytes()}
