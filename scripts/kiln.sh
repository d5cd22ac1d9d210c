#!/usr/bin/env bash
# Set up everything Kiln needs on a fresh machine, then run the demo or the tests.
#   bash scripts/kiln.sh demo    build the tiny model + image set, train-then-sample through ComfyUI
#   bash scripts/kiln.sh test    the test suite (host tests run when ComfyUI is found)
# The host: $COMFYUI_PATH, else ~/ComfyUI, else the ComfyUI holding this pack in custom_nodes/.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-test}"; shift || true

py="${PYTHON:-python3}"
venv="${KILN_VENV:-.venv}"

find_host() {
  if [ -n "${COMFYUI_PATH:-}" ]; then echo "$COMFYUI_PATH"; return; fi
  if [ -f "$HOME/ComfyUI/comfy/model_management.py" ]; then echo "$HOME/ComfyUI"; return; fi
  if [ "$(basename "$(dirname "$PWD")")" = "custom_nodes" ] && [ -f "../../comfy/model_management.py" ]; then
    (cd ../.. && pwd); return
  fi
  echo ""
}
host="$(find_host)"

if [ ! -x "$venv/bin/python" ]; then
  echo "kiln: creating the virtual environment $venv"
  "$py" -m venv "$venv"
fi
vpy="$venv/bin/python"
stamp="$venv/.kiln-setup"
want="$(cat requirements.txt scripts/kiln.sh requirements-dev.txt 2>/dev/null | sha256sum | cut -c1-16)-${host:+host}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "kiln: installing packages (torch 2.14.1 / torchvision 0.29.1, the host's requirements, Kiln's)"
  "$vpy" -m pip install -q --upgrade pip >/dev/null
  "$vpy" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  if [ -n "$host" ] && [ -f "$host/requirements.txt" ]; then
    grep -v -E '^\s*(torch|torchvision|torchaudio)\s*($|[<>=!~;])' "$host/requirements.txt" > "$venv/host-requirements.txt"
    "$vpy" -m pip install -q -r "$venv/host-requirements.txt" requests
  fi
  "$vpy" -m pip install -q -r requirements.txt -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

case "$what" in
  demo)
    if [ -z "$host" ]; then
      echo "kiln: ComfyUI not found (set COMFYUI_PATH or clone ComfyUI to ~/ComfyUI); the demo needs it." >&2
      exit 2
    fi
    exec "$vpy" -m kiln demo "$@" ;;
  test)
    # The real-browser test drives Debian's Chromium (no browser download); install it where we can.
    if [ -n "$host" ] && ! command -v chromium >/dev/null 2>&1; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "kiln: installing Debian's chromium for the browser test"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
          || echo "kiln: could not install chromium; the browser test will say it is skipped"
      else
        echo "kiln: chromium is not installed (apt-get install chromium); the browser test will be skipped"
      fi
    fi
    if [ -z "$host" ]; then
      echo "kiln: HOST TESTS SKIPPED: ComfyUI not found at \$COMFYUI_PATH or ~/ComfyUI; only host-free tests run."
    else
      echo "kiln: host tests use ComfyUI at $host"
    fi
    set +e
    "$vpy" -m pytest tests -q -p no:cacheprovider "$@"
    code=$?
    set -e
    if [ "$code" = 5 ]; then echo "kiln: no tests were collected"; exit 1; fi
    exit "$code" ;;
  *)
    echo "usage: bash scripts/kiln.sh demo|test [args]" >&2; exit 2 ;;
esac
