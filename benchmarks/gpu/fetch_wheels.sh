#!/usr/bin/env bash
# Fetch the wheels benchmarks/gpu/run.sh carries to a GPU machine with no network (see README.md beside this).
# Run from anywhere on a machine with network; versions are the lock's. Writes benchmarks/gpu/wheels/.
#   benchmarks/gpu/fetch_wheels.sh            # GPU sections (policy, tracking, GRPO)
#   benchmarks/gpu/fetch_wheels.sh --agent    # also what the concurrency section's agent needs
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DEST=$HERE/wheels
PIP=${PIP:-python3 -m pip}
mkdir -p "$DEST"
PLATFORM="--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform any"
# shellcheck disable=SC2086
fetch() { $PIP download -q --no-deps --only-binary=:all: $PLATFORM -d "$DEST" "$@"; }
fetch transformers==5.25.0 huggingface_hub==2.4.0 kernels==0.19.1 tomlkit==0.15.3 httpx2==2.16.2 httpcore2==2.16.2 \
  truststore==0.10.5 idna==3.20 click==8.5.1 hf-xet==1.8.0 pydantic==2.14.4 pydantic_core==2.50.5 \
  annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0 hydra-core==1.3.8 omegaconf==2.3.1
# No binary wheels on PyPI for these: build them (pure Python; sam2 without its CUDA extension).
if ! ls "$DEST"/sam2-*.whl >/dev/null 2>&1; then
  $PIP wheel -q --no-deps -w "$DEST" antlr4-python3-runtime==4.9.3 iopath==0.1.10
  SAM2_BUILD_CUDA=0 $PIP wheel -q --no-deps --no-build-isolation -w "$DEST" sam2==1.1.0
fi
if [ "${1:-}" = "--agent" ]; then
  # The whole agent for bench_concurrency.py: LangGraph, langchain-core, the OpenAI client and their needs.
  # Not PyAV (35 MB): without it the benchmark writes its clips as JPEG folders.
  fetch langgraph==1.2.24 langgraph-checkpoint==4.3.2 langgraph-prebuilt==1.1.3 langgraph-sdk==0.4.14 \
    langchain-core==1.8.3 langsmith==0.15.1 requests-toolbelt==1.0.0 zstandard==0.25.0 uuid-utils==0.19.0 \
    jsonpatch==1.48 jsonpointer==3.12 openai==3.60.0 jiter==0.19.0 distro==1.9.0 sniffio==1.3.1 \
    tenacity==9.2.1 orjson==3.13.0 ormsgpack==1.13.1 langchain-protocol==0.0.20 websockets==17.4 anyio==4.16.0 \
    certifi==2026.10.19.post1
fi
du -sh "$DEST"
