#!/usr/bin/env bash
# Set up everything Kiln needs on a fresh machine, then run the demo or the tests.
#   bash scripts/kiln.sh demo    build the tiny model + image set, train-then-sample through ComfyUI
#   bash scripts/kiln.sh test    the test suite against the host(s); `test PATH...` runs only those paths
#   bash scripts/kiln.sh screenshots   refresh docs/img (the README's pictures) from a browser run
#
# The host: $COMFYUI_PATH, else ~/ComfyUI, else the ComfyUI holding this pack in custom_nodes/. Where there
# is none, Kiln gets its own into .cache/hosts/: unpacked from $KILN_HOST_ARCHIVE or the archives in
# ../shared/hosts/, else `git clone` of ComfyUI at the tested commit. A user's ComfyUI is never modified; its
# packages are installed into Kiln's own virtual environment (.venv), not into ComfyUI's Python.
#
# `test` with a found ComfyUI runs the whole suite against it. With Kiln's own hosts it runs the whole suite
# against the newest (2026-07 main) and the host tests (pytest -m host) against every older one (2025-10),
# each in its own virtual environment, and prints each part's host and counts. KILN_REQUIRE_HOST=1 (set by
# this script) turns any skipped host test into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-test}"; shift || true

py="${PYTHON:-python3}"
cache="${KILN_CACHE:-.cache}"
shared_hosts="${KILN_SHARED_HOSTS:-../shared/hosts}"
# The ComfyUI commit Kiln is tested against (the 2026-07-21 archive), for machines with internet but no archive.
tested_commit="d0fec2ef7e7086533fde261de3fdb88289bdca9e"
comfyui_repo="${KILN_COMFYUI_REPO:-https://github.com/comfyanonymous/ComfyUI}"

say() { echo "kiln: $*"; }
die() { echo "kiln: $*" >&2; exit 2; }

user_host() {
  if [ -n "${COMFYUI_PATH:-}" ]; then
    [ -f "$COMFYUI_PATH/comfy/model_management.py" ] \
      || die "COMFYUI_PATH=$COMFYUI_PATH is not a ComfyUI folder (no comfy/model_management.py); point it at the folder holding main.py, or unset it to let Kiln fetch its own host."
    (cd "$COMFYUI_PATH" && pwd); return
  fi
  if [ -f "$HOME/ComfyUI/comfy/model_management.py" ]; then echo "$HOME/ComfyUI"; return; fi
  if [ "$(basename "$(dirname "$PWD")")" = "custom_nodes" ] && [ -f "../../comfy/model_management.py" ]; then
    (cd ../.. && pwd); return
  fi
  echo ""
}

# The archives to use, newest first (archive names sort by date: comfyui-YYYY-MM-DD-<commit>.tar.gz).
host_archives() {
  if [ -n "${KILN_HOST_ARCHIVE:-}" ]; then
    [ -f "$KILN_HOST_ARCHIVE" ] || die "KILN_HOST_ARCHIVE=$KILN_HOST_ARCHIVE does not exist."
    echo "$KILN_HOST_ARCHIVE"; return
  fi
  ls -1 "$shared_hosts"/comfyui-*.tar.gz 2>/dev/null | sort -r || true
}

# Unpack an archive into the cache (once) and print the ComfyUI folder.
unpack_host() {
  local archive="$1" id dest
  id="$(basename "$archive" .tar.gz)"; id="${id#comfyui-}"
  dest="$cache/hosts/$id"
  if [ ! -f "$dest/ComfyUI/comfy/model_management.py" ]; then
    echo "kiln: unpacking $archive into $dest" >&2
    rm -rf "$dest.partial" && mkdir -p "$dest.partial"
    tar -xzf "$archive" -C "$dest.partial"
    [ -f "$dest.partial/ComfyUI/comfy/model_management.py" ] || die "$archive does not unpack to a ComfyUI/ folder."
    rm -rf "$dest" && mv "$dest.partial" "$dest"
  fi
  (cd "$dest/ComfyUI" && pwd)
}

clone_host() {
  local dest="$cache/hosts/git-${tested_commit:0:8}"
  if [ ! -f "$dest/ComfyUI/comfy/model_management.py" ]; then
    command -v git >/dev/null 2>&1 || die "no ComfyUI found and no git to fetch one: install ComfyUI and set COMFYUI_PATH."
    echo "kiln: no ComfyUI found; cloning ComfyUI at the tested commit ${tested_commit:0:8} into $dest" >&2
    rm -rf "$dest" && mkdir -p "$dest/ComfyUI"
    if ! (cd "$dest/ComfyUI" && git init -q && git fetch -q --depth 1 "$comfyui_repo" "$tested_commit" \
          && git checkout -q FETCH_HEAD) >&2; then
      rm -rf "$dest"
      die "ComfyUI not found and could not be fetched: set COMFYUI_PATH to your ComfyUI folder, put a ComfyUI source archive at \$KILN_HOST_ARCHIVE (see ../shared/hosts/README.md), or allow git access to $comfyui_repo."
    fi
  fi
  (cd "$dest/ComfyUI" && pwd)
}

# pip install, quietly: this machine's pip.conf warns about every local index path it does not have.
pip_install() {
  local vpy="$1" out; shift
  if ! out="$("$vpy" -m pip install -q "$@" 2>&1)"; then
    printf '%s\n' "$out" | grep -v '^WARNING: Location' >&2
    die "pip install $* failed (see above)"
  fi
  printf '%s\n' "$out" | grep -v -e '^WARNING: Location' -e '^$' >&2 || true
}

# Fail early, and say so, when the disk cannot hold what comes next: pip's own "No space left on device" arrives
# minutes into an install, half-way through torch, and names no remedy.
need_disk_gb() {
  local need="$1" dir="$2" free
  free="$(df -Pk "$dir" 2>/dev/null | awk 'NR==2 {print int($4 / 1048576)}')"
  if [ -n "$free" ] && [ "$free" -lt "$need" ]; then
    die "only ${free} GB free on the disk holding $dir; the next step (torch, its CUDA libraries and the host's packages) needs about ${need} GB: free some space (old clones or benchmark folders in /tmp) and run again."
  fi
}

# Create/refresh a virtual environment for one host: torch, the host's requirements, Kiln's. Prints its python.
setup_venv() {
  local venv="$1" host="$2" vpy stamp want
  if [ ! -x "$venv/bin/python" ]; then
    echo "kiln: creating the virtual environment $venv" >&2
    "$py" -m venv "$venv"
  fi
  vpy="$venv/bin/python"
  stamp="$venv/.kiln-setup"
  want="$(cat requirements.txt requirements-dev.txt scripts/kiln.sh "$host/requirements.txt" 2>/dev/null | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    need_disk_gb 9 "$venv"
    echo "kiln: installing packages into $venv (torch 2.14.1 / torchvision 0.29.1, torchaudio, ComfyUI's requirements, Kiln's)" >&2
    pip_install "$vpy" --upgrade pip
    pip_install "$vpy" "torch==2.14.1" "torchvision==0.29.1"
    # torch/torchvision are pinned above; torchaudio (imported by the 2026 host at start-up) has no release
    # for torch 2.14.1, and the registry's newest, 2.11.1, imports beside it when installed without deps.
    grep -v -E '^\s*(torch|torchvision|torchaudio)\s*($|[<>=!~;])' "$host/requirements.txt" > "$venv/host-requirements.txt"
    pip_install "$vpy" -r "$venv/host-requirements.txt" requests
    pip_install "$vpy" --no-deps "torchaudio==2.11.1"
    pip_install "$vpy" -r requirements.txt -r requirements-dev.txt
    echo "$want" > "$stamp"
  fi
  echo "$vpy"
}

ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's chromium for the browser test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
      || say "could not install chromium; the browser test cannot run"
  else
    say "chromium is not installed (apt-get install chromium); the browser test cannot run"
  fi
}

# Kiln's own hosts, newest first: fills the arrays own_paths and own_ids (all of them, or only the newest).
own_paths=(); own_ids=()
get_own_hosts() {
  local which="$1" a id
  local -a archives
  mapfile -t archives < <(host_archives)
  if [ "${#archives[@]}" -gt 0 ]; then
    [ "$which" = newest ] && archives=("${archives[0]}")
    for a in "${archives[@]}"; do
      id="$(basename "$a" .tar.gz)"; id="${id#comfyui-}"
      own_paths+=("$(unpack_host "$a")"); own_ids+=("$id")
    done
  else
    own_paths+=("$(clone_host)"); own_ids+=("git-${tested_commit:0:8}")
  fi
}

# Run pytest for one host; prints its closing line and records it in $summary.
summary=""
failed=0
run_suite() {
  local label="$1" vpy="$2" host="$3"; shift 3
  say "running tests against ComfyUI $label at $host ${*:+(pytest $*)}"
  local log; log="$(mktemp)"
  set +e
  # Paths given (`kiln.sh test tests/test_x.py`) run alone; otherwise the whole tests folder.
  local targets=(tests) a
  for a in "$@"; do if [ -e "${a%%::*}" ]; then targets=(); break; fi; done
  COMFYUI_PATH="$host" KILN_REQUIRE_HOST=1 "$vpy" -m pytest "${targets[@]}" -q -rs -p no:cacheprovider "$@" 2>&1 | tee "$log"
  local code=${PIPESTATUS[0]}
  set -e
  local line; line="$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)' "$log" | tail -n 1 | sed -E 's/^=+ //; s/ =+$//' || true)"
  rm -f "$log"
  if [ "$code" = 5 ]; then
    # Given paths with no host test in them are nothing to run on an older host; the whole suite must collect.
    if [ "${#targets[@]}" = 0 ] && [[ " $* " == *" -m host "* ]]; then line="no host tests in the given paths"; code=0
    else line="no tests were collected"; code=1; fi
  fi
  summary+="kiln: ComfyUI $label: ${line:-no result line} (exit $code)"$'\n'
  if [ "$code" != 0 ]; then failed=1; fi
  totals+="$line"$'\n'
}

totals=""
print_totals() {
  # One plain closing line over every part: "N passed, N failed". (awk alone: a grep that finds nothing
  # would end the script under `set -e -o pipefail`.)
  local counts p f s
  counts="$(awk '{ for (i = 2; i <= NF; i++) { w = $i; sub(/[,;]$/, "", w);
                    if (w == "passed") p += $(i-1); else if (w == "failed" || w == "error" || w == "errors") f += $(i-1);
                    else if (w == "skipped") s += $(i-1) } }
                END { printf "%d %d %d", p, f, s }' <<< "$totals")"
  read -r p f s <<< "$counts"
  printf '%s' "$summary"
  if [ "$failed" != 0 ] && [ "$f" = 0 ]; then f=1; fi
  echo "total: $p passed, $f failed, $s skipped"
}

# KILN_OWN_HOSTS=1 (CI) skips the user's ComfyUI and tests Kiln's own copies of the supported hosts.
host=""
[ "${KILN_OWN_HOSTS:-}" = 1 ] || host="$(user_host)"

case "$what" in
  demo)
    if [ -n "$host" ]; then
      vpy="$(setup_venv "${KILN_VENV:-.venv}" "$host")"
    else
      get_own_hosts newest
      host="${own_paths[0]}"; id="${own_ids[0]}"
      say "no ComfyUI of yours found; using Kiln's own ComfyUI $id at $host"
      vpy="$(setup_venv "${KILN_VENV:-$cache/venv-$id}" "$host")"
    fi
    COMFYUI_PATH="$host" exec "$vpy" -m kiln demo "$@" ;;
  test)
    ensure_chromium
    if [ -n "$host" ]; then
      vpy="$(setup_venv "${KILN_VENV:-.venv}" "$host")"
      run_suite "(yours)" "$vpy" "$host" "$@"
    else
      get_own_hosts all
      for i in "${!own_paths[@]}"; do
        h="${own_paths[$i]}"; id="${own_ids[$i]}"
        vpy="$(setup_venv "$cache/venv-$id" "$h")"
        if [ "$i" = 0 ]; then
          run_suite "$id (whole suite)" "$vpy" "$h" "$@" < /dev/null
        else
          run_suite "$id (host tests)" "$vpy" "$h" -m host "$@" < /dev/null
        fi
      done
    fi
    print_totals
    exit "$failed" ;;
  screenshots)
    # Refresh the README's pictures in docs/img from a browser run against your ComfyUI or the newest host.
    ensure_chromium
    if [ -z "$host" ]; then
      get_own_hosts newest
      host="${own_paths[0]}"; vpy="$(setup_venv "$cache/venv-${own_ids[0]}" "$host")"
    else
      vpy="$(setup_venv "${KILN_VENV:-.venv}" "$host")"
    fi
    KILN_SCREENSHOTS=1 run_suite "screenshots" "$vpy" "$host" tests/test_browser.py "$@"
    print_totals
    exit "$failed" ;;
  *)
    echo "usage: bash scripts/kiln.sh demo|test|screenshots [args]" >&2; exit 2 ;;
esac
