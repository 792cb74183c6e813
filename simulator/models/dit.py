"""The world model: an action-conditioned spacetime-patch diffusion transformer (DiT).

Latent frames `[C, h, w]` are cut into `1 x p x p` patches (one latent frame thick, so every
tick answers its own action). Each frame's tokens also carry the PREVIOUS frame's latent as
extra input channels, and the network predicts the clean latent as "previous latent + a
learned correction": at initialisation the model is exactly copy-last-frame, and learning the
change is its job (see ../shared/FINDINGS.md). With `camera_warp_fov` set, the previous latent is
first shifted by the image motion the frame's camera action implies (a pinhole camera of that
vertical field of view turning by the commanded yaw/pitch): turning is then given, and the
network learns what a shift cannot tell (new content at the edges, parallax, blocks, the sky); with
`walk_zoom` too, it is also enlarged about the centre as walking forward grows the picture. Each frame has its own noise level and action;
both modulate that frame's tokens through adaLN-Zero. Attention is block-causal at chunk
granularity and goes through `kernels.attention`; positions are 3D rotary (t, y, x).

Three ways to run the same blocks:
  forward         clips of one size, [B, T, C, h, w]                 (training, evaluation)
  forward_packed  clips of different sizes packed into one sequence  (NaViT training)
  forward_cached  one new chunk against a rolling KV cache           (streaming generation)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from einops import rearrange

from kernels.attention import block_causal_attention, cached_attention
from simulator.actions import BUTTON_DIM, CAMERA_BIN_CENTERS, CAMERA_BINS
from simulator.models.camera_warp import ENGINE_FOV_DEG, walk_scale, warp_by_camera
from simulator.models.compiled import packaged_or_compiled
from simulator.models.kv_cache import KVCache
from simulator.models.rope import apply_rotary, frame_positions, rotary_angles

# attend(layer, q, k, v) -> out, all [B, H, L, head_dim]: the one thing that differs between paths
Attend = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class DiTConfig:
    latent_channels: int = 8  # C of the tokenizer's latents
    patch: int = 2  # p: tokens are 1 x p x p latent patches
    dim: int = 192  # model width
    depth: int = 8  # DiT blocks
    heads: int = 3
    mlp_ratio: float = 4.0
    chunk_frames: int = 1  # k: attention is bidirectional within k frames, causal across chunks
    rope_theta: float = 100.0  # longest rotary wavelength, in patches/frames (positions here are small)
    noise_embed_scale: float = 1000.0  # noise level in [0, 1] -> sinusoid argument, as in DiT's timesteps
    # > 0: shift each previous latent by the camera action's image motion for a pinhole camera of this
    # vertical field of view (degrees; the engine's is 70) before the network sees it; 0: no shift
    camera_warp_fov: float = 0.0
    # > 0 (with camera_warp_fov): also enlarge it about the centre by 1 + walk_zoom per tick of walking
    # forward (1 - walk_zoom backward; sprint and sneak by their speed), as walking moves the picture
    walk_zoom: float = 0.0
    # what the camera warp puts where the picture moves in from outside: "border" repeats the edge
    # latent (what every model so far trained with), "zeros" leaves the latent's zero there (nothing
    # to copy: the network has to draw what comes into view)
    warp_padding: str = "border"
    # True: the correction is added to the clean previous latent (moved), while the network still reads
    # it noised; False (every model before session 22): added to the noised input itself, so whatever
    # noise the correction does not remove stays in the frame (docs/training.md, "The clean base")
    clean_base: bool = False

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"DiT dim {self.dim} is not divisible by heads {self.heads}")
        if self.walk_zoom and not self.camera_warp_fov:
            raise ValueError("walk_zoom moves the previous latent with the camera warp: set camera_warp_fov too")
        if self.warp_padding not in ("border", "zeros"):
            raise ValueError(f"warp_padding must be 'border' or 'zeros', got {self.warp_padding!r}")
        if not 0.0 <= self.walk_zoom < 0.5:
            raise ValueError(f"walk_zoom is a scale change per tick in [0, 0.5), got {self.walk_zoom}")


PRESETS: dict[str, DiTConfig] = {
    "tiny": DiTConfig(latent_channels=4, patch=2, dim=32, depth=2, heads=2),  # tests: seconds
    # shipped: 5.6 M params, 64 tokens per 64x64 frame. Sized for an AVX2-only 2-core CPU, where bf16 is
    # slow and fp32 runs at ~30-60 GFLOP/s per core: 0.45 GFLOP per pass, 4 passes per frame
    "cpu": DiTConfig(latent_channels=8, patch=2, dim=192, depth=8, heads=3, camera_warp_fov=ENGINE_FOV_DEG),
    "gpu": DiTConfig(latent_channels=8, patch=2, dim=512, depth=16, heads=8, camera_warp_fov=ENGINE_FOV_DEG),  # ~70 M
}


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def rms_norm(x: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMS-normalise the last dim in float32, times a learned scale; returns x's dtype."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * scale.float()).to(x.dtype)


class NoiseLevelEmbedding(nn.Module):
    """Scalar noise level [...] in [0, 1] -> [..., dim] (sinusoid, then an MLP)."""

    def __init__(self, dim: int, scale: float, frequencies: int = 128):
        super().__init__()
        self.scale, self.frequencies = scale, frequencies
        self.mlp = nn.Sequential(nn.Linear(frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, level: torch.Tensor) -> torch.Tensor:
        half = self.frequencies // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=level.device) / half)
        args = level.float()[..., None] * self.scale * freqs  # [..., half]
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1))


class Attention(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        # QK-norm keeps bf16 logits tame; the norms run in float32 (as the rotation after them)
        self.q_scale = nn.Parameter(torch.ones(cfg.head_dim))
        self.k_scale = nn.Parameter(torch.ones(cfg.head_dim))
        self.proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layer: int, attend: Attend) -> torch.Tensor:
        qkv = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        # q and k normalised and rotated together: half the small ops (the streaming path is bound by them)
        scales = torch.stack([self.q_scale, self.k_scale])[:, None, None, None]  # [2, 1, 1, 1, d]
        q, k = apply_rotary(rms_norm(qkv[:2], scales), cos, sin).unbind(0)
        out = attend(layer, q, k, qkv[2].to(q.dtype))  # [B, H, L, d]
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class DiTBlock(nn.Module):
    """Pre-norm transformer block whose norms are modulated per frame (adaLN-Zero)."""

    def __init__(self, cfg: DiTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.norm1 = nn.LayerNorm(cfg.dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, elementwise_affine=False, eps=1e-6)
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, cfg.dim))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, 6 * cfg.dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, token_frame: torch.Tensor,
                cos: torch.Tensor, sin: torch.Tensor, attend: Attend) -> torch.Tensor:
        # modulation is computed once per frame [B, F, 6D], then gathered per token [B, L, 6D]
        return self.modulated(x, self.adaLN(cond).index_select(1, token_frame), cos, sin, attend)

    def modulated(self, x: torch.Tensor, mod: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  attend: Attend) -> torch.Tensor:
        """The block given its modulation mod [B, L or 1, 6D] (per token, or one row for a one-frame chunk)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1), cos, sin, self.layer, attend)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


@dataclass
class StreamView:
    """One tick's shared state for the streaming passes of a set of cache rows (see DiT.stream_view)."""

    cache: KVCache
    rows: torch.Tensor  # [B] cache rows
    frames: int  # frames per chunk
    cos: torch.Tensor  # [B, 1, L, head_dim / 2] rotary tables of the chunk's tokens
    sin: torch.Tensor
    start: torch.Tensor  # [B] ring bounds of the rows, as before this tick's append
    length: torch.Tensor
    keys: torch.Tensor  # [layers, B, H, S, head_dim] the rows' cached keys (KVCache.rows)
    values: torch.Tensor
    token_frame: torch.Tensor  # [L] frame of each token within the chunk


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        C, p, D = cfg.latent_channels, cfg.patch, cfg.dim
        self.patch_embed = nn.Linear(2 * C * p * p, D)  # noisy latent and previous latent, stacked
        self.noise_embed = NoiseLevelEmbedding(D, cfg.noise_embed_scale)
        self.prev_noise_embed = NoiseLevelEmbedding(D, cfg.noise_embed_scale)
        self.button_embed = nn.Linear(BUTTON_DIM, D)
        self.camera_embed = nn.Embedding(2 * CAMERA_BINS, D)  # yaw bins, then pitch bins
        # bin -> degrees, for warp_previous (not saved: it is the action encoding's, not learned)
        self.register_buffer("camera_degrees", torch.tensor(CAMERA_BIN_CENTERS, dtype=torch.float32), persistent=False)
        self.blocks = nn.ModuleList(DiTBlock(cfg, i) for i in range(cfg.depth))
        self.final_norm = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.final_adaLN = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.final_linear = nn.Linear(D, C * p * p)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # transformer linears: Xavier, zero bias (as DiT)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        # action and camera embeddings: small normal
        nn.init.normal_(self.button_embed.weight, std=0.02)
        nn.init.normal_(self.camera_embed.weight, std=0.02)
        # noise-level MLPs: small normal, as DiT's timestep embedder
        for embed in (self.noise_embed, self.prev_noise_embed):
            for layer in (embed.mlp[0], embed.mlp[2]):
                nn.init.normal_(layer.weight, std=0.02)
        # adaLN-Zero: every block starts as the identity (gates are zero)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN[1].weight)
            nn.init.zeros_(block.adaLN[1].bias)
        # output correction starts at zero: the initial model predicts exactly the previous latent
        for layer in (self.final_adaLN[1], self.final_linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    # --- pieces shared by every path ------------------------------------------------------

    def _check_latents(self, x: torch.Tensor) -> None:
        C, p = self.cfg.latent_channels, self.cfg.patch
        if x.shape[-3] != C or x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(f"latents {tuple(x.shape)}: expected {C} channels and a size divisible by patch {p}")

    def condition(self, noise_level: torch.Tensor, prev_level: torch.Tensor, buttons: torch.Tensor,
                  camera: torch.Tensor) -> torch.Tensor:
        """Per-frame conditioning [B, T, D] from levels [B, T], buttons [B, T, BUTTON_DIM], camera bins [B, T, 2]."""
        cam = self.camera_embed(camera[..., 0]) + self.camera_embed(camera[..., 1] + CAMERA_BINS)
        return self.noise_embed(noise_level) + self.prev_noise_embed(prev_level) + self.button_embed(buttons) + cam

    def picture_motion(self, camera: torch.Tensor, buttons: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """How each action moves the picture: camera bins [..., 2] and buttons [..., BUTTON_DIM] ->
        (degrees [..., 2] as (yaw, pitch), the walk's scale [...] or None when `walk_zoom` is 0)."""
        scale = walk_scale(buttons, self.cfg.walk_zoom) if self.cfg.walk_zoom else None
        return self.camera_degrees[camera], scale

    def warp_previous(self, prev: torch.Tensor, camera: torch.Tensor, buttons: torch.Tensor) -> torch.Tensor:
        """prev [B, T, C, h, w] moved as each frame's action (camera bins [B, T, 2], buttons [B, T,
        BUTTON_DIM]) moves the picture (`simulator.models.camera_warp`): the turn, and with
        `walk_zoom` the walk; unchanged when `camera_warp_fov` is 0."""
        if not self.cfg.camera_warp_fov:
            return prev
        B, T, C, h, w = prev.shape
        degrees, scale = self.picture_motion(camera, buttons)
        return warp_by_camera(prev.reshape(B * T, C, h, w), degrees.reshape(B * T, 2).to(prev.dtype),
                              self.cfg.camera_warp_fov, padding=self.cfg.warp_padding,
                              scale=None if scale is None else scale.reshape(B * T)).reshape(B, T, C, h, w)

    def clean_base(self, prev_clean: torch.Tensor | None, camera: torch.Tensor, buttons: torch.Tensor
                   ) -> torch.Tensor | None:
        """What a `clean_base` model adds its correction to: the clean previous latents [B, T, C, h, w]
        moved as `warp_previous` moves the noised input; None for other models (the input itself)."""
        if not self.cfg.clean_base:
            return None
        if prev_clean is None:
            raise ValueError("this model adds its correction to the clean previous latent (clean_base): "
                             "pass prev_clean")
        return self.warp_previous(prev_clean, camera, buttons)

    def embed(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """x, prev [B, T, C, h, w] -> tokens [B, T*N, D], frame-major, row-major within a frame."""
        p = self.cfg.patch
        stacked = torch.cat([x, prev], dim=2)  # [B, T, 2C, h, w]
        patches = rearrange(stacked, "b t c (hh p) (ww q) -> b (t hh ww) (c p q)", p=p, q=p)  # [B, T*N, 2C*p*p]
        return self.patch_embed(patches)

    def run_blocks(self, tokens: torch.Tensor, cond: torch.Tensor, token_frame: torch.Tensor,
                   cos: torch.Tensor, sin: torch.Tensor, attend: Attend) -> torch.Tensor:
        """Blocks plus the final modulated projection: tokens [B, L, D] -> corrections [B, L, C*p*p]."""
        for block in self.blocks:
            tokens = block(tokens, cond, token_frame, cos, sin, attend)
        shift, scale = self.final_adaLN(cond).index_select(1, token_frame).chunk(2, dim=-1)
        return self.final_linear(modulate(self.final_norm(tokens), shift, scale))

    def unembed(self, out: torch.Tensor, frames: int, h: int, w: int) -> torch.Tensor:
        """[B, T*N, C*p*p] -> [B, T, C, h, w]."""
        p = self.cfg.patch
        return rearrange(out, "b (t hh ww) (c p q) -> b t c (hh p) (ww q)", t=frames, hh=h // p, ww=w // p, p=p, q=p)

    # --- the three paths --------------------------------------------------------------------

    def forward(self, x: torch.Tensor, prev: torch.Tensor, noise_level: torch.Tensor, prev_level: torch.Tensor,
                buttons: torch.Tensor, camera: torch.Tensor, window_frames: int | None = None,
                prev_clean: torch.Tensor | None = None) -> torch.Tensor:
        """Clean-latent prediction [B, T, C, h, w] for noisy latents x [B, T, C, h, w].

        prev: each frame's previous latent [B, T, C, h, w] (noised to prev_level [B, T]);
        noise_level [B, T]; buttons [B, T, BUTTON_DIM] float; camera [B, T, 2] int64 bins;
        prev_clean: the previous latents before their noise, what a `clean_base` model adds its
        correction to (required there, ignored otherwise).
        """
        self._check_latents(x)
        prev = self.warp_previous(prev, camera, buttons)
        base = self.clean_base(prev_clean, camera, buttons)
        B, T, C, h, w = x.shape
        p = self.cfg.patch
        N = (h // p) * (w // p)
        cos, sin = rotary_angles(frame_positions(T, h // p, w // p, device=x.device), self.cfg.head_dim,
                                 self.cfg.rope_theta)  # [T*N, d/2]
        token_frame = torch.arange(T, device=x.device).repeat_interleave(N)  # [T*N]

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return block_causal_attention(q, k, v, frame_tokens=N, chunk_frames=self.cfg.chunk_frames,
                                          window_frames=window_frames)

        out = self.run_blocks(self.embed(x, prev), self.condition(noise_level, prev_level, buttons, camera),
                              token_frame, cos, sin, attend)
        return (prev if base is None else base) + self.unembed(out, T, h, w).to(prev.dtype)

    def forward_packed(self, clips: Sequence[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
        """NaViT packing: clips of any sizes in one sequence (attention block-diagonal across clips).

        Each clip is a dict with "x", "prev" [T_i, C, h_i, w_i], "noise_level", "prev_level" [T_i],
        "buttons" [T_i, BUTTON_DIM], "camera" [T_i, 2], and for a `clean_base` model "prev_clean" (as in
        `forward`); returns the clean-latent predictions per clip.
        """
        p, device = self.cfg.patch, clips[0]["x"].device
        tokens, conds, positions, token_frames, frame_tokens, lengths = [], [], [], [], [], [0]
        frames_so_far = 0
        clips = list(clips)
        for i, clip in enumerate(clips):
            self._check_latents(clip["x"])
            T, C, h, w = clip["x"].shape
            N = (h // p) * (w // p)
            moved = self.warp_previous(clip["prev"][None], clip["camera"][None], clip["buttons"][None])
            clean = clip.get("prev_clean")
            base = self.clean_base(None if clean is None else clean[None], clip["camera"][None], clip["buttons"][None])
            clip = {**clip, "prev": moved[0], "base": moved[0] if base is None else base[0]}
            clips[i] = clip  # the moved previous latent (or with clean_base the clean one) is what the correction is added to
            tokens.append(self.embed(clip["x"][None], clip["prev"][None]))  # [1, T*N, D]
            conds.append(self.condition(clip["noise_level"][None], clip["prev_level"][None],
                                        clip["buttons"][None], clip["camera"][None]))  # [1, T, D]
            positions.append(frame_positions(T, h // p, w // p, device=device))  # [T*N, 3]
            token_frames.append(frames_so_far + torch.arange(T, device=device).repeat_interleave(N))
            frames_so_far += T
            frame_tokens.append(N)
            lengths.append(T * N)
        cu_seqlens = torch.tensor(lengths, device=device).cumsum(0).to(torch.int32)  # [n_clips + 1]
        cos, sin = rotary_angles(torch.cat(positions), self.cfg.head_dim, self.cfg.rope_theta)  # [L, d/2]

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return block_causal_attention(q, k, v, frame_tokens=frame_tokens, chunk_frames=self.cfg.chunk_frames,
                                          cu_seqlens=cu_seqlens)

        out = self.run_blocks(torch.cat(tokens, dim=1), torch.cat(conds, dim=1), torch.cat(token_frames),
                              cos, sin, attend)[0]  # [L, C*p*p]
        results = []
        for i, clip in enumerate(clips):
            T, C, h, w = clip["x"].shape
            piece = out[int(cu_seqlens[i]):int(cu_seqlens[i + 1])][None]  # [1, T*N_i, C*p*p]
            results.append(clip["base"] + self.unembed(piece, T, h, w)[0].to(clip["prev"].dtype))
        return results

    def forward_cached(self, x: torch.Tensor, prev: torch.Tensor, noise_level: torch.Tensor, prev_level: torch.Tensor,
                       buttons: torch.Tensor, camera: torch.Tensor, *, cache: KVCache, rows: torch.Tensor,
                       first_frame: torch.Tensor, append: bool, prev_clean: torch.Tensor | None = None) -> torch.Tensor:
        """One chunk per stream against the rolling cache: x [B, k, C, h, w] for the cache rows `rows` [B].

        first_frame [B]: each stream's absolute frame index of the chunk's first frame (rotary t).
        append: write this pass's keys/values into the cache (the finished chunk at the context
        noise level); denoising passes leave the cache untouched. The streaming generator calls
        the two halves of this itself (`stream_view` once per tick, `forward_stream` per pass).
        """
        self._check_latents(x)
        B, T, C, h, w = x.shape
        view = self.stream_view(cache, rows, first_frame, T, h, w)
        return self.forward_stream(x, self.warp_previous(prev, camera, buttons),
                                   self.stream_modulations(noise_level, prev_level, buttons, camera), view, append,
                                   base=self.clean_base(prev_clean, camera, buttons))

    def stream_view(self, cache: KVCache, rows: torch.Tensor, first_frame: torch.Tensor, frames: int,
                    h: int, w: int) -> StreamView:
        """What every pass of one tick shares: the chunk's rotary tables, the rows' cache bounds and
        keys/values. Valid until the cache is next appended to."""
        p = self.cfg.patch
        N = (h // p) * (w // p)
        if N != cache.frame_tokens:
            raise ValueError(f"latent {h}x{w} gives {N} tokens per frame, the cache was built for {cache.frame_tokens}")
        B = len(rows)
        base = frame_positions(frames, h // p, w // p, device=rows.device)  # [T*N, 3], first frame 0
        offsets = torch.zeros(B, 1, 3, dtype=base.dtype, device=rows.device)
        offsets[:, 0, 0] = first_frame
        cos, sin = rotary_angles((base[None] + offsets).reshape(-1, 3), self.cfg.head_dim, self.cfg.rope_theta)
        cos, sin = cos.view(B, 1, frames * N, -1), sin.view(B, 1, frames * N, -1)  # [B, 1, L, d/2], broadcast over heads
        keys, values = cache.rows(rows)
        return StreamView(cache=cache, rows=rows, frames=frames, cos=cos, sin=sin,
                          start=cache.start[rows], length=cache.length[rows], keys=keys, values=values,
                          token_frame=torch.arange(frames, device=rows.device).repeat_interleave(N))

    def modulations(self, cond: torch.Tensor) -> list[torch.Tensor]:
        """adaLN outputs of every block, then the final layer's, for conditioning cond [B, F, D]:
        [B, F, 6D] per block and [B, F, 2D]. They depend only on noise level and action, so the
        generator computes them for all passes of a tick at once (F = passes) and slices."""
        return [block.adaLN(cond) for block in self.blocks] + [self.final_adaLN(cond)]

    def stream_modulations(self, noise_level: torch.Tensor, prev_level: torch.Tensor, buttons: torch.Tensor,
                           camera: torch.Tensor) -> list[torch.Tensor]:
        """`modulations` of `condition` (arguments as there): what a tick's passes take from its levels
        and action, the part of a tick `compile_stream` compiles beside the pass."""
        return self.modulations(self.condition(noise_level, prev_level, buttons, camera))

    def forward_stream(self, x: torch.Tensor, prev: torch.Tensor, mods: list[torch.Tensor], view: StreamView,
                       append: bool, history: str = "with", base: torch.Tensor | None = None) -> torch.Tensor:
        """One pass of the streaming path: x, prev [B, T, C, h, w] (prev already through
        `warp_previous`); mods from `modulations` for this pass ([B, T, .] each); view from
        `stream_view`. -> clean-latent prediction [B, T, C, h, w]. base: what the correction is added
        to when it is not prev (`clean_base`), from `clean_base`.

        history "without": the chunk attends to itself only, not to the cache (as the first chunk of
        a training clip, which has its previous latent but no earlier frames). "both": both passes
        in one batch (on a CPU the streaming pass is bound by per-op overhead, so the second costs
        little) -> [2B, T, C, h, w], the usual predictions first. Only "with" can append.

        The network runs in `stream_pass`, which reads the cache and writes nothing (what
        `compile_stream` compiles); the keys/values of an appending pass are written here."""
        if history not in ("with", "without", "both"):
            raise ValueError(f"history must be 'with', 'without' or 'both', got {history!r}")
        self._check_latents(x)
        B, T, C, h, w = x.shape
        if T != view.frames:
            raise ValueError(f"chunk of {T} frames, the stream view was made for {view.frames}")
        if append and history != "with":
            raise ValueError("only a pass with history appends to the cache")
        if T > 1:  # per frame -> per token; a one-frame chunk broadcasts its single row
            mods = [m[:, view.token_frame] for m in mods]
        pred, fresh = self.stream_pass(x, prev, mods, view.cos, view.sin, view.keys, view.values,
                                       view.start, view.length, history)
        if append:
            tokens = T * view.cache.frame_tokens
            slots = view.cache.slots(view.rows, tokens)
            for layer, (k, v) in enumerate(fresh):
                view.cache.update(layer, view.rows, slots, k, v)
            view.cache.advance(view.rows, tokens)
        if base is not None:  # the pass adds its correction to prev: move it onto the base
            pred = pred + (base - prev).to(pred.dtype).repeat(2 if history == "both" else 1, 1, 1, 1, 1)
        return pred

    def stream_pass(self, x: torch.Tensor, prev: torch.Tensor, mods: list[torch.Tensor], cos: torch.Tensor,
                    sin: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, start: torch.Tensor,
                    length: torch.Tensor, history: str
                    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The network of `forward_stream` (arguments checked there; mods per token or per chunk),
        without side effects: -> (prediction, each layer's new keys/values; [] unless history is "with")."""
        h, w = x.shape[-2:]
        N = (h // self.cfg.patch) * (w // self.cfg.patch)
        fresh: list[tuple[torch.Tensor, torch.Tensor]] = []

        def attend(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            if history == "without":
                return block_causal_attention(q, k, v, frame_tokens=N, chunk_frames=self.cfg.chunk_frames)
            if history == "both":
                (q, q_alone), (k, k_alone), (v, v_alone) = q.chunk(2), k.chunk(2), v.chunk(2)
            k_cache, v_cache = keys[layer], values[layer]
            out = cached_attention(q, k, v, k_cache.to(q.dtype), v_cache.to(q.dtype), cache_start=start,
                                   cache_len=length)
            if history == "with":
                fresh.append((k, v))
            if history == "both":
                alone = block_causal_attention(q_alone, k_alone, v_alone, frame_tokens=N,
                                               chunk_frames=self.cfg.chunk_frames)
                out = torch.cat([out, alone])
            return out

        if history == "both":
            x, prev = torch.cat([x, x]), torch.cat([prev, prev])
            mods, cos, sin = [torch.cat([m, m]) for m in mods], torch.cat([cos, cos]), torch.cat([sin, sin])
        tokens = self.embed(x, prev)
        for block, mod in zip(self.blocks, mods):
            tokens = block.modulated(tokens, mod, cos, sin, attend)
        shift, scale = mods[-1].chunk(2, dim=-1)
        out = self.final_linear(modulate(self.final_norm(tokens), shift, scale))
        return prev + self.unembed(out, x.shape[1], h, w).to(prev.dtype), fresh

    def compile_stream(self) -> None:
        """From now on run `stream_pass` through `torch.compile` (inductor), one stream at a time: one
        static graph, and a stream's frames stay independent of which other streams tick beside it
        (graphs for other batch sizes round differently). On the 2-core CPU a tick of one stream takes
        25-45% less time (docs/benchmarks.md); several streams no longer share their passes' per-op
        overhead. Compiled ahead of time (`packaged_or_compiled`): the first call on a machine exports and
        builds a package (~35-40 s for the pass and the modulations), later processes load it in milliseconds;
        predictions differ from eager ones by rounding."""
        # freezing: the weights become constants (oneDNN packs them once): 18-22% more frames/s on one
        # thread (session 15); the model must not be trained after this (the Generator runs its copy).
        # cpp_wrapper (for the just-in-time fallback; a package is C++ throughout): the pass's ~150 kernel calls
        # from C++, ~19% more frames/s on one thread (session 17, "The streaming pass with a C++ wrapper")
        eager = self.stream_pass

        def flat_pass(x, prev, flat, widths, cos, sin, keys, values, start, length, history):
            return eager(x, prev, list(flat.split(widths, dim=-1)), cos, sin, keys, values, start, length, history)

        # the modulations go in as one tensor (one cat a pass instead of a clone of each) and the cache as one
        # keys and one values tensor (one gather a tick instead of one per layer, none for a single stream)
        one = packaged_or_compiled(flat_pass, "the streaming pass", self, freezing=True, cpp_wrapper=True,
                                   dynamic=False)

        def stream_pass(x, prev, mods, cos, sin, keys, values, start, length, history):
            widths = tuple(m.shape[-1] for m in mods)
            if len(x) == 1:  # cat: one fresh tensor of standard strides whichever slices came in
                return one(x, prev, torch.cat(mods, dim=-1), widths, cos, sin, keys, values, start, length, history)
            rows = [one(x[i:i + 1], prev[i:i + 1], torch.cat([m[i:i + 1] for m in mods], dim=-1), widths,
                        cos[i:i + 1], sin[i:i + 1], keys[:, i:i + 1].contiguous(), values[:, i:i + 1].contiguous(),
                        start[i:i + 1], length[i:i + 1], history)
                    for i in range(len(x))]
            # history "both": each stream's [with, without] -> every stream's prediction with history, then without
            pred = torch.cat([r[0][:1] for r in rows] + [r[0][1:] for r in rows]) if history == "both" \
                else torch.cat([r[0] for r in rows])
            fresh = [(torch.cat([r[1][layer][0] for r in rows]), torch.cat([r[1][layer][1] for r in rows]))
                     for layer in range(len(rows[0][1]))]
            return pred, fresh

        self.stream_pass = stream_pass
        # ~30 small eager ops a tick otherwise (2-3 ms on one thread, session 16); one stream at a time as the
        # pass, so that a second player joining needs no package of its own (and rounds as when alone)
        one_mods = packaged_or_compiled(self.stream_modulations, "the modulations", self, freezing=True,
                                        dynamic=False)

        def stream_modulations(noise_level, prev_level, buttons, camera):
            if len(noise_level) == 1:
                return one_mods(noise_level, prev_level, buttons, camera)
            rows = [one_mods(noise_level[i:i + 1], prev_level[i:i + 1], buttons[i:i + 1], camera[i:i + 1])
                    for i in range(len(noise_level))]
            return [torch.cat(parts) for parts in zip(*rows)]

        self.stream_modulations = stream_modulations

    def new_cache(self, batch: int, window_frames: int, frame_tokens: int, device: torch.device | str,
                  dtype: torch.dtype = torch.float32) -> KVCache:
        return KVCache(self.cfg.depth, batch, self.cfg.heads, window_frames, frame_tokens, self.cfg.head_dim,
                       device=device, dtype=dtype)

    def config_dict(self) -> dict:
        return asdict(self.cfg)


def build_dit(preset_or_config: str | DiTConfig | dict, **overrides) -> DiT:
    """A DiT from a preset name, a config, or a config dict (as stored in a checkpoint)."""
    if isinstance(preset_or_config, str):
        if preset_or_config not in PRESETS:
            raise ValueError(f"unknown DiT preset {preset_or_config!r} (known: {', '.join(PRESETS)})")
        cfg = PRESETS[preset_or_config]
    elif isinstance(preset_or_config, dict):
        cfg = DiTConfig(**preset_or_config)
    else:
        cfg = preset_or_config
    return DiT(DiTConfig(**{**asdict(cfg), **overrides}))
