"""requirements/*.txt, the locks `make lock` writes: complete, hashed, consistent with each other, and
installed as locked (botocore above all: shared/management_api.py was checked against the pinned one)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {name: ROOT / "requirements" / f"{name}.txt" for name in ("image", "local", "dev")}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _entries(path: Path) -> dict[str, tuple[str, str, list[str]]]:  # name -> (version, marker, hashes)
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    result = {}
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\[\],-]+)==(\S+)\s*(?:;\s*(.*?))?((?:\s*--hash=\S+)*)", line)
        assert match, f"{path.name}: not an exact, hashed pin: {line!r}"
        name, version, marker, hashes = match.groups()
        result[_norm(name.split("[")[0])] = (version, marker or "", re.findall(r"--hash=(\S+)", hashes))
    return result


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_pin_is_exact_and_hashed(lock: str) -> None:
    entries = _entries(LOCKS[lock])
    assert entries, f"{lock}.txt pins nothing"
    for name, (_, _, hashes) in entries.items():
        assert hashes and all(h.startswith("sha256:") for h in hashes), f"{lock}.txt: {name} has no sha256"


def test_the_image_and_local_locks_are_the_dev_lock_at_the_same_versions() -> None:
    dev = _entries(LOCKS["dev"])
    for lock in ("image", "local"):
        for name, (version, _, _) in _entries(LOCKS[lock]).items():
            assert name in dev, f"{name} is in {lock}.txt but not in dev.txt: make lock"
            assert dev[name][0] == version, f"{name}: {lock}.txt has {version}, dev.txt {dev[name][0]}"


def test_every_declared_dependency_is_locked() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        "image": project["dependencies"],
        "local": project["dependencies"] + project["optional-dependencies"]["local"],
        "dev": project["optional-dependencies"]["dev"],
    }
    for lock, requirements in wanted.items():
        entries = _entries(LOCKS[lock])
        for raw in requirements:
            requirement = Requirement(raw)
            if _norm(requirement.name) == _norm(project["name"]):
                continue
            pinned = entries.get(_norm(requirement.name))
            assert pinned, f"{raw} (pyproject.toml) is not in {lock}.txt: make lock"
            assert requirement.specifier.contains(pinned[0], prereleases=True), (
                f"{lock}.txt pins {requirement.name}=={pinned[0]}, outside pyproject.toml's {raw}: make lock"
            )


def test_the_installed_botocore_is_the_one_the_management_client_was_checked_against() -> None:
    locked = _entries(LOCKS["image"])["botocore"][0]
    installed = metadata.version("botocore")
    assert installed == locked, (
        f"botocore {installed} is installed, the lock pins {locked}: shared/management_api.py relies on "
        "botocore internals; run tests/unit/test_management_api.py against the new version, then make lock"
    )


def test_the_environment_is_the_dev_lock() -> None:
    drift = []
    for name, (version, marker, _) in _entries(LOCKS["dev"]).items():
        if marker and not Marker(marker).evaluate():
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            drift.append(f"{name} missing (lock {version})")
            continue
        if installed != version:
            drift.append(f"{name} {installed} (lock {version})")
    assert not drift, "the environment differs from requirements/dev.txt (make test reinstalls it): " + (
        ", ".join(drift)
    )
