# Builds /tmp/ur/initrd.cpio (newc) from bb/ (busybox-static), k/ (linux-image deb), init.sh and
# hidecho/hidecho; run from /tmp/ur. See ../README.md.
import os, sys, stat
def entry(out, name, mode, data=b"", ino=[1]):
    ino[0]+=1
    hdr = "070701" + "".join("%08X" % v for v in [ino[0], mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0])
    b = hdr.encode() + name.encode() + b"\0"
    b += b"\0" * ((4 - len(b) % 4) % 4)
    b += data + b"\0" * ((4 - len(data) % 4) % 4)
    out.write(b)
out = open(sys.argv[1], "wb")
for d in ["bin", "sbin", "proc", "sys", "dev", "tmp", "lib", "lib/modules"]:
    entry(out, d, stat.S_IFDIR | 0o755)
entry(out, "bin/busybox", stat.S_IFREG | 0o755, open("bb/bin/busybox","rb").read())
for a in ["sh","mount","insmod","usleep","echo","printf","dd","cat","od","poweroff","sleep"]:
    entry(out, "bin/"+a, stat.S_IFLNK | 0o777, b"busybox")
entry(out, "init", stat.S_IFREG | 0o755, open("init.sh","rb").read())
if os.path.exists("hidecho/hidecho"):
    entry(out, "hidecho", stat.S_IFREG | 0o755, open("hidecho/hidecho","rb").read())
M = "k/lib/modules/6.1.0-56-arm64/kernel/"
for rel in ["drivers/usb/common/usb-common.ko","drivers/usb/core/usbcore.ko","drivers/usb/host/xhci-hcd.ko","drivers/usb/host/xhci-pci.ko","drivers/hid/hid.ko","drivers/hid/usbhid/usbhid.ko","drivers/hid/hid-generic.ko"]:
    entry(out, "lib/modules/"+os.path.basename(rel), stat.S_IFREG | 0o644, open(M+rel,"rb").read())
entry(out, "TRAILER!!!", 0)
