"""Configuration errors: `jwtgate -c FILE --check` prints `FILE:LINE:COLUMN: message` for each error
(1-based, pointing at the offending key or value), reports all of them, and exits 1; a good file
exits 0. Plus the command line: --version, --help, a missing file."""

import os
import re
import subprocess

import pytest

import jgtest

GOOD = """\
listeners:
  - name: http
    address: 127.0.0.1:18080
backends:
  - name: backend
    endpoints:
      - ip: {address: 127.0.0.1, port: 3000}
httpRoutes:
  - name: foo
    hostnames: ["www.example.com"]
    rules:
      - matches: [{path: {type: PathPrefix, value: /foo}}]
        backendRefs: [{name: backend}]
"""


def run(args, cwd, timeout=10):
    assert os.path.isfile(jgtest.BIN), f"jwtgate binary not found: {jgtest.BIN}"
    p = subprocess.run([jgtest.BIN] + args, cwd=cwd, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def check(tmp_path, text, name="bad.yaml"):
    (tmp_path / name).write_text(text)
    return run(["-c", name, "--check"], str(tmp_path))


def positions(output, name="bad.yaml"):
    """[(line, col, message)] of every `name:LINE:COL: message` line."""
    return [(int(m.group(1)), int(m.group(2)), m.group(3))
            for m in re.finditer(r"^\S*" + re.escape(name) + r":(\d+):(\d+): (.+)$", output, re.M)]


def pos_of(text, line_no, needle):
    """1-based (line, column) of `needle` on 1-based line `line_no` of text."""
    line = text.splitlines()[line_no - 1]
    col = line.index(needle)
    return (line_no, col + 1)


def test_good_file_checks_ok(tmp_path):
    rc, out, err = check(tmp_path, GOOD, "good.yaml")
    assert rc == 0, out + err
    assert positions(out + err, "good.yaml") == []


# (id, text, 1-based line, [acceptable needles on that line whose column is right])
CASES = [
    ("unknown-key", GOOD.replace("      - matches:", "      - matchs:"), 12, ["matchs"]),
    ("unknown-top-level-key", GOOD + "listner: 1\n", 14, ["listner"]),
    ("wrong-type-port", GOOD.replace("port: 3000", "port: eighty"), 7, ["eighty", "port"]),
    ("wrong-type-hostnames", GOOD.replace('hostnames: ["www.example.com"]', "hostnames: {a: b}"), 10,
     ["{a", "hostnames"]),
    ("missing-required-port", GOOD.replace(", port: 3000", ""), 7, ["{address", "ip", "address"]),
    ("missing-required-endpoints",
     GOOD.replace("    endpoints:\n      - ip: {address: 127.0.0.1, port: 3000}\n", ""), 5, ["name", "- name"]),
    ("dangling-backend-ref", GOOD.replace("[{name: backend}]", "[{name: nope}]"), 13, ["nope", "name", "{name"]),
    ("bad-duration", GOOD + "limits:\n  headerTimeout: 10 seconds\n", 15, ["10 seconds", "headerTimeout"]),
    ("bad-duration-unit", GOOD.replace("      - ip: {address: 127.0.0.1, port: 3000}",
                                       "      - ip: {address: 127.0.0.1, port: 3000}\n    timeouts: {request: 5x}"),
     8, ["5x", "request"]),
    ("bad-regex", GOOD.replace("{type: PathPrefix, value: /foo}", "{type: RegularExpression, value: \"/foo[\"}"),
     12, ['"/foo[', "value"]),
    ("bad-path-type", GOOD.replace("type: PathPrefix", "type: Prefix"), 12, ["Prefix", "type"]),
    ("hostname-in-listener-address", GOOD.replace("127.0.0.1:18080", "localhost:18080"), 3,
     ["localhost", "address"]),
    ("bad-port-number", GOOD.replace("port: 3000", "port: 70000"), 7, ["70000", "port"]),
    ("bad-reload-watch", GOOD + "reload: {watch: yes}\n", 14, ["yes", "watch"]),
    ("unknown-reload-key", GOOD + "reload: {wach: true}\n", 14, ["wach"]),
]


@pytest.mark.parametrize("text,line,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_reported_with_line_and_column(tmp_path, text, line, needles):
    rc, out, err = check(tmp_path, text)
    assert rc == 1, out + err
    found = positions(out + err)
    assert found, f"no bad.yaml:LINE:COL: message in output:\n{out}{err}"
    wanted = {pos_of(text, line, n) for n in needles if n in text.splitlines()[line - 1]}
    assert wanted, "test case needles do not occur on that line"
    got = {(l, c) for l, c, _ in found}
    assert got & wanted, f"expected one of {sorted(wanted)}, got {found}"


def test_duplicate_names(tmp_path):
    text = GOOD.replace("httpRoutes:",
                        "  - name: backend\n    endpoints:\n      - ip: {address: 127.0.0.1, port: 3001}\n"
                        "httpRoutes:")
    rc, out, err = check(tmp_path, text)
    assert rc == 1
    found = {(l, c) for l, c, _ in positions(out + err)}
    # the second "name: backend" (line 8): value or key column
    assert found & {(8, 11), (8, 5), (8, 3)}, out + err


def test_duplicate_route_names(tmp_path):
    text = GOOD + ("  - name: foo\n    rules:\n      - backendRefs: [{name: backend}]\n")
    rc, out, err = check(tmp_path, text)
    assert rc == 1
    found = {(l, c) for l, c, _ in positions(out + err)}
    assert found & {(14, 11), (14, 5), (14, 3)}, out + err


def test_several_errors_reported_in_one_run(tmp_path):
    text = (GOOD.replace("127.0.0.1:18080", "localhost:18080")      # line 3
                .replace("port: 3000", "port: eighty")               # line 7
                .replace("[{name: backend}]", "[{name: nope}]")      # line 13
            + "bogus: 1\n")                                          # line 14
    rc, out, err = check(tmp_path, text)
    assert rc == 1
    lines = {l for l, _, _ in positions(out + err)}
    assert {3, 7, 13, 14} <= lines, out + err


def test_yaml_syntax_error(tmp_path):
    text = GOOD.replace('hostnames: ["www.example.com"]', 'hostnames: ["www.example.com"')
    rc, out, err = check(tmp_path, text)
    assert rc == 1
    found = positions(out + err)
    assert found, out + err
    assert all(l >= 10 for l, _, _ in found), found  # at or after the unclosed bracket


def test_check_does_not_bind_or_run(tmp_path):
    # --check on a good file returns at once even though the port is in use by someone else
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        rc, out, err = check(tmp_path, GOOD.replace("18080", str(port)), "busy.yaml")
    assert rc == 0, out + err


def test_version(tmp_path):
    rc, out, err = run(["--version"], str(tmp_path))
    assert rc == 0
    assert re.search(r"\d+\.\d+", out + err), out + err


def test_help(tmp_path):
    rc, out, err = run(["--help"], str(tmp_path))
    assert rc == 0
    assert "-c" in out + err
    assert "--check" in out + err


def test_missing_config_file(tmp_path):
    rc, out, err = run(["-c", "does-not-exist.yaml"], str(tmp_path))
    assert rc == 1
    assert "does-not-exist.yaml" in out + err


def test_missing_config_file_with_check(tmp_path):
    rc, out, err = run(["-c", "does-not-exist.yaml", "--check"], str(tmp_path))
    assert rc == 1
    assert "does-not-exist.yaml" in out + err


def test_no_arguments(tmp_path):
    rc, out, err = run([], str(tmp_path))
    assert rc == 1
    assert (out + err).strip(), "no message"


def _b64u(b):
    import base64
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _rsa_jwk(bits, e=65537):
    from cryptography.hazmat.primitives.asymmetric import rsa
    n = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key().public_numbers().n
    return {"kty": "RSA", "n": _b64u(n.to_bytes((n.bit_length() + 7) // 8, "big")),
            "e": _b64u(e.to_bytes((e.bit_length() + 7) // 8 or 1, "big"))}


def _ec_jwk():
    from cryptography.hazmat.primitives.asymmetric import ec
    pn = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": _b64u(pn.x.to_bytes(32, "big")), "y": _b64u(pn.y.to_bytes(32, "big"))}


REFUSED_KEYS = [  # (JWK, the reason jwtgate gives for refusing it)
    (dict(_rsa_jwk(1024), kid="small"), 'key #0 kid "small" skipped: RSA modulus is 1024 bits; at least 2048 '
                                        'are required'),
    ({"kty": "oct", "kid": "short", "alg": "HS256", "k": _b64u(b"0123456789abcdef")},
     'key #1 kid "short" skipped: HMAC secret is 16 bytes; HS256 requires at least 32'),
    (dict(_rsa_jwk(2048, e=65536), kid="even"), 'key #2 kid "even" skipped: RSA exponent 65536 is even; it '
                                                'must be odd and at least 3'),
    (dict(_rsa_jwk(2048, e=1), kid="one"), 'key #3 kid "one" skipped: RSA exponent 1 is below 3'),
    (dict(_ec_jwk(), kid="typo", alg="ES521"), 'key #4 kid "typo" skipped: alg "ES521" is not a JWA algorithm '
                                               'name'),
]
JWKS_POLICY = """\
securityPolicies:
  - name: p
    targetRef: {kind: HTTPRoute, name: foo}
    jwt: {providers: [{name: a, localJWKS: {type: File, file: jwks.json}}]}
"""


@pytest.mark.parametrize("with_valid_key", [True, False], ids=["one-valid-key", "no-valid-key"])
def test_check_says_why_each_local_key_is_refused(tmp_path, with_valid_key):
    """issue 10 section 4: --check (and start-up) name each refused key of a local JWKS by index and kid
    with its own reason, instead of jwt_verify_lib's "field is missing or has a parse error"; the JWKS is
    an error only when no key is left."""
    keys = [k for k, _ in REFUSED_KEYS] + ([dict(_ec_jwk(), kid="good")] if with_valid_key else [])
    (tmp_path / "jwks.json").write_text(__import__("json").dumps({"keys": keys}))
    rc, out, err = check(tmp_path, GOOD + JWKS_POLICY, "jwks.yaml")
    for _, reason in REFUSED_KEYS:
        assert reason in err, err
    assert "missing or has a parse error" not in err, err
    if with_valid_key:
        assert rc == 0, out + err
        assert "configuration OK" in out
    else:
        assert rc == 1, out + err
        assert "Jwks doesn't have any valid public key" in err


def test_check_loads_listener_certificate_and_key(tmp_path):
    """--check builds what a start (or a reload) builds: a key that does not match its certificate is
    an error before anything runs."""
    import jwksutil
    ca = jwksutil.CA("check CA")
    os.mkdir(tmp_path / "a")
    os.mkdir(tmp_path / "b")
    cert, _ = ca.issue(tmp_path / "a", hostnames=("www.example.com",))
    _, other_key = ca.issue(tmp_path / "b", hostnames=("www.example.com",))
    tls = f"    tls: {{certificateFile: {cert}, privateKeyFile: {other_key}}}\n"
    text = GOOD.replace("    address: 127.0.0.1:18080\n", "    address: 127.0.0.1:18080\n" + tls)
    assert tls in text
    rc, out, err = check(tmp_path, text)
    assert rc == 1, out + err
    assert "listener" in err and "privateKeyFile" in err, err


@pytest.mark.parametrize("value,ok", [("500ms", False), ("soon", False), ("1s", True), ("12h", True)])
def test_ticket_key_rotation_is_a_duration_of_at_least_a_second(tmp_path, value, ok):
    """tls.ticketKeyRotation: a shorter period would keep no key long enough to open a ticket."""
    import jwksutil
    ca = jwksutil.CA("check CA")
    cert, key = ca.issue(tmp_path, hostnames=("www.example.com",))
    tls = f"    tls: {{certificateFile: {cert}, privateKeyFile: {key}, ticketKeyRotation: {value}}}\n"
    text = GOOD.replace("    address: 127.0.0.1:18080\n", "    address: 127.0.0.1:18080\n" + tls)
    rc, out, err = check(tmp_path, text)
    if ok:
        assert rc == 0, out + err
    else:
        assert rc == 1, out + err
        assert "ticketKeyRotation" in err, err


@pytest.mark.parametrize("corrupt", [False, True])
def test_inline_certificate_chain_with_a_broken_certificate_is_refused(tmp_path, corrupt):
    """Inline PEM (tls.certificate): a chain certificate that does not parse refuses the file; it
    must not end the chain early and load the rest as if it were whole."""
    import jwksutil
    ca = jwksutil.CA("check CA")
    cert, key = ca.issue(tmp_path, hostnames=("www.example.com",))
    pem = open(cert).read()
    if corrupt:
        pem += "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"

    def block(text):
        return "|\n" + "".join("        " + line + "\n" for line in text.strip().splitlines())

    tls = (f"    tls:\n      certificate: {block(pem)}      privateKey: {block(open(key).read())}")
    text = GOOD.replace("    address: 127.0.0.1:18080\n", "    address: 127.0.0.1:18080\n" + tls)
    rc, out, err = check(tmp_path, text)
    if corrupt:
        assert rc == 1 and "bad chain certificate" in err, out + err
    else:
        assert rc == 0, out + err
