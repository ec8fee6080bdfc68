"""What every `kubectl odoo` command shares and that talks to nothing: the plugin's error, how times, sizes,
conditions, tables and YAML are shown, polling until a state, and the redaction of anything that looks secret
(the support bundle's `scrub`).

Not here: reaching the API server (connection.py), the subcommands (commands.py), the support bundle's
collection (bundle.py), moving backup files (download.py, upload.py)."""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from odoo_operator.api.conditions import parse_rfc3339
from odoo_operator.api.model import SpecError, parse_duration

PLUGIN = "kubectl-odoo"  # our field manager and managed-by label value
REDACTED = "<redacted>"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class PluginError(Exception):
    """A failure explained to the user in one line (exit code 1)."""


# ---- times and sizes -----------------------------------------------------------------------------
def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return parse_rfc3339(str(text))
    except ValueError:
        return None


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def human_delta(seconds: float) -> str:
    seconds = int(abs(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours and days < 10 else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes and hours < 10 else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def ago(text: str | None) -> str:
    moment = parse_time(text)
    if moment is None:
        return "-"
    delta = (now() - moment).total_seconds()
    return f"{human_delta(delta)} ago" if delta >= 0 else f"in {human_delta(delta)}"


def expires(text: str | None) -> str:
    moment = parse_time(text)
    if moment is None:
        return "-"
    delta = (moment - now()).total_seconds()
    return f"in {human_delta(delta)}" if delta > 0 else "expired"


def human_size(value: Any) -> str:
    if value in (None, ""):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


def parse_timeout(text: str) -> float:
    if re.fullmatch(r"\d+", text or ""):
        return float(text)
    try:
        return parse_duration(text, "--timeout").total_seconds()
    except SpecError as exc:
        raise PluginError(str(exc)) from None


def wait_for(fetch: Callable[[], dict[str, Any] | None], done: Callable[[dict[str, Any] | None], bool],
             timeout: float, what: str, describe: Callable[[dict[str, Any] | None], str]) -> dict[str, Any] | None:
    """Poll until `done` (which raises PluginError on a failure that waiting cannot fix)."""
    deadline = time.monotonic() + timeout
    while True:
        obj = fetch()
        if done(obj):
            return obj
        if time.monotonic() >= deadline:
            raise PluginError(f"timed out after {int(timeout)}s waiting for {what} ({describe(obj)})")
        time.sleep(2)


# ---- objects, tables, YAML -----------------------------------------------------------------------
def conditions_of(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("status") or {}).get("conditions") or [])


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    return next((dict(c) for c in conditions_of(obj) if c.get("type") == type_), {})


def one_line(text: Any) -> str:
    return " ".join(str(text or "").split())


def indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["   ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def md_table(rows: list[list[Any]], header: list[str]) -> str:
    def cell(value: Any) -> str:
        return one_line(value).replace("|", "\\|") or "-"
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def event_time(event: Mapping[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
               or (event.get("metadata") or {}).get("creationTimestamp") or "")


def events_table(events: list[dict[str, Any]], with_object: bool = False) -> str:
    rows = []
    for event in events:
        involved = event.get("involvedObject") or {}
        count = int(event.get("count") or 1)
        row = [ago(event_time(event)), event.get("type") or "-", event.get("reason") or "-"]
        if with_object:
            row.append(f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}")
        row.append(one_line(event.get("message")) + (f" (x{count})" if count > 1 else ""))
        rows.append(row)
    return table(rows, ["LAST SEEN", "TYPE", "REASON", *(["OBJECT"] if with_object else []), "MESSAGE"])


def strip_noise(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What `kubectl get -o yaml` shows: no managedFields."""
    body = json.loads(json.dumps(obj))
    (body.get("metadata") or {}).pop("managedFields", None)
    return body


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True)


def print_object(obj: Any, output: str) -> None:
    """`-o json` / `-o yaml`."""
    print(json.dumps(obj, indent=2) if output == "json" else dump_yaml(obj), end="\n")


# ---- redaction -----------------------------------------------------------------------------------
# Names of fields, env vars and annotations whose values are treated as secret.
SECRET_NAME_RE = re.compile(r"(?i)(pass(wd|word)?|pwd|secret|token|credential|api[-_.]?key|access[-_.]?key|"
                            r"private[-_.]?key|[-_.]key$|^key[-_.]|cookie|bearer|auth(?!or))")
# Keys that hold a *reference* to a secret (a name), never the value itself.
REFERENCE_KEYS = frozenset({"key", "secretName"})
# user:password@ in a URL. The password is taken up to the line's last "@": unescaped "/", ":", "@" and
# spaces in it are redacted too (at worst more than the password is).
URL_CREDENTIALS_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^\r\n]*@")
# key = value, key: value, "key": "value", --key=value, ?key=value (the value: see _scrub_key_values).
KEY_VALUE_RE = re.compile(r"(?i)(?P<key>[\w.-]*(?:pass(?:wd|word)?|pwd|secret|token|api[-_]?key|access[-_]?key|"
                          r"private[-_]?key)[\w.-]*[\"']?[ \t]*[=:][ \t]*)(?P<value>[^\r\n]*)")
QUOTED_RE = re.compile(r"\"(?:\\.|[^\"\\\r\n])*\"|'(?:\\.|[^'\\\r\n])*'")
WORD_RE = re.compile(r"(?:\\.|[^\s\\])*")  # a shell word: up to unescaped whitespace
QUERY_VALUE_RE = re.compile(r"[^&#;\r\n]*")
BEARER_RE = re.compile(r"(?i)\b((?:bearer|basic)\s+)[\w.~+/=-]+")
# A private key (PEM: RSA, EC, OPENSSH, ENCRYPTED, PGP ...), its lines included; unterminated: to the end.
PEM_PRIVATE_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE[A-Z0-9 ]*|ENCRYPTED[A-Z0-9 ]*)-----.*?"
                            r"(?:-----END \1-----|\Z)", re.S)


def _scrub_key_values(text: str) -> str:
    """The value after a secret-looking key: a quoted string (escapes honoured) whatever it holds; an
    option's (--db_password=...) up to the next unescaped whitespace; a URL query's up to &, ; or #;
    anything else to the end of the line (config files and messages: spaces belong to the value)."""
    out, pos = [], 0
    while match := KEY_VALUE_RE.search(text, pos):
        key, value, start = match.group("key"), match.group("value"), match.start("value")
        before = text[match.start() - 1:match.start()]
        quoted = QUOTED_RE.match(value)
        if quoted:
            end, redacted = quoted.end(), value[0] + REDACTED + value[0]
        elif key.startswith("-"):
            end, redacted = len(WORD_RE.match(value)[0]), REDACTED  # type: ignore[index]
        elif before and before in "?&;":
            end, redacted = len(QUERY_VALUE_RE.match(value)[0]), REDACTED  # type: ignore[index]
        else:
            end, redacted = len(value), REDACTED
        out.append(text[pos:start] + (redacted if value else ""))
        pos = start + end if value else match.end()
    out.append(text[pos:])
    return "".join(out)


def scrub_text(text: str) -> str:
    text = PEM_PRIVATE_RE.sub(lambda m: f"-----BEGIN {m.group(1)}-----\n{REDACTED}\n-----END {m.group(1)}-----", text)
    text = URL_CREDENTIALS_RE.sub(rf"\1:{REDACTED}@", text)
    text = _scrub_key_values(text)
    return BEARER_RE.sub(rf"\1{REDACTED}", text)


def scrub(value: Any, key: str = "") -> Any:
    """A copy with every value that looks secret replaced (by the name of its field, env var or
    annotation, or by its shape: URL credentials, password=…, Bearer …). Never perfect: a secret stored
    under an innocent name in a plain env var cannot be recognised, hence Secrets are never read at all."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == LAST_APPLIED or k == "managedFields":
                continue
            if isinstance(v, str) and k not in REFERENCE_KEYS and SECRET_NAME_RE.search(str(k)):
                out[k] = REDACTED
            else:
                out[k] = scrub(v, str(k))
        # an env var, or any {name, value} pair: judged by its name
        if isinstance(out.get("name"), str) and "value" in out and SECRET_NAME_RE.search(out["name"]):
            out["value"] = REDACTED
        return out
    if isinstance(value, list):
        return [scrub(v, key) for v in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value
