"""`unreid presets | head -1`: a reader that leaves early ends the command quietly."""

from __future__ import annotations

import os
import subprocess
import sys

from unreid.cli import main

UNREID = [sys.executable, "-m", "unreid"]


def test_output_into_a_pipe_with_no_reader_ends_quietly_with_141():
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written: EPIPE every time
    try:
        done = subprocess.run([*UNREID, "presets"], stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr.decode()) == (141, "")  # no traceback, no error line


def test_a_reader_that_takes_one_line_and_leaves():
    proc = subprocess.Popen(
        [*UNREID, "list", "presets"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    err = proc.stderr.read()
    proc.stderr.close()
    code = proc.wait()
    assert first == b"cap/demo\n"
    assert code in (0, 141) and err == b""  # 0 when it wrote everything before the close


def test_another_broken_pipe_is_still_an_error(monkeypatch, capsys):
    from unreid.cli import listing

    def broken() -> list[str]:
        raise BrokenPipeError(32, "Broken pipe (a worker's)")

    monkeypatch.setitem(listing.LISTERS, "presets", broken)
    assert main(["list", "presets"]) == 2  # stdout still has its reader: reported
    assert "unreid: error: [Errno 32] Broken pipe (a worker's)" in capsys.readouterr().err
