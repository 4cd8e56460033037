#!/usr/bin/env bash
# Create the peer for the benchmarks: promptflow 1.18.5 in its own venv, .bench/promptflow-venv
# (git-ignored), with telemetry off. Idempotent: does nothing that is already done.
#
#   bash bench/setup_promptflow.sh            # from anywhere; paths are relative to the repo
#   PYTHON=python3.11 bash bench/setup_promptflow.sh
#
# The benchmarks run every promptflow process with PF_DISABLE_TRACING=true and
# PF_HOME_DIRECTORY=.bench/pf-home, so nothing is written to ~/.promptflow; this script uses the
# same home for `pf config set telemetry.enabled=false`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.bench/promptflow-venv"
PF_VERSION="1.18.5"
PYTHON="${PYTHON:-python3}"

export PF_DISABLE_TRACING=true
export PF_HOME_DIRECTORY="$REPO/.bench/pf-home"
mkdir -p "$PF_HOME_DIRECTORY"

installed_version() {
    "$VENV/bin/python" -c 'from importlib.metadata import version; print(version("promptflow"))' \
        2>/dev/null || true
}

if [[ -x "$VENV/bin/pf" && "$(installed_version)" == "$PF_VERSION" ]] \
        && "$VENV/bin/python" -c 'from importlib.metadata import version as v
v("promptflow-tools"); v("keyrings.alt")' 2>/dev/null; then
    echo "promptflow $PF_VERSION already installed in ${VENV#"$REPO"/}"
else
    echo "installing promptflow $PF_VERSION into ${VENV#"$REPO"/} (about 70 s)"
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    # keyrings.alt: without an OS keyring, `pf connection create` fails with
    # StoreConnectionEncryptionKeyError.
    "$VENV/bin/python" -m pip install --quiet "promptflow==$PF_VERSION" promptflow-tools keyrings.alt
fi

if grep -Eq "enabled: '?false'?" "$PF_HOME_DIRECTORY/pf.yaml" 2>/dev/null; then
    echo "promptflow telemetry already off (${PF_HOME_DIRECTORY#"$REPO"/}/pf.yaml)"
else
    "$VENV/bin/pf" config set telemetry.enabled=false
fi
