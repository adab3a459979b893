#!/usr/bin/env bash
# Boots a COPY of a register SD-card image (images/debian) under qemu-system-aarch64 (the generic
# `virt` machine, TCG emulation) with the kernel and initramfs from the image's own boot partition, and
# checks the serial console for what a register must do at boot: the root under overlayroot's tmpfs,
# the data partition on /data and /var/lib/register, register-provision's outcome, registerd's start,
# the till on tty1 instead of getty. images/qemu/README.md.
#
#   images/qemu/boot-check.sh [options] IMAGE
#
# The image itself is only read: everything is done to a sparse copy in the scratch directory (the
# provisioning folder and the probe go onto the copy's boot partition, with mtools, never a mount).
set -euo pipefail

here=$(dirname "$(readlink -f "$0")")
repo=$(readlink -f "$here/../..")

usage() {
  cat >&2 <<'EOF'
usage: images/qemu/boot-check.sh [options] IMAGE
  IMAGE            a register image (register-*-debian-*-arm64.img); only a copy of it is booted
  --log FILE       the serial console log (default: IMAGE's name with .boot.log, in the current directory)
  --provision      stamp a throwaway provisioning into the copy first (a fresh openssl CA and device
                   certificate, device id till-q, manager PIN 4321; needs node_modules, via npm run stamp)
                   and expect a provisioned register: registerd started (READY) and stays up
  --csv FILE       stamp from this one-row CSV instead (docs/operators.md, "Stamping many cards")
  --timeout SECS   the whole boot, qemu killed after it (default 1500)
  --append WORDS   more kernel parameters after cmdline.txt's (to try a change, e.g. --append ro)
  --settle SECS    in the guest, how long to wait for the register's units to settle (default 600)
  --work DIR       scratch directory for the copy (default: a new temporary directory, removed after)
  --keep           keep the scratch directory
  -h, --help       this text
Exit status: 0 every marker found, 1 a marker missing (the list says which), 64 usage, 69 a tool missing.
EOF
  exit 64
}

fail() {
  echo "boot-check.sh: $*" >&2
  exit 1
}

image='' log='' extra='' provision=0 csv='' timeout_s=1500 settle_s=600 work='' keep=0
while (($#)); do
  case $1 in
  --log | --csv | --append | --timeout | --settle | --work)
    (($# >= 2)) || {
      echo "boot-check.sh: $1 needs a value" >&2
      usage
    }
    case $1 in
    --log) log=$2 ;;
    --csv) csv=$2 ;;
    --append) extra=$2 ;;
    --timeout) timeout_s=$2 ;;
    --settle) settle_s=$2 ;;
    --work) work=$2 ;;
    esac
    shift 2
    ;;
  --provision)
    provision=1
    shift
    ;;
  --keep)
    keep=1
    shift
    ;;
  -h | --help) usage ;;
  -*)
    echo "boot-check.sh: unknown option: $1" >&2
    usage
    ;;
  *)
    [[ -z $image ]] || {
      echo "boot-check.sh: one image only" >&2
      usage
    }
    image=$1
    shift
    ;;
  esac
done
[[ -n $image ]] || usage
[[ -f $image ]] || fail "no image at $image"
[[ $timeout_s =~ ^[1-9][0-9]*$ && $settle_s =~ ^[1-9][0-9]*$ ]] || fail "--timeout and --settle take seconds"
((provision == 0)) || [[ -z $csv ]] || fail "--provision or --csv, not both"
[[ -z $csv || -f $csv ]] || fail "no CSV at $csv"
[[ -n $log ]] || log=$(basename "$image" .img).boot.log

tools=(qemu-system-aarch64 sfdisk mcopy mtype timeout cp)
((provision == 0)) || tools+=(openssl)
((provision == 0)) && [[ -z $csv ]] || tools+=(npm)
missing=()
for tool in "${tools[@]}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
  echo "boot-check.sh: missing ${missing[*]} (apt-get install qemu-system-arm fdisk mtools openssl)" >&2
  exit 69
fi
export MTOOLS_SKIP_CHECK=1

if [[ -z $work ]]; then
  work=$(mktemp -d "${TMPDIR:-/tmp}/boot-check.XXXXXX")
  ((keep)) || trap 'rm -rf -- "$work"' EXIT
else
  mkdir -p "$work"
fi
copy=$work/disk.img
[[ $(readlink -f "$image") != "$(readlink -f "$copy")" ]] || fail "the image is the scratch copy's own path"

echo "boot-check.sh: copying $image" >&2
cp --sparse=always -- "$image" "$copy"

# The boot partition: the first FAT one in the copy's partition table (as scripts/stamp.ts finds it).
boot_start='' boot_part=''
while read -r line; do
  [[ $line == "$copy"* ]] || continue
  type=$(sed -n 's/.*type=\([0-9a-fA-F]*\).*/\1/p' <<<"$line")
  case ${type,,} in
  b | c | e | 6 | 4 | 1 | ef)
    boot_start=$(sed -n 's/.*start= *\([0-9]*\).*/\1/p' <<<"$line")
    boot_part=$(sed -n 's/^[^ ]*[^0-9]\([0-9]\{1,\}\) :.*/\1/p' <<<"$line")
    break
    ;;
  esac
done < <(sfdisk --dump "$copy")
[[ -n $boot_start ]] || fail "no FAT partition in $image's partition table"
fat="$copy@@$((boot_start * 512))"

# The kernel and initramfs the Pi's firmware would load (config.txt), the line it would pass
# (cmdline.txt).
config=$(mtype -i "$fat" ::/config.txt) || fail "no config.txt on the boot partition"
cmdline=$(mtype -i "$fat" ::/cmdline.txt | tr -d '\r' | head -n 1) || fail "no cmdline.txt on the boot partition"
kernel=$(sed -n 's/^[[:space:]]*kernel=\([^[:space:]]*\).*/\1/p' <<<"$config" | tail -n 1)
initrd=$(sed -n 's/^[[:space:]]*initramfs[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/p' <<<"$config" | tail -n 1)
[[ -n $kernel && -n $initrd ]] || fail "config.txt names no kernel= or initramfs: $config"
mcopy -n -i "$fat" "::/$kernel" "$work/kernel"
mcopy -n -i "$fat" "::/$initrd" "$work/initrd"
echo "boot-check.sh: kernel $kernel, initramfs $initrd" >&2
echo "boot-check.sh: cmdline.txt: $cmdline" >&2

# Provisioning, onto the copy's boot partition only.
if ((provision)); then
  pki=$work/pki
  mkdir -p "$pki"
  (
    cd "$pki"
    ssl() { openssl "$@" 2>/dev/null; }
    ssl ecparam -name prime256v1 -genkey -noout -out ca.key
    ssl req -x509 -new -key ca.key -sha256 -days 30 -subj /CN=boot-check-ca \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out ca.crt
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' >client.ext
    ssl ecparam -name prime256v1 -genkey -noout -out till-q.key
    ssl req -new -key till-q.key -subj /CN=till-q -out till-q.csr
    ssl x509 -req -in till-q.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -sha256 \
      -extfile client.ext -out till-q.crt
    {
      echo 'deviceId,storeId,brokerUrl,timeZone,managerId,managerName,managerPin,managerPinHash,caFile,certFile,keyFile,enrolmentToken'
      echo 'till-q,boot-check,mqtts://10.0.2.2:8883,Europe/Berlin,mia,Mia Example,4321,,ca.crt,till-q.crt,till-q.key,'
    } >devices.csv
  )
  csv=$pki/devices.csv
fi
if [[ -n $csv ]]; then
  echo "boot-check.sh: stamping $csv into the copy" >&2
  csv=$(readlink -f "$csv")
  (cd "$repo" && npm run -s stamp -- --csv "$csv" --image "$copy") >&2
fi

# The probe: systemd-run-generator makes it kernel-command-line.service from the kernel command line,
# pulled into the normal boot of multi-user.target by systemd.unit= and systemd.wants= (the generator
# would otherwise boot its own target instead). It mounts the boot partition by itself (not through
# /boot/firmware, which may fail), waits for the register's units to settle, prints what it sees as
# "BOOTCHECK: " lines on the console, and the machine powers off when it returns.
cat >"$work/bootcheck.sh" <<EOF
#!/bin/sh
# Written by images/qemu/boot-check.sh onto a copy of the image's boot partition; never on a real card.
settle=$settle_s
EOF
cat >>"$work/bootcheck.sh" <<'EOF'
state() { systemctl show -p ActiveState --value "$1"; }
# The boot's jobs still queued, but for this probe's and those that wait for it: multi-user.target
# (after every unit it wants) and the units after that target.
pending() {
  systemctl list-jobs --no-legend | grep -v -e ' kernel-command-line.service ' -e ' multi-user.target ' \
    -e ' graphical.target ' -e ' systemd-update-utmp-runlevel.service ' | grep -c .
}
report() { # report PREFIX: what the register looks like now, as PREFIX lines on the console
  p=$1
  say() { printf '%s: %s\n' "$p" "$*" >/dev/console; }
  mnt() { say "mount $1 $(findmnt -n -o SOURCE,FSTYPE,OPTIONS --mountpoint "$1" 2>&1 | tail -n 1)"; }
  say "uptime $(cut -d' ' -f1 /proc/uptime) s"
  say "cmdline $(cat /proc/cmdline)"
  for m in / /media/root-ro /boot/firmware /data /var/lib/register /var/log/journal /etc/machine-id; do mnt "$m"; done
  for u in register-provision.service registerd.service register-ui.service getty@tty1.service \
    boot-firmware.mount data.mount var-lib-register.mount var-log-journal.mount multi-user.target; do
    say "unit $u $(systemctl show -p ActiveState -p SubState -p Result -p ConditionResult \
      -p ConditionTimestampMonotonic -p ExecMainStatus -p NRestarts "$u" | sort | tr '\n' ' ')"
  done
  for u in registerd.service register-ui.service register-provision.service getty@tty1.service; do
    say "is-enabled $u $(systemctl is-enabled "$u" 2>&1)"
  done
  say "failed units: $(systemctl --failed --no-legend --plain | awk '{ print $1 }' | tr '\n' ' ')"
  say "machine-id $(cat /etc/machine-id)"
  # Provisioning puts the data partition's id on the kernel command line for the boots that follow.
  data_id=$(cat /var/lib/register/machine-id 2>/dev/null)
  if [ -n "$data_id" ] && grep -q "systemd.machine_id=$data_id" /boot/firmware/cmdline.txt 2>/dev/null; then
    say "machine-id on the next boot's command line: $data_id"
    if [ "$(cat /etc/machine-id)" = "$data_id" ]; then say "machine-id is the data partition's"; fi
  fi
  say "var-lib-register $(ls -A /var/lib/register 2>&1 | tr '\n' ' ')"
  say "journal $(journalctl --disk-usage 2>&1)"
  journalctl -b -o cat | grep -e 'ordering cycle' -e 'deleted to break' | sed "s/^/$p: cycle-log /" >/dev/console
  journalctl -b -o cat -u register-provision.service | sed "s/^/$p: provision-log /" >/dev/console
  journalctl -b -o cat -u registerd.service | tail -n 30 | sed "s/^/$p: registerd-log /" >/dev/console
  journalctl -b -o cat -u register-ui.service | tail -n 10 | sed "s/^/$p: register-ui-log /" >/dev/console
}
settled() { # settled SECONDS: wait for the start-up jobs to finish, then watch 45 s more
  waited=0
  while [ "$waited" -lt "$1" ]; do
    sleep 5
    waited=$((waited + 5))
    [ "$(pending)" -eq 0 ] && [ "$(state registerd.service)" != activating ] && break
  done
  printf 'BOOTCHECK: settled after %s s; watching 45 s more\n' "$waited" >/dev/console
  sleep 45
}
printf 'BOOTCHECK: probe started, %s s after boot; multi-user.target %s\n' "$(cut -d' ' -f1 /proc/uptime)" \
  "$(systemctl show -p ActiveState -p Job multi-user.target | tr '\n' ' ')" >/dev/console
# multi-user.target is the boot's own target (systemd.unit= on the kernel command line); should it be
# neither active nor starting, the boot is not the register's normal one: say so and start it.
if [ "$(state multi-user.target)" != active ] && [ -z "$(systemctl show -p Job --value multi-user.target)" ]; then
  printf 'BOOTCHECK: multi-user.target was not in the boot transaction: starting it\n' >/dev/console
  systemctl start --no-block multi-user.target
fi
settled "$settle"
report BOOTCHECK
# Under emulation a device can come later than a mount's x-systemd.device-timeout: once more by hand,
# to see the rest of the register work (reported apart, as BOOTCHECK-RETRY lines).
if ! mountpoint -q /data || ! mountpoint -q /boot/firmware || ! mountpoint -q /var/lib/register; then
  printf 'BOOTCHECK: retry: starting the mounts that timed out, then provisioning and registerd\n' >/dev/console
  systemctl start boot-firmware.mount data.mount var-lib-register.mount var-log-journal.mount
  systemctl start --no-block register-provision.service registerd.service
  settled 300
  report BOOTCHECK-RETRY
fi
printf 'BOOTCHECK: done\n' >/dev/console
EOF
mcopy -o -i "$fat" "$work/bootcheck.sh" ::/bootcheck.sh

# The Pi's own line, with the serial console instead of tty3 and without `quiet`, plus systemd's
# status lines and the journal on the console, and the probe.
append=''
for word in $cmdline; do
  case $word in
  console=* | quiet | loglevel=* | splash | plymouth.* | systemd.run* | systemd.unit=* | systemd.wants=* | \
    systemd.show_status=*) ;;
  *) append+="$word " ;;
  esac
done
append+="${extra:+$extra }"
append+='console=ttyAMA0 systemd.show_status=1 systemd.journald.forward_to_console=1 '
append+="systemd.run=\"/bin/sh -c 'mkdir -p /run/bootcheck; until [ -r /run/bootcheck.sh ]; do "
append+="cp /boot/firmware/bootcheck.sh /run/bootcheck.sh 2>/dev/null || "
append+="{ mount -o ro -t vfat /dev/vda$boot_part /run/bootcheck 2>/dev/null && "
append+="cp /run/bootcheck/bootcheck.sh /run/bootcheck.sh; umount /run/bootcheck 2>/dev/null; }; sleep 2; done; "
append+="exec /bin/sh /run/bootcheck.sh'\" "
append+='systemd.run_success_action=poweroff systemd.run_failure_action=poweroff '
append+='systemd.unit=multi-user.target systemd.wants=kernel-command-line.service'

echo "boot-check.sh: booting the copy (timeout ${timeout_s} s), console in $log" >&2
started=$(date +%s)
status=0
timeout --kill-after=10 "$timeout_s" qemu-system-aarch64 \
  -M virt -cpu cortex-a72 -m 2048 -smp 2 -nographic -no-reboot \
  -kernel "$work/kernel" -initrd "$work/initrd" -append "$append" \
  -drive "file=$copy,format=raw,if=virtio" \
  -nic user -device virtio-rng-pci \
  </dev/null >"$log" 2>&1 || status=$?
elapsed=$(($(date +%s) - started))
if ((status == 124)); then
  echo "boot-check.sh: qemu stopped after the ${timeout_s} s timeout" >&2
else
  echo "boot-check.sh: qemu exited ($status) after $elapsed s" >&2
fi

# The markers. Each: a name, then an extended regular expression the console log must match.
markers=(
  'kernel started' 'Linux version .*'
  'initramfs found the root by label' 'register-root'
  'overlayroot configured from overlayroot.local.conf' "overlayroot: configured root with 'tmpfs:recurse=0'"
  'systemd started' 'systemd\[1\]: .*|Welcome to '
  'probe ran to the end' '^BOOTCHECK: done'
  'root is overlayroot tmpfs overlay' '^BOOTCHECK: mount / overlayroot overlay '
  'real root read-only below it' '^BOOTCHECK: mount /media/root-ro /dev/vda2 ext4 +ro,'
  '/data is register-data (noatime)' '^BOOTCHECK: mount /data /dev/vda3 ext4 +rw,noatime'
  '/var/lib/register bound from /data' '^BOOTCHECK: mount /var/lib/register /dev/vda3\[/register\] ext4 +rw'
  '/var/log/journal bound from /data' '^BOOTCHECK: mount /var/log/journal /dev/vda3\[/journal\] ext4 +rw'
  '/boot/firmware mounted' '^BOOTCHECK: mount /boot/firmware /dev/vda1 vfat +rw'
  'register-ui running on tty1' '^BOOTCHECK: unit register-ui.service ActiveState=active .*SubState=running'
  'getty@tty1 not running' '^BOOTCHECK: unit getty@tty1.service ActiveState=inactive'
)
if [[ -n $csv ]]; then
  markers+=(
    'register-provision succeeded' '^BOOTCHECK: unit register-provision.service ActiveState=active .*Result=success'
    'provisioning applied' '^BOOTCHECK: provision-log .*"outcome":"(applied|completed|unchanged)"'
    'registerd READY (Started)' '^BOOTCHECK: registerd-log Started registerd.service'
    'registerd running, never restarted' '^BOOTCHECK: unit registerd.service ActiveState=active .*NRestarts=0 .*SubState=running'
    "the data partition's machine id on cmdline.txt for the next boot" '^BOOTCHECK: machine-id on the next boot.s command line: [0-9a-f]{32}$'
  )
else
  markers+=(
    'register-provision failed clearly (66, PROVISION_MISSING)' '^BOOTCHECK: unit register-provision.service ActiveState=failed ConditionResult=yes [^ ]+ ExecMainStatus=66 '
    'provisioning log says why' '^BOOTCHECK: provision-log .*PROVISION_MISSING'
    'registerd skipped, not provisioned' '^BOOTCHECK: unit registerd.service ActiveState=inactive ConditionResult=no ConditionTimestampMonotonic=[1-9]'
  )
fi

absent=0
# The serial console ends its lines with CR LF: markers are matched on the lines without the CR.
console=$work/console.txt
tr -d '\r' <"$log" >"$console"
if grep -aq '^BOOTCHECK: cycle-log ' "$console"; then
  printf 'MISSING  no ordering cycle   (systemd broke one; the cycle-log lines below say which)\n'
  absent=$((absent + 1))
else
  printf 'ok       no ordering cycle\n'
fi
for ((i = 0; i < ${#markers[@]}; i += 2)); do
  if grep -aEq -- "${markers[i + 1]}" "$console"; then
    printf 'ok       %s\n' "${markers[i]}"
  else
    retried=''
    if [[ ${markers[i + 1]} == '^BOOTCHECK: '* ]] &&
      grep -aEq -- "^BOOTCHECK-RETRY: ${markers[i + 1]#^BOOTCHECK: }" "$console"; then
      retried=' -- but seen after the retry by hand'
    fi
    printf 'MISSING  %s   (/%s/)%s\n' "${markers[i]}" "${markers[i + 1]}" "$retried"
    absent=$((absent + 1))
  fi
done
grep -a -E '^BOOTCHECK(-RETRY)?: ' "$console" | grep -v -e '-log ' -e '^BOOTCHECK-RETRY: cycle-log' >&2 ||
  true
if ((absent)); then
  echo "boot-check.sh: $absent marker(s) missing; console log: $log" >&2
  exit 1
fi
echo "boot-check.sh: every marker found in $elapsed s; console log: $log" >&2
