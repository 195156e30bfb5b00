"""Settings of the WebUI extension: defaults, environment overrides, bad values."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from extension.config import DEFAULT_SERVER_URL, ConfigError, NewsPicGenConfig, config_from_env
from extension.settings import (
    KEY_FAMILY,
    KEY_MODE,
    KEY_MODEL,
    KEY_PRESET_DIR,
    KEY_SERVER_URL,
    KEY_TIMEOUT,
    LEGACY_KEY_API_KEY,
    SECTION,
    config_from_opts,
    drop_legacy_key,
    option_specs,
)


def test_config_from_env_defaults_when_nothing_is_set():
    config = config_from_env({})
    assert config.server_url == DEFAULT_SERVER_URL == "http://127.0.0.1:30000"
    assert (config.api_key, config.timeout, config.mode, config.family, config.preset_dir) == (None, 120.0, "auto", None, None)


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
    assert set(specs) == {KEY_SERVER_URL, KEY_TIMEOUT, KEY_MODE, KEY_MODEL, KEY_FAMILY, KEY_PRESET_DIR,
                          "newspicgen_task_server_url", "newspicgen_task_model"}, "no key setting"
    assert specs[KEY_SERVER_URL]["default"] == "http://127.0.0.1:30000"
    assert "NEWSPICGEN_API_KEY" in specs[KEY_SERVER_URL]["info"]
    assert specs[KEY_MODE]["choices"] == ["auto", "regex", "vllm_regex", "json_schema", "json_object"]
    # user presets live in the WebUI's data folder, not in the extension's (updates replace that)
    assert specs[KEY_PRESET_DIR]["default"] == os.path.join("/srv/webui", "newspicgen", "presets")


def test_config_from_opts_uses_the_settings_page():
    opts = SimpleNamespace(**{KEY_SERVER_URL: "http://box:30000", LEGACY_KEY_API_KEY: "key", KEY_TIMEOUT: 45,
                              KEY_MODE: "json_schema", KEY_FAMILY: "ink-wash", KEY_PRESET_DIR: "/data/presets"})
    config = config_from_opts(opts, environ={})
    assert (config.server_url, config.api_key, config.timeout, config.mode, config.family, config.preset_dir) == (
        "http://box:30000", None, 45.0, "json_schema", "ink-wash", "/data/presets"), "a key in opts is never used"


def test_environment_wins_over_the_settings_page():
    opts = SimpleNamespace(**{KEY_SERVER_URL: "http://box:30000", LEGACY_KEY_API_KEY: "from-page"})
    config = config_from_opts(opts, environ={"NEWSPICGEN_SERVER_URL": "http://env:1234",
                                             "NEWSPICGEN_API_KEY": "from-env"})
    assert (config.server_url, config.api_key) == ("http://env:1234", "from-env")


def test_empty_settings_mean_defaults():
    opts = SimpleNamespace(**{KEY_SERVER_URL: " ", KEY_TIMEOUT: "", KEY_MODE: "",
                              KEY_FAMILY: "", KEY_PRESET_DIR: ""})
    config = config_from_opts(opts, environ={})
    assert (config.server_url, config.api_key, config.timeout, config.mode, config.family, config.preset_dir) == (
        DEFAULT_SERVER_URL, None, 120.0, "auto", None, None)


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
    assert "s3cret" not in str(specs) and "sent only to http://gpu-box:30000" in specs[KEY_SERVER_URL]["info"]
    assert not specs[KEY_TIMEOUT].get("overridden")


KEY_ENV = {"NEWSPICGEN_API_KEY": "s3cret"}


@pytest.mark.parametrize("env_url, page_url, sent", [
    (None, None, True),                                          # the default loopback server
    (None, "http://127.0.0.1:30000/", True),                     # the same server, spelled with a slash
    (None, "http://evil.example:30000", False),                  # the page (or Forge's options API) moved the URL
    (None, "http://127.0.0.1:30001", False),                     # another port is another server
    (None, "https://127.0.0.1:30000", False),                    # another scheme too
    ("http://gpu-box:8000", "http://evil.example:1", True),      # the environment's URL wins over the page
    ("http://GPU-box:80", None, True),                           # host case and an explicit default port
])
def test_the_key_goes_only_to_the_server_it_was_given_for(env_url, page_url, sent):
    env = dict(KEY_ENV, **({"NEWSPICGEN_SERVER_URL": env_url} if env_url else {}))
    opts = SimpleNamespace(**({KEY_SERVER_URL: page_url} if page_url else {}))
    config = config_from_opts(opts, environ=env)
    assert config.api_key == ("s3cret" if sent else None), config.server_url
    assert (config.client().api_key == "s3cret") is sent


def test_a_withheld_key_is_one_line_naming_cause_and_fix():
    from extension.config import key_withheld
    line = key_withheld("http://alice:pw@evil.example:30000", KEY_ENV)
    assert line is not None and "\n" not in line
    assert "http://127.0.0.1:30000" in line and "NEWSPICGEN_SERVER_URL=" in line
    assert "s3cret" not in line and "pw" not in line
    assert key_withheld("http://127.0.0.1:30000", KEY_ENV) is None and key_withheld("http://x:1", {}) is None


def test_a_key_left_in_settings_by_an_older_version_is_dropped(capsys):
    opts = SimpleNamespace(data={LEGACY_KEY_API_KEY: "old-key", KEY_TIMEOUT: 30})
    assert drop_legacy_key(opts) is True
    assert opts.data == {KEY_TIMEOUT: 30}, "GET /sdapi/v1/options no longer lists it; the next save removes it"
    out = capsys.readouterr().out
    assert "old-key" not in out and "NEWSPICGEN_API_KEY" in out
    assert drop_legacy_key(opts) is False and drop_legacy_key(SimpleNamespace()) is False
