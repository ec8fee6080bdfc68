"""The benchmarks' reports: machine facts, the run's date and command line, Markdown tables and
figures, and replacing one section of BENCHMARKS.md; also the end of every bench's main() (run the
scenario in a work directory, publish its section, keep or remove the directory).

Nothing here starts or measures anything (harness.py does); what a section says is each bench's own.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from harness import PG_BIN_DIR, REPO_ROOT, log

# ---- facts ---------------------------------------------------------------------------------------------------

def now() -> datetime.datetime:
    """The run's start, local time with its zone (the `Run …` line)."""
    return datetime.datetime.now().astimezone()


def machine_info() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    pg_version = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        pg_version = subprocess.run([str(PG_BIN_DIR / "postgres"), "--version"], capture_output=True,
                                    text=True, timeout=10).stdout.strip()
    kopf_version = ""
    with contextlib.suppress(Exception):
        from importlib.metadata import version
        kopf_version = version("kopf")
    return {
        "cpus": str(len(os.sched_getaffinity(0))),
        "cpu_model": model or platform.processor() or "unknown",
        "memory": f"{mem_kb / 1024 / 1024:.0f} GiB" if mem_kb else "unknown",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": pg_version,
        "kopf": kopf_version,
    }


def machine_line(m: dict[str, str], software: bool = True, kopf: bool = True) -> str:
    """`Machine: 2 CPUs (model), 8 GiB RAM, Linux 6.1…; Python 3.11…, kopf 1.37…, postgres (PostgreSQL) 15…`
    (`software`: from `; Python` on; `kopf`: its version too); each bench goes on with its set-up."""
    text = f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory']} RAM, Linux {m['kernel']}"
    if software:
        text += f"; Python {m['python']}" + (f", kopf {m['kopf']}" if kopf else "") + f", {m['postgres']}"
    return text


def run_line(started_at: datetime.datetime, command: str) -> str:
    return f"Run {started_at:%Y-%m-%d %H:%M %Z} with `{command}`."


def command_line(script: str, parser: argparse.ArgumentParser, args: argparse.Namespace,
                 shown: Iterable[str], always: Iterable[str] = ()) -> str:
    """How to run this again: `.venv/bin/python bench/<script>` and the options named in `shown` (argparse
    dests, in that order) whose value is not the default, or that are in `always`."""
    parts = [f".venv/bin/python bench/{script}"]
    always = set(always)
    for dest in shown:
        value, flag = getattr(args, dest), "--" + dest.replace("_", "-")
        if dest not in always and value == parser.get_default(dest):
            continue
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{dest.replace('_', '-')}")
        elif isinstance(value, list):
            parts += [f"{flag}={item}" if str(item).startswith("-") else f"{flag} {item}" for item in value]
        elif isinstance(value, float):
            parts.append(f"{flag} {value:g}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


# ---- figures and tables --------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def fmt_s(value: float) -> str:
    return "—" if value != value else f"{value:.1f} s"  # NaN check


def table(header: list[str], rows: list[list[str]], escape: bool = False) -> list[str]:
    """A Markdown table; `escape`: `|` in the cells escaped (a pipe in a cell ends it, even in code)."""
    if escape:
        header = [h.replace("|", "\\|") for h in header]
        rows = [[c.replace("|", "\\|") for c in row] for row in rows]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def log_problems_lines(problems: list[str], what: str = "Operator log") -> list[str]:
    """The first few ERROR/Traceback lines of a log (harness.log_problems), as a block of the report."""
    if not problems:
        return []
    return ["", f"{what}: {len(problems)}+ ERROR/Traceback lines, first:", "", "```",
            *[line[:200] for line in problems[:5]], "```"]


# ---- BENCHMARKS.md ---------------------------------------------------------------------------------------------

def publish_summary(summary: str, output: str | None, section: str) -> None:
    """Print a benchmark's Markdown summary and, with --output, write it as that file's section."""
    print()
    print(summary)
    if output:
        path = Path(output)
        path = path if path.is_absolute() else REPO_ROOT / path
        write_section(path, section, summary)
        log(f"wrote the {section} section of {path}")


def write_section(path: Path, name: str, section: str) -> None:
    """Replace the text between <!-- name:start --> and <!-- name:end --> (append the block if absent)."""
    start_marker, end_marker = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start_marker}\n{section.rstrip()}\n{end_marker}\n"
    if path.exists():
        text = path.read_text()
        start, end = text.find(start_marker), text.find(end_marker)
        if start != -1 and end > start:
            text = text[:start] + block + text[end + len(end_marker):].lstrip("\n")
        else:
            text = text.rstrip("\n") + "\n\n" + block
    else:
        text = ("# Benchmarks\n\n"
                "Measured figures, not assertions: the test suite never times anything. `make bench` runs the\n"
                "scripts in `bench/` and each one regenerates its own section below (the text between its\n"
                "`<!-- name:start -->` and `<!-- name:end -->` markers); edit only outside the markers.\n\n" + block)
    path.write_text(text)


# ---- every bench's command line and end ---------------------------------------------------------------------

def bench_parser(doc: str | None, section: str) -> argparse.ArgumentParser:
    """An argument parser with the options every bench has: --output, --section, --workdir, --keep."""
    result = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--output", default="BENCHMARKS.md", help=f"Markdown file whose {section} section is "
                        "replaced (relative to the repository root; '' to write nothing; default BENCHMARKS.md)")
    result.add_argument("--section", default=section, help=f"name of the section markers in --output (default "
                        f"{section}; use another name to keep an experiment's figures apart)")
    result.add_argument("--workdir", type=Path, help="cluster state, files and logs here (default: a temp dir, "
                        "removed after a successful run, kept after a failure)")
    result.add_argument("--keep", action="store_true", help="keep the work directory (logs) after success")
    return result


def run_and_publish(args: argparse.Namespace, prefix: str,
                    body: Callable[[Path], tuple[str, list[str]]]) -> int:
    """Run `body(workdir)` (--workdir, or a fresh temp dir named `prefix…`), which returns the section's
    Markdown and its problems; print the Markdown and write it as --section of --output; print the
    problems to stderr. The work directory is removed after a run without problems unless --workdir or
    --keep, kept (and said so) otherwise. Exit status: 1 when there are problems."""
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=prefix))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        summary, problems = body(workdir)
    except BaseException:
        log(f"failed; logs kept in {workdir}")
        raise
    publish_summary(summary, args.output, args.section)
    for line in problems:
        print(line, file=sys.stderr)
    if problems or args.keep or args.workdir is not None:
        log(f"logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    log(f"done in {time.monotonic() - started:.0f} s")
    return 1 if problems else 0
