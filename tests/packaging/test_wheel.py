"""The wheel: built from the repository, installed (not editable) into a fresh virtual environment
beside an application whose own top-level `metrics`, `legacy`, `bridge` and `unified` would have
collided with wsmigrate's layers before they moved under the `wsmigrate` namespace."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("metrics", "unified", "legacy", "bridge")
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    source = tmp_path_factory.mktemp("src") / "wsmigrate"
    # Build from a copy of the tracked tree, as a release would (no stray build/ or egg-info state).
    listing = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    files = subprocess.run(listing, cwd=ROOT, check=True, capture_output=True).stdout
    for name in filter(None, files.decode().split("\0")):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_symlink():
            target.symlink_to((ROOT / name).readlink())
        elif (ROOT / name).is_file():
            shutil.copy2(ROOT / name, target)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(out), str(source)], check=True, timeout=300)
    (built,) = out.glob("wsmigrate-*.whl")
    return built


def test_the_wheel_ships_exactly_the_four_layers_under_one_namespace(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {n for n in names if n.endswith(".py")}
    expected = {f"wsmigrate/{p.name}" for p in (ROOT / "wsmigrate").glob("*.py")} | {
        f"wsmigrate/{p.relative_to(ROOT).as_posix()}" for layer in LAYERS for p in (ROOT / layer).rglob("*.py")}
    assert modules == expected
    assert "wsmigrate/py.typed" in names
    assert "wsmigrate/bridge/server/static/wsclient.js" in names
    assert not [n for n in names if n.split("/")[0] in (*LAYERS, "tests", "examples")]


def test_an_app_with_its_own_metrics_legacy_and_bridge_uses_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # wsmigrate itself is installed from the wheel; its dependencies come from this environment's
    # site-packages (a path entry, whose own .pth files, such as the editable install's, are not run).
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet",
                    str(wheel)], check=True, timeout=120)
    app = tmp_path / "app"
    app.mkdir()
    (app / "metrics.py").write_text('OWNER = "app"\n')
    for package in ("legacy", "bridge", "unified"):
        (app / package).mkdir()
        (app / package / "__init__.py").write_text('OWNER = "app"\n')
    shutil.copy(HERE / "adopter_app.py", app / "app.py")
    result = subprocess.run([str(python), "app.py"], cwd=app, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("ok 0."), result.stdout
    assert result.stdout.split()[2:] == ["order_shipped", "order_paid", "order_refunded"], result.stdout
    # the boards example, copied beside the app's own packages, runs its smoke check on the wheel
    (app / "examples").mkdir()
    (app / "examples" / "__init__.py").write_text("")
    shutil.copytree(ROOT / "examples" / "boards", app / "examples" / "boards",
                    ignore=shutil.ignore_patterns("__pycache__"))
    smoke = subprocess.run([str(python), "-m", "examples.boards.smoke"], cwd=app, capture_output=True, text=True,
                           timeout=60)
    assert smoke.returncode == 0, smoke.stderr
    assert smoke.stdout.strip().startswith("ok boards"), smoke.stdout
