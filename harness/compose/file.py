"""docker-compose.yml read the way Compose reads it, for tests that cannot run Docker.

Compose substitutes `${VAR:-default}` (default when unset or empty), `${VAR-default}` (when
unset) and `${VAR}` from the shell or .env before parsing the YAML; `$$` is a literal `$`.
Reading the file with these rules lets a test ask what a given set of variables publishes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_PATH = ROOT / "docker-compose.yml"
_REFERENCE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\})")


class Binding(NamedTuple):
    """One published port: host address and port -> container port."""

    host_ip: str
    host_port: int
    container_port: int


def variables_used(text: str) -> set[str]:
    """Names of the variables the file substitutes."""
    return {match[2] for match in _REFERENCE.finditer(text) if match[2]}


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Substitute variable references as Compose does; a bare `$NAME` is refused (not used here)."""

    def substitute(match: re.Match[str]) -> str:
        escaped, name, operator, default = match.groups()
        if escaped:
            return "$"
        value = variables.get(name)
        if operator == ":-" and not value:
            return default
        if operator == "-" and value is None:
            return default
        return value or ""

    result = _REFERENCE.sub(substitute, text)
    leftover = re.search(r"\$(?!\$)", _REFERENCE.sub("", text))
    if leftover:
        raise ValueError(f"unsupported variable reference near {text[leftover.start():leftover.start() + 20]!r}")
    return result


def load(variables: Mapping[str, str] | None = None, path: Path = COMPOSE_PATH) -> dict[str, Any]:
    """The compose file's content after substitution with ``variables`` (none set by default)."""
    return yaml.safe_load(interpolate(path.read_text(), variables or {}))


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's `environment`, map or list form, as strings."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {key: str(value) for key, value in raw.items()}


def published(service: Mapping[str, Any]) -> list[Binding]:
    """A service's `ports` in the short "[ip:]host:container" syntax (no ip: every interface)."""
    bindings = []
    for entry in service.get("ports", []):
        parts = str(entry).rsplit(":", 2)
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        bindings.append(Binding(host_ip, int(parts[-2]), int(parts[-1])))
    return bindings


def enabled_services(compose: Mapping[str, Any], profiles: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The services `docker compose --profile P ... up` runs: those without `profiles` and those
    with an active one. A `depends_on` a service left out is an error unless it says
    `required: false` (then Compose drops it: compose-go loader/validate.go, graph/services.go)."""
    services = compose["services"]
    enabled = {name: s for name, s in services.items() if not s.get("profiles") or set(s["profiles"]) & profiles}
    for name, service in enabled.items():
        depends_on = service.get("depends_on") or {}
        if isinstance(depends_on, list):
            depends_on = dict.fromkeys(depends_on)
        for dependency, condition in depends_on.items():
            if dependency not in enabled and (condition or {}).get("required", True):
                raise ValueError(f"service {name!r} requires {dependency!r}, which these profiles leave out")
    return enabled


def profile_services(compose: Mapping[str, Any], profile: str) -> list[str]:
    """The services only that profile adds, in file order."""
    return [name for name, s in compose["services"].items() if profile in (s.get("profiles") or [])]
