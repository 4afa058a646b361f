"""The README's commands run as written after its two commands: in a fresh shell (no environment
activated, the project's .venv kept off PATH), each command block's first line is run the way the
README says to run it, its own activation line first. A synopsis (`nbkit train VARIANT|CONFIG.yml
[...]`) runs as `--help`, `make X` as `make -n X`, a long job's script is checked by `bash -n`, and
an install or a distributed launcher is found in the project's environment; the rest runs whole."""

import os
import re
import subprocess

import pytest

from tests.conftest import REPO

ACTIVATE = REPO / ".venv" / "bin" / "activate"
README = (REPO / "README.md").read_text()
FIRST_LINES = [re.sub(r"\s+#.*$", "", m.group(1).splitlines()[0]).strip()
               for m in re.finditer(r"```bash\n(.*?)```", README, re.S)]
SETUP = next((line for line in FIRST_LINES if re.fullmatch(r"(\.|source) \S*activate", line)), None)


def fresh_shell(line: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """line in bash at the repository root, as a new terminal runs it after the README's setup line."""
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if "/.venv" not in p)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    script = f"{SETUP} && {line}" if SETUP else line
    return subprocess.run(["bash", "-c", script], cwd=REPO, env={**env, "PATH": path}, capture_output=True,
                          text=True, timeout=timeout)


def as_checked(line: str) -> str:
    """How a first line is run here: whole, or its cheap equivalent where running it whole would
    train for hours, serve forever or install packages."""
    words = line.split()
    if any(p in line for p in ("|", "[--", "...")):  # a synopsis: the command's own help
        head = [w for w in words if not re.search(r"[|\[\].]{1}|^[A-Z]", w) or w in ("-m",)]
        return " ".join(head[:4]) + " --help"
    if words[0] == "make":
        return "make -n " + " ".join(words[1:])
    if words[0] == "bash" and words[1].endswith(".sh"):
        return f"bash -n {words[1]}"
    if words[0].endswith(".sh"):  # a long job's script run by its path: checked, never run (it writes shipped runs)
        return f"bash -n {words[0]}"
    if words[0] in ("pip", "torchrun", "marimo", "ray"):
        return f"command -v {words[0]}"
    return line


@pytest.mark.skipif(not ACTIVATE.exists(), reason="no .venv here: `make test` makes one")
@pytest.mark.parametrize("line", [l for l in FIRST_LINES if l != SETUP])
def test_each_command_blocks_first_line_runs_as_the_readme_shows_it(line):
    assert SETUP, "the README says nowhere how a new terminal gets the project's environment"
    checked = as_checked(line)
    done = fresh_shell(checked)
    assert done.returncode == 0, f"{line!r} (run as {checked!r}) failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    if checked.startswith("command -v"):
        assert done.stdout.strip().startswith(str(REPO / ".venv")), done.stdout  # the project's, not the system's
    if checked.startswith("make -n"):
        assert ".venv/bin/" in done.stdout
