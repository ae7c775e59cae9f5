"""The dependency lists match the code: requirements.txt names what production imports and nothing else,
requirements.lock pins requirements.txt with hashes, and local.settings.json (tracked) holds no secret.

Production code is function_app.py, blueprints/, models/ and the shared/ modules they import (the local
host's server, shared/asgi_server.py, is a development tool: uvicorn is in requirements-dev.txt). Every
import statement counts, also those inside functions (the models' code is imported on first use).
"""
from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import re
import sys
from functools import lru_cache
from pathlib import Path

from conftest import ROOT

PROJECT = ("function_app", "blueprints", "models", "shared")
# Required without an import statement naming them: each with the code that shows the need.
USED_WITHOUT_IMPORT = {
    # pandas' Series.interpolate(method="spline"/"polynomial"/...) imports scipy, an optional pandas dependency
    "scipy": ("models/statimpute/__init__.py", "series.interpolate(method=pandas_method"),
    # Swagger UI's files are read as package data
    "swagger-ui-py": ("shared/platform.py", 'resources.files("swagger_ui")'),
}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins(path: Path) -> dict[str, str]:
    """{canonical name: version} of the ``name==version`` lines of a requirements file."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip().rstrip("\\").strip()
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)", line)
        if match:
            pins[canonical(match.group(1))] = match.group(3)
    return pins


def _file_of(module: str) -> Path | None:
    if module in sys.modules and getattr(sys.modules[module], "__file__", None):
        return Path(sys.modules[module].__file__)
    for root in PROJECT:
        if module == root or module.startswith(root + "."):
            parts = module.split(".")
            for candidate in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
                if candidate.exists():
                    return candidate
            return None
    return None


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports (``from a import b`` counts ``a.b`` too, as b may be a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@lru_cache(maxsize=1)
def production_imports() -> set[str]:
    """Every module that production code imports, project modules followed to their own imports."""
    todo = [ROOT / "function_app.py", *(ROOT / "blueprints").rglob("*.py"), *(ROOT / "models").rglob("*.py")]
    seen, imported = set(), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imports(path):
            if module.split(".")[0] in PROJECT:
                target = _file_of(module)
                if target is not None and target.suffix == ".py":
                    todo.append(target)
            else:
                imported.add(module)
    return imported


@lru_cache(maxsize=1)
def _owners() -> dict[str, str]:
    """Installed file (resolved path) -> canonical distribution name."""
    owners = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            if file.suffix in (".py", ".so", ".pyd"):
                owners[str(Path(dist.locate_file(file)).resolve())] = canonical(dist.metadata["Name"])
    return owners


def distribution_of(module: str) -> str | None:
    """The distribution that installs ``module`` (None: the standard library or not a module)."""
    if module.split(".")[0] in sys.stdlib_module_names:
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None  # "from package import name" where name is not a module
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    return _owners().get(str(Path(spec.origin).resolve()))


def test_every_third_party_import_of_production_code_is_a_direct_requirement():
    required = set(requirement_pins(ROOT / "requirements.txt"))
    missing = {}
    for module in sorted(production_imports()):
        dist = distribution_of(module)
        if dist is not None and dist not in required:
            missing.setdefault(dist, module)
    assert not missing, f"imported but not in requirements.txt: {missing}"


def test_every_requirement_is_imported_by_production_code_or_its_need_is_shown():
    imported = {distribution_of(m) for m in production_imports()} - {None}
    for dist, (file, evidence) in USED_WITHOUT_IMPORT.items():
        assert evidence in (ROOT / file).read_text(), f"{dist}: {file} no longer shows why it is needed"
    unused = set(requirement_pins(ROOT / "requirements.txt")) - imported - set(USED_WITHOUT_IMPORT)
    assert not unused, f"in requirements.txt but imported nowhere in production code: {sorted(unused)}"


def test_the_check_sees_a_missing_and_an_unused_requirement():
    imports = production_imports()
    assert "threadpoolctl" in imports and distribution_of("threadpoolctl") == "threadpoolctl"
    assert distribution_of("azure.monitor.opentelemetry") == "azure-monitor-opentelemetry"
    assert distribution_of("azure.storage.blob") == "azure-storage-blob"
    assert distribution_of("json") is None and distribution_of("shared.http") is None
    assert "uvicorn" not in imports  # the local host's server is not production code


def test_every_requirement_is_pinned_exactly():
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r "):
                assert re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?==\S+$", line), f"{name}: {line!r}"


def test_the_lock_pins_requirements_txt_with_hashes():
    lock_text = (ROOT / "requirements.lock").read_text()
    lock = requirement_pins(ROOT / "requirements.lock")
    direct = requirement_pins(ROOT / "requirements.txt")
    differ = {name: (version, lock.get(name)) for name, version in direct.items() if lock.get(name) != version}
    assert not differ, f"requirements.lock is out of date with requirements.txt (make lock): {differ}"
    # every pinned package carries at least one sha256 hash (pip install --require-hashes needs them all)
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock_text.split("\n", 1)[1] if lock_text.startswith("#") else lock_text)
    pinned = [b for b in blocks if re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*==", b)]
    assert len(pinned) == len(lock) > len(direct)
    assert all("--hash=sha256:" in b for b in pinned), [b.split()[0] for b in pinned if "--hash" not in b]
    # and what is installed here is what the lock says (make setup installs with -c requirements.lock):
    # the tests ran against the set the deployment installs
    for name, version in lock.items():
        assert importlib.metadata.version(name) == version, f"{name}: installed {importlib.metadata.version(name)}, locked {version}"


def test_the_container_installs_the_lock_with_hashes():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes" in dockerfile and "requirements.lock" in dockerfile


SECRET_NAMES = re.compile(r"(CONNECTION_STRING|KEY|SECRET|PASSWORD|TOKEN|SAS|AUTHENTICATION)", re.I)
SECRET_VALUES = re.compile(r"(AccountKey=|SharedAccessSignature=|[?&]sig=|InstrumentationKey=|Password=|"
                           r"DefaultEndpointsProtocol=|-----BEGIN|eyJ[A-Za-z0-9_-]{10,})", re.I)
# Values that are not secrets although their names look like one: the emulator shorthand and empties.
NOT_SECRETS = ("", "UseDevelopmentStorage=true")


def secrets_in(settings: dict) -> list[str]:
    """The keys of a local.settings.json document that hold (or look like they hold) a secret."""
    found = []
    for section in ("Values", "ConnectionStrings"):
        for name, value in (settings.get(section) or {}).items():
            text = str(value)
            if SECRET_VALUES.search(text) or (SECRET_NAMES.search(name) and text.strip() not in NOT_SECRETS):
                found.append(f"{section}.{name}")
    return found


def test_local_settings_json_holds_no_secret():
    settings = json.loads((ROOT / "local.settings.json").read_text())
    assert settings.get("IsEncrypted") is False
    assert secrets_in(settings) == []


def test_the_secret_check_finds_keys_connection_strings_and_tokens():
    assert secrets_in({"Values": {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "LOG_LEVEL": "INFO"}}) == []
    leaked = {"Values": {
        "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc==",
        "DATASET_BLOB_CONNECTION_STRING": "BlobEndpoint=https://a.blob.core.windows.net/;SharedAccessSignature=sv=1&sig=x",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
        "DATASET_BLOB_ACCOUNT_URL": "https://a.blob.core.windows.net/?sv=2024&sig=abc",
        "API_TOKEN": "abc"}, "ConnectionStrings": {"Sql": "Server=x;Password=p"}}
    assert sorted(secrets_in(leaked)) == sorted(["Values.AzureWebJobsStorage", "Values.DATASET_BLOB_CONNECTION_STRING",
                                                 "Values.APPLICATIONINSIGHTS_CONNECTION_STRING",
                                                 "Values.DATASET_BLOB_ACCOUNT_URL", "Values.API_TOKEN",
                                                 "ConnectionStrings.Sql"])
