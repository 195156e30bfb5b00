"""Settings of the WebUI extension: defaults, environment overrides, bad values."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from extension.config import DEFAULT_SERVER_URL, ConfigError, NewsPicGenConfig, config_from_env
from extension.settings import (
    KEY_API_KEY,
    KEY_FAMILY,
    KEY_MODE,
    KEY_PRESET_DIR,
    KEY_SERVER_URL,
    KEY_TIMEOUT,
    SECTION,
    config_from_opts,
    option_specs,
)


def test_config_from_env_defaults_when_nothing_is_set():
    config = config_from_env({})
    assert config.server_url == DEFAULT_SERVER_URL == "http://127.0.0.1:30000"
    assert (config.api_key, config.timeout, config.mode, config.family, config.preset_dir) == (None, 120.0, "regex", None, None)


def test_config_from_env_reads_every_variable():
    config = config_from_env({"NEWSPICGEN_SERVER_URL": "http://gpu:8000", "NEWSPICGEN_API_KEY": "k",
                              "NEWSPICGEN_TIMEOUT": "30", "NEWSPICGEN_MODE": "json_schema",
                              "NEWSPICGEN_FAMILY": "ink-wash", "NEWSPICGEN_PRESET_DIR": "/tmp/p"})
    assert (config.server_url, config.api_key, config.timeout, config.mode, config.family, config.preset_dir) == (
        "http://gpu:8000", "k", 30.0, "json_schema", "ink-wash", "/tmp/p")


@pytest.mark.parametrize("env, words", [
    ({"NEWSPICGEN_MODE": "grammar"}, ["grammar", "regex", "json_schema"]),
    ({"NEWSPICGEN_TIMEOUT": "soon"}, ["NEWSPICGEN_TIMEOUT", "soon"]),
    ({"NEWSPICGEN_TIMEOUT": "0"}, ["positive"]),
])
def test_bad_settings_name_the_value_and_the_fix(env, words):
    with pytest.raises(ConfigError) as info:
        config_from_env(env)
    assert all(word in str(info.value) for word in words)


def test_api_key_never_appears_in_repr():
    config = NewsPicGenConfig(api_key="s3cret-key")
    assert "s3cret-key" not in repr(config)
    assert "s3cret-key" not in repr(config.client())


def test_client_is_shared_per_settings_and_follows_changes():
    a = NewsPicGenConfig(server_url="http://127.0.0.1:1", timeout=5)
    assert a.client() is NewsPicGenConfig(server_url="http://127.0.0.1:1/", timeout=5).client()
    other = NewsPicGenConfig(server_url="http://127.0.0.1:2", timeout=5).client()
    assert other is not a.client() and other.base_url.startswith("http://127.0.0.1:2")
    assert NewsPicGenConfig(mode="json_schema").client().mode == "json_schema"


def test_store_reads_the_configured_user_folder(tmp_path):
    store = NewsPicGenConfig(preset_dir=str(tmp_path)).store()
    duplicate = store.duplicate(store.names()[0], "my copy")
    assert list(tmp_path.glob("*.json")), "the copy is saved in the configured folder"
    assert "my copy" in NewsPicGenConfig(preset_dir=str(tmp_path)).store().names()
    assert duplicate.name == "my copy"


def test_settings_section_and_defaults():
    specs = {spec["key"]: spec for spec in option_specs("/srv/webui")}
    assert SECTION == ("newspicgen", "NewsPicGen"), "the WebUI unpacks exactly (id, label)"
    assert set(specs) == {KEY_SERVER_URL, KEY_API_KEY, KEY_TIMEOUT, KEY_MODE, KEY_FAMILY, KEY_PRESET_DIR}
    assert specs[KEY_SERVER_URL]["default"] == "http://127.0.0.1:30000"
    assert specs[KEY_API_KEY]["kind"] == "password" and specs[KEY_API_KEY]["default"] == ""
    assert specs[KEY_MODE]["choices"] == ["regex", "json_schema"]
    # user presets live in the WebUI's data folder, not in the extension's (updates replace that)
    assert specs[KEY_PRESET_DIR]["default"] == os.path.join("/srv/webui", "newspicgen", "presets")


def test_config_from_opts_uses_the_settings_page():
    opts = SimpleNamespace(**{KEY_SERVER_URL: "http://box:30000", KEY_API_KEY: "key", KEY_TIMEOUT: 45,
                              KEY_MODE: "json_schema", KEY_FAMILY: "ink-wash", KEY_PRESET_DIR: "/data/presets"})
    config = config_from_opts(opts, environ={})
    assert (config.server_url, config.api_key, config.timeout, config.mode, config.family, config.preset_dir) == (
        "http://box:30000", "key", 45.0, "json_schema", "ink-wash", "/data/presets")


def test_environment_wins_over_the_settings_page():
    opts = SimpleNamespace(**{KEY_SERVER_URL: "http://box:30000", KEY_API_KEY: "from-page"})
    config = config_from_opts(opts, environ={"NEWSPICGEN_SERVER_URL": "http://env:1234",
                                             "NEWSPICGEN_API_KEY": "from-env"})
    assert (config.server_url, config.api_key) == ("http://env:1234", "from-env")


def test_empty_settings_mean_defaults():
    opts = SimpleNamespace(**{KEY_SERVER_URL: " ", KEY_API_KEY: "", KEY_TIMEOUT: "", KEY_MODE: "",
                              KEY_FAMILY: "", KEY_PRESET_DIR: ""})
    config = config_from_opts(opts, environ={})
    assert (config.server_url, config.api_key, config.timeout, config.mode, config.family, config.preset_dir) == (
        DEFAULT_SERVER_URL, None, 120.0, "regex", None, None)


def test_repr_hides_the_password_in_the_url_and_the_key():
    from extension.config import NewsPicGenConfig
    text = repr(NewsPicGenConfig(server_url="http://alice:s3cret@127.0.0.1:30000", api_key="k-123"))
    assert "s3cret" not in text and "k-123" not in text and "alice:***@127.0.0.1:30000" in text


def test_settings_page_says_which_values_the_environment_overrides():
    plain = {spec["key"]: spec for spec in option_specs("/srv/webui", environ={})}
    assert not any(spec.get("overridden") for spec in plain.values())
    specs = {spec["key"]: spec for spec in option_specs("/srv/webui", environ={
        "NEWSPICGEN_SERVER_URL": "http://gpu-box:30000", "NEWSPICGEN_API_KEY": "s3cret"})}
    assert specs[KEY_SERVER_URL]["overridden"] and "in use: http://gpu-box:30000" in specs[KEY_SERVER_URL]["info"]
    assert specs[KEY_API_KEY]["overridden"] and "s3cret" not in specs[KEY_API_KEY]["info"]
    assert not specs[KEY_TIMEOUT].get("overridden")
