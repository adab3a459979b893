#!/bin/sh
# Append the register's data partition to an SD-card image, without mounting anything: a primary
# partition after the last one (4 MiB aligned), an ext4 file system labelled register-data made in
# place by mke2fs at the partition's offset, holding the two directories the fstab binds
# (register/ for registerd, journal/ for journald; their owners are set at boot by
# register-provision and systemd-tmpfiles). images/README.md.
#
#   add-data-partition.sh IMAGE [SIZE]      SIZE like 512M or 2G (default 1G)
set -eu

fail() {
  echo "add-data-partition: $*" >&2
  exit 1
}

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: add-data-partition.sh IMAGE [SIZE]" >&2
  exit 64
fi
img=$1
size=${2:-1G}
[ -f "$img" ] || fail "no image at $img"
case $size in
*[!0-9MG]* | [!1-9]* | *[MG]*[MG]* | *[0-9]) fail "size $size: a number of MiB or GiB, like 512M or 2G" ;;
esac
for tool in sfdisk mke2fs truncate numfmt; do
  command -v "$tool" >/dev/null || fail "needs $tool (Debian: fdisk, e2fsprogs, coreutils)"
done
count=$(sfdisk --dump "$img" | grep -c ' : start=' || true)
[ "$count" -ge 1 ] || fail "$img has no partition table"
[ "$count" -lt 3 ] || fail "$img already has $count partitions: is the data partition there?"

# 512-byte sectors. The new partition starts at the next 4 MiB boundary after the last one.
end=$(sfdisk --dump "$img" | sed -n 's/.*start= *\([0-9]*\), size= *\([0-9]*\).*/\1 \2/p' |
  awk '{ if ($1 + $2 > max) max = $1 + $2 } END { print max + 0 }')
align=8192
start=$(((end + align - 1) / align * align))
sectors=$(($(numfmt --from=iec "$size") / 512))

truncate -s $(((start + sectors) * 512)) "$img"
echo "start=$start, size=$sectors, type=83" | sfdisk --quiet --append --no-reread --no-tell-kernel "$img"

content=$(mktemp -d)
trap 'rm -rf "$content"' EXIT
mkdir -m 0750 "$content/register"
mkdir -m 2755 "$content/journal"
mke2fs -q -F -t ext4 -L register-data -d "$content" -E "offset=$((start * 512))" "$img" "$((sectors / 2))k"
echo "add-data-partition: $img: partition at sector $start, $size, label register-data"
