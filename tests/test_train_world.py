"""World-model training: a tiny model overfits one clip, resumable state round-trips, DDP under gloo."""

import gc
import os
import socket

from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from simulator.actions import BUTTON_DIM, CAMERA_BINS
from simulator.models.dit import build_dit
from simulator.models.tokenizer import Tokenizer, preset
from simulator.train.ddp import DistInfo
from simulator.train.world_data import LatentEpisodes
from simulator.diffusion import sample_levels
from simulator.train.world_trainer import TRAIN_PRESETS, WorldTrainer, generation_prev_noise

CPU = DistInfo(0, 1, torch.device("cpu"))


def _episodes(E: int = 3, T: int = 10, seed: int = 0) -> LatentEpisodes:
    """Smooth random latents that drift (so the previous frame predicts a lot, not everything)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(E, 1, 4, 8, 8, generator=g)
    drift = 0.3 * torch.randn(E, 1, 4, 8, 8, generator=g)
    steps = torch.arange(T).view(1, T, 1, 1, 1)
    latents = (base + drift * steps).reshape(E * T, 4, 8, 8)  # [E*T, C, h, w]
    return LatentEpisodes(latents.to(torch.bfloat16), (torch.rand(E * T, BUTTON_DIM, generator=g) > 0.8).float(),
                          torch.randint(0, CAMERA_BINS, (E * T, 2), generator=g),
                          torch.arange(0, E * T + 1, T), torch.arange(E), (32, 32))


def _trainer(seed: int = 0, info: DistInfo = CPU) -> WorldTrainer:
    torch.manual_seed(seed)
    return WorldTrainer(TRAIN_PRESETS["tiny"], build_dit("tiny"), info)


def test_learning_rate_warms_up_holds_and_cools_down_to_zero():
    cfg = replace(TRAIN_PRESETS["tiny"], lr=1e-3, warmup_steps=10, max_steps=100)
    constant = WorldTrainer(cfg, build_dit("tiny"), CPU)
    assert constant.lr_at(0) == pytest.approx(1e-4) and constant.lr_at(50) == constant.lr_at(99) == 1e-3
    cooled = WorldTrainer(replace(cfg, cooldown_steps=40), build_dit("tiny"), CPU)
    rates = [cooled.lr_at(step) for step in range(100)]
    assert rates[:60] == [constant.lr_at(step) for step in range(60)]
    assert rates[80] == pytest.approx(5e-4) and rates[99] == pytest.approx(2.5e-5)
    assert all(a > b for a, b in zip(rates[60:], rates[61:]))


def test_sampler_clips_stay_inside_episodes():
    eps = _episodes(E=3, T=10)
    batch = eps.sampler(clip_frames=4, seed=0).batch(64)
    assert batch["latents"].shape == (64, 5, 4, 8, 8)
    # consecutive frames of a clip come from one episode: the drift between them is constant
    diffs = batch["latents"][:, 1:] - batch["latents"][:, :-1]
    torch.testing.assert_close(diffs[:, 1:], diffs[:, :-1], atol=0.1, rtol=0)


@pytest.fixture
def one_thread():
    """Tiny ops on a loaded 2-core machine run far faster on one thread than on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tiny_model_overfits_one_clip(one_thread):
    trainer = _trainer()
    batch = _episodes(E=1, T=5).sampler(clip_frames=4, seed=0).batch(4)  # the same clip 4 times
    first = [trainer.train_step(batch)["loss"] for _ in range(5)]
    last = [trainer.train_step(batch)["loss"] for _ in range(95)][-5:]
    assert sum(last) < 0.3 * sum(first), (first, last)


def test_own_context_feeds_guesses_to_the_chosen_clips_only(one_thread):
    trainer = _trainer()
    batch = _episodes().sampler(clip_frames=4, seed=2).batch(64)
    latents = batch["latents"].float()
    x0, prev = latents[:, 1:], latents[:, :-1]
    trainer.cfg = replace(trainer.cfg, self_context=0.5)
    inputs, prevs = trainer.own_context(x0, prev, batch["buttons"][:, 1:], batch["camera"][:, 1:])
    changed = (inputs != x0).flatten(1).any(dim=1)  # [B]: clips given the model's guesses
    assert 16 < int(changed.sum()) < 48  # about half of 64
    torch.testing.assert_close(inputs[~changed], x0[~changed], rtol=0, atol=0)
    assert (inputs[changed] != x0[changed]).flatten(2).any(dim=2).all()  # every frame of a chosen clip
    torch.testing.assert_close(prevs[:, 0], prev[:, 0], rtol=0, atol=0)  # the true start stays
    torch.testing.assert_close(prevs[:, 1:], inputs[:, :-1], rtol=0, atol=0)  # each frame's previous input
    # the training step runs with it and still learns the clip
    one = _episodes(E=1, T=5).sampler(clip_frames=4, seed=0).batch(4)
    first = [trainer.train_step(one)["loss"] for _ in range(5)]
    last = [trainer.train_step(one)["loss"] for _ in range(95)][-5:]
    assert sum(last) < 0.5 * sum(first), (first, last)


def test_own_context_reads_the_previous_latent_at_the_exported_generators_level(one_thread):
    trainer = _trainer()
    batch = _episodes().sampler(clip_frames=4, seed=2).batch(4)
    latents = batch["latents"].float()
    seen = []
    model = trainer.model
    trainer.model = lambda x, prev, level, prev_level, *rest, **kw: seen.append(prev_level) or model(
        x, prev, level, prev_level, *rest, **kw)
    trainer.cfg = replace(trainer.cfg, self_context=0.5)
    trainer.own_context(latents[:, 1:], latents[:, :-1], batch["buttons"][:, 1:], batch["camera"][:, 1:])
    level = generation_prev_noise(trainer.diffusion)
    assert level != trainer.diffusion.context_noise  # the two differ, so the test tells them apart
    torch.testing.assert_close(seen[0], torch.full_like(seen[0], level), rtol=0, atol=0)


def test_a_batch_context_is_what_the_model_sees_and_the_targets_stay_true(one_thread):
    batch = _episodes().sampler(clip_frames=4, seed=3).batch(4)
    trainer = _trainer()

    def predict(b):
        trainer.noise_rng.manual_seed(5)
        with torch.no_grad():
            return trainer.predict(b)

    pred, x0, _ = predict(batch)
    same, x0_same, _ = predict({**batch, "context": batch["latents"].clone()})
    torch.testing.assert_close(same, pred, rtol=0, atol=0)  # the true frames as context: no change
    other = {**batch, "context": batch["latents"] + 0.5 * torch.randn_like(batch["latents"])}
    moved, x0_other, _ = predict(other)
    assert (moved - pred).abs().max() > 1e-3  # the model reads the context...
    torch.testing.assert_close(x0_other, batch["latents"][:, 1:], rtol=0, atol=0)  # ...and is judged on the truth
    # marked as its own rollout, a clip's frames at target levels are noised from the truth, the rest from the context
    trainer.noise_rng.manual_seed(5)
    level = sample_levels((4, 4), trainer.diffusion, trainer.noise_rng, torch.device("cpu"))
    targets = level > trainer.diffusion.context_max
    assert targets.any() and (~targets).any()
    own = {**other, "own": torch.ones(4, dtype=torch.bool)}
    seen = []
    trainer.net = lambda x, *rest, **kw: seen.append(x) or x  # what the pass sees, noised
    for b in (batch, other, own):
        predict(b)
    truth, context, mixed = seen
    torch.testing.assert_close(mixed[targets], truth[targets], rtol=0, atol=0)
    torch.testing.assert_close(mixed[~targets], context[~targets], rtol=0, atol=0)
    # in clips of its own rollouts only frames at target levels count: not its own frames asked to become true
    level = torch.tensor([[0.05, 0.9, 0.1, 0.5], [0.05, 0.9, 0.1, 0.5]])
    assert trainer.counted(batch, level) is None
    counted = trainer.counted({**batch, "own": torch.tensor([False, True])}, level)
    assert counted.tolist() == [[True] * 4, [False, True, False, True]]
    pred, x0 = torch.zeros(2, 4, 1, 1, 1), torch.ones(2, 4, 1, 1, 1)
    base = trainer.diffusion_loss(pred, x0, level, counted)
    x0[1, 0] = 100.0  # a context-level frame of the own clip: left out
    assert trainer.diffusion_loss(pred, x0, level, counted) == base < trainer.diffusion_loss(pred, x0, level)
    x0[1, 0], x0[1, 1] = 1.0, 100.0  # a target-level frame: counted
    assert trainer.diffusion_loss(pred, x0, level, counted) > base + 100


def test_rollout_buffer_mixes_the_models_own_rollouts_with_true_targets(one_thread):
    from simulator.rollout.generator import GeneratorConfig
    from simulator.train.own_rollouts import RolloutBuffer

    torch.manual_seed(0)
    model, tokenizer = build_dit("tiny"), Tokenizer(preset("tiny"))  # 4 latent channels: 8x8 latents, 32x32 frames
    with torch.no_grad():  # not copy-last: its rollouts drift from the truth
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    episodes = _episodes(E=3, T=20)
    gen = GeneratorConfig(resolution=(32, 32), window_frames=3, steps=2)
    buffer = RolloutBuffer(episodes, 0.5, clip_frames=4, generator=gen, tokenizer=tokenizer, frames=10, rollouts=3,
                           refresh=5, context=2, seed=0)
    assert buffer.due(0)
    with pytest.raises(RuntimeError, match="empty"):
        buffer.mix(episodes.sampler(4, seed=0).batch(2))
    model.train()
    buffer.refresh(model, step=0)
    assert model.training  # handed back as it came
    assert not buffer.due(4) and buffer.due(5)
    seen, true = buffer.seen, buffer.true["latents"]
    assert seen.shape == true.shape == (3, 12, 4, 8, 8)
    torch.testing.assert_close(seen[:, :2], true[:, :2], rtol=0, atol=0)  # the true context
    assert ((seen[:, 2:] - true[:, 2:]).flatten(2).abs().amax(dim=2) > 1e-3).all()  # then its own frames

    batch = episodes.sampler(4, seed=1).batch(64)
    mixed = buffer.mix(batch)
    own = (mixed["context"] != mixed["latents"]).flatten(2).any(dim=2)  # [B, T+1]
    chosen = own.any(dim=1)
    assert torch.equal(mixed["own"], chosen)
    assert 16 < int(chosen.sum()) < 48  # about half of 64
    for key in ("latents", "buttons", "camera"):  # the clips not chosen are the batch's, untouched
        torch.testing.assert_close(mixed[key][~chosen], batch[key][~chosen], rtol=0, atol=0)
    torch.testing.assert_close(mixed["context"][~chosen], batch["latents"][~chosen], rtol=0, atol=0)
    assert own[chosen][:, 1:].all()  # every input of a chosen clip but its first previous frame is its own
    for b in chosen.nonzero().flatten().tolist():  # and a chosen clip is one window of one rollout and its span
        hits = [(r, s) for r in range(3) for s in range(1, 8)
                if torch.equal(mixed["context"][b], seen[r, s:s + 5]) and torch.equal(mixed["latents"][b], true[r, s:s + 5])
                and torch.equal(mixed["camera"][b], buffer.true["camera"][r, s:s + 5])]
        assert hits, b


def test_still_rollouts_start_on_still_frames_and_hold_the_models_own_picture(one_thread):
    """`--rollout-still`: a still frame is the same latent three frames running under no action, inside one
    episode with the context before it; the buffered rollouts start there and go on under no action, and the
    target of each frame of a buffered clip is the model's own frame before it (nothing changes)."""
    from simulator.actions import NOOP, encode_many
    from simulator.rollout.generator import GeneratorConfig
    from simulator.train.own_rollouts import RolloutBuffer, still_frames

    episodes = _episodes(E=3, T=20)
    hot, bins = (torch.from_numpy(a[0]) for a in encode_many([NOOP]))

    def stand(first: int, ticks: int):  # the player stops at frame `first` for `ticks` more frames
        episodes.latents[first + 1:first + 1 + ticks] = episodes.latents[first]
        episodes.buttons[first + 1:first + 1 + ticks], episodes.camera[first + 1:first + 1 + ticks] = hot, bins

    stand(5, 4)  # frames 6-9 repeat frame 5: 7, 8 and 9 are still (two idle repeats up to them)
    stand(20, 2)  # the second episode opens still: frame 22 is, but too early for a context of 4 frames...
    stand(30, 1)  # ...and one idle repeat is not enough
    stand(41, 2)  # the third episode: frame 43 is
    episodes.buttons[7, 0] = 1.0  # a key held on frame 7 (the picture unchanged, say against a wall): 7 and 8 are not
    assert still_frames(episodes, context=4).tolist() == [9, 43]
    assert still_frames(episodes, context=3).tolist() == [9, 22, 43]

    torch.manual_seed(0)
    model, tokenizer = build_dit("tiny"), Tokenizer(preset("tiny"))
    gen = GeneratorConfig(resolution=(32, 32), window_frames=3, steps=2)
    buffer = RolloutBuffer(episodes, 0.5, clip_frames=4, generator=gen, tokenizer=tokenizer, frames=30, rollouts=4,
                           context=4, seed=0, still=True)  # longer than any episode: the frame is held
    buffer.refresh(model, step=0)
    true = buffer.true
    for r in range(4):
        end = next(e for e in (9, 43) if torch.equal(true["latents"][r, 3], episodes.latents[e].float()))
        torch.testing.assert_close(true["latents"][r, :4], episodes.latents[end - 3:end + 1].float(), rtol=0, atol=0)
        assert (true["latents"][r, 4:] == episodes.latents[end].float()).all()  # the still frame, every tick
        assert (true["buttons"][r, 3:] == hot).all() and (true["camera"][r, 3:] == bins).all()
    torch.testing.assert_close(buffer.seen[:, :4], true["latents"][:, :4], rtol=0, atol=0)  # then its own ticks
    # a clip of the buffer: its inputs one window of a rollout, the target of each frame the model's own frame before
    mixed = buffer.mix(episodes.sampler(4, seed=1).batch(32))
    chosen = mixed["own"].nonzero().flatten().tolist()
    assert 4 < len(chosen) < 28
    for b in chosen:
        hits = [(r, s) for r in range(4) for s in range(3, 30)
                if torch.equal(mixed["context"][b], buffer.seen[r, s:s + 5])
                and torch.equal(mixed["latents"][b], buffer.seen[r, s - 1:s + 4])]
        assert hits, b
        assert (mixed["buttons"][b] == hot).all() and (mixed["camera"][b] == bins).all()
    with pytest.raises(ValueError, match="no still frame"):
        RolloutBuffer(_episodes(E=3, T=20), 0.5, clip_frames=4, generator=gen, tokenizer=tokenizer, frames=6,
                      still=True)


def test_resumable_state_round_trip(tmp_path, one_thread):
    trainer = _trainer()
    sampler = _episodes().sampler(clip_frames=4, seed=1)
    for _ in range(3):
        trainer.train_step(sampler.batch(4))
    trainer.save(tmp_path, {"kind": "world_model"}, {"sampler": sampler.state()})
    expected = [trainer.train_step(sampler.batch(4))["loss"] for _ in range(2)]

    resumed = _trainer(seed=123)  # different init: everything must come from the folder
    sampler2 = _episodes().sampler(clip_frames=4, seed=99)
    sampler2.set_state(resumed.load(tmp_path)["sampler"])
    assert resumed.step == 3
    got = [resumed.train_step(sampler2.batch(4))["loss"] for _ in range(2)]
    assert got == pytest.approx(expected, rel=1e-6)
    for a, b in zip(trainer.ema.parameters(), resumed.ema.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _adv_trainer(seed: int = 0, **overrides) -> WorldTrainer:
    torch.manual_seed(0)  # the run's tokenizer is given, not part of the trainer's state
    tokenizer = Tokenizer(preset("tiny"))  # 4 latent channels, stride 4: 8x8 latents are 32x32 frames
    torch.manual_seed(seed)
    cfg = replace(TRAIN_PRESETS["tiny"], **{"adv_weight": 0.5, "adv_warmup": 1, "adv_frames": 4, **overrides})
    return WorldTrainer(cfg, build_dit("tiny"), CPU, tokenizer=tokenizer)


def test_adversarial_term_reaches_the_model_and_resumes(tmp_path, one_thread):
    with pytest.raises(ValueError, match="tokenizer"):
        WorldTrainer(replace(TRAIN_PRESETS["tiny"], adv_weight=0.5), build_dit("tiny"), CPU)
    trainer = _adv_trainer()
    frozen = {k: v.clone() for k, v in trainer.tokenizer.state_dict().items()}
    disc0 = [p.detach().clone() for p in trainer.disc.parameters()]
    sampler = _episodes().sampler(clip_frames=4, seed=1)
    first = trainer.train_step(sampler.batch(8))
    assert "d" in first and "g_adv" not in first  # the discriminator trains alone during its warm-up
    second = trainer.train_step(sampler.batch(8))
    assert "g_adv" in second and trainer.disc_steps == 2
    assert any(not torch.equal(a, b) for a, b in zip(disc0, trainer.disc.parameters()))
    for k, v in trainer.tokenizer.state_dict().items():  # the decoder judges, it does not learn
        torch.testing.assert_close(v, frozen[k], rtol=0, atol=0)

    # with adv_previous (the default) each frame is judged beside its true previous frame
    batch = sampler.batch(8)
    pred, x0, level = trainer.predict(batch)
    fake, real = trainer.judged(pred, batch["latents"], level)
    assert fake.shape == real.shape == (4, 6, 32, 32)
    torch.testing.assert_close(fake[:, :3], real[:, :3], rtol=0, atol=0)  # the same true previous frames
    assert not torch.equal(fake[:, 3:], real[:, 3:])
    alone = _adv_trainer(adv_previous=False)
    assert alone.judged(pred, batch["latents"], level)[0].shape == (4, 3, 32, 32)

    # the verdict reaches the world model: same draws, with and without the term
    with_adv, without = _adv_trainer(adv_warmup=0), _adv_trainer(adv_warmup=0)
    without.cfg = replace(without.cfg, adv_weight=0.0)
    without.disc = None
    batch = _episodes().sampler(clip_frames=4, seed=3).batch(8)
    with_adv.train_step(batch)
    without.train_step(batch)
    assert any(not torch.equal(a, b) for a, b in zip(with_adv.model.parameters(), without.model.parameters()))

    # resumable: the discriminator, its optimizer and its step count come back from the folder
    trainer.save(tmp_path, {"kind": "world_model"}, {"sampler": sampler.state()})
    expected = [trainer.train_step(sampler.batch(8)) for _ in range(2)]
    resumed = _adv_trainer(seed=123)
    sampler2 = _episodes().sampler(clip_frames=4, seed=99)
    sampler2.set_state(resumed.load(tmp_path)["sampler"])
    assert resumed.disc_steps == 2
    got = [resumed.train_step(sampler2.batch(8)) for _ in range(2)]
    for e, g in zip(expected, got):
        assert g["loss"] == pytest.approx(e["loss"], rel=1e-6) and g["d"] == pytest.approx(e["d"], rel=1e-5)
    for a, b in zip(trainer.disc.parameters(), resumed.disc.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def _ddp_worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        trainer = _trainer(seed=0, info=DistInfo(rank, world_size, torch.device("cpu")))
        sampler = _episodes().sampler(clip_frames=4, seed=rank)  # each rank sees different clips
        start = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
        for _ in range(3):
            trainer.train_step(sampler.batch(2))
        params = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
        gathered = [torch.empty_like(params) for _ in range(world_size)]
        dist.all_gather(gathered, params)
        if rank == 0:
            torch.save({"replicas": gathered, "start": start}, out)
        # Gloo aborts a process (SIGABRT) if the group is torn down while a peer's work is in
        # flight; meet at a barrier and drop DDP's reducer before destroying the group.
        del trainer
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_ddp_gloo_replicas_stay_identical(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "params.pt")
    mp.spawn(_ddp_worker, args=(2, port, out), nprocs=2, join=True)
    result = torch.load(out)
    a, b = result["replicas"]
    assert torch.equal(a, b), f"replicas differ by up to {(a - b).abs().max():.3g}"
    assert not torch.equal(a, result["start"]), "training did not change the weights"


def test_energy_score_rewards_drawing_a_future_over_painting_their_mean():
    from simulator.train.world_trainer import energy_score

    truth = torch.tensor([-1.0, 1.0]).repeat(500).view(-1, 1, 1, 1, 1)  # two futures, equally likely
    mean = torch.zeros_like(truth)
    a, b = (torch.randint(0, 2, truth.shape, generator=torch.Generator().manual_seed(s)).float() * 2 - 1 for s in (1, 2))
    assert energy_score(mean, mean, truth).mean() == pytest.approx(1.0, abs=1e-3)
    assert energy_score(a, b, truth).mean() == pytest.approx(0.5, abs=0.06)  # draws from the true distribution
    assert float(energy_score(truth, truth, truth).max()) < 1e-3


def test_energy_score_objective_draws_twice_and_mixes_with_the_x0_loss(one_thread):
    from simulator.diffusion import loss_weight
    from simulator.train.world_trainer import energy_score

    batch = _episodes().sampler(clip_frames=4, seed=2).batch(6)
    trainer = _trainer()
    trainer.cfg = replace(trainer.cfg, energy_score=0.25)
    pred, x0, level = trainer.predict(batch)
    assert pred.shape == (12, *x0.shape[1:])  # the clips twice, from independent noise
    first, second = pred.float().chunk(2)
    assert not torch.allclose(first, second)
    weight = loss_weight(level, trainer.diffusion)
    expected = 0.75 * (weight * (first - x0).pow(2).mean(dim=(2, 3, 4))).mean() \
        + 0.25 * (weight * energy_score(first, second, x0)).mean()
    torch.testing.assert_close(trainer.diffusion_loss(pred, x0, level), expected)
    one = _episodes(E=1, T=5).sampler(clip_frames=4, seed=0).batch(4)  # and a step still learns a clip
    trainer.cfg = replace(trainer.cfg, energy_score=1.0)
    first_losses = [trainer.train_step(one)["loss"] for _ in range(5)]
    last = [trainer.train_step(one)["loss"] for _ in range(95)][-5:]
    assert sum(last) < 0.5 * sum(first_losses), (first_losses, last)


def _steps(trainer: WorldTrainer, steps: int = 2) -> list[float]:
    sampler = _episodes().sampler(clip_frames=4, seed=5)
    return [trainer.train_step(sampler.batch(4))["loss"] for _ in range(steps)]


def test_compiled_training_pass_equals_the_eager_one(one_thread):
    """`patchworld train` runs the pass through torch.compile on CPU: the same losses and updates as eager,
    to rounding (fp32 here)."""
    cfg = replace(TRAIN_PRESETS["tiny"], precision="fp32")
    torch.manual_seed(0)
    eager = WorldTrainer(cfg, build_dit("tiny"), CPU)
    torch.manual_seed(0)
    compiled = WorldTrainer(cfg, build_dit("tiny"), CPU, compile=True)
    torch.testing.assert_close(_steps(compiled), _steps(eager), rtol=1e-4, atol=1e-6)
    for c, e in zip(compiled.model.parameters(), eager.model.parameters()):
        torch.testing.assert_close(c, e, rtol=1e-4, atol=1e-5)


def test_a_training_compile_that_fails_falls_back_to_eager(one_thread, monkeypatch):
    """No C++ compiler for inductor (say): training warns once and runs the eager pass, step for step."""
    want = _steps(_trainer())

    def broken(fn, **options):
        def fails(*args, **kwargs):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found\n(long inductor trace)")
        return fails

    monkeypatch.setattr(torch, "compile", broken)
    torch.manual_seed(0)
    trainer = WorldTrainer(TRAIN_PRESETS["tiny"], build_dit("tiny"), CPU, compile=True)
    with pytest.warns(UserWarning, match="torch.compile of the training pass failed"):
        got = _steps(trainer)
    assert got == want


@pytest.mark.parametrize("grow", [{"depth": 3}, {"mlp_ratio": 6.0}, {"depth": 3, "mlp_ratio": 8.0}])
def test_init_grows_a_model_that_predicts_as_its_source(tmp_path, one_thread, grow):
    """`--init` with `--depth` or `--mlp-ratio` above the checkpoint's: its blocks and hidden units
    first, the new blocks identities and the new hidden units silent, so the grown model starts from
    the source's predictions and learns with all of its weights; a checkpoint that does not fit is refused."""
    from simulator.checkpoint import save_checkpoint

    source = _trainer(seed=1)
    _steps(source, 3)  # trained a little: the gates are no longer zero
    save_checkpoint(tmp_path / "src", source.ema.state_dict(), {"model": source.ema.config_dict(), "steps": 3})
    torch.manual_seed(2)
    grown = WorldTrainer(TRAIN_PRESETS["tiny"], build_dit("tiny", **grow), CPU)
    assert grown.init_weights(tmp_path / "src") == 3
    batch = _episodes().sampler(clip_frames=4, seed=9).batch(2)
    x, prev = batch["latents"][:, 1:], batch["latents"][:, :-1]
    level = torch.full(x.shape[:2], 0.5)
    args = (x, prev, level, torch.zeros_like(level), batch["buttons"][:, 1:], batch["camera"][:, 1:])
    with torch.no_grad():
        torch.testing.assert_close(grown.ema(*args), source.ema(*args), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grown.model(*args), source.ema(*args), rtol=1e-5, atol=1e-5)
    before = {k: v.clone() for k, v in grown.model.state_dict().items()}
    _steps(grown, 1)
    after = grown.model.state_dict()
    if "mlp_ratio" in grow:  # the new hidden units learn: their zero output weights move
        hidden = source.model.blocks[0].mlp[2].in_features
        assert not torch.equal(after["blocks.0.mlp.2.weight"][:, hidden:], before["blocks.0.mlp.2.weight"][:, hidden:])
    with pytest.raises(ValueError, match="does not fit this model"):
        WorldTrainer(TRAIN_PRESETS["tiny"], build_dit("tiny", depth=1), CPU).init_weights(tmp_path / "src")
    with pytest.raises(ValueError, match="does not fit this model"):  # narrower MLPs cannot take it
        WorldTrainer(TRAIN_PRESETS["tiny"], build_dit("tiny", mlp_ratio=2.0), CPU).init_weights(tmp_path / "src")
