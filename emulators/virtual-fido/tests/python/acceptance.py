"""Acceptance: python-fido2 (client and server, verification on) against virtual-fido.

Usage: acceptance.py RAW_SOCKET [CONTROL_SOCKET]
With CONTROL_SOCKET the daemon is expected to run with `--presence wait-for-touch`: the client's
user-interaction callback (called on KEEPALIVE UPNEEDED) touches the token over the control
socket, as a person would. Prints one JSON line with the results and exits 0 only when every check passed.
"""

import json
import os
import socket
import sys

from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap1 import Ctap1
from fido2.ctap2 import Ctap2
from fido2.ctap2.extensions import CredProtectExtension, HmacSecretExtension
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.server import Fido2Server
from fido2.utils import websafe_decode
from fido2.webauthn import PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity

from socket_hid import open_device

PIN = "4711-keybound"
RP = PublicKeyCredentialRpEntity(id="keybound.example", name="keybound")
ORIGIN = "https://keybound.example"


def control(path, request):
    """One JSON-lines request to the daemon's control socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall((json.dumps(request) + "\n").encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    reply = json.loads(reply)
    if not reply.get("ok"):
        raise RuntimeError(f"control request {request} failed: {reply}")
    return reply["result"]


class PinInteraction(UserInteraction):
    def __init__(self, control_path=None):
        self.control_path = control_path
        self.prompts = 0

    def request_pin(self, permissions, rp_id):
        return PIN

    def prompt_up(self):
        self.prompts += 1
        if self.control_path:
            control(self.control_path, {"cmd": "touch"})


def check(results, name, cond, detail=""):
    results[name] = bool(cond)
    if not cond:
        print(f"FAILED: {name} {detail}", file=sys.stderr)


def main(path, control_path=None):
    results = {}
    dev = open_device(path)

    # getInfo
    ctap2 = Ctap2(dev)
    info = ctap2.info
    check(results, "info_versions", "FIDO_2_1" in info.versions and "U2F_V2" in info.versions)
    check(results, "info_extensions", {"hmac-secret", "credProtect"} <= set(info.extensions))
    check(results, "info_pin_protocols", set(info.pin_uv_protocols) == {1, 2})

    # Set a PIN (protocol 2), check retries, then a wrong PIN costs one retry.
    client_pin = ClientPin(ctap2, PinProtocolV2())
    if not info.options.get("clientPin"):
        client_pin.set_pin(PIN)
    check(results, "pin_set", Ctap2(dev).info.options.get("clientPin") is True)
    retries_before = client_pin.get_pin_retries()[0]
    try:
        client_pin.get_pin_token("wrong-pin-0000")
        check(results, "wrong_pin_refused", False)
    except Exception as e:  # CtapError PIN_INVALID
        check(results, "wrong_pin_refused", "PIN_INVALID" in str(e), str(e))
    check(results, "retries_decrement", client_pin.get_pin_retries()[0] == retries_before - 1)
    token_v1 = ClientPin(ctap2, PinProtocolV1()).get_pin_token(PIN)
    check(results, "pin_protocol_1_token", len(token_v1) == 32)
    check(results, "retries_restored", client_pin.get_pin_retries()[0] == 8)

    # WebAuthn registration with UV (PIN), resident key, hmac-secret, packed attestation.
    server = Fido2Server(RP, attestation="direct")
    interaction = PinInteraction(control_path)
    client = Fido2Client(
        dev,
        client_data_collector=DefaultClientDataCollector(ORIGIN),
        user_interaction=interaction,
        extensions=[HmacSecretExtension(allow_hmac_secret=True), CredProtectExtension()],
    )
    user = PublicKeyCredentialUserEntity(id=b"user-0001", name="tech", display_name="Technician")
    create_options, state = server.register_begin(
        user,
        resident_key_requirement="required",
        user_verification="required",
        extensions={
            "hmacCreateSecret": True,
            "credentialProtectionPolicy": "userVerificationOptional",
        },
    )
    reg = client.make_credential(create_options.public_key)
    auth_data = server.register_complete(state, reg)  # verifies packed attestation
    cred = auth_data.credential_data
    check(results, "register_uv", auth_data.is_user_verified())
    check(results, "register_attestation_packed", reg.response.attestation_object.fmt == "packed")
    check(
        results,
        "register_hmac_secret",
        reg.client_extension_results.get("hmacCreateSecret") is True,
        str(reg.client_extension_results),
    )

    # Authentication with UV and hmac-secret, verified by the server; twice with the same salt.
    outputs = []
    counters = []
    for salt in (b"\x11" * 32, b"\x11" * 32, b"\x22" * 32):
        request_options, state = server.authenticate_begin(
            [cred],
            user_verification="required",
            extensions={"hmacGetSecret": {"salt1": salt}},
        )
        selection = client.get_assertion(request_options.public_key)
        response = selection.get_response(0)
        server.authenticate_complete(state, [cred], response)  # verifies the signature
        counters.append(response.response.authenticator_data.counter)
        check(results, "assert_uv", response.response.authenticator_data.is_user_verified())
        ext = response.client_extension_results.get("hmacGetSecret") or {}
        output1 = ext.get("output1")
        outputs.append(websafe_decode(output1) if isinstance(output1, str) else output1)
    check(results, "hmac_secret_present", all(o and len(o) == 32 for o in outputs), str(outputs))
    check(results, "hmac_secret_same_salt_same_output", outputs[0] == outputs[1])
    check(results, "hmac_secret_other_salt_differs", outputs[0] != outputs[2])
    check(results, "counter_increases", counters[0] < counters[1] < counters[2], str(counters))

    # Discoverable login (no allowList): the resident credential is found.
    request_options, state = server.authenticate_begin(user_verification="required")
    selection = client.get_assertion(request_options.public_key)
    response = selection.get_response(0)
    server.authenticate_complete(state, [cred], response)
    check(results, "discoverable_login", response.raw_id == cred.credential_id)

    if control_path:
        # Every CTAP2 presence check above waited for a touch given from prompt_up.
        check(results, "touched_on_prompt", interaction.prompts >= 5, str(interaction.prompts))
        status = control(control_path, {"cmd": "status"})
        check(results, "status_counter", status["counter"] == counters[-1] + 1, str(status))
        # U2F does not block (the host polls): switch the button to accept.
        control(control_path, {"cmd": "presence", "policy": "accept"})

    # CTAP1/U2F register + authenticate, verified with python-fido2's U2F checks.
    ctap1 = Ctap1(dev)
    check(results, "u2f_version", ctap1.get_version() == "U2F_V2")
    app = os.urandom(32)
    challenge = os.urandom(32)
    registration = ctap1.register(challenge, app)
    registration.verify(app, challenge)
    signature = ctap1.authenticate(challenge, app, registration.key_handle)
    signature.verify(app, challenge, registration.public_key)
    check(results, "u2f_register_authenticate", signature.user_presence & 1 == 1)

    dev.close()
    ok = all(results.values())
    print(json.dumps({"ok": ok, "checks": results}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
