"""A wheel built from the repository carries conf/ as package data, and its entry points compose the configuration
outside the source tree (installed into a temp dir, run from another temp dir)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
COMMANDS = ["vita-train", "vita-eval", "vita-infer", "vita-serve", "vita-train-codec", "vita-tokenize", "vita-export",
            "vita-convert", "vita-demo"]


def _pip(*args: str, cwd: Path | None = None) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args, "--no-deps", "--no-index", "-q"], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of a copy of the sources (the build's own files stay out of the checkout), with a machine-local
    conf/local/default.yaml that must stay out of it."""
    src = tmp_path_factory.mktemp("checkout")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", src / "src", symlinks=True, ignore=ignore)  # keeps src/vita_audio/conf a link
    shutil.copytree(CONF, src / "conf", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    (src / "conf" / "local").mkdir(exist_ok=True)
    (src / "conf" / "local" / "default.yaml").write_text("# one machine's paths\n")
    out = tmp_path_factory.mktemp("dist")
    _pip("wheel", "--no-build-isolation", "-w", str(out), str(src))
    (whl,) = out.glob("vita_audio-*.whl")
    return whl


def test_checkout_links_the_package_conf_to_the_top_level_one():
    link = ROOT / "src" / "vita_audio" / "conf"
    assert link.is_symlink() and link.resolve() == CONF.resolve()
    from vita_audio.cli.common import CONFIG_DIR

    assert Path(CONFIG_DIR) == CONF.resolve()


def test_wheel_carries_conf_and_commands(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    shipped = {n.removeprefix("vita_audio/conf/") for n in names if n.startswith("vita_audio/conf/")}
    expected = {str(p.relative_to(CONF)) for p in CONF.rglob("*.yaml") if p.relative_to(CONF).parts[0] != "local"}
    assert {"train.yaml", "eval.yaml", "infer.yaml", "serve.yaml", "train_codec.yaml",
            "experiment/boost_stage1.yaml", "experiment/qwen2_5_7b/boost_stage4.yaml"} <= expected
    assert shipped == expected  # every config file, nothing else (conf/local/ stays on its machine)
    for command in COMMANDS:
        assert f"{command} = vita_audio.cli." in entry_points


@pytest.mark.slow
def test_installed_wheel_composes_outside_the_source_tree(wheel, tmp_path):
    """`pip install` of the wheel into a temp dir, then `vita-train --cfg job +experiment=...` from another one."""
    site, work = tmp_path / "site", tmp_path / "work"
    work.mkdir()
    _pip("install", "--target", str(site), str(wheel))
    env = {**os.environ, "PYTHONPATH": str(site), "VITA_ROOT": str(work)}  # the installed copy, not src/
    where = subprocess.run([sys.executable, "-c", "import vita_audio.cli.common as c; print(c.CONFIG_DIR)"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()) == (site / "vita_audio" / "conf").resolve()
    cmd = [str(site / "bin" / "vita-train"), "--cfg", "job", "--resolve", "+experiment=boost_stage1"]
    job = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert job.returncode == 0, job.stdout + job.stderr
    assert "run_name: boost_stage1" in job.stdout and f"root_dir: {work}" in job.stdout
