"""`patchworld device-session` and `device-fetch`: a GPU visit's whole plan, dry-run on the CPU."""

import json

import pytest

from simulator import device_session
from simulator.cli import main as cli_main
from simulator.device_session import file_sha256, join_parts, junit_counts, split_file
from simulator.rollout.generator import Generator


def test_a_file_split_for_the_way_back_joins_to_the_same_bytes(tmp_path):
    source = tmp_path / "model.safetensors"
    source.write_bytes(bytes(range(256)) * 40)  # 10,240 bytes
    assert split_file(source, tmp_path / "small", part_bytes=20_000) == ["model.safetensors"]  # fits: as itself
    names = split_file(source, tmp_path / "parts", part_bytes=4096)
    assert names == [f"model.safetensors.part{i:03d}" for i in range(3)]
    assert [(tmp_path / "parts" / n).stat().st_size for n in names] == [4096, 4096, 2048]
    join_parts(tmp_path / "parts", names, tmp_path / "joined", file_sha256(source))
    assert (tmp_path / "joined").read_bytes() == source.read_bytes()
    (tmp_path / "parts" / names[1]).write_bytes(b"\0" * 4096)  # a part damaged on the way
    with pytest.raises(SystemExit, match="sha256"):
        join_parts(tmp_path / "parts", names, tmp_path / "joined2", file_sha256(source))
    assert not (tmp_path / "joined2").exists() and not (tmp_path / "joined2.tmp").exists()
    with pytest.raises(SystemExit, match="missing"):
        join_parts(tmp_path / "parts", names + ["model.safetensors.part003"], tmp_path / "joined3", file_sha256(source))


def test_kernel_test_counts_come_from_the_junit_report(tmp_path):
    report = tmp_path / "r.xml"
    report.write_text('<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="3" tests="40">'
                      "</testsuite></testsuites>")
    assert junit_counts(report) == {"tests": 40, "failures": 2, "errors": 1, "skipped": 3, "passed": 34}


# what the GPU box lacks (the device tool's README: torch, triton, numpy, numba, einops, safetensors, msgpack,
# tqdm are there): its phases must run without them
NOT_ON_THE_DEVICE = ("PIL", "gymnasium", "imageio", "imageio_ffmpeg", "pygame", "websockets")
BLOCKER = f"""import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {NOT_ON_THE_DEVICE!r}:
            raise ImportError("not on the device machine: " + name)
sys.meta_path.insert(0, Block())
"""


def test_a_dry_visit_collects_trains_packs_and_comes_back_as_a_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(device_session, "PART_BYTES", 50_000)  # the tiny model's weights come back in parts
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))  # the phases' interpreters import as the GPU box's would
    out, work = tmp_path / "out", tmp_path / "work"
    assert cli_main(["device-session", "--out", str(out), "--work", str(work), "--skip", "kernels",
                     "--episodes", "4", "--steps", "24", "--preset", "tiny", "--minutes", "3", "--device", "cpu",
                     "--workers", "1", "--train-args",
                     "--steps 4 --eval-every 4 --eval-clips 2 --threads 1 --no-compile"]) == 0
    record = json.loads((out / "session.json").read_text())
    assert set(record["phases"]) == {"env", "data", "train", "pack"}
    assert record["phases"]["data"]["train_frames"] == 4 * 24
    assert record["phases"]["train"]["exit"] == 0 and record["phases"]["train"]["steps"] == 4
    assert "not on the device machine" not in (out / "session.log").read_text()
    pack = record["phases"]["pack"]
    assert len(pack["parts"]) >= 2 and pack["too_big"] == [] and pack["files_back"] <= device_session.MAX_FILES_BACK
    assert sorted(p.name for p in (out / "world").iterdir()) == sorted(pack["parts"] + ["config.json"])

    fetched = tmp_path / "fetched"
    assert cli_main(["device-fetch", str(out), "--out", str(fetched)]) == 0
    assert file_sha256(fetched / "model.safetensors") == pack["sha256"]
    assert "train: 4 steps" in capsys.readouterr().out
    assert Generator.from_checkpoint(fetched).resolution == (64, 64)  # plays

    other = tmp_path / "other-tokenizer"  # a tokenizer the run did not train on is refused
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"not it")
    with pytest.raises(SystemExit, match="not the tokenizer"):
        cli_main(["device-fetch", str(out), "--out", str(tmp_path / "f2"), "--tokenizer", str(other)])


def test_unknown_phases_a_missing_out_and_weights_too_big_to_come_back_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="could not come back"):  # the gpu preset: ~77 M parameters, ~147 MiB
        cli_main(["device-session", "--out", str(tmp_path), "--preset", "gpu"])
    assert not (tmp_path / "session.json").exists()  # refused before the visit began
    with pytest.raises(SystemExit, match="unknown phases"):
        cli_main(["device-session", "--out", str(tmp_path), "--skip", "kernel"])
    with pytest.raises(SystemExit, match="--out is required"):
        cli_main(["device-session"])


def test_a_failed_training_start_is_tried_once_more_on_the_pytorch_attention(tmp_path):
    work = tmp_path / "work"
    for name in ("train", "heldout"):
        (work / name).mkdir(parents=True)  # "collected" earlier, but empty: training cannot start
    assert cli_main(["device-session", "--out", str(tmp_path / "out"), "--work", str(work), "--skip", "kernels,data",
                     "--preset", "tiny", "--minutes", "3", "--device", "cpu"]) == 0
    train = json.loads((tmp_path / "out" / "session.json").read_text())["phases"]["train"]
    assert [(a["attention"], a["exit"] != 0) for a in train["attempts"]] == [("auto", True), ("torch", True)]
    assert train["steps"] == 0 and "pack" not in json.loads((tmp_path / "out" / "session.json").read_text())["phases"]


def test_the_tree_that_travels_to_the_device_machine_stays_under_its_64_mib():
    """Every visit sends the tracked files (and the carried wheels, ~2 MiB) there, 64 MiB at most: a checkpoint
    committed beside the shipped ones can make every future visit fail before it starts."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (device_session.REPO / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=device_session.REPO, capture_output=True, check=True)
    paths = [device_session.REPO / p for p in listed.stdout.decode().split("\0") if p]
    tracked = sum(p.stat().st_size for p in paths if p.is_file())
    assert tracked + 3 * 2**20 <= 64 * 2**20, (f"the tracked tree is {tracked / 2**20:.1f} MiB: with the wheels it "
                                               "would not travel to the device machine (64 MiB); move large files out")
