#!/usr/bin/env bash
# Rebuild the embedded models and their reference fixtures from scratch (CPU, 2 threads, ~15 minutes).
#   corpus -> tokenizer + tiny GPT-2 training -> tiny Llama -> ONNX export -> reference fixtures
# PYTHON defaults to /work/pyenv/bin/python if it exists, else python3. MINUTES sets the training budget.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x /work/pyenv/bin/python ] && echo /work/pyenv/bin/python || echo python3 )}"
MINUTES="${MINUTES:-12}"
"$PY" tools/corpus.py
"$PY" tools/train_gpt2.py --minutes "$MINUTES"
"$PY" tools/build_llama.py
"$PY" tools/export_onnx.py
"$PY" tools/make_fixtures.py
"$PY" tools/check_fixtures.py
ls -la models/tiny-gpt2 models/tiny-gpt2/onnx models/tiny-llama models/tiny-llama/onnx test/fixtures/*/
