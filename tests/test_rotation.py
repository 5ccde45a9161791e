"""Certificate rotation without a restart (issue #18 item 4).

bank (guest) and chain (host) run in this process. chain's leaf is renewed and
reloaded while a job runs; then a CA rotation with a bundle of both CAs; an
expired certificate is refused with the date it expired.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import sys
import time
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from fedcredit.certs import TlsFiles, issue, tls_server_name
from fedcredit.cli import main
from fedcredit.config import load_job
from fedcredit.launcher import write_federation, write_job
from fedcredit.errors import ConfigError, FedcreditError
from fedcredit.party import register_plugin_steps
from fedcredit.party.rotation import expiry_warnings
from fedcredit.transport.control import ControlClient, dial

from _inproc_fed import running_parties
from conftest import DATA, data_path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from _party_steps import PLUGINS  # noqa: E402

PARTIES2 = {"bank": ("guest", "bank.csv", "default_next_month"), "chain": ("host", "chain.csv", None)}


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    data_path("credit3", "bank.csv")
    register_plugin_steps(PLUGINS)
    root = tmp_path_factory.mktemp("rotation")
    kinds = ["handshake", "wait"]
    configs = write_federation(root, DATA, parties=PARTIES2, transport={"deadline": 5.0},
                               policy={"bank": {"allowed_steps": kinds}, "chain": {"allowed_steps": kinds}})
    with running_parties(root, configs) as fed:
        yield fed


def _wait(pred, timeout=30.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _served_cert(root, port, cafile) -> x509.Certificate:
    """The certificate a new TLS handshake with chain's port gets (as bank)."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(root / "certs" / "bank.crt"), str(root / "certs" / "bank.key"))
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname=tls_server_name("chain")) as t:
            return x509.load_der_x509_certificate(t.getpeercert(binary_form=True))


def _state(p, job_id):
    return (p.store.job(job_id) or {}).get("state")


def _submit(fed, name, steps):
    root, configs, parties = fed
    job = write_job(root / f"{name}.toml", steps, name=name, parties=PARTIES2)
    return parties["bank"].submit_job("bank", load_job(job).to_json(), str(job))


def test_job_keeps_running_across_a_leaf_rotation(fed, capsys):
    root, configs, parties = fed
    bank, chain = parties["bank"], parties["chain"]
    certs = root / "certs"
    old = x509.load_pem_x509_certificate((certs / "chain.crt").read_bytes())
    assert _served_cert(root, chain.port, certs / "ca.crt").serial_number == old.serial_number
    job_id = _submit(fed, "across", [("handshake", "before", {}), ("wait", "pause", {"seconds": 4}),
                                     ("handshake", "after", {})])
    _wait(lambda: (chain.state_dir / "jobs" / job_id / "pause" / "started").exists(), what="the wait step")
    assert main(["certs", "issue", str(certs), "chain", "--renew"]) == 0
    capsys.readouterr()
    assert main(["party", "reload", "--party", str(configs["chain"])]) == 0
    assert "TLS reloaded" in capsys.readouterr().out
    new = x509.load_pem_x509_certificate((certs / "chain.crt").read_bytes())
    assert new.serial_number != old.serial_number
    assert _served_cert(root, chain.port, certs / "ca.crt").serial_number == new.serial_number  # no restart
    for p in (bank, chain):
        _wait(lambda p=p: _state(p, job_id) in ("succeeded", "failed"), what="the job's end")
        assert _state(p, job_id) == "succeeded", p.store.job(job_id)["reason"]
    assert any(r["kind"] == "tls.reloaded" for r in chain.audit.records())
    # and a new job runs over fresh connections with the new certificate
    job2 = _submit(fed, "after-rotation", [("handshake", "hello", {})])
    _wait(lambda: _state(bank, job2) == "succeeded" and _state(chain, job2) == "succeeded", what="a second job")


def test_expired_certificate_is_refused_with_a_clear_reason(fed, tmp_path, capsys):
    root, configs, parties = fed
    chain = parties["chain"]
    d = tmp_path / "expired"
    d.mkdir()
    for f in ("ca.crt", "ca.key"):
        shutil.copy(root / "certs" / f, d / f)
    tls = issue(d, "chain", days=0)
    time.sleep(1.2)
    # our own side: the expired files are not used to dial (the reason names the date)
    with pytest.raises(ConfigError, match=r"expired on \d{4}-\d\d-\d\d"):
        dial(chain.config.connect_address, target="chain", tls=TlsFiles(d / "ca.crt", tls.cert, tls.key))
    # a reload with them is refused; the party keeps serving with its valid certificate
    text = configs["chain"].read_text()
    try:
        configs["chain"].write_text(text.replace('cert = "certs/chain.crt"', f'cert = "{tls.cert}"')
                                    .replace('key = "certs/chain.key"', f'key = "{tls.key}"'))
        capsys.readouterr()
        code = main(["party", "reload", "--party", str(configs["chain"])])
        out = capsys.readouterr()
        assert code != 0 and "expired on" in out.out + out.err
    finally:
        configs["chain"].write_text(text)
    assert ControlClient(parties["bank"].transport.grpc_channel("chain"), "chain", timeout=5).health()["serving"]
    # a peer presenting an expired certificate (bypassing its own check) does not get through the handshake
    creds = grpc.ssl_channel_credentials(root_certificates=(d / "ca.crt").read_bytes(),
                                         private_key=tls.key.read_bytes(), certificate_chain=tls.cert.read_bytes())
    ch = grpc.secure_channel(chain.config.connect_address, creds,
                             options=[("grpc.ssl_target_name_override", tls_server_name("chain"))])
    with pytest.raises(FedcreditError):
        ControlClient(ch, "chain", timeout=3).health()
    ch.close()
    # `party health` warns 30 days before any certificate of the federation expires
    capsys.readouterr()
    assert main(["party", "health", str(configs["bank"]), "--all"]) == 0
    assert "WARNING" not in capsys.readouterr().out
    issue(root / "certs", "chain", days=20, overwrite=True)
    assert main(["party", "reload", "--party", str(configs["chain"])]) == 0
    capsys.readouterr()
    assert main(["party", "health", str(configs["bank"]), "--all"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: chain's party certificate expires on" in out and "(in 20 days)" in out, out
    assert "WARNING: bank" not in out
    soon = time.time() + 10 * 86400
    (w,) = expiry_warnings("chain", {"party": soon, "CA": time.time() + 400 * 86400})
    assert "chain's party certificate expires on" in w and "in 10 days" in w


def test_ca_rotation_with_a_bundle(fed, capsys):
    root, configs, parties = fed
    bank, chain = parties["bank"], parties["chain"]
    certs = root / "certs"
    old_ca = x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes())
    across = _submit(fed, "across-ca", [("handshake", "before", {}), ("wait", "pause", {"seconds": 8}),
                                        ("handshake", "after", {})])
    _wait(lambda: (chain.state_dir / "jobs" / across / "pause" / "started").exists(), what="the wait step")
    assert main(["certs", "init", str(certs), "--rotate"]) == 0
    bundle = certs / "ca-bundle.crt"
    assert bundle.exists()
    for name in ("bank", "chain"):  # every party accepts both CAs from now on
        configs[name].write_text(configs[name].read_text().replace('ca = "certs/ca.crt"', 'ca = "certs/ca-bundle.crt"'))
        assert main(["party", "reload", "--party", str(configs[name])]) == 0
    assert main(["certs", "issue", str(certs), "chain", "--renew"]) == 0  # from the new CA
    assert main(["party", "reload", "--party", str(configs["chain"])]) == 0
    capsys.readouterr()
    served = _served_cert(root, chain.port, bundle)
    new_ca = x509.load_pem_x509_certificate((certs / "ca.crt").read_bytes())
    assert served.issuer == new_ca.subject and new_ca.serial_number != old_ca.serial_number
    # without the bundle (old CA only) the new certificate would be refused: the window is what makes it work
    with pytest.raises(ssl.SSLError):
        _served_cert(root, chain.port, next(certs.glob("ca-retired-*.crt")))
    assert _state(chain, across) == "running"  # the rotation happened while the job ran
    for p in (bank, chain):  # the job that ran across the CA and leaf rotation
        _wait(lambda p=p: _state(p, across) in ("succeeded", "failed"), what="the job's end")
        assert _state(p, across) == "succeeded", p.store.job(across)["reason"]
    job_id = _submit(fed, "new-ca", [("handshake", "hello", {})])
    _wait(lambda: _state(bank, job_id) == "succeeded" and _state(chain, job_id) == "succeeded",
          what="a job across the two CAs")
