"""Recordings (VPT convention): round trip, and a writer killed mid-way leaves a readable recording."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from simulator.actions import NOOP, Action
from simulator.eval.metrics import psnr
from simulator.rollout.recorder import Recorder, RecordingInfo, read_recording


def _frames(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    """Smooth moving gradients (video codecs keep these close; noise they would not)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([np.stack([(x * 4 + t * 3) % 256, (y * 6 + t * 5) % 256, np.full_like(x, (t * 7) % 256)], -1)
                     for t in range(n)]).astype(np.uint8)  # [T, H, W, 3]


def test_round_trip(tmp_path):
    frames = _frames(30)
    actions = [NOOP] + [Action(forward=True, yaw=float(t % 5 - 2)) for t in range(1, 30)]
    info = RecordingInfo(resolution=(32, 48), backend="engine", start={"seed": 4}, seed=4, checkpoint=None)
    with Recorder(tmp_path, info) as rec:
        for t, (frame, action) in enumerate(zip(frames, actions)):
            rec.write(frame, action, tick=t, seq=t - 1, gen_ms=1.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata.json", "recording.jsonl", "recording.mp4"]
    back = read_recording(tmp_path)
    assert back.actions == actions
    assert back.frames.shape == frames.shape
    assert float(np.mean(psnr(back.frames, frames))) > 30  # lossy (x264, 4:2:0) but close
    meta = back.metadata
    assert meta["complete"] and meta["frames"] == 30 and meta["seed"] == 4 and meta["resolution"] == [32, 48]
    assert meta["fps"] == 20 and meta["backend"] == "engine" and meta["start"] == {"seed": 4}
    line = json.loads((tmp_path / "recording.jsonl").read_text().splitlines()[3])
    assert line["tick"] == 3 and line["seq"] == 2 and line["gen_ms"] == 1.5 and line["action"]["forward"]
    with pytest.raises(ValueError, match="recording is uint8"):
        Recorder(tmp_path / "x", info).write(frames[0, :16], NOOP, tick=0)


WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_recorder import _frames
    from simulator.actions import Action
    from simulator.rollout.recorder import Recorder, RecordingInfo
    frames = _frames(400)
    rec = Recorder({out!r}, RecordingInfo(resolution=(32, 48), backend="engine", start={{"seed": 1}}, seed=1))
    for t in range(400):
        rec.write(frames[t], Action(forward=t % 2 == 1), tick=t)
        print(t, flush=True)
        time.sleep(0.02)
""")


def test_killed_writer_leaves_a_recording_readable_up_to_its_last_second(tmp_path):
    out = tmp_path / "rec"
    code = WRITER.format(tests=os.path.dirname(__file__), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    written = -1
    deadline = time.monotonic() + 60
    while written < 70 and time.monotonic() < deadline:
        written = int(proc.stdout.readline())
    os.killpg(proc.pid, signal.SIGKILL)  # the writer and its ffmpeg, at once, without warning
    proc.wait()
    assert written >= 70, "the writer did not get going"
    rec = read_recording(out)
    assert not rec.metadata["complete"]
    # everything up to the last whole second (fragment of 20 frames) before the kill is there
    print(f"written {written + 1} frames before the kill, {len(rec.frames)} readable")
    assert len(rec.frames) >= (written // 20) * 20 - 20 >= 40, (len(rec.frames), written)
    assert len(rec.actions) == len(rec.frames)
    expected = _frames(len(rec.frames))
    assert float(np.mean(psnr(rec.frames, expected))) > 30
    assert [a.forward for a in rec.actions] == [t % 2 == 1 for t in range(len(rec.actions))]
