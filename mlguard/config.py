"""``.ml-guard.yml``: load, validate, and merge with command-line flags."""
from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping

from .findings import Severity
from .policy import MODES, Policy
from .record import Record, field, replace
from .rules import catalog

CONFIG_NAMES = (".ml-guard.yml", ".ml-guard.yaml")
DEFAULT_EXCLUDE = ("**/.git/**", "**/.hg/**", "**/.svn/**", "**/__pycache__/**", "**/node_modules/**")
DEFAULT_MAX_FILE_SIZE = 64 << 30
_TOP_KEYS = ("fail_on", "include", "exclude", "scanners", "rules", "runtime", "trusted_sha256", "max_file_size")
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)


_SCANNER_ALIASES = {"cve": "dependencies"}
"""Scanner names of the earlier ml-guard that users may still list under ``scanners:``."""


class ConfigError(ValueError):
    """A configuration problem, worded for the user (file, key, value, what is accepted)."""


class Config(Record):
    """Settings for a scan: the policy plus what to walk."""

    policy: Policy = field(factory=Policy)
    """Severities, disabled rules, scanners and their options."""
    include: tuple[str, ...] = ()
    """Globs (relative to the root) of files to scan; empty means everything."""
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    """Globs of files and folders to skip."""
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    """Files larger than this are reported (``file-too-large``), not scanned."""
    source: str | None = None
    """The file this configuration came from, if any."""

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Config":
        """Read and validate a configuration file."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read configuration: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: configuration is not UTF-8 text") from None
        import yaml  # noqa: PLC0415 - only when there is a file to read
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise ConfigError(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
        return cls.from_mapping(data or {}, source=path)

    @classmethod
    def discover(cls, root: str | os.PathLike) -> "Config":
        """The configuration file at the scan root (or beside a scanned file), or the defaults."""
        root = os.fspath(root)
        folder = root if os.path.isdir(root) else os.path.dirname(root)
        for name in CONFIG_NAMES:
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate):
                return cls.load(candidate)
        return cls()

    @classmethod
    def from_mapping(cls, data: Any, source: str | None = None) -> "Config":
        """Validate parsed YAML; raises ConfigError naming the file, the key and the bad value."""
        return _Validator(source or "configuration").config(data)

    def with_overrides(self, *, fail_on: str | None = None, scanners: Iterable[str] | None = None,
                       exclude: Iterable[str] = (), include: Iterable[str] = (),
                       options: Mapping[str, Mapping[str, Any]] | None = None) -> "Config":
        """The configuration with command-line flags applied on top (flags win). ``options``: per-scanner
        settings, e.g. ``{"dependencies": {"db": path}}``."""
        v = _Validator("command line")
        policy = self.policy
        if options:
            merged = {name: dict(section) for name, section in policy.scanner_options.items()}
            for name, section in options.items():
                merged.setdefault(name, {}).update(section)
            policy = replace(policy, scanner_options=merged)
        if fail_on is not None:
            policy = replace(policy, fail_on=v.severity("--fail-on", fail_on))
        if scanners is not None:
            policy = replace(policy, scanners=v.scanners("--scanners", list(scanners)))
        return replace(self, policy=policy, exclude=self.exclude + tuple(exclude),
                       include=self.include + tuple(include))


class _Validator:
    """Turns parsed YAML into a Config, with errors that name the file, key and value."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {message}")

    def mapping(self, key: str, value: Any) -> Mapping:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping, got {value!r}")
        return value

    def str_list(self, key: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, f"expected a list of strings, got {value!r}")
        return tuple(value)

    def severity(self, key: str, value: Any) -> Severity:
        try:
            return Severity.parse(value)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def scanners(self, key: str, value: Any) -> frozenset[str]:
        from .scanners import registry

        known = set(registry())
        names = [_SCANNER_ALIASES.get(n.strip(), n.strip())
                 for item in self.str_list(key, value) for n in item.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise self.fail(key, f"unknown scanner {unknown[0]!r} (available: {', '.join(sorted(known))})")
        return frozenset(names)

    def size(self, key: str, value: Any) -> int:
        if isinstance(value, bool):
            raise self.fail(key, f"expected a size such as 2GB, got {value!r}")
        if isinstance(value, int) and value > 0:
            return value
        match = _SIZE.match(str(value))
        if not match or int(match.group(1)) <= 0:
            raise self.fail(key, f"expected a size such as 512MB or 2GiB, got {value!r}")
        unit = (match.group(2) or "b").lower()[:1]
        return int(match.group(1)) << {"b": 0, "k": 10, "m": 20, "g": 30, "t": 40}[unit]

    def option(self, key: str, kind: str, value: Any) -> Any:
        if kind == "str-list":
            return self.str_list(key, value)
        expected = {"int": int, "bool": bool, "str": str}[kind]
        if not isinstance(value, expected) or (kind == "int" and isinstance(value, bool)):
            raise self.fail(key, f"expected {kind}, got {value!r}")
        if kind == "int" and not 0 <= value < 2**63:  # every int option is a count or a size
            raise self.fail(key, f"expected a count from 0 to 2**63 - 1, got {value!r}")
        return value

    def rules(self, value: Any) -> tuple[dict[str, Severity], frozenset[str]]:
        cat = catalog()
        overrides: dict[str, Severity] = {}
        disabled: set[str] = set()
        for rule_id, settings in self.mapping("rules", value).items():
            key = f"rules.{rule_id}"
            canonical = cat.canonical(str(rule_id))
            if canonical is None:
                raise self.fail(key, "unknown rule id (list them with `ml-guard rules`)")
            for name, item in self.mapping(key, settings or {}).items():
                if name == "severity":
                    overrides[canonical] = self.severity(f"{key}.severity", item)
                elif name == "disabled":
                    if not isinstance(item, bool):
                        raise self.fail(f"{key}.disabled", f"expected true or false, got {item!r}")
                    if item:
                        disabled.add(canonical)
                else:
                    raise self.fail(f"{key}.{name}", "unknown key (expected severity or disabled)")
        return overrides, frozenset(disabled)

    def config(self, data: Any) -> Config:
        from .scanners import registry

        data = self.mapping("top level", data)
        scanners = registry()
        unknown = [k for k in data if k not in _TOP_KEYS and k not in scanners]
        if unknown:
            allowed = ", ".join((*_TOP_KEYS, *scanners))
            raise self.fail(str(unknown[0]), f"unknown key (allowed: {allowed})")
        policy_args: dict[str, Any] = {}
        config_args: dict[str, Any] = {"source": self.source}
        if "fail_on" in data:
            policy_args["fail_on"] = self.severity("fail_on", data["fail_on"])
        if "scanners" in data:
            policy_args["scanners"] = self.scanners("scanners", data["scanners"])
        if "rules" in data:
            policy_args["severity_overrides"], policy_args["disabled_rules"] = self.rules(data["rules"])
        if "runtime" in data:
            runtime = self.mapping("runtime", data["runtime"])
            for key, value in runtime.items():
                if key == "mode":
                    if value not in MODES:
                        raise self.fail("runtime.mode", f"expected one of {', '.join(MODES)}, got {value!r}")
                    policy_args["mode"] = value
                elif key == "strict":
                    if not isinstance(value, bool):
                        raise self.fail("runtime.strict", f"expected true or false, got {value!r}")
                    policy_args["strict"] = value
                else:
                    raise self.fail(f"runtime.{key}", "unknown key (allowed: mode, strict)")
        if "trusted_sha256" in data:
            digests = self.str_list("trusted_sha256", data["trusted_sha256"])
            bad = [d for d in digests if not re.fullmatch(r"[0-9a-fA-F]{64}", d)]
            if bad:
                raise self.fail("trusted_sha256", f"not a SHA-256 hex digest: {bad[0]!r}")
            policy_args["trusted_sha256"] = frozenset(d.lower() for d in digests)
        options = {}
        for name, scanner in scanners.items():
            if name not in data:
                continue
            section = self.mapping(name, data[name])
            for key, value in section.items():
                if key not in scanner.options:
                    allowed = ", ".join(scanner.options) or "none"
                    raise self.fail(f"{name}.{key}", f"unknown key (allowed: {allowed})")
                section_value = self.option(f"{name}.{key}", scanner.options[key].kind, value)
                options.setdefault(name, {})[key] = section_value
        policy_args["scanner_options"] = options
        if "include" in data:
            config_args["include"] = self.str_list("include", data["include"])
        if "exclude" in data:
            config_args["exclude"] = DEFAULT_EXCLUDE + self.str_list("exclude", data["exclude"])
        if "max_file_size" in data:
            config_args["max_file_size"] = self.size("max_file_size", data["max_file_size"])
        return Config(policy=Policy(**policy_args), **config_args)
