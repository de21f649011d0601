"""Adapter: python-fido2's CtapHidConnection over virtual-fido's raw CTAPHID unix socket.

The socket carries exactly one 64-byte HID report per message in both directions, so a
connection only has to move 64-byte packets.
"""

import socket

from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

REPORT_LEN = 64


class SocketCtapHidConnection(CtapHidConnection):
    """One HID device = one connection to the raw socket."""

    def __init__(self, path: str, timeout: float = 60.0):
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._sock.connect(path)

    def write_packet(self, data: bytes) -> None:
        if len(data) != REPORT_LEN:
            raise OSError(f"CTAPHID packet of {len(data)} bytes, expected {REPORT_LEN}")
        self._sock.sendall(data)

    def read_packet(self) -> bytes:
        buf = b""
        while len(buf) < REPORT_LEN:
            chunk = self._sock.recv(REPORT_LEN - len(buf))
            if not chunk:
                raise OSError("virtual-fido closed the connection")
            buf += chunk
        return buf

    def close(self) -> None:
        self._sock.close()


def open_device(path: str) -> CtapHidDevice:
    """Opens the virtual token behind the raw socket at `path` as a python-fido2 device."""
    descriptor = HidDescriptor(
        path=path,
        vid=0x1209,
        pid=0x000A,
        report_size_in=REPORT_LEN,
        report_size_out=REPORT_LEN,
        product_name="keybound virtual-fido",
        serial_number=None,
    )
    return CtapHidDevice(descriptor, SocketCtapHidConnection(path))
