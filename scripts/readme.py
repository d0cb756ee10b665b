#!/usr/bin/env python3
"""Runs the README's shell blocks that are marked runnable, as written.

A block is runnable when the line before its opening fence is
`<!-- runnable -->`. The blocks run in order in one `bash -euo pipefail`,
as a reader pasting them into one terminal would (a later block may use
what an earlier one exported or started), in a fresh folder holding a copy
of `config/`, with the user's environment plus a `cargo` first on the PATH
that answers `cargo run --release -- ARGS` with the binary built for the
tests (so the commands run word for word without a second, release build).
What the blocks start in the background is stopped at the end. The script
fails when a command fails or the blocks run for more than 180 seconds.

    python3 scripts/readme.py target/debug/oauth-sidecar
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "<!-- runnable -->"
LIMIT_SECONDS = 180

CARGO_SHIM = """#!/bin/sh
# `cargo run --release -- ARGS` as the README writes it: the tests' binary.
if [ "$1" = run ] && [ "$2" = --release ] && [ "$3" = -- ]; then
    shift 3
    exec "{binary}" "$@"
fi
echo "the README check runs only 'cargo run --release -- ARGS', not: cargo $*" >&2
exit 2
"""


def runnable_blocks(text):
    """The (line, code) of each marked ```sh block, in order."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARK and i + 1 < len(lines) and re.match(r"^```(sh|bash)\s*$", lines[i + 1]):
            start = i + 2
            end = start
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            blocks.append((start + 1, "\n".join(lines[start:end]) + "\n"))
            i = end
        i += 1
    return blocks


def stop_group(proc):
    """Stops every process of `proc`'s group and waits up to 10 s for them."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    proc.wait()
    for _ in range(100):
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: readme.py PATH_TO_THE_BUILT_oauth-sidecar")
    binary = Path(sys.argv[1]).resolve()
    if not binary.is_file():
        sys.exit(f"no binary at {binary}: build it first (cargo build --bin oauth-sidecar)")
    blocks = runnable_blocks((ROOT / "README.md").read_text())
    if not blocks:
        sys.exit("README.md has no block marked " + MARK)
    with tempfile.TemporaryDirectory(prefix="readme-") as work:
        work = Path(work)
        shutil.copytree(ROOT / "config", work / "config")
        shim = work / ".bin"
        shim.mkdir()
        (shim / "cargo").write_text(CARGO_SHIM.format(binary=binary))
        (shim / "cargo").chmod(0o755)
        env = dict(os.environ, PATH=f"{shim}{os.pathsep}{os.environ.get('PATH', '')}")
        env.pop("OAUTH_SIDECAR_CONFIG", None)
        script = "".join(f"echo '==> README.md:{line}'\n{code}" for line, code in blocks)
        # Its own process group, so that what it starts with `&` is stopped with it.
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, start_new_session=True)
        try:
            status = proc.wait(timeout=LIMIT_SECONDS)
        except subprocess.TimeoutExpired:
            status = f"no end after {LIMIT_SECONDS} s"
        finally:
            stop_group(proc)
        if status != 0:
            sys.exit(f"README.md: a runnable block failed ({status}); the last line above names it")
    print(f"==> {len(blocks)} README blocks ran as written")


if __name__ == "__main__":
    main()
