#!/usr/bin/python3
"""Writes the seed corpora of fuzz_jwt and fuzz_jwks (tests/fuzz/corpus/{jwt,jwks}/).

Valid tokens are signed with the private halves of the keys in fuzz_jwt.c's JWKS (the HMAC key, and the
Ed25519 key of RFC 8037 A.1); the others exercise each parse and verify failure. Run once; the output is
committed."""
import base64, hashlib, hmac, json, os, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

here = os.path.dirname(os.path.abspath(__file__))

def b64(b):
    if isinstance(b, str):
        b = b.encode()
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

def unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

HS_KEY = unb64("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
ED = Ed25519PrivateKey.from_private_bytes(unb64("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"))
assert b64(ED.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)) == "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"

def hs(header, payload, alg="sha256"):
    si = b64(json.dumps(header)) + "." + b64(json.dumps(payload))
    return si + "." + b64(hmac.new(HS_KEY, si.encode(), getattr(hashlib, alg)).digest())

def ed(header, payload):
    si = b64(json.dumps(header)) + "." + b64(json.dumps(payload))
    return si + "." + b64(ED.sign(si.encode()))

good = {"iss": "joe", "aud": "api.example.com", "exp": 1300819380 + 3600, "iat": 1300819380, "sub": "s"}
jwt = {
    "hs256_valid": hs({"alg": "HS256", "kid": "hs"}, good),
    "hs512_valid": hs({"alg": "HS512"}, good, "sha512"),
    "eddsa_valid": ed({"alg": "EdDSA", "kid": "ed"}, dict(good, aud=["x", "https://other.example"])),
    "eddsa_short_sig": ed({"alg": "EdDSA"}, good)[:-4],
    "hs256_expired": hs({"alg": "HS256"}, dict(good, exp=1)),
    "hs256_nbf": hs({"alg": "HS256"}, dict(good, nbf=1300819380 + 1000)),
    "hs256_wrong_iss": hs({"alg": "HS256"}, dict(good, iss="eve")),
    "hs256_wrong_aud": hs({"alg": "HS256"}, dict(good, aud=[])),
    "hs256_aud_num": hs({"alg": "HS256"}, dict(good, aud=[1])),
    "exp_float": hs({"alg": "HS256"}, dict(good, exp=1.5)),
    "exp_string": hs({"alg": "HS256"}, dict(good, exp="1")),
    "alg_none": b64('{"alg":"none"}') + "." + b64(json.dumps(good)) + ".",
    "crit": hs({"alg": "HS256", "crit": ["b64"], "b64": False}, good),
    "kid_unknown": hs({"alg": "HS256", "kid": "../../etc/passwd"}, good),
    "es256_zero_sig": b64('{"alg":"ES256","kid":"ec"}') + "." + b64(json.dumps(good)) + "." + b64(bytes(64)),
    "rs256_random_sig": b64('{"alg":"RS256"}') + "." + b64(json.dumps(good)) + "." + b64(os.urandom(256)),
    "ps256_random_sig": b64('{"alg":"PS256","kid":"rsa"}') + "." + b64("{}") + "." + b64(os.urandom(256)),
    "dup_header": b64('{"alg":"HS256","alg":"none"}') + "." + b64("{}") + ".AAAA",
    "jwe_5_segments": "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d",
    "padding": hs({"alg": "HS256"}, good) + "=",
    "json_serialization": json.dumps({"payload": b64("{}"), "signatures": []}),
    "empty": "",
    "two_dots": "..",
    "deep": b64('{"alg":"HS256"}') + "." + b64('{"a":' + "[" * 300 + "]" * 300 + "}") + ".AAAA",
}
jwks_dir = os.path.join(here, "corpus", "jwks")
jwt_dir = os.path.join(here, "corpus", "jwt")
os.makedirs(jwt_dir, exist_ok=True)
os.makedirs(jwks_dir, exist_ok=True)
for name, tok in jwt.items():
    with open(os.path.join(jwt_dir, name), "w") as f:
        f.write(tok)

ec = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
      "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
okp = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
octk = {"kty": "oct", "k": b64(HS_KEY)}
with open(os.path.join(here, "..", "data", "envoy-gateway-jwt", "jwks.json")) as f:  # tests/data/PROVENANCE
    seed = f.read()
jwks = {
    "seed_jwks": seed,
    "ec_okp_oct": json.dumps({"keys": [ec, okp, octk]}),
    "ec_alg_mismatch": json.dumps({"keys": [dict(ec, alg="ES384")]}),
    "ec_off_curve": json.dumps({"keys": [dict(ec, y=b64(bytes(32)))]}),
    "ec_p521_no_crv": json.dumps({"keys": [dict(ec, crv=None)]}),
    "okp_short": json.dumps({"keys": [dict(okp, x="AAAA")]}),
    "okp_x448": json.dumps({"keys": [dict(okp, crv="X448")]}),
    "oct_empty": json.dumps({"keys": [{"kty": "oct", "k": ""}]}),
    "rsa_e1": json.dumps({"keys": [{"kty": "RSA", "n": json.loads(seed)["keys"][0]["n"] if "n" in seed else "AQAB", "e": "AQ"}]}),
    "use_enc": json.dumps({"keys": [dict(ec, use="enc"), dict(okp, key_ops=["sign"])]}),
    "kid_not_string": json.dumps({"keys": [dict(ec, kid=7)]}),
    "no_keys": "{}",
    "keys_object": '{"keys":{}}',
    "dup_member": '{"keys":[],"keys":[]}',
    "not_json": "keys",
    "missing_kty": json.dumps({"keys": [{"x": "AAAA"}]}),
    "unknown_kty": json.dumps({"keys": [{"kty": "foo"}]}),
    "mixed_valid_invalid": json.dumps({"keys": [{"kty": "RSA"}, ec, {"kty": "EC", "crv": 5}]}),
}
for name, text in jwks.items():
    with open(os.path.join(jwks_dir, name), "w") as f:
        f.write(text)
print(len(jwt), "jwt seeds,", len(jwks), "jwks seeds")
