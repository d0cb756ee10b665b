#!/usr/bin/env python3
"""Proves the container image's build stage compiles, without Docker.

Stages what `docker build .` would see into an empty folder: the build
context (this repository less what .dockerignore leaves out, with Docker's
pattern rules: `*`, `?`, `**`, `!` exceptions, the last match wins, a
matched folder takes everything in it), then the files the Dockerfile's
build stage COPYs, at its WORKDIR. Then runs `cargo build --locked --bin
oauth-sidecar` there. A source folder the image would lack fails here.

    python3 scripts/docker-context.py [--keep]

CARGO_TARGET_DIR is honoured (compiled dependencies can be shared with the
normal build); the staged folder is removed afterwards unless --keep.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pattern_regex(pattern):
    """A .dockerignore pattern as a regular expression over a relative path."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def read_ignore(path):
    """The .dockerignore rules, in order: (exception, regex)."""
    rules = []
    if not os.path.exists(path):
        return rules
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            if exception:
                line = line[1:].strip()
            line = os.path.normpath(line.lstrip("/")).replace(os.sep, "/")
            rules.append((exception, pattern_regex(line)))
    return rules


def ignored(rel, rules):
    """Docker's rule: the last pattern matching the path or a parent wins."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for exception, regex in rules:
        if any(regex.match(p) for p in prefixes):
            verdict = not exception
    return verdict


def context_files(root, rules):
    """Every file of the build context, relative to it."""
    for folder, dirs, files in os.walk(root):
        rel_folder = os.path.relpath(folder, root)
        rel_folder = "" if rel_folder == "." else rel_folder.replace(os.sep, "/")
        # A folder Docker leaves out whole is not walked (target/ is large),
        # unless an exception could bring something of it back.
        keep = []
        for d in dirs:
            rel = f"{rel_folder}/{d}" if rel_folder else d
            if not ignored(rel, rules) or any(exc for exc, _ in rules):
                keep.append(d)
        dirs[:] = keep
        for name in files:
            rel = f"{rel_folder}/{name}" if rel_folder else name
            if not ignored(rel, rules):
                yield rel


def build_stage_copies(dockerfile):
    """The build stage's WORKDIR and its COPY (sources, destination) pairs."""
    workdir = "/"
    copies = []
    stages = 0
    with open(dockerfile) as f:
        lines = f.read().replace("\\\n", " ").splitlines()
    for line in lines:
        words = shlex.split(line, comments=True)
        if not words:
            continue
        op = words[0].upper()
        if op == "FROM":
            stages += 1
            if stages > 1:
                break
        elif op == "WORKDIR":
            workdir = os.path.join(workdir, words[1])
        elif op in ("COPY", "ADD"):
            args = [w for w in words[1:] if not w.startswith("--")]
            if any(w.startswith("--from") for w in words[1:]):
                continue
            copies.append((args[:-1], args[-1]))
    return workdir, copies


def stage(root, target):
    rules = read_ignore(os.path.join(root, ".dockerignore"))
    files = sorted(context_files(root, rules))
    workdir, copies = build_stage_copies(os.path.join(root, "Dockerfile"))
    base = os.path.join(target, workdir.lstrip("/"))
    count = 0
    for sources, dest in copies:
        for src in sources:
            src = os.path.normpath(src).replace(os.sep, "/")
            for rel in files:
                if src == ".":
                    # The context's contents, into the destination.
                    out = os.path.join(base, dest, rel)
                elif rel.startswith(src + "/"):
                    # A folder's contents (not the folder itself), as Docker copies them.
                    out = os.path.join(base, dest, os.path.relpath(rel, src))
                elif rel == src:
                    name = os.path.basename(rel)
                    into_folder = dest.endswith("/") or len(sources) > 1
                    out = os.path.join(base, dest, name) if into_folder else os.path.join(base, dest)
                else:
                    continue
                os.makedirs(os.path.dirname(out), exist_ok=True)
                shutil.copy2(os.path.join(root, rel), out)
                count += 1
    return base, count


def main():
    keep = "--keep" in sys.argv[1:]
    target = tempfile.mkdtemp(prefix="docker-context-")
    try:
        base, count = stage(ROOT, target)
        print(f"==> staged {count} files of the Docker build context in {base}")
        env = dict(os.environ)
        env.setdefault("CARGO_TARGET_DIR", os.path.join(ROOT, "target", "docker-context"))
        cmd = ["cargo", "build", "--locked", "--bin", "oauth-sidecar"]
        print("==> " + " ".join(cmd))
        return subprocess.call(cmd, cwd=base, env=env)
    finally:
        if keep:
            print(f"    kept {target}")
        else:
            shutil.rmtree(target, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
