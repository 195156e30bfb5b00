"""`newspicgen gguf MODEL_FOLDER`: NewsPicGen as a GGUF for llama.cpp, Ollama and LM Studio,
with an Ollama Modelfile beside it (NewsPicGen's Qwen chat template and parameters).

The converter is llama.cpp's `convert_hf_to_gguf.py`, which ships inside the
llama-cpp-python sdist (`pip download --no-deps --no-binary :all:
llama-cpp-python==0.3.36`) together with the gguf-py and conversion packages it
imports; PyPI's `gguf` package has no converter. It runs under this python,
which needs torch, transformers, sentencepiece and pyyaml (the server and gguf
extras).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Optional

from prompt_server.child_processes import LaunchError
from prompt_server.defaults import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, SERVED_MODEL_NAME

HELP = "convert a local NewsPicGen model folder to GGUF (llama.cpp, Ollama, LM Studio) and write an Ollama Modelfile"
ENV_CONVERTER = "NEWSPICGEN_GGUF_CONVERTER"
CONVERTER = "convert_hf_to_gguf.py"
LLAMACPP_PYTHON_SDIST = "llama-cpp-python==0.3.36"
OUTTYPES = ("q8_0", "f16", "bf16", "f32")
# what the converter imports from beside itself, in the sdist's vendor/llama.cpp/
_BESIDE = ("gguf-py", "conversion")
_IN_SDIST = "vendor/llama.cpp/"
CONTEXT_LENGTH = 4096

# Qwen2.5's chat template (tools left out) in Ollama's Go template language, with Qwen's default
# system prompt as in the model's own Jinja template: the prompt NewsPicGen was tuned on.
OLLAMA_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ else }}<|im_start|>system
You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL_FOLDER",
                        help="a local Hugging Face model folder (config.json, *.safetensors, tokenizer files)")
    parser.add_argument("--out", metavar="FILE.gguf", default=None,
                        help="the GGUF to write (default: newspicgen-OUTTYPE.gguf here); the Modelfile "
                             "goes beside it")
    parser.add_argument("--outtype", choices=OUTTYPES, default="q8_0",
                        help="q8_0 (default: half the size of bf16, nearly the same output), f16, bf16 or f32")
    parser.add_argument("--converter", metavar="PATH", default=None,
                        help=f"{CONVERTER}, the folder holding it, or the llama-cpp-python sdist (.tar.gz) "
                             f"(default: ${ENV_CONVERTER})")
    parser.add_argument("--name", default=SERVED_MODEL_NAME,
                        help="the model name the Modelfile's `ollama create` line uses (default %(default)s)")


def modelfile(gguf_name: str, *, temperature: float = DEFAULT_TEMPERATURE, num_ctx: int = CONTEXT_LENGTH,
              num_predict: int = DEFAULT_MAX_TOKENS) -> str:
    """An Ollama Modelfile for the GGUF `gguf_name` lying beside it."""
    return (f"# NewsPicGen for Ollama: ollama create {SERVED_MODEL_NAME} -f Modelfile\n"
            f"FROM ./{gguf_name}\n"
            f'TEMPLATE """{OLLAMA_TEMPLATE}"""\n'
            'PARAMETER stop "<|im_end|>"\n'
            'PARAMETER stop "<|endoftext|>"\n'
            f"PARAMETER temperature {temperature:g}\n"
            f"PARAMETER num_ctx {num_ctx}\n"
            f"PARAMETER num_predict {num_predict}\n")


def _missing_converter(what: str) -> LaunchError:
    return LaunchError(f"{what}; get llama.cpp's converter with `pip download --no-deps --no-binary :all: "
                       f"{LLAMACPP_PYTHON_SDIST}` and pass the .tar.gz as --converter (or set {ENV_CONVERTER})")


def converter_script(given: Optional[str], workdir: Path) -> Path:
    """The converter to run: the script, the folder holding it (or the sdist's tree), or one
    unpacked from the sdist into `workdir`."""
    given = given or os.environ.get(ENV_CONVERTER, "").strip() or None
    if given is None:
        raise _missing_converter("no GGUF converter given")
    path = Path(os.path.expanduser(given))
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        return _unpack(path, workdir)
    if path.is_dir():
        path = next((p for p in (path / CONVERTER, path / _IN_SDIST / CONVERTER) if p.is_file()), path / CONVERTER)
    if not path.is_file():
        raise _missing_converter(f"{given} is not {CONVERTER}, a folder holding it, or the llama-cpp-python sdist")
    missing = [name for name in _BESIDE if not (path.parent / name).is_dir()]
    if missing:
        raise _missing_converter(f"{path} has no {' and '.join(missing)} beside it")
    return path


def _unpack(sdist: Path, workdir: Path) -> Path:
    try:
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers()
                       if m.name.split("/", 1)[-1].startswith(tuple(_IN_SDIST + n for n in (CONVERTER, *_BESIDE)))]
            if not any(m.name.endswith("/" + _IN_SDIST + CONVERTER) for m in members):
                raise _missing_converter(f"{sdist} holds no {_IN_SDIST}{CONVERTER}")
            for member in members:  # flat: <workdir>/convert_hf_to_gguf.py, gguf-py/, conversion/
                member.name = member.name.split(_IN_SDIST, 1)[1]
            # the "data" filter (no links out, no device files) exists from Python 3.10.12 / 3.11.4 on
            if hasattr(tarfile, "data_filter"):
                archive.extractall(workdir, members=members, filter="data")
            else:
                archive.extractall(workdir, members=members)  # members were picked by name above
    except (OSError, tarfile.TarError) as exc:
        raise _missing_converter(f"cannot read {sdist} ({exc})") from None
    return workdir / CONVERTER


def convert(model: str, out: Path, outtype: str, converter: Optional[str], python: str = sys.executable) -> Path:
    """Run the converter on `model` into `out`; LaunchError with its last lines when it fails."""
    folder = Path(os.path.expanduser(model))
    if not (folder / "config.json").is_file():
        raise LaunchError(f"{model} is not a model folder (no config.json); download it first, e.g. "
                          "`huggingface-cli download blacker521/NewsPicGen --local-dir newspicgen`")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="newspicgen-gguf-") as workdir:
        script = converter_script(converter, Path(workdir))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(script.parent / "gguf-py"), *filter(None, [os.environ.get("PYTHONPATH")])]))
        result = subprocess.run([python, str(script), str(folder), "--outfile", str(out), "--outtype", outtype],
                                env=env, capture_output=True, text=True)
    if result.returncode != 0 or not out.is_file():
        tail = " | ".join(line.strip() for line in result.stderr.strip().splitlines()[-3:])
        hint = ("; the converter needs torch, transformers, sentencepiece and pyyaml in this python "
                "(pip install 'newspicgen-sdwebui[server,gguf]')" if "ModuleNotFoundError" in tail else "")
        raise LaunchError(f"the GGUF converter failed (exit {result.returncode}): {tail}{hint}")
    return out


def run(args: argparse.Namespace) -> int:
    out = Path(args.out or f"{SERVED_MODEL_NAME}-{args.outtype}.gguf").resolve()
    try:
        convert(args.model, out, args.outtype, args.converter)
    except LaunchError as exc:
        print(f"newspicgen gguf: {exc}", file=sys.stderr)
        return 2
    modelfile_path = out.parent / "Modelfile"
    modelfile_path.write_text(modelfile(out.name), encoding="utf-8")
    size = out.stat().st_size / 2 ** 20
    print(f"wrote {out} ({size:.0f} MiB) and {modelfile_path}\n"
          f"  llama.cpp:  newspicgen serve --engine llamacpp --model {out}\n"
          f"  Ollama:     cd {out.parent} && ollama create {args.name} -f Modelfile\n"
          f"  LM Studio:  lms import {out}\n"
          "then point NewsPicGen at that server; mode auto sends it the JSON schema it enforces "
          "(docs/engines.md)")
    return 0
