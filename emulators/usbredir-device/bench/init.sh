#!/bin/sh
# Guest /init for the round-trip bench (see ../README.md): echo once through /dev/hidraw0, run
# the hidecho timing helper, then wait for the unplug. Paths assume the /tmp/ur layout.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in usb-common usbcore xhci-hcd xhci-pci hid usbhid hid-generic; do insmod /lib/modules/$m.ko || echo "INSMOD_FAIL $m"; done
echo GUEST_READY
i=0
while [ ! -e /dev/hidraw0 ]; do usleep 2000; i=$((i+1)); if [ $i -gt 15000 ]; then echo NO_HIDRAW; poweroff -f; fi; done
echo HIDRAW_UP
payload='keybound-usbredir-echo-0123456789abcdefghijklmnopqrstuvwxyzABCDE'
exec 3</dev/hidraw0
printf '\000%s' "$payload" > /tmp/req
dd if=/tmp/req of=/dev/hidraw0 bs=65 count=1 2>/dev/null
echo WROTE
timeout 15 dd bs=64 count=1 of=/tmp/resp <&3 2>/dev/null
if [ "$(cat /tmp/resp)" = "$payload" ]; then echo ECHO_OK; else echo "ECHO_BAD"; od -c /tmp/resp; fi
exec 3<&-
[ -x /hidecho ] && /hidecho 1000
echo WAIT_UNPLUG
while [ -e /dev/hidraw0 ]; do usleep 1000; done
echo HIDRAW_GONE
poweroff -f
