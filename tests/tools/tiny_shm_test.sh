#!/usr/bin/env bash
# `chipmesh demo` on a /dev/shm too small for its windows (issue 12: tiny
# /dev/shm): exit 1 with an error that names /dev/shm and the sizes, and
# nothing of the job left there. Runs in a private mount namespace with a
# 16 MiB tmpfs over /dev/shm, so the machine's /dev/shm is never touched;
# skipped (77) where such a namespace cannot be made (not root, no unshare).
set -u
cli="$1"
if ! unshare -m --propagation private true 2>/dev/null; then
  echo "tiny_shm_test: cannot create a mount namespace here; skipping"
  exit 77
fi
exec timeout -k 5 120 unshare -m --propagation private bash -c '
  cli="$1"
  if ! mount -t tmpfs -o size=16m tmpfs /dev/shm; then
    echo "tiny_shm_test: cannot mount a tmpfs over /dev/shm; skipping"
    exit 77
  fi
  out=$("$cli" demo --chips 4 --bytes 8MiB 2>&1); rc=$?
  printf "%s\n" "$out"
  [[ $rc -eq 1 ]] || { echo "tiny_shm_test: expected exit status 1, got $rc"; exit 1; }
  grep -q "/dev/shm" <<<"$out" || { echo "tiny_shm_test: the error does not name /dev/shm"; exit 1; }
  left=$(ls -A /dev/shm)
  [[ -z "$left" ]] || { echo "tiny_shm_test: left in /dev/shm: $left"; exit 1; }
  echo "tiny_shm_test: OK"
' tiny_shm_test "$cli"
