"""The README's "A five-minute tour", run as written: its shell blocks in order, in one shell,
against the real binary on 127.0.0.1:8080, each command's output compared with the lines the
README prints after it (`…` matches anything). Files the tour asks to save (`// tour.mjs`,
`# receiver.py`) are saved from their blocks. Two substitutions only: `cargo run --release --`
runs the binary under test, and `npm install` of the SDK (checked to pin the version the Node
conformance suite installs) uses that suite's installed copy. The whole run happens in a
network namespace of its own with only loopback up, so the tour's fixed port is free and
nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from conftest import DEFAULT_BIN, REPO_ROOT

FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)
NPM_INSTALL = re.compile(r"^npm install @workos-inc/node@(\S+)$")


def tour_blocks() -> list[tuple[str, str]]:
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index("## A five-minute tour")
    end = readme.index("\n## ", start + 1)
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(readme[start:end])]


def chunks(block: str) -> list[tuple[list[str], list[str]]]:
    """Splits a shell block into (commands, expected output) pairs: comment lines right after a
    command are its output; a comment after a blank line (or at the start) explains the next."""
    result: list[tuple[list[str], list[str]]] = []
    commands: list[str] = []
    expected: list[str] = []
    previous = "blank"
    for line in block.splitlines():
        is_output = line.startswith("#") and previous in ("command", "output")
        if expected and not is_output:
            result.append((commands, expected))
            commands, expected = [], []
        if is_output:
            expected.append(line[2:] if line.startswith("# ") else line[1:])
            previous = "output"
        elif line.strip() == "":
            commands.append(line)
            previous = "blank"
        elif line.startswith("#"):
            commands.append(line)
            previous = "comment"
        else:
            commands.append(line)
            previous = "command"
    if commands or expected:
        result.append((commands, expected))
    return result


def matches(pattern: str, line: str) -> bool:
    regex = ".*?".join(re.escape(part) for part in pattern.split("…"))
    return re.fullmatch(regex, line) is not None


def test_the_readme_tour_runs_as_written(tmp_path: Path):
    binary = Path(os.environ.get("TRAILMARK_BIN", str(DEFAULT_BIN)))
    node_modules = REPO_ROOT / "conformance" / "node" / "node_modules"
    pinned = json.loads((REPO_ROOT / "conformance" / "node" / "package.json").read_text())[
        "dependencies"
    ]["@workos-inc/node"]
    assert node_modules.is_dir(), "run `npm ci` in conformance/node first (scripts/test does)"
    (tmp_path / "node_modules").symlink_to(node_modules)

    blocks = tour_blocks()
    assert blocks[0][0] == "sh" and "serve" in blocks[0][1], "the tour starts the server first"
    server = blocks[0][1].strip().replace("cargo run --release --", '"$TRAILMARK_BIN"')
    script = [
        "cd \"$TOUR_DIR\"",
        f"{server} > server.log 2>&1 &",
        "for _ in $(seq 1 300); do curl -s -o /dev/null http://127.0.0.1:8080/healthz && break; sleep 0.1; done",
    ]
    expectations: list[tuple[str, list[str]]] = []
    for language, text in blocks[1:]:
        first = text.splitlines()[0]
        if language in ("js", "python"):
            name = re.match(r"^(?://|#) ([\w.]+)", first)
            assert name, f"a {language} block of the tour names its file on its first line: {first}"
            (tmp_path / name.group(1)).write_text(text)
            continue
        if language != "sh":
            continue
        for commands, expected in chunks(text):
            lines = []
            for command in commands:
                installed = NPM_INSTALL.match(command.strip())
                if installed:
                    assert installed.group(1) == pinned, "the tour pins the SDK version the tests use"
                    continue
                lines.append(command.replace("cargo run --release --", '"$TRAILMARK_BIN"'))
            output = f"out_{len(expectations)}.txt"
            script.append("{\n" + "\n".join(lines) + f"\n}} > {output} 2>&1")
            expectations.append((output, expected))
    script.append('kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; true')
    (tmp_path / "tour.sh").write_text("\n".join(script) + "\n")

    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("TRAILMARK_") and k != "RUST_LOG"
    }
    environment.update(TRAILMARK_BIN=str(binary), TOUR_DIR=str(tmp_path))
    run = subprocess.run(
        ["unshare", "--net", "bash", "-c", "ip link set lo up && bash tour.sh"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    server_log = (tmp_path / "server.log").read_text() if (tmp_path / "server.log").exists() else ""
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n--- server ---\n{server_log}"

    mismatches = []
    for output, expected in expectations:
        if not expected:
            continue
        actual = (tmp_path / output).read_text().splitlines()
        if len(actual) != len(expected) or not all(
            matches(pattern, line) for pattern, line in zip(expected, actual)
        ):
            mismatches.append(
                "the README shows\n  " + "\n  ".join(expected) + "\nbut the tour printed\n  "
                + "\n  ".join(actual)
            )
    assert not mismatches, "\n\n".join(mismatches) + f"\n--- server ---\n{server_log[-3000:]}"
