"""`unreid ARGS` as a forked child of the test process: a process of its own, which a real
SIGKILL or SIGINT ends mid-write, without the 4-8 s a fresh interpreter spends importing
torch, torchvision and scikit-learn (the tests that kill runs launch six of them).

The child runs `unreid.cli.main(args)` with the given environment, its stdout and
stderr going to files, Ctrl-C raising KeyboardInterrupt as in a shell, and leaves with
`os._exit` (pytest's own exit handlers stay the parent's). What needs a fresh
interpreter (import-time output, `python -m unreid` itself) keeps `subprocess`.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finished:
    returncode: int  # -N: ended by signal N (as subprocess reports it)
    stdout: str
    stderr: str


class Child:
    """One running `unreid` command; `Popen`'s `pid`, `poll`, `send_signal`, `wait`."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="unreid-child-"))
        self._out, self._err = self._dir / "stdout", self._dir / "stderr"
        self.returncode: int | None = None
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            _child(args, env, self._out, self._err)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float = 600) -> Finished:
        deadline = time.time() + timeout
        while self.poll() is None:
            if time.time() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                self.returncode = -signal.SIGKILL
                raise TimeoutError(f"unreid child {self.pid} still running after {timeout} s")
            time.sleep(0.05)
        done = Finished(self.returncode, self._out.read_text(), self._err.read_text())
        shutil.rmtree(self._dir, ignore_errors=True)
        return done


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> Finished:
    """`unreid ARGS` to its end (or its death), like `subprocess.run(capture_output=True)`."""
    return Child(args, env).wait(timeout)


def _child(args: list[str], env: dict[str, str] | None, out: Path, err: Path) -> None:
    rc = 1
    try:
        for fd, path in ((1, out), (2, err)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        logging.root.handlers.clear()  # pytest's capture handlers: the CLI sets up its own
        from unreid.cli import main

        rc = main(list(args))
    except SystemExit as end:
        rc = end.code if isinstance(end.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
