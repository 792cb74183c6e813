"""Where figures go: docs/benchmarks.md, or only the terminal with --no-record."""

import argparse

from simulator.benchlog import add_record_arguments, record


def test_record_appends_a_dated_block_and_a_dry_run_only_prints(tmp_path, capsys):
    path = tmp_path / "benchmarks.md"
    record("Speed", "| a |\n| --- |\n| 1 |", command="patchworld bench x", notes="quiet machine", path=path,
           dry_run=True)
    assert not path.exists()
    assert "| 1 |" in capsys.readouterr().out
    record("Speed", "| a |\n| --- |\n| 1 |", command="patchworld bench x", notes="quiet machine", path=path)
    text = path.read_text()
    assert text.startswith("# Benchmarks") and "### Speed (" in text
    assert "Command: `patchworld bench x`" in text and text.rstrip().endswith("quiet machine")


def test_note_and_notes_are_one_option():
    for opt_in, flag in ((False, "--no-record"), (True, "--record")):
        parser = argparse.ArgumentParser()
        add_record_arguments(parser, opt_in=opt_in)
        assert parser.parse_args([flag, "--notes", "shared"]).note == "shared"
        assert parser.parse_args(["--note", "idle"]).note == "idle"
