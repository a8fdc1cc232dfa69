"""End-to-end tests of jwtgate-token: every algorithm, JWK and PEM keys, claims, headers, errors.

Each token is verified here with python3-cryptography, independently of libjwt and of jwtgate's own
verifier, so a bug in the minting tool cannot hide behind the same bug in the code it is meant to test.
Run: /usr/bin/python3 -m pytest tests/e2e/test_token_tool.py (binary from JWTGATE_TOKEN_BIN).
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa, utils

import jgtest

TOKEN_BIN = jgtest.TOKEN_BIN
SEED_DIR = jgtest.SEED_DIR

HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
EC_CURVES = {"ES256": (ec.SECP256R1, "P-256", 32), "ES384": (ec.SECP384R1, "P-384", 48),
             "ES512": (ec.SECP521R1, "P-521", 66)}


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def int_b64u(n, length=None):
    length = length or max(1, (n.bit_length() + 7) // 8)
    return b64u(n.to_bytes(length, "big"))


def run_tool(*args, check=True):
    proc = subprocess.run([TOKEN_BIN, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def mint(*args):
    out = run_tool(*args).stdout
    assert out.endswith("\n")
    lines = out.splitlines()
    assert len(lines) == 1
    return lines[0]


def split(token):
    h, p, s = token.split(".")
    for part in (h, p, s):
        assert "=" not in part and "+" not in part and "/" not in part
    return json.loads(unb64u(h)), json.loads(unb64u(p)), unb64u(s), (h + "." + p).encode()


# ---- keys written as JWK and PEM ----

class Key:
    """A private key, its public half, and files holding it as JWK and as PEM."""

    def __init__(self, tmp, name, kty, private, public=None, secret=None, crv=None):
        self.kty, self.private, self.public, self.secret, self.crv = kty, private, public, secret, crv
        self.jwk = os.path.join(tmp, name + ".jwk.json")
        self.pem = os.path.join(tmp, name + ".pem")
        with open(self.jwk, "w") as f:
            json.dump(self.to_jwk(), f)
        if private is not None:
            with open(self.pem, "wb") as f:
                f.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))

    def to_jwk(self):
        kid = "kid-" + os.path.basename(self.jwk).split(".")[0]
        if self.kty == "oct":
            return {"kty": "oct", "k": b64u(self.secret), "kid": kid}
        if self.kty == "RSA":
            pn = self.private.private_numbers()
            pub = pn.public_numbers
            return {"kty": "RSA", "kid": kid, "n": int_b64u(pub.n), "e": int_b64u(pub.e), "d": int_b64u(pn.d),
                    "p": int_b64u(pn.p), "q": int_b64u(pn.q), "dp": int_b64u(pn.dmp1), "dq": int_b64u(pn.dmq1),
                    "qi": int_b64u(pn.iqmp)}
        if self.kty == "EC":
            pn = self.private.private_numbers()
            width = (self.private.curve.key_size + 7) // 8
            return {"kty": "EC", "kid": kid, "crv": self.crv, "x": int_b64u(pn.public_numbers.x, width),
                    "y": int_b64u(pn.public_numbers.y, width), "d": int_b64u(pn.private_value, width)}
        raw = self.private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                         serialization.NoEncryption())
        pub = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "kid": kid, "crv": self.crv, "d": b64u(raw), "x": b64u(pub)}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("keys"))
    out = {}
    r = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    out["RSA"] = Key(tmp, "rsa", "RSA", r, r.public_key())
    for alg, (curve, crv, _) in EC_CURVES.items():
        k = ec.generate_private_key(curve())
        out[alg] = Key(tmp, alg.lower(), "EC", k, k.public_key(), crv=crv)
    k = ed25519.Ed25519PrivateKey.generate()
    out["Ed25519"] = Key(tmp, "ed25519", "OKP", k, k.public_key(), crv="Ed25519")
    k = ed448.Ed448PrivateKey.generate()
    out["Ed448"] = Key(tmp, "ed448", "OKP", k, k.public_key(), crv="Ed448")
    out["oct"] = Key(tmp, "oct", "oct", None, secret=os.urandom(64))
    return out


def verify(token, alg, key):
    """Checks the signature with python3-cryptography; returns (header, payload)."""
    header, payload, sig, signing_input = split(token)
    assert header["alg"] == alg
    if alg.startswith("HS"):
        mac = hmac.new(key.secret, signing_input, getattr(hashlib, "sha" + alg[2:])).digest()
        assert hmac.compare_digest(mac, sig)
    elif alg.startswith("RS"):
        key.public.verify(sig, signing_input, padding.PKCS1v15(), HASHES[alg[2:]]())
    elif alg.startswith("PS"):
        h = HASHES[alg[2:]]()
        key.public.verify(sig, signing_input, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)
    elif alg.startswith("ES"):
        width = EC_CURVES[alg][2]
        assert len(sig) == 2 * width, "ES signatures are raw R||S of fixed width (RFC 7518 3.4)"
        r, s = int.from_bytes(sig[:width], "big"), int.from_bytes(sig[width:], "big")
        key.public.verify(utils.encode_dss_signature(r, s), signing_input, ec.ECDSA(HASHES[alg[2:]]()))
    elif alg == "EdDSA":
        key.public.verify(sig, signing_input)
    else:
        raise AssertionError(alg)
    return header, payload


ALG_KEYS = [("HS256", "oct"), ("HS384", "oct"), ("HS512", "oct"),
            ("RS256", "RSA"), ("RS384", "RSA"), ("RS512", "RSA"),
            ("PS256", "RSA"), ("PS384", "RSA"), ("PS512", "RSA"),
            ("ES256", "ES256"), ("ES384", "ES384"), ("ES512", "ES512"),
            ("EdDSA", "Ed25519"), ("EdDSA", "Ed448")]


@pytest.mark.parametrize("fmt", ["jwk", "pem"])
@pytest.mark.parametrize("sign_with", ["auto", "openssl"])
@pytest.mark.parametrize("alg,key_name", ALG_KEYS)
def test_every_algorithm_verifies(keys, alg, key_name, fmt, sign_with):
    key = keys[key_name]
    if fmt == "pem" and key.kty == "oct":
        pytest.skip("an HMAC secret has no PEM form")
    token = mint("--key", getattr(key, fmt), "--alg", alg, "--sign-with", sign_with, "--sub", "alice")
    header, payload = verify(token, alg, key)
    assert header["typ"] == "JWT"
    assert payload["sub"] == "alice"


@pytest.mark.parametrize("key_name,alg", [("RSA", "RS256"), ("ES256", "ES256"), ("ES384", "ES384"),
                                          ("ES512", "ES512"), ("Ed25519", "EdDSA"), ("Ed448", "EdDSA"),
                                          ("oct", "HS256")])
def test_algorithm_defaults_from_key(keys, key_name, alg):
    key = keys[key_name]
    for path in (key.jwk, key.pem) if key.kty != "oct" else (key.jwk,):
        verify(mint("--key", path), alg, key)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
@pytest.mark.parametrize("sign_with", ["auto", "openssl"])
def test_ecdsa_signatures_keep_fixed_width_over_many_tokens(keys, alg, sign_with):
    # About one signature in 128 has an R or S with a leading zero byte; 300 tokens catch a codec that
    # drops it (the DER -> raw conversion must pad to the curve's width).
    out = run_tool("--key", keys[alg].jwk, "--count", "300", "--sign-with", sign_with).stdout.splitlines()
    assert len(out) == 300
    for token in out:
        verify(token, alg, keys[alg])


def test_kid_comes_from_jwk_and_can_be_overridden(keys):
    key = keys["RSA"]
    header, _ = verify(mint("--key", key.jwk), "RS256", key)
    assert header["kid"] == "kid-rsa"
    header, _ = verify(mint("--key", key.jwk, "--kid", "other"), "RS256", key)
    assert header["kid"] == "other"
    header, _ = verify(mint("--key", key.pem), "RS256", key)
    assert "kid" not in header
    header, _ = verify(mint("--key", key.pem, "--kid", "pem-kid", "--alg", "PS256"), "PS256", key)
    assert header["kid"] == "pem-kid"


def test_jwk_alg_member_is_the_default(keys, tmp_path):
    jwk = keys["RSA"].to_jwk()
    jwk["alg"] = "PS384"
    path = tmp_path / "ps384.json"
    path.write_text(json.dumps(jwk))
    verify(mint("--key", str(path)), "PS384", keys["RSA"])


def test_jwks_file_picks_key_by_kid(keys, tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [keys["RSA"].to_jwk(), keys["ES256"].to_jwk()]}))
    header, _ = verify(mint("--key", str(path), "--kid", "kid-es256"), "ES256", keys["ES256"])
    assert header["kid"] == "kid-es256"
    proc = run_tool("--key", str(path), check=False)
    assert proc.returncode == 2 and "--kid" in proc.stderr


def test_registered_claims(keys):
    key = keys["RSA"]
    before = int(time.time())
    _, p = verify(mint("--key", key.jwk, "--iss", "https://issuer.example.com", "--sub", "1234567890",
                       "--aud", "api.example.com"), "RS256", key)
    after = int(time.time())
    assert p["iss"] == "https://issuer.example.com" and p["sub"] == "1234567890"
    assert p["aud"] == "api.example.com"
    assert before <= p["iat"] <= after
    assert p["exp"] == p["iat"] + 3600, "default lifetime is one hour"
    assert "nbf" not in p
    assert isinstance(p["jti"], str) and len(p["jti"]) >= 16


def test_several_audiences_make_an_array(keys):
    _, p = verify(mint("--key", keys["oct"].jwk, "--aud", "a", "--aud", "b"), "HS256", keys["oct"])
    assert p["aud"] == ["a", "b"]


def test_times_relative_to_fixed_iat(keys):
    key = keys["Ed25519"]
    _, p = verify(mint("--key", key.jwk, "--iat", "1700000000", "--exp-in", "1h30m", "--nbf-in", "-5m"),
                  "EdDSA", key)
    assert p["iat"] == 1700000000
    assert p["exp"] == 1700000000 + 5400
    assert p["nbf"] == 1700000000 - 300


def test_expired_and_not_yet_valid_tokens(keys):
    key = keys["RSA"]
    _, p = verify(mint("--key", key.jwk, "--exp-in", "-1h", "--nbf-in", "2d"), "RS256", key)
    assert p["exp"] == p["iat"] - 3600
    assert p["nbf"] == p["iat"] + 2 * 86400
    _, p = verify(mint("--key", key.jwk, "--no-exp"), "RS256", key)
    assert "exp" not in p


def test_custom_claims_override_generated_ones(keys):
    key = keys["ES256"]
    _, p = verify(mint("--key", key.jwk, "--claim", "name=John Doe", "--claim", "admin=true",
                       "--claim-json", 'org={"name":"acme","id":7}', "--claim-json", "admin2=true",
                       "--claim-json", "exp=\"not-a-number\"", "--claim", "jti=fixed", "--claim", "eq=a=b"),
                  "ES256", key)
    assert p["name"] == "John Doe"
    assert p["admin"] == "true" and p["admin2"] is True
    assert p["org"] == {"name": "acme", "id": 7}
    assert p["exp"] == "not-a-number"
    assert p["jti"] == "fixed"
    assert p["eq"] == "a=b"


def test_extra_header_members(keys):
    key = keys["RSA"]
    h, _ = verify(mint("--key", key.jwk, "--header", 'cty="JWT"', "--header", 'x5t="abc"',
                       "--header", "crit=[\"exp\"]"), "RS256", key)
    assert h["cty"] == "JWT" and h["x5t"] == "abc" and h["crit"] == ["exp"]
    # typ overridden: libjwt would rewrite it, so the tool signs with OpenSSL and keeps the user's value.
    h, _ = verify(mint("--key", key.jwk, "--header", 'typ="at+jwt"'), "RS256", key)
    assert h["typ"] == "at+jwt"


def test_alg_header_override_keeps_signing_with_the_real_algorithm(keys):
    # For negative tests of verifiers: header says HS256, signature is RS256 with the RSA key.
    key = keys["RSA"]
    header, _, sig, signing_input = split(mint("--key", key.jwk, "--header", 'alg="HS256"'))
    assert header["alg"] == "HS256"
    key.public.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())


def test_libjwt_and_openssl_paths_produce_the_same_token(keys):
    # RS256 and HS256 are deterministic: with every claim fixed, both signers must agree byte for byte.
    for key_name in ("RSA", "oct"):
        args = ["--key", keys[key_name].jwk, "--iat", "1700000000", "--claim", "jti=x", "--sub", "s",
                "--claim-json", 'o={"b":1,"a":2}']
        assert mint(*args) == mint(*args, "--sign-with", "openssl")


def test_count_prints_distinct_tokens(keys):
    out = run_tool("--key", keys["RSA"].jwk, "--count", "50").stdout
    tokens = out.splitlines()
    assert len(tokens) == 50 and out.endswith("\n")
    assert len(set(tokens)) == 50
    assert len({split(t)[1]["jti"] for t in tokens}) == 50
    for t in tokens[:5]:
        verify(t, "RS256", keys["RSA"])


def test_seed_key_signs_tokens_the_seed_jwks_accepts():
    key_path = os.path.join(SEED_DIR, "key.json")
    if not os.path.exists(key_path):
        pytest.skip("seed conformance files not found")
    with open(os.path.join(SEED_DIR, "jwks.json")) as f:
        jwks = json.load(f)
    jwk = [k for k in jwks["keys"] if k.get("kid") == "b520b3c2c4bd75a10e9cebc9576933dc"][0]
    public = rsa.RSAPublicNumbers(int.from_bytes(unb64u(jwk["e"]), "big"),
                                  int.from_bytes(unb64u(jwk["n"]), "big")).public_key()
    header, payload, sig, signing_input = split(mint("--key", key_path, "--sub", "1234567890"))
    assert header == {"alg": "RS256", "kid": "b520b3c2c4bd75a10e9cebc9576933dc", "typ": "JWT"}
    public.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())


def test_help_exits_zero():
    proc = run_tool("--help")
    assert "--key" in proc.stdout and "--count" in proc.stdout


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def public_jwk(key):
    jwk = key.to_jwk()
    for m in ("d", "p", "q", "dp", "dq", "qi"):
        jwk.pop(m, None)
    return json.dumps(jwk)


@pytest.mark.parametrize("case", [
    "no-key", "missing-file", "garbage", "public-rsa", "public-ec", "alg-mismatch", "curve-mismatch",
    "okp-with-es", "hs-with-rsa", "unknown-alg", "bad-duration", "unknown-option", "bad-claim",
    "bad-json", "bad-count", "bad-iat", "encrypted-pem", "bad-b64", "stray-argument"])
def test_bad_usage_and_bad_keys_exit_2(keys, tmp_path, case):
    rsa_jwk, es256 = keys["RSA"].jwk, keys["ES256"].jwk
    args = {
        "no-key": ["--sub", "x"],
        "missing-file": ["--key", str(tmp_path / "nope.json")],
        "garbage": ["--key", write(tmp_path, "g", "hello")],
        "public-rsa": ["--key", write(tmp_path, "pub.json", public_jwk(keys["RSA"]))],
        "public-ec": ["--key", write(tmp_path, "pubec.json", public_jwk(keys["ES256"]))],
        "alg-mismatch": ["--key", rsa_jwk, "--alg", "ES256"],
        "curve-mismatch": ["--key", es256, "--alg", "ES384"],
        "okp-with-es": ["--key", keys["Ed25519"].jwk, "--alg", "ES256"],
        "hs-with-rsa": ["--key", rsa_jwk, "--alg", "HS256"],
        "unknown-alg": ["--key", rsa_jwk, "--alg", "none"],
        "bad-duration": ["--key", rsa_jwk, "--exp-in", "10x"],
        "unknown-option": ["--key", rsa_jwk, "--frobnicate"],
        "bad-claim": ["--key", rsa_jwk, "--claim", "novalue"],
        "bad-json": ["--key", rsa_jwk, "--claim-json", "a={"],
        "bad-count": ["--key", rsa_jwk, "--count", "0"],
        "bad-iat": ["--key", rsa_jwk, "--iat", "yesterday"],
        "encrypted-pem": ["--key", write(tmp_path, "enc.pem", keys["RSA"].private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret")).decode())],
        "bad-b64": ["--key", write(tmp_path, "badb64.json", json.dumps({"kty": "oct", "k": "!!!"}))],
        "stray-argument": ["--key", rsa_jwk, "extra"],
    }[case]
    proc = run_tool(*args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("jwtgate-token: ")
