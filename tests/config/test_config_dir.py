"""config_dir(): the package's configuration folder, or a clear error when an install lost it."""

import pytest

from vita_audio.cli import config_dir as cd


def test_config_dir_is_the_package_conf():
    assert (cd.config_dir() / "train.yaml").is_file() and str(cd.config_dir()) == cd.CONFIG_DIR


def test_missing_configuration_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()  # an install whose package data did not come along
    monkeypatch.setattr(cd, "files", lambda package: tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no train\.yaml in .*conf.*pip wheel"):
        cd.config_dir()
