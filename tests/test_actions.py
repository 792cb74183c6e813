import json

import numpy as np
import pytest

from simulator import actions as A


def test_bins_are_symmetric_and_finer_near_zero():
    c = A.CAMERA_BIN_CENTERS
    assert len(c) == A.CAMERA_BINS and c[A.CAMERA_BINS // 2] == 0.0
    np.testing.assert_allclose(c, -c[::-1])
    steps = np.diff(c[A.CAMERA_BINS // 2:])
    assert np.all(np.diff(steps) > 0), steps  # each step wider than the last
    assert c[-1] == A.CAMERA_MAX_DEG


def test_encode_decode_round_trip_of_quantized_actions():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = A.Action(**{n: bool(rng.integers(2)) for n in A.BUTTONS},
                     hotbar=None if rng.random() < 0.5 else int(rng.integers(9)),
                     yaw=float(rng.normal(0, 8)), pitch=float(rng.normal(0, 8))).quantized()
        hot, cam = A.encode(a)
        assert hot.shape == (A.BUTTON_DIM,) and cam.shape == (2,)
        assert A.decode(hot, cam) == a
    assert A.from_arrays(A.to_arrays([a, A.NOOP])) == [a, A.NOOP]


def test_camera_is_clamped_and_small_moves_keep_their_sign():
    assert A.Action(yaw=95.0).quantized().yaw == A.CAMERA_MAX_DEG
    assert 0 < A.Action(pitch=0.5).quantized().pitch < 1.0


def test_text_form_round_trip(tmp_path):
    acts = [A.Action(forward=True, yaw=4.3).quantized(), A.Action(hotbar=2, use=True), A.NOOP]
    path = tmp_path / "a.jsonl"
    A.save_actions(path, acts)
    assert A.load_actions(path) == acts
    assert json.loads(path.read_text().splitlines()[2]) == {}


@pytest.mark.parametrize("line, field", [
    ('{"fly": true}', "fly"),
    ('{"hotbar": 9}', "hotbar"),
    ('{"hotbar": -1}', "hotbar"),
    ('{"yaw": NaN}', "yaw"),
    ('{"pitch": "up"}', "pitch"),
    ('{"jump": 3}', "jump"),
])
def test_bad_actions_name_the_field(line, field):
    with pytest.raises(ValueError, match=field):
        A.parse_lines(["{}", line])
    with pytest.raises(ValueError, match="line 2"):
        A.parse_lines(["{}", line])
