#!/usr/bin/env bash
# phyr kernel oracle recorder: builds a Linux 7.1.x kernel with the phyr-oracle test driver for QEMU's
# edu device, boots it under QEMU once per machine configuration and writes what the kernel's DMA
# stack answered to test/kernel-recordings/<kernel version>/<configuration>.jsonl.
#
#   KSRC=/path/to/linux-7.1.5 npm run kernel:record            (all configurations)
#   KSRC=... npm run kernel:record -- vtd-strict amd-v1        (some)
#
# Environment: KSRC (required, a kernel tree; it gets drivers/misc/phyr-oracle.c and one Makefile
# line), KBUILD (out-of-tree build directory, default /tmp/phyr-kbuild), JOBS (default nproc),
# OUT (recordings directory, default test/kernel-recordings/<version>), LOGS (serial logs, default
# $KBUILD/oracle-logs). Needs Debian packages (installed with apt-get when missing): qemu-system-x86,
# flex, bison, libelf-dev, libssl-dev, busybox-static, cpio, bc, gcc, make.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
: "${KSRC:?set KSRC to a Linux 7.1.x source tree}"
KSRC="$(cd "$KSRC" && pwd)"
KBUILD="${KBUILD:-/tmp/phyr-kbuild}"
JOBS="${JOBS:-$(nproc)}"

# ---- packages ----
need=()
for p in qemu-system-x86 flex bison libelf-dev libssl-dev busybox-static cpio bc gcc make; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "recorder: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${need[@]}"
fi

# ---- kernel ----
KVER="$(make -s -C "$KSRC" kernelversion)"
OUT="${OUT:-$REPO/test/kernel-recordings/$KVER}"
LOGS="${LOGS:-$KBUILD/oracle-logs}"
mkdir -p "$KBUILD" "$OUT" "$LOGS"
cp "$HERE/phyr-oracle.c" "$KSRC/drivers/misc/phyr-oracle.c"
grep -q '^obj-y += phyr-oracle.o$' "$KSRC/drivers/misc/Makefile" || echo 'obj-y += phyr-oracle.o' >> "$KSRC/drivers/misc/Makefile"
if [ ! -f "$KBUILD/.config" ] || [ "$HERE/kernel.config" -nt "$KBUILD/.config" ]; then
  make -s -C "$KSRC" O="$KBUILD" tinyconfig
  "$KSRC/scripts/kconfig/merge_config.sh" -m -O "$KBUILD" "$KBUILD/.config" "$HERE/kernel.config" >/dev/null
  make -s -C "$KSRC" O="$KBUILD" olddefconfig
fi
echo "recorder: building Linux $KVER in $KBUILD" >&2
make -s -C "$KSRC" O="$KBUILD" -j"$JOBS" bzImage
BZIMAGE="$KBUILD/arch/x86/boot/bzImage"

# ---- initramfs (busybox + init.sh), reproducible: gen_init_cpio with a fixed timestamp ----
BUSYBOX="$(command -v busybox || echo /bin/busybox)"
cat > "$KBUILD/oracle-initramfs.list" <<EOF
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1
dir /bin 0755 0 0
file /bin/busybox $BUSYBOX 0755 0 0
file /init $HERE/init.sh 0755 0 0
EOF
"$KBUILD/usr/gen_init_cpio" -t 0 "$KBUILD/oracle-initramfs.list" > "$KBUILD/oracle-initramfs.cpio"

# ---- configurations: name | -m | QEMU devices | kernel command line additions ----
CONFIGS=(
  "vtd-strict|512M|-device intel-iommu,intremap=off|"
  "vtd-lazy|512M|-device intel-iommu,intremap=off|iommu.strict=0"
  "vtd-strict-3g|3G|-device intel-iommu,intremap=off|"
  "vtd-lazy-3g|3G|-device intel-iommu,intremap=off|iommu.strict=0"
  "vtd-untrusted-3g|3G|-device intel-iommu,intremap=off|phyr_oracle.untrusted=1"
  "amd-v1|512M|-device amd-iommu|"
  "amd-v1-3g|3G|-device amd-iommu|"
  "noiommu-256m|256M||"
  "noiommu-3g|3G||"
  "swiotlb-force-256m|256M||swiotlb=force"
)
BASE_APPEND="console=ttyS0 nokaslr printk.time=0 panic=-1"
QEMU_VERSION="$(qemu-system-x86_64 --version | head -1)"

want=("$@")
for c in "${CONFIGS[@]}"; do
  IFS='|' read -r name mem devs extra <<<"$c"
  if [ "${#want[@]}" -gt 0 ] && [[ ! " ${want[*]} " == *" $name "* ]]; then continue; fi
  append="$BASE_APPEND${extra:+ $extra}"
  # shellcheck disable=SC2206
  qemu=(qemu-system-x86_64 -machine q35,kernel-irqchip=split -accel tcg -cpu qemu64 -smp 1 -m "$mem"
        -icount shift=0,sleep=off -rtc clock=vm -nodefaults -display none -no-reboot -serial stdio
        -monitor none $devs -device edu,addr=0x10
        -kernel bzImage -initrd initramfs.cpio -append "$append")
  echo "recorder: $name: ${qemu[*]}" >&2
  (cd "$KBUILD" && cp "$BZIMAGE" bzImage && cp oracle-initramfs.cpio initramfs.cpio &&
    timeout 1800 "${qemu[@]}" > "$LOGS/$name.log" 2>&1) || echo "recorder: $name: QEMU exited with $?" >&2
  node "$HERE/parse.mjs" --log "$LOGS/$name.log" --name "$name" --kernel "$KVER" \
    --config "$KBUILD/.config" --fragment "$HERE/kernel.config" --driver "$HERE/phyr-oracle.c" \
    --initramfs "$KBUILD/oracle-initramfs.cpio" \
    --qemu-version "$QEMU_VERSION" --qemu "${qemu[*]}" --memory "$mem" > "$OUT/$name.jsonl"
  echo "recorder: $name: $(($(wc -l < "$OUT/$name.jsonl") - 1)) operations -> $OUT/$name.jsonl" >&2
done
