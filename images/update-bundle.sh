#!/bin/sh
# Switch a register to another release of the app bundle, or back to the one before it
# (docs/operators.md, "Updating and rolling back").
#
#   update-bundle.sh [--root DIR] [--journal DIR|none] install BUNDLE.tar.gz
#   update-bundle.sh [--root DIR] [--journal DIR|none] rollback
#   update-bundle.sh [--root DIR] status
#
# --root: the register's root file system (default /): the real root partition, mounted on a
# workstation or at /media/root-ro on the register. --journal: the register's journal (default
# /var/lib/register/journal; on a workstation, the data partition's register/journal).
#
# Releases live in ROOT/opt/register/releases/<release>; ROOT/opt/register/current and …/previous
# link to two of them, and only those two are kept. A switch is one rename of a link, so it is
# atomic (`ln -sfn` alone removes the old link before making the new one). Before a release becomes
# current, its own registerctl must read the journal: a release that does not know the journal's
# format (JOURNAL_UNKNOWN_VERSION) is refused. Nothing is restarted here: on the register's read-only
# root the change takes effect at the next boot.
#
# Exit: 0 done (or nothing to do), 1 refused or failed (current unchanged), 64 wrong command line.
set -eu

usage() {
  echo "usage: update-bundle.sh [--root DIR] [--journal DIR|none] install BUNDLE.tar.gz | rollback | status" >&2
  exit 64
}
fail() {
  echo "update-bundle: $*" >&2
  exit 1
}
say() { echo "update-bundle: $*"; }

root=/
journal=/var/lib/register/journal
while [ $# -gt 0 ]; do
  case $1 in
  --root)
    [ $# -ge 2 ] || usage
    root=$2
    shift 2
    ;;
  --journal)
    [ $# -ge 2 ] || usage
    journal=$2
    shift 2
    ;;
  -*) usage ;;
  *) break ;;
  esac
done
[ $# -ge 1 ] || usage
action=$1
shift

opt=${root%/}/opt/register
releases=$opt/releases
[ -d "$releases" ] || fail "no $releases: not a register root (images/common/install-register.sh makes it)"

# The release a link names (its last path element), or nothing when there is no such link.
target() { if [ -L "$1" ]; then basename "$(readlink "$1")"; fi; }

# Point a link at releases/NAME with one rename.
relink() {
  ln -sfn "releases/$2" "$opt/.$1.new"
  mv -T "$opt/.$1.new" "$opt/$1"
}

# Can this release's own registerctl read the journal? Refuse only what it says it cannot read.
check_journal() {
  if [ "$journal" = none ]; then
    echo "update-bundle: warning: --journal none: not checked that release $1 reads the journal" >&2
    return 0
  fi
  [ -d "$journal" ] || return 0
  ctl=$releases/$1/bin/registerctl
  [ -x "$ctl" ] || fail "release $1 has no bin/registerctl"
  if out=$("$ctl" journal verify "$journal" 2>&1); then
    return 0
  else
    rc=$?
  fi
  case $out in
  *JOURNAL_UNKNOWN_VERSION*)
    fail "release $1 cannot read the journal in $journal (JOURNAL_UNKNOWN_VERSION): it predates its format. Not switched; see docs/operators.md"
    ;;
  esac
  [ "$rc" -eq 1 ] || fail "release $1 does not run here (registerctl exit $rc: on a workstation, arm64 needs qemu-user-static and binfmt-support): $out"
  echo "update-bundle: warning: the journal does not verify (switching anyway; see docs/recover.md): $out" >&2
}

# Units come with the release: install the ones that differ (they take effect after a reboot, or a
# `systemctl daemon-reload` on a writable root).
install_units() {
  for unit in registerd register-ui register-provision; do
    src=$releases/$1/systemd/$unit.service
    dst=${root%/}/etc/systemd/system/$unit.service
    [ -f "$src" ] || continue
    if ! cmp -s "$src" "$dst"; then
      install -m 0644 "$src" "$dst"
      say "installed $unit.service from $1"
    fi
  done
}

# Keep current and previous; remove every other release and any unpacking left by a cut.
prune() {
  keep_current=$(target "$opt/current")
  keep_previous=$(target "$opt/previous")
  for dir in "$releases"/* "$releases"/.[!.]*; do
    [ -e "$dir" ] || continue
    name=$(basename "$dir")
    [ "$name" = "$keep_current" ] || [ "$name" = "$keep_previous" ] && continue
    rm -rf "$dir"
    say "removed release $name"
  done
}

case $action in
status)
  [ $# -eq 0 ] || usage
  echo "current:  $(target "$opt/current")"
  echo "previous: $(target "$opt/previous")"
  ;;

install)
  [ $# -eq 1 ] || usage
  bundle=$1
  [ -f "$bundle" ] || fail "no bundle at $bundle"
  if [ -f "$bundle.sha256" ]; then
    (cd "$(dirname "$bundle")" && sha256sum -c --status "$(basename "$bundle").sha256") ||
      fail "$bundle does not match $bundle.sha256: copy it again"
  fi
  manifest=$(tar -xzOf "$bundle" manifest.json) || fail "$bundle has no manifest.json: not an app bundle"
  field() { printf '%s\n' "$manifest" | sed -n "s/^  \"$1\": \"\\(.*\\)\",\$/\\1/p"; }
  release=$(field release)
  arch=$(field arch)
  case $release in
  '' | .* | *[!A-Za-z0-9._+-]*) fail "the manifest's release is missing or not a plain name: '$release'" ;;
  esac
  # The register's architecture: the installed release's, else this machine's (a root being built).
  old=$(target "$opt/current")
  here=
  if [ -n "$old" ] && [ -f "$releases/$old/manifest.json" ]; then
    here=$(sed -n 's/^  "arch": "\(.*\)",$/\1/p' "$releases/$old/manifest.json")
  fi
  if [ -z "$here" ]; then
    case $(uname -m) in
    aarch64) here=arm64 ;;
    x86_64) here=x64 ;;
    *) here=$(uname -m) ;;
    esac
  fi
  [ "$arch" = "$here" ] || fail "the bundle is for $arch, the register runs $here"
  if [ "$old" = "$release" ]; then
    say "$release is already current: nothing to do"
    exit 0
  fi
  # Unpack beside the releases, then one rename: a cut never leaves a half release under its name.
  partial=$releases/.$release.partial
  rm -rf "$partial"
  mkdir -p "$partial"
  tar -xzf "$bundle" -C "$partial" --no-same-owner
  [ "$(target "$opt/previous")" != "$release" ] || rm -f "$opt/previous"
  rm -rf "${releases:?}/$release"
  mv "$partial" "$releases/$release"
  if ! (check_journal "$release"); then
    rm -rf "${releases:?}/$release"
    exit 1
  fi

  install_units "$release"
  relink current "$release"
  if [ -n "$old" ]; then relink previous "$old"; fi
  prune
  sync
  say "current is $release (previous: ${old:-none}); reboot to run it"
  ;;

rollback)
  [ $# -eq 0 ] || usage
  old=$(target "$opt/current")
  back=$(target "$opt/previous")
  if [ -z "$back" ] || [ ! -d "$releases/$back" ]; then fail "no previous release to roll back to"; fi
  check_journal "$back"
  install_units "$back"
  relink current "$back"
  relink previous "$old"
  sync
  say "current is $back (previous: $old); reboot to run it"
  ;;

*) usage ;;
esac
