#!/usr/bin/env bash
# Removes a build's scratch directory without ever reaching through a mount point inside it.
#
#   images/common/remove-tree.sh DIR
#
# mmdebstrap in root mode bind-mounts the build machine's /dev/shm, /dev/pts, /proc and /sys into
# the root file system it is making. When a build is interrupted those mounts can outlive it, and a
# plain `rm -rf` of the scratch directory then deletes the build machine's own files through them
# (PostgreSQL's shared memory segments in /dev/shm, for one). So: unmount everything under DIR,
# deepest first; refuse if anything is still mounted there; then remove with --one-file-system, which
# does not descend into another file system even if a mount appeared in between.
set -euo pipefail

if (($# != 1)) || [[ -z $1 ]]; then
  echo "usage: images/common/remove-tree.sh DIR" >&2
  exit 64
fi
[[ -e $1 ]] || exit 0
dir=$(readlink -f "$1")
[[ $dir != / ]] || {
  echo "remove-tree.sh: refusing to remove /" >&2
  exit 1
}

# Mount points at or under DIR, deepest first. /proc/self/mountinfo escapes space, tab, newline and
# backslash as octal (\040); printf %b turns them back.
mounts_under() {
  local target
  while read -r _ _ _ _ target _; do
    target=$(printf '%b' "$target")
    if [[ $target == "$dir" || $target == "$dir"/* ]]; then
      printf '%s\n' "$target"
    fi
  done </proc/self/mountinfo | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-
}

while IFS= read -r m; do
  [[ -n $m ]] || continue
  umount "$m" 2>/dev/null || umount --lazy "$m" || true
done < <(mounts_under)

left=$(mounts_under)
if [[ -n $left ]]; then
  echo "remove-tree.sh: still mounted under $dir, not removing it:" >&2
  printf '  %s\n' "$left" >&2
  exit 1
fi
rm -rf --one-file-system -- "$dir"
