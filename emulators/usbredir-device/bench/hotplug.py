# Boots the bench guest, hot-plugs the usb-redir device over QMP, and reports plug -> hidraw,
# the hidecho round-trip figures, and unplug -> node gone. Needs hid_echo listening on
# /tmp/ur/tok.sock; run from /tmp/ur. See ../README.md.
import json, os, socket, subprocess, sys, time
QMP = "/tmp/ur/qmp.sock"
for p in [QMP]:
    if os.path.exists(p): os.unlink(p)
cmd = ["qemu-system-aarch64","-M","virt","-cpu","cortex-a72","-m","512","-smp","1","-accel","tcg","-nographic","-no-reboot","-nic","none",
       "-kernel","/tmp/ur/Image","-initrd","/tmp/ur/initrd.cpio","-append","console=ttyAMA0 quiet",
       "-device","qemu-xhci,id=xhci","-qmp","unix:%s,server=on,wait=off" % QMP]
q = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
start = time.monotonic()
def wait_line(marker, timeout=120):
    while True:
        line = q.stdout.readline()
        if not line: raise SystemExit("qemu exited waiting for %s" % marker)
        line = line.decode(errors="replace").rstrip()
        print("guest: %s" % line, flush=True)
        if marker in line: return time.monotonic(), line
wait_line("GUEST_READY")
s = socket.socket(socket.AF_UNIX); s.connect(QMP); f = s.makefile("rw")
def qmp(cmd, args=None):
    f.write(json.dumps({"execute": cmd, **({"arguments": args} if args else {})}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r: return r
f.readline(); print(qmp("qmp_capabilities"))
print(qmp("chardev-add", {"id":"ur0","backend":{"type":"socket","data":{"addr":{"type":"unix","data":{"path":"/tmp/ur/tok.sock"}},"server":False,"reconnect-ms":1000}}}))
t0 = time.monotonic()
print(qmp("device_add", {"driver":"usb-redir","chardev":"ur0","id":"tok0","bus":"xhci.0"}))
t1, _ = wait_line("HIDRAW_UP")
wait_line("ECHO_OK")
_, timing = wait_line("HIDECHO")
wait_line("WAIT_UNPLUG")
t2 = time.monotonic()
print(qmp("device_del", {"id":"tok0"}))
t3, _ = wait_line("HIDRAW_GONE")
q.wait(timeout=30)
print("RESULT plug->hidraw %.3f s; unplug->gone %.1f ms; %s" % (t1 - t0, (t3 - t2) * 1000, timing))
