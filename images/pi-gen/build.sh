#!/usr/bin/env bash
# The release image: Raspberry Pi OS Lite (pi-gen stages 0–2) plus stage-register, built natively on
# an arm64 runner, then the data partition appended. images/README.md.
#
#   images/pi-gen/build.sh --bundle register-…-linux-arm64.tar.gz --pi-gen DIR --out DIR [options]
#
# DIR is a checkout of pi-gen's arm64 branch (github.com/RPi-Distro/pi-gen, branch bookworm-arm64).
# This script copies stage-register and its inputs into it, writes its config, runs its build.sh
# (as root), and adds the data partition to the exported image with add-data-partition.sh.
set -euo pipefail

here=$(dirname "$(readlink -f "$0")")

usage() {
  cat >&2 <<'EOF'
usage: images/pi-gen/build.sh --bundle FILE --pi-gen DIR --out DIR [--data-size SIZE] [--dry-run]
  --bundle FILE      the app bundle for arm64 (npm run bundle -- --arch arm64 --out DIR)
  --pi-gen DIR       a pi-gen checkout (branch bookworm-arm64)
  --out DIR          where the image and its .sha256 go
  --data-size SIZE   the data partition (default 1G)
  --dry-run          check, prepare the pi-gen checkout, print the commands, build nothing
EOF
  exit 64
}

fail() {
  echo "pi-gen/build.sh: $*" >&2
  exit 1
}

bundle='' pigen='' out='' data_size=1G dry_run=0
while (($#)); do
  case $1 in
  --bundle | --pi-gen | --out | --data-size)
    (($# >= 2)) || usage
    case $1 in
    --bundle) bundle=$2 ;;
    --pi-gen) pigen=$2 ;;
    --out) out=$2 ;;
    --data-size) data_size=$2 ;;
    esac
    shift 2
    ;;
  --dry-run)
    dry_run=1
    shift
    ;;
  *) usage ;;
  esac
done
[[ -n $bundle && -n $pigen && -n $out ]] || usage
[[ -f $bundle ]] || fail "no bundle at $bundle"
[[ -x $pigen/build.sh && -d $pigen/stage2 ]] || fail "$pigen is not a pi-gen checkout (no build.sh, stage2)"
[[ $data_size =~ ^[1-9][0-9]*[MG]$ ]] || fail "--data-size $data_size: like 512M or 2G"
manifest=$(tar -xzOf "$bundle" manifest.json 2>/dev/null) || fail "$bundle has no manifest.json"
grep -q '^  "arch": "arm64",$' <<<"$manifest" || fail "the bundle is not for arm64"
release=$(sed -n 's/^  "release": "\(.*\)",$/\1/p' <<<"$manifest")
[[ $release =~ ^[A-Za-z0-9._+-]+$ ]] || fail "the bundle's manifest has no usable release"

# The stage and its inputs, inside the pi-gen checkout (its Docker build sees only that directory).
stage=$pigen/stage-register
rm -rf "$stage"
cp -R "$here/stage-register" "$stage"
mkdir -p "$stage/01-register/files"
cp "$bundle" "$stage/01-register/files/register-bundle.tar.gz"
cp -R "$here/../common" "$stage/01-register/files/common"

# No password to log in with: the till owns tty1, and the build user is locked by the stage.
cat >"$pigen/config" <<EOF
IMG_NAME=register-$release
RELEASE=bookworm
STAGE_LIST="stage0 stage1 stage2 stage-register"
DEPLOY_COMPRESSION=none
ENABLE_SSH=0
FIRST_USER_NAME=maintainer
FIRST_USER_PASS=$(head -c 24 /dev/urandom | base64)
DISABLE_FIRST_BOOT_USER_RENAME=1
TARGET_HOSTNAME=register
EOF
touch "$pigen/stage2/SKIP_IMAGES"

if ((dry_run)); then
  echo "prepared: $stage, $pigen/config"
  echo "then:     (cd $pigen && sudo ./build.sh)"
  echo "then:     $here/add-data-partition.sh $pigen/deploy/<date>-register-$release-register.img $data_size"
  exit 0
fi

(cd "$pigen" && ./build.sh)
img=$(find "$pigen/deploy" -maxdepth 1 -name "*register-$release-register.img" | sort | tail -n 1)
[[ -n $img ]] || fail "pi-gen exported no image for stage-register in $pigen/deploy"
"$here/add-data-partition.sh" "$img" "$data_size"
mkdir -p "$out"
name=register-$release-raspios-arm64.img
mv "$img" "$out/$name"
(cd "$out" && sha256sum "$name" >"$name.sha256")
echo "pi-gen/build.sh: $out/$name" >&2
