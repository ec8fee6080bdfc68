"""Typed views of DomainMapping and DomainClaim, parsed once at the edge.

`parse_domain_mapping` checks a mapping as strictly as the CRD does (again: the CRD may be older than
the operator); `mapping_request` reads what a mapping asks for even when that check fails, which
wake-ups, releases and staleness need. A DomainClaim is written only by the operator: its parse is
lenient (a claim without a usable holder is stale, not an error). The claiming and routing
themselves live in controller/claims.py and controller/domainmapping.py, not here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from odoo_operator.api.model import SpecError, check_object_name
from odoo_operator.config import Settings

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DOMAIN_RE = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})+$")
HOLDER_KINDS = ("DomainMapping", "OdooDatabase")


def _object(value: Any, field_path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{field_path} must be an object")
    return value


# ---- DomainMapping -------------------------------------------------------------------------------

@dataclass(frozen=True)
class DomainMapping:
    namespace: str
    name: str
    uid: str
    domain: str
    database: str
    cluster_issuer: str | None
    secret_name: str | None

    @property
    def wildcard(self) -> bool:
        return self.domain.startswith("*.")

    @property
    def tls(self) -> bool:
        return bool(self.cluster_issuer or self.secret_name)


@dataclass(frozen=True)
class MappingRequest:
    """What a DomainMapping asks for, as written, valid or not ("" where absent)."""
    domain: str
    database: str


def check_domain(domain: Any, settings: Settings) -> str:
    """The domain as the schema should have let it through; re-checked here (never trust input)."""
    if not isinstance(domain, str) or not domain:
        raise SpecError("spec.domain is required")
    if len(domain) > 253 or not DOMAIN_RE.match(domain):
        raise SpecError(f"spec.domain {domain[:80]!r} is not a lower-case fully qualified domain name (RFC 1123), "
                        "e.g. shop.example.com")
    if domain.rsplit(".", 1)[-1].isdigit():
        raise SpecError(f"spec.domain {domain!r} looks like an IP address; map a DNS name")
    if domain.startswith("*.") and not settings.allow_wildcard_domains:
        raise SpecError(f"spec.domain {domain!r} is a wildcard; this operator does not serve wildcard domains "
                        "(operator setting ODOO_OPERATOR_ALLOW_WILDCARD_DOMAINS)")
    return domain


def parse_domain_mapping(body: Mapping[str, Any], settings: Settings) -> DomainMapping:
    meta = body["metadata"]
    spec = _object(body.get("spec"), "spec")
    domain = check_domain(spec.get("domain"), settings)
    ref = _object(spec.get("databaseRef"), "spec.databaseRef")
    database = ref.get("name")
    if not isinstance(database, str) or not database:
        raise SpecError("spec.databaseRef.name is required")
    check_object_name(meta.get("name"), "metadata.name", "short")
    check_object_name(database, "spec.databaseRef.name", "odoo")
    tls = _object(spec.get("tls"), "spec.tls")
    issuer, secret = tls.get("clusterIssuer"), tls.get("secretName")
    if issuer and secret:
        raise SpecError("spec.tls takes clusterIssuer or secretName, not both")
    for value, field_path in ((issuer, "spec.tls.clusterIssuer"), (secret, "spec.tls.secretName")):
        if value is not None:
            check_object_name(value, field_path)
    return DomainMapping(namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid", ""), domain=domain,
                         database=database, cluster_issuer=issuer or None, secret_name=secret or None)


def mapping_request(body: Mapping[str, Any]) -> MappingRequest:
    """Never raises: a mapping whose spec fails to parse is still indexed, released and compared."""
    spec = body.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    ref = spec.get("databaseRef")
    ref = ref if isinstance(ref, Mapping) else {}
    return MappingRequest(domain=str(spec.get("domain") or ""), database=str(ref.get("name") or ""))


# ---- DomainClaim ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Holder:
    """Who holds a claim: a DomainMapping (a custom domain) or an OdooDatabase (its own host)."""
    kind: str
    namespace: str
    name: str
    uid: str

    def ref(self) -> dict[str, str]:
        return {"kind": self.kind, "namespace": self.namespace, "name": self.name, "uid": self.uid}


@dataclass(frozen=True)
class DomainClaim:
    name: str
    uid: str
    resource_version: str
    domain: str
    holder: Holder


def claim_name(domain: str) -> str:
    """A Kubernetes name may not hold "*": a wildcard's claim is "wildcard.<parent>". The claim's
    spec.domain is compared too, so a real host called "wildcard.…" is never confused with it."""
    return f"wildcard.{domain[2:]}" if domain.startswith("*.") else domain


def parse_domain_claim(body: Mapping[str, Any]) -> DomainClaim:
    """Lenient: missing fields read as "" (an older holder ref without a kind was a DomainMapping)."""
    meta = body.get("metadata") or {}
    spec = _object(body.get("spec"), "spec")
    ref = _object(spec.get("mappingRef"), "spec.mappingRef")
    holder = Holder(str(ref.get("kind") or "DomainMapping"), str(ref.get("namespace") or ""),
                    str(ref.get("name") or ""), str(ref.get("uid") or ""))
    return DomainClaim(name=str(meta.get("name") or ""), uid=str(meta.get("uid") or ""),
                       resource_version=str(meta.get("resourceVersion") or ""),
                       domain=str(spec.get("domain") or ""), holder=holder)
