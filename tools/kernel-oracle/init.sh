#!/bin/busybox sh
# phyr kernel oracle: /init of the busybox initramfs. Runs the phyr-oracle driver's script once
# (its JSON lines go to the serial console) and powers the machine off.
/bin/busybox mkdir -p /proc /sys
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t debugfs debugfs /sys/kernel/debug
# dma-debug prints only its first error unless asked for all of them
if [ -e /sys/kernel/debug/dma-api/all_errors ]; then
  echo 1 > /sys/kernel/debug/dma-api/all_errors
fi
if [ -e /sys/kernel/debug/phyr-oracle/run ]; then
  echo run > /sys/kernel/debug/phyr-oracle/run
else
  echo "PHYR-ORACLE-NODEV" > /dev/kmsg
fi
/bin/busybox poweroff -f
