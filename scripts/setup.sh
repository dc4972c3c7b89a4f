# Sourced by scripts/demo and scripts/test: make .venv and install charseq into it.
#
# torch is installed first, pinned (CHARSEQ_TORCH, default torch==2.13.0), only when the venv
# has none: charseq itself accepts any torch >= 2.2, so an existing install is kept. Set
# CHARSEQ_TORCH to e.g. "torch" for the newest release.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "charseq needs Python >= 3.11; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PY=$PWD/.venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$PY" -c 'import torch' 2>/dev/null || "$PY" -m pip install -q "${CHARSEQ_TORCH:-torch==2.13.0}"
extras=${CHARSEQ_EXTRAS-dev}
"$PY" -m pip install -q -e ".${extras:+[$extras]}" -e plugins/charseq-mgu -e plugins/charseq-mogrifier
