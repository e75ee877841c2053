"""Run ``scaledet`` / ``scaledet-labels`` as processes forked from an interpreter that has imported them.

Why: the suite runs the two commands about 370 times, and a fresh interpreter spends about 3.5 s of CPU
importing torch, torchvision (whose ``ops`` import ``torch._dynamo``), pyarrow and the CLI before a command
does anything (``scaledet predict missing.png …`` answers in 3.7 s fresh, 0.2 s forked). On two cores the
test command took 574–592 s with a fresh interpreter per command and 310 s with this server.

What stays the same: every command is still a process of its own, started from the console script's entry
point with its own arguments, environment, working directory, stdin (empty), stdout, stderr, exit status,
file locks and ``atexit`` handlers, so a test sees what a user's shell sees. What differs is only that the
libraries are already imported, which is why the server is used only when that cannot change what a
command does:

- the command's environment must equal the server's, apart from ``SCALEDET_*`` variables: scaledet reads
  those when a command runs, but other libraries read theirs at import (``HF_HUB_CACHE``, ``PYTHONPATH``,
  ``HOME`` for matplotlib's config folder), and those commands start a fresh interpreter;
- importing the libraries must print nothing: a warning printed at import would reach a fresh process's
  stderr but not a forked one's, and a test of one-line errors would no longer see it;
- a test about imports themselves (which modules a command loads) starts a fresh interpreter
  (``run_cli(..., fresh=True)``), as does anything the server cannot start.

The fresh path stays tested: the README tour runs its lines in a shell, the kill tests start their commands
with ``Popen``, and tests/test_forked_commands.py checks that forked and fresh answers agree byte for byte.

The server forks before any thread of its own runs Python or torch work: the only other thread is the
background thread of pyarrow's jemalloc, whose fork handlers restart it in the child. It forks one child at
a time, as a pytest worker runs one test at a time.
"""
from __future__ import annotations

import importlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

#: The console scripts the server can start, as pyproject.toml's [project.scripts] names them.
ENTRY_POINTS = {"scaledet": ("scaledet.cli.detect", "main"), "scaledet-labels": ("scaledet.cli.labels", "main")}

#: What the commands import on their way to work; imported once, by the server.
PRELOADED = ("torch", "torchvision", "torchvision.ops", "torchvision.models.detection", "pyarrow.parquet", "pandas",
             "scaledet.cli.detect", "scaledet.cli.labels", "scaledet.labelspace", "scaledet.labelspace.encoders",
             "scaledet.detector.engine", "scaledet.detector.predict", "scaledet.detector.evaluation")

#: Variables a command may differ in from the server: scaledet's own, read when a command runs, never at import.
PER_COMMAND_VARIABLES = "SCALEDET_"


# --------------------------------------------------------------------------------------------- server side
def _exit_status(code: object) -> int:
    """What the interpreter exits with for ``SystemExit(code)``: None is 0, an int itself, else 1 after
    printing it to stderr."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _run_child(request: dict, set_by_imports: dict, private_fds: tuple[int, ...]) -> None:
    """In the forked child: become the command's process, run it, exit as its interpreter would.

    Its environment is the request's, plus what the server's imports set in theirs (a fresh interpreter's
    imports would have set the same)."""
    import atexit
    import threading

    status = 1
    try:
        for fd in private_fds:
            os.close(fd)
        if request["cwd"]:
            os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.update(set_by_imports)
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                                (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            opened = os.open(path, flags, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        module, function = ENTRY_POINTS[request["command"]]
        sys.argv = [request["script"], *request["args"]]
        try:
            getattr(importlib.import_module(module), function)()
            status = 0
        except SystemExit as stop:
            status = _exit_status(stop.code)
        except BaseException:  # noqa: BLE001 - what an interpreter does with an uncaught exception
            sys.excepthook(*sys.exc_info())
            status = 1
        threading._shutdown()  # the interpreter's own exit: wait for non-daemon threads, then atexit
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream at exit is the command's business
                pass
        os._exit(status)


def serve() -> None:
    """Read one JSON request per line on stdin; for each, fork the command, answer its pid, then its exit
    status (as ``subprocess`` reports it: negative for a signal)."""
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    before = dict(os.environ)
    for name in PRELOADED:
        importlib.import_module(name)
    # the encoder's own way in, which tells the Hugging Face libraries they are offline before importing them
    importlib.import_module("scaledet.labelspace.encoders").import_sentence_transformers_offline()
    set_by_imports = {k: v for k, v in os.environ.items() if before.get(k) != v}
    answers.write("ready\n")
    answers.flush()
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _run_child(request, set_by_imports, (requests.fileno(), answers.fileno(), null))
        answers.write(f"{pid}\n")
        answers.flush()
        _, wait_status = os.waitpid(pid, 0)
        answers.write(f"{os.waitstatus_to_exitcode(wait_status)}\n")
        answers.flush()


# --------------------------------------------------------------------------------------------- test side
class CommandServer:
    """The server of one pytest process, started on first use; ``run`` answers as ``subprocess.run`` does."""

    def __init__(self, environment: dict) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="scaledet-commands-"))
        import_output = self._folder / "imports.stderr"
        self.environment = dict(environment)
        with import_output.open("wb") as errors:
            self._process = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=errors, env=self.environment)
        try:
            ready = _read_line(self._process.stdout.fileno(), timeout=300)
        except (EOFError, TimeoutError):
            ready = None
        printed = import_output.read_text(errors="replace")
        if ready != "ready" or printed:
            self._process.kill()
            self.close()
            raise RuntimeError(f"the command server did not start cleanly: {printed[-2000:]!r}")

    def can_run(self, command: str, env: dict) -> bool:
        return command in ENTRY_POINTS and self._process.poll() is None and _same_but_scaledet(env, self.environment)

    def run(self, command: str, args: list[str], env: dict, cwd: Path | None, timeout: float
            ) -> subprocess.CompletedProcess:
        script = str(Path(sys.executable).with_name(command))
        stdout, stderr = self._folder / "stdout", self._folder / "stderr"
        request = {"command": command, "script": script, "args": list(args), "env": env,
                   "cwd": str(cwd) if cwd is not None else os.getcwd(), "stdout": str(stdout), "stderr": str(stderr)}
        self._process.stdin.write((json.dumps(request) + "\n").encode())
        self._process.stdin.flush()
        answers = self._process.stdout.fileno()
        pid = int(_read_line(answers, timeout=60))
        try:
            status = int(_read_line(answers, timeout))
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            _read_line(answers, timeout=60)
            raise subprocess.TimeoutExpired([script, *args], timeout) from None
        return subprocess.CompletedProcess([script, *args], status, stdout.read_text(encoding="utf-8"),
                                           stderr.read_text(encoding="utf-8"))

    def close(self) -> None:
        self._process.stdin.close()
        self._process.wait(timeout=60)
        for path in self._folder.iterdir():
            path.unlink()
        self._folder.rmdir()


def _read_line(fd: int, timeout: float) -> str:
    """One line from the server, unbuffered (a buffered reader could hold the next answer where ``select``
    cannot see it); TimeoutError after ``timeout`` seconds without it, EOFError if the server is gone."""
    line = b""
    while not line.endswith(b"\n"):
        if not select.select([fd], [], [], timeout)[0]:
            raise TimeoutError(f"no answer from the command server in {timeout} s")
        byte = os.read(fd, 1)
        if not byte:
            raise EOFError("the command server exited")
        line += byte
    return line.decode().strip()


def _same_but_scaledet(env: dict, server_env: dict) -> bool:
    def other(variables: dict) -> dict:
        return {k: v for k, v in variables.items() if not k.startswith(PER_COMMAND_VARIABLES)}

    return other(env) == other(server_env)


if __name__ == "__main__":
    serve()
