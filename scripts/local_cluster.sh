#!/usr/bin/env bash
# A local multi-node Ray cluster plus an MLflow tracking server on 127.0.0.1 (see scripts/local_cluster.py).
#   scripts/local_cluster.sh up        # head + 2 workers + mlflow server; prints the `alreid bench` line
#   scripts/local_cluster.sh status
#   scripts/local_cluster.sh down      # stops exactly what `up` started, by recorded pid
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${ALREID_PYTHON:-$here/../.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
export ALREID_CLUSTER_PROG="${ALREID_CLUSTER_PROG:-$0}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
exec "$py" "$here/local_cluster.py" "$@"
