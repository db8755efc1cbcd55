#!/usr/bin/env bash
# Make the venv that runs a real infinity-emb server for tests/test_infinity_interop.py (the test's
# session fixture runs this; by hand: `bash tests/infinity/setup.sh`). Idempotent: a venv whose stamp
# matches this script, requirements.txt and the torch pin is kept as it is (a no-op in well under a second).
#
#   VENV          where (default: .venv-infinity at the repo root, git-ignored)
#   PYTHON        the interpreter to make it with (default: python3; the local torch wheels are cp311)
#   TORCH_SPEC    the torch to install (default: the CPU-only wheel in /opt/wheels when it is there,
#                 183 MB with no CUDA libraries; else torch==2.14.1, the Makefile's pin, a CUDA build)
#
# Separate from .venv on purpose: infinity-emb 0.0.78 pins numpy<2, click<8.2, rich<14 and uvicorn<0.33, older
# than the project's venv has, and brings transformers and sentence-transformers, which the project does not use.
# Measured on the 2-core machine, shared with other work: 100-165 s cold (165 s with an empty pip cache:
# 114 MB of wheels fetched, torch's 183 MB read from /opt/wheels; 1.5 GB on disk). With the torch==2.14.1
# fallback: 155 s, 5.9 GB on disk (its CUDA libraries). Packages come from the machine's pip configuration
# (PyPI and the local wheel folders) only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${VENV:-$root/.venv-infinity}"
python="${PYTHON:-python3}"
if [[ -z "${TORCH_SPEC:-}" ]]; then
  if compgen -G "/opt/wheels/torch-2.13.0+cpu-*.whl" >/dev/null; then
    TORCH_SPEC="torch==2.13.0+cpu"
  else
    TORCH_SPEC="torch==2.14.1"
  fi
fi

want="$(cat "$here/setup.sh" "$here/requirements.txt" | sha256sum | cut -d' ' -f1) $TORCH_SPEC"
stamp="$venv/.installed-stamp"

# several test runs may share one checkout: one installs, the others wait for it and then find the stamp
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

echo "setting up $venv (infinity-emb, $TORCH_SPEC) ..." >&2
start=$SECONDS
rm -rf "$venv"
"$python" -m venv "$venv"
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
find_links=()
[[ -d /opt/wheels ]] && find_links=(--find-links /opt/wheels)
"${pip[@]}" "${find_links[@]}" "$TORCH_SPEC"
"${pip[@]}" "${find_links[@]}" -r "$here/requirements.txt"
"$venv/bin/pip" check --disable-pip-version-check >&2
"$venv/bin/python" -c "import aiohttp, infinity_emb, PIL, torch, transformers"
echo "$want" >"$stamp"
echo "set up $venv in $((SECONDS - start)) s" >&2
