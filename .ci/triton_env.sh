#!/usr/bin/env bash
# The server's environment for apps/serve.py and the KServe tests: nvidia-pytriton (Triton's tritonserver
# binary with its Python backend; it pins numpy < 2) plus what the toolkit's runners need there.
#
#   bash .ci/triton_env.sh          # creates or updates $TRITON_VENV (default .cache/triton-venv); idempotent
#
# The venv is made from Debian's /usr/bin/python3.11: the Python backend's stub links Debian's
# libpython3.11.so, and a venv of another 3.11 build (pyenv's 3.11.7 here) mixes that library with a newer
# standard library (the stub fails in multiprocessing: '_thread.RLock' has no '_recursion_count').
# Exits 0 with a printed reason when the environment cannot be made, so the tests skip with that reason.
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=${TRITON_VENV:-.cache/triton-venv}
PYTRITON=nvidia-pytriton==0.7.0  # serving/pytriton_server.py reaches into its model config (see _add_parameter)
PACKAGES=("$PYTRITON" "numpy<2" "opencv-python-headless<4.12" onnxruntime openvino onnx)
STAMP="$VENV/.ssd-edge-triton-env"
WANT="${PACKAGES[*]}"

skip() {
    echo "triton env: not created: $1"
    mkdir -p "$(dirname "$VENV")" && echo "$1" > "$(dirname "$VENV")/triton-venv.unavailable"
    exit 0
}

if [ "$(uname -m)" != "x86_64" ] && [ "$(uname -m)" != "aarch64" ]; then
    skip "nvidia-pytriton ships Linux x86_64 and aarch64 wheels only, this is $(uname -m)"
fi
PY=/usr/bin/python3.11
if [ ! -x "$PY" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            python3.11 python3.11-venv libpython3.11 >/dev/null) || skip "apt could not install python3.11"
    else
        skip "no /usr/bin/python3.11 (Debian's python3.11, python3.11-venv and libpython3.11 are needed)"
    fi
fi
if ! "$PY" -c "import ensurepip, venv" 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            python3.11-venv libpython3.11 >/dev/null) || skip "apt could not install python3.11-venv"
    else
        skip "python3.11-venv is missing (apt-get install python3.11-venv libpython3.11)"
    fi
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/python" ]; then
    echo "triton env: $VENV is up to date"
    exit 0
fi
rm -f "$(dirname "$VENV")/triton-venv.unavailable"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV" || skip "python3.11 -m venv $VENV failed"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "== triton env: installing ${WANT} into $VENV"
"$VENV/bin/python" -m pip install -q "${PACKAGES[@]}" || skip "pip could not install ${WANT}"
TRITONSERVER=$("$VENV/bin/python" -c "import pytriton, pathlib; print(pathlib.Path(pytriton.__file__).parent / 'tritonserver/bin/tritonserver')")
missing=$(ldd "$TRITONSERVER" 2>/dev/null | grep "not found" || true)
[ -z "$missing" ] || skip "tritonserver lacks system libraries: $missing"
# --help exits non-zero; that it prints its usage shows the binary and its libraries load.
usage=$("$TRITONSERVER" --help 2>&1 || true)
[[ "$usage" == "Usage: tritonserver"* ]] || skip "the bundled tritonserver does not start here ($TRITONSERVER --help printed no usage)"
echo "$WANT" > "$STAMP"
echo "triton env: ready ($VENV)"
