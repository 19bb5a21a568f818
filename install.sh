#!/usr/bin/env bash
# The set-up in one command (README: Set up; .ci/run runs the same line):
#   bash install.sh && source .venv/bin/activate
# makes .venv with a Python >= 3.12 and installs the project, its test extras and gymnax, so
# both the main job and the README's test command work. `bash install.sh cuda` adds JAX's
# CUDA build. Which Python: $PYTHON if set, else python3.12 (what CI and the lent GPUs run), else
# python3 where it is >= 3.12, else a newer python3.x on the PATH, else pyenv's newest 3.12.x
# (or, without one, its newest later version).
set -euo pipefail
cd "$(dirname "$0")"

ok_python() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }

python="${PYTHON:-}"
if [ -n "$python" ] && ! ok_python "$python"; then
  echo "install.sh: PYTHON=$python is not a Python >= 3.12 (jax >= 0.11 needs 3.12); name one that is." >&2
  exit 2
fi
if [ -z "$python" ]; then
  for candidate in python3.12 python3 python3.13 python3.14; do
    if command -v "$candidate" >/dev/null && ok_python "$candidate"; then python="$candidate"; break; fi
  done
fi
if [ -z "$python" ] && command -v pyenv >/dev/null; then
  versions=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[2-9](\.[0-9]+)?$' | sort -V || true)
  version=$(echo "$versions" | grep -E '^3\.12' | tail -n 1 || true)
  version=${version:-$(echo "$versions" | tail -n 1)}
  if [ -n "$version" ]; then python="$(pyenv root)/versions/$version/bin/python3"; fi
fi
if [ -z "$python" ]; then
  echo "install.sh: no Python >= 3.12 found (jax >= 0.11 needs it); install one (e.g. 'pyenv install 3.12') or name it: PYTHON=/path/to/python3.12 bash install.sh" >&2
  exit 2
fi

# DMC pixels render headless through Mesa's EGL; install it where missing and we may.
if command -v ldconfig >/dev/null && ! ldconfig -p | grep -q 'libEGL_mesa'; then
  egl='libegl1 libegl-mesa0 libgl1-mesa-dri libgles2'
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $egl >/dev/null
  else
    echo "install.sh: DMC pixels need Mesa's EGL, which is missing; install it as root (Debian/Ubuntu: apt-get install $egl). Continuing without it." >&2
  fi
fi

if ! { [ -x .venv/bin/python ] && ok_python .venv/bin/python; }; then
  "$python" -m venv --clear .venv
fi
extras='test'
if [ "${1:-}" = cuda ]; then extras='test,cuda'; fi
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
"${pip[@]}" -e ".[$extras]"
# gymnax pins jax<0.12 and gymnasium<1.4, which it does not need (its envs run on the current
# releases), so it comes without its pins.
"${pip[@]}" --no-deps 'gymnax==1.0.1'
echo "Installed into .venv ($(.venv/bin/python --version)). Next: source .venv/bin/activate"
