"""`newspicgen gguf`: the Ollama Modelfile, where the converter comes from, and (where the
llama-cpp-python sdist is at hand: $NEWSPICGEN_GGUF_CONVERTER or tests/harness/llamacpp)
a real conversion of a tiny Qwen2."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from prompt_server import gguf_export
from prompt_server.child_processes import LaunchError
from tests.support import REPO
from tests.support.peers import gguf_converter


def test_the_modelfile_serves_the_gguf_beside_it_with_qwens_template_and_our_parameters():
    text = gguf_export.modelfile("newspicgen-q8_0.gguf")
    assert "FROM ./newspicgen-q8_0.gguf\n" in text
    assert 'PARAMETER stop "<|im_end|>"' in text and "PARAMETER temperature 0.7" in text
    assert "PARAMETER num_predict 768" in text
    assert f'TEMPLATE """{gguf_export.OLLAMA_TEMPLATE}"""' in text


def test_the_ollama_template_writes_what_qwens_own_template_writes(tiny_model_dir):
    """One user turn, no system message (what NewsPicGen sends): the Go template's `else` branch
    and one `range` pass, written out, equal the Jinja chat template's rendering."""
    from transformers import AutoTokenizer

    content = "以下是一篇新闻，标题“雪豹”。"
    jinja = AutoTokenizer.from_pretrained(tiny_model_dir).apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
    system = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    turn = "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
    assert system in gguf_export.OLLAMA_TEMPLATE and turn in gguf_export.OLLAMA_TEMPLATE
    assert gguf_export.OLLAMA_TEMPLATE.endswith("{{ end }}<|im_start|>assistant\n")
    written = system + turn.replace("{{ .Role }}", "user").replace("{{ .Content }}", content) + \
        "<|im_start|>assistant\n"
    assert jinja == written


def test_no_converter_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.delenv(gguf_export.ENV_CONVERTER, raising=False)
    with pytest.raises(LaunchError, match=r"pip download --no-deps --no-binary :all: llama-cpp-python==0\.3\.36"):
        gguf_export.converter_script(None, tmp_path)
    (tmp_path / "convert_hf_to_gguf.py").write_text("")
    with pytest.raises(LaunchError, match="no gguf-py and conversion beside it"):
        gguf_export.converter_script(str(tmp_path), tmp_path)


def test_a_folder_that_is_no_model_is_one_clear_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "newspicgen", "gguf", str(tmp_path), "--converter", "x"],
                            cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "is not a model folder (no config.json)" in lines[0]


@pytest.mark.skipif(gguf_converter() is None, reason="no GGUF converter: set NEWSPICGEN_GGUF_CONVERTER to the "
                    "llama-cpp-python sdist (tests/harness/llamacpp); CI has none")
def test_a_tiny_qwen2_becomes_a_gguf_with_its_chat_template(tmp_path):
    from tests.support.peers import make_gguf
    from tests.support.qwen_tokenizer_model import build_qwen_tokenizer_model

    gguf = make_gguf(build_qwen_tokenizer_model(tmp_path / "model"), tmp_path / "out" / "n-q8_0.gguf")
    head = gguf.read_bytes()[:16 * 2 ** 20]
    assert head[:4] == b"GGUF" and b"qwen2" in head and b"<|im_start|>" in head
    assert (gguf.parent / "Modelfile").read_text(encoding="utf-8").splitlines()[1] == "FROM ./n-q8_0.gguf"
