"""`sweeps preview` over every YAML file of a checkout, with and without SWEEPS_PROJECT_ROOT.

    .venv/bin/python bench/preview_corpus.py /path/to/checkout           # experiments/**/*.yml
    .venv/bin/python bench/preview_corpus.py /path/to/checkout --glob '**/*.yaml' --out r.json

Runs the `sweeps` command a user would (`--sweeps`, default: the one beside this Python) once
per file, in the checkout's folder, on the file's path relative to it: first with
SWEEPS_PROJECT_ROOT set to the checkout, then without it. Records pass/fail and the first
error line, and groups failures by cause: the error text with its file, line, run and quoted
values taken out, so files that fail for the same reason count together. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

# Parts of an error line that name where or what, not why.
_WHERE = (
    re.compile(r"^error:\s*"),
    re.compile(r"^\S+\.ya?ml[:,]\s*"),
    re.compile(r"(line|column) \d+[:,]?\s*"),
    re.compile(r"run \d+ \([^)]*\):\s*"),
)
# A quoted value (an apostrophe inside a word is not a quote) or a ${...} placeholder.
_QUOTED = re.compile(r"(?<![\w'])'[^']*'(?!\w)|\"[^\"]*\"|\$\{[^}]*\}")


def _value(match: re.Match[str]) -> str:
    """A key's name stays (it is part of the cause); any other value becomes an ellipsis."""
    return match.group(0) if match.string[: match.start()].endswith("key ") else "…"


def preview(sweeps: str, root: Path, file: Path, with_root: bool) -> tuple[bool, str]:
    env = {k: v for k, v in os.environ.items() if k != "SWEEPS_PROJECT_ROOT"}
    if with_root:
        env["SWEEPS_PROJECT_ROOT"] = str(root)
    done = subprocess.run(
        [sweeps, "preview", str(file.relative_to(root))],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    error = next((line for line in lines if line.startswith("error")), lines[0] if lines else "")
    return done.returncode == 0, error.strip()


def cause(error: str) -> str:
    for pattern in _WHERE:
        error = pattern.sub("", error)
    text = re.sub(r"^(key '[^']*')[,:]", r"\1:", _QUOTED.sub(_value, error))
    return text.strip(" ,:")[:110]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--glob", default="experiments/**/*.yml")
    parser.add_argument("--sweeps", default=str(Path(sys.executable).with_name("sweeps")))
    parser.add_argument("--out", type=Path, help="write every file's result as JSON")
    args = parser.parse_args()
    root = args.root.resolve()
    files = sorted(root.glob(args.glob))
    results = {}
    for with_root in (True, False):
        mode = "with SWEEPS_PROJECT_ROOT" if with_root else "without"
        rows = {str(f.relative_to(root)): preview(args.sweeps, root, f, with_root) for f in files}
        results[mode] = rows
        passed = sum(ok for ok, _ in rows.values())
        print(f"\n## {mode}: {passed} of {len(rows)} files preview\n")
        causes = Counter(cause(error) for ok, error in rows.values() if not ok)
        if causes:
            print("| files | cause |\n|---:|:---|")
            for text, count in causes.most_common():
                print(f"| {count} | {text.replace('|', '/')} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
