#!/usr/bin/env bash
# One-command GPU check (see benchmarks/gpu_check.py): SpCL epoch with AMP, GPU vs CPU k-NN, Jaccard + DBSCAN
# at n = 40,000 with GPU k-NN, and a 2-trial benchmark sharing one GPU. Exits 0 with one line without CUDA.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${ALREID_PYTHON:-$here/../.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
exec "$py" "$here/gpu_check.py" "$@"
