"""Odoo versions and the operator's version table: their order, what is offered to a database and when an
upgrade becomes due (Odoo Online: offered when a newer version exists; a database below the latest major
release is upgraded by itself after a grace period). Pure functions; the upgrade itself lives in
controller/odoodatabase_upgrade.py.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from odoo_operator.api.errors import SpecError

_VERSION = re.compile(r"^(saas~)?([0-9]{1,2})\.([0-9])$")


def version_key(version: str) -> tuple[int, int]:
    """"16.0" -> (16, 0); "saas~17.2" -> (17, 2): Odoo's own order (saas~17.2 comes after 17.0, before 18.0)."""
    match = _VERSION.fullmatch(version)
    if not match:
        raise ValueError(f"{version!r} is not an Odoo version")
    return int(match.group(2)), int(match.group(3))


def major(version: str) -> int:
    return version_key(version)[0]


def newest_above(version: str, table: Iterable[str]) -> str | None:
    """The newest version of the table above `version` (what is offered), None when it is the newest."""
    above = [v for v in table if _VERSION.fullmatch(v) and version_key(v) > version_key(version)]
    return max(above, key=version_key) if above else None


def below_latest_major(version: str, table: Iterable[str]) -> bool:
    """A database below the table's latest major release gets an upgrade deadline."""
    majors = [major(v) for v in table if _VERSION.fullmatch(v)]
    return bool(majors) and major(version) < max(majors)


@dataclass(frozen=True)
class UpgradeSpec:
    """spec.upgrade: a test upgrade to `target_version` (on a neutralized copy, when `test_first`), and
    the time after which the production upgrade is carried out without anyone's confirmation."""
    target_version: str | None = None
    test_first: bool = True
    deadline: datetime.datetime | None = None


def parse_upgrade(raw: Any, images: Mapping[str, str]) -> UpgradeSpec:
    if raw is None:
        return UpgradeSpec()
    if not isinstance(raw, Mapping):
        raise SpecError("spec.upgrade must be an object")
    target = raw.get("targetVersion")
    if target is not None:
        if not isinstance(target, str) or not _VERSION.fullmatch(target):
            raise SpecError(f"spec.upgrade.targetVersion {target!r} is not an Odoo version such as '17.0'")
        if target not in images:
            known = ", ".join(sorted(images, key=version_key)) or "none"
            raise SpecError(f"spec.upgrade.targetVersion {target} is not in the operator's version table "
                            f"(known versions: {known})")
    deadline = raw.get("deadline")
    parsed: datetime.datetime | None = None
    if deadline is not None:
        try:
            parsed = datetime.datetime.fromisoformat(str(deadline).replace("Z", "+00:00"))
        except ValueError:
            raise SpecError(f"spec.upgrade.deadline {str(deadline)[:40]!r} is not an RFC 3339 time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.UTC)
    test_first = raw.get("testFirst", True)
    if not isinstance(test_first, bool):
        raise SpecError("spec.upgrade.testFirst must be true or false")
    return UpgradeSpec(target, test_first, parsed)
