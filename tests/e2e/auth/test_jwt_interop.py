#!/usr/bin/env python3
"""The "jwt" authenticator against a JWT implementation nobody here wrote:
PyJWT (with `cryptography` for RS/ES keys), from $KSOCK_TEST_VENV.

  (a) tokens PyJWT makes (HS, RS, ES) are accepted by our plugin, and bad
      ones are refused with the right reason;
  (b) tokens our plugin makes verify in PyJWT with the right key, with the
      claims we asked for, and fail with the wrong key.

Keys are made by `cryptography` at test time. Our side is `ksock token` (the
plugin through the real loader). Usage: test_jwt_interop.py KSOCK [TEST...]
"""
import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from tap import Tap  # noqa: E402
import testvenv  # noqa: E402


HAVE_PYJWT = testvenv.need("jwt", "cryptography")
TOOL = sys.argv[1]
t = Tap()

if HAVE_PYJWT:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

SECRETS = {"HS256": "s" * 32, "HS384": "t" * 48, "HS512": "u" * 64}
CURVES = {"ES256": "SECP256R1", "ES384": "SECP384R1", "ES512": "SECP521R1"}
KEYDIR = tempfile.mkdtemp(prefix="ksock-jwt-interop-")
_keys = {}


def need_pyjwt():
    if not HAVE_PYJWT:
        t.skip("PyJWT / cryptography not installed (tools/setup --test)")


def keypair(alg, name="k"):
    """(private PEM, public PEM, private path, public path) for an RS/ES alg, cached per name."""
    tag = f"{alg[:2]}{CURVES.get(alg, '')}-{name}"
    if tag not in _keys:
        if alg.startswith("RS"):
            priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            priv = ec.generate_private_key(getattr(ec, CURVES[alg])())
        priv_pem = priv.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        pub_pem = priv.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        kp, pp = os.path.join(KEYDIR, tag + ".key"), os.path.join(KEYDIR, tag + ".pub")
        with open(kp, "wb") as f:
            f.write(priv_pem)
        with open(pp, "wb") as f:
            f.write(pub_pem)
        _keys[tag] = (priv_pem, pub_pem, kp, pp)
    return _keys[tag]


def options(alg, private=True, **extra):
    o = {"algorithm": alg}
    if alg.startswith("HS"):
        o["secret"] = SECRETS[alg]
    else:
        _, _, kp, pp = keypair(alg)
        o["public_key"] = pp
        if private:
            o["private_key"] = kp
    o.update(extra)
    return json.dumps(o)


def tool(*args):
    p = subprocess.run([TOOL, "token", *args], capture_output=True, text=True, timeout=30)
    if p.returncode == 2:
        raise AssertionError(f"ksock token could not start: {p.stderr}")
    return p.returncode, p.stdout.strip()


def validate(opts, token):
    rc, out = tool("validate", opts, token)
    return (json.loads(out) if rc == 0 else None), out


def accepted(opts, token):
    claims, out = validate(opts, token)
    assert claims is not None, f"refused: {out}"
    return claims


def refused(opts, token, why):
    claims, out = validate(opts, token)
    assert claims is None, f"accepted: {claims}"
    assert out.startswith("KSOCK_E_AUTH"), out
    assert why in out, f"{why!r} not in {out!r}"


def generate(opts, user):
    rc, out = tool("generate", opts, json.dumps(user))
    assert rc == 0, out
    return out


def signing_key(alg):
    return SECRETS[alg] if alg.startswith("HS") else keypair(alg)[0]


def verify_key(alg):
    return SECRETS[alg] if alg.startswith("HS") else keypair(alg)[1]


def claims_now(**extra):
    now = int(time.time())
    c = {"sub": "alice", "iat": now, "exp": now + 600}
    c.update(extra)
    return c


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


# ---- (a) PyJWT -> our plugin ------------------------------------------------------

def pyjwt_accepted(alg):
    need_pyjwt()
    perms = {"subscribe": ["orders.*", "prices"], "publish": ["orders.in"]}
    c = claims_now(iss="https://id.example", aud=["billing", "ksock"], ksock=perms, roles=["a"])
    tok = jwt.encode(c, signing_key(alg), algorithm=alg)
    got = accepted(options(alg, private=False, issuer="https://id.example", audience="ksock"), tok)
    assert got == c, (got, c)


for _alg in ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]:
    def _case(alg=_alg):
        pyjwt_accepted(alg)
    _case.__name__ = f"pyjwt_{_alg.lower()}_token_accepted"
    t.test(_case)


@t.test
def pyjwt_token_through_authenticate_query_and_header():
    need_pyjwt()
    c = claims_now(ksock={"subscribe": ["orders.*"], "publish": ["orders.in"]})
    tok = jwt.encode(c, signing_key("ES256"), algorithm="ES256")
    opts = options("ES256", private=False, token_sources=["x-ksock-token", "query"])
    q = "x=1&token=" + urllib.parse.quote(tok, safe="") + "&y"
    rc, out = tool("authenticate", opts, "", "", q)
    assert rc == 0, out
    p = json.loads(out)
    assert p == {"subject": "alice", "subscribe": ["orders.*"], "publish": ["orders.in"],
                 "expires_at_ms": c["exp"] * 1000}, p
    rc, out = tool("authenticate", opts, "x-ksock-token", tok, "")
    assert rc == 0 and json.loads(out)["subject"] == "alice", out
    rc, out = tool("authenticate", options("ES256", private=False), "authorization",
                   "Bearer " + tok, "")
    assert rc == 0 and json.loads(out)["subject"] == "alice", out


@t.test
def pyjwt_expired_refused():
    need_pyjwt()
    now = int(time.time())
    tok = jwt.encode({"sub": "alice", "iat": now - 900, "exp": now - 300}, SECRETS["HS256"],
                     algorithm="HS256")
    refused(options("HS256"), tok, "token expired")


@t.test
def pyjwt_wrong_key_refused():
    need_pyjwt()
    other = keypair("RS256", "other")[0]
    tok = jwt.encode(claims_now(), other, algorithm="RS256")
    refused(options("RS256", private=False), tok, "bad signature")
    tok = jwt.encode(claims_now(), "x" * 32, algorithm="HS256")
    refused(options("HS256"), tok, "bad signature")


@t.test
def pyjwt_alg_none_refused():
    need_pyjwt()
    tok = jwt.encode(claims_now(), None, algorithm="none")
    refused(options("HS256"), tok, "alg none refused")
    refused(options("RS256", private=False), tok, "alg none refused")


@t.test
def pyjwt_other_alg_refused():
    need_pyjwt()
    tok = jwt.encode(claims_now(), signing_key("ES384"), algorithm="ES384")
    refused(options("ES256", private=False), tok, "alg ES384 refused")
    tok = jwt.encode(claims_now(), SECRETS["HS512"], algorithm="HS512")
    refused(options("HS256"), tok, "alg HS512 refused")


@t.test
def key_confusion_with_public_key_as_hmac_secret_refused():
    """PyJWT will not HMAC with a PEM key (its own defence), so the forgery is made by hand."""
    need_pyjwt()
    pub = keypair("RS256")[1]
    head = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64u(json.dumps(claims_now()).encode())
    sig = hmac.new(pub, f"{head}.{body}".encode(), hashlib.sha256).digest()
    refused(options("RS256", private=False), f"{head}.{body}.{b64u(sig)}", "alg HS256 refused")


@t.test
def pyjwt_wrong_audience_and_issuer_refused():
    need_pyjwt()
    opts = options("HS256", issuer="https://id.example", audience="ksock")
    key = SECRETS["HS256"]
    tok = jwt.encode(claims_now(iss="https://id.example", aud="billing"), key, algorithm="HS256")
    refused(opts, tok, "aud does not name")
    tok = jwt.encode(claims_now(iss="https://id.example", aud=["a", "b"]), key, algorithm="HS256")
    refused(opts, tok, "aud does not name")
    tok = jwt.encode(claims_now(iss="https://evil.example", aud="ksock"), key, algorithm="HS256")
    refused(opts, tok, "is not the configured issuer")


@t.test
def pyjwt_tampered_refused():
    need_pyjwt()
    tok = jwt.encode(claims_now(), signing_key("ES256"), algorithm="ES256")
    head, _, sig = tok.split(".")
    body = b64u(json.dumps(claims_now(sub="root")).encode())
    refused(options("ES256", private=False), f"{head}.{body}.{sig}", "bad signature")


@t.test
def pyjwt_nbf_in_the_future_refused():
    need_pyjwt()
    tok = jwt.encode(claims_now(nbf=int(time.time()) + 300), SECRETS["HS256"], algorithm="HS256")
    refused(options("HS256"), tok, "not valid yet")


# ---- (b) our plugin -> PyJWT ------------------------------------------------------

def ours_verify_in_pyjwt(alg):
    need_pyjwt()
    opts = options(alg, issuer="https://id.example", audience="ksock", default_ttl="10m")
    tok = generate(opts, {"userId": "alice", "roles": ["admin"], "subscribe": ["orders.*"],
                          "publish": ["orders.in"], "n": 7, "nested": {"a": [1, True, None]}})
    got = jwt.decode(tok, verify_key(alg), algorithms=[alg], audience="ksock",
                     issuer="https://id.example",
                     options={"require": ["exp", "iat", "sub", "iss", "aud"]})
    assert jwt.get_unverified_header(tok)["alg"] == alg
    assert got["sub"] == "alice" and "userId" not in got, got
    assert got["roles"] == ["admin"] and got["n"] == 7, got
    assert got["nested"] == {"a": [1, True, None]}, got
    assert got["ksock"] == {"subscribe": ["orders.*"], "publish": ["orders.in"]}, got
    assert got["exp"] - got["iat"] == 600, got
    assert abs(got["iat"] - time.time()) < 5, got
    # The wrong key does not verify it.
    if alg.startswith("HS"):
        wrong = "w" * len(SECRETS[alg])
    else:
        wrong = keypair(alg, "other")[1]
    try:
        jwt.decode(tok, wrong, algorithms=[alg], audience="ksock")
    except jwt.InvalidSignatureError:
        pass
    else:
        raise AssertionError("verified with the wrong key")


for _alg in ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]:
    def _case(alg=_alg):
        ours_verify_in_pyjwt(alg)
    _case.__name__ = f"ours_{_alg.lower()}_verifies_in_pyjwt"
    t.test(_case)


@t.test
def ours_ttl_in_pyjwt():
    need_pyjwt()
    tok = generate(options("HS256"), {"sub": "bob", "ttl": 5})
    got = jwt.decode(tok, SECRETS["HS256"], algorithms=["HS256"])
    assert got["exp"] - got["iat"] == 5 and got["sub"] == "bob", got


@t.test
def ksock_token_takes_an_options_file_and_refuses_bad_options():
    need_pyjwt()
    path = os.path.join(KEYDIR, "auth.json")
    with open(path, "w") as f:
        f.write(options("HS512", issuer="ops"))
    tok = generate(path, {"userId": "carol", "subscribe": ["orders.*"]})
    got = jwt.decode(tok, SECRETS["HS512"], algorithms=["HS512"], issuer="ops")
    assert got["sub"] == "carol" and got["ksock"] == {"subscribe": ["orders.*"]}, got
    # Options the plugin refuses: exit 2, the reason on stderr, no token.
    for bad, why in ((json.dumps({"algorithm": "HS256", "secret": "short"}), "secret"),
                     (json.dumps({"algorithm": "HS256", "secrett": "x" * 32}), "secrett"),
                     (os.path.join(KEYDIR, "missing.json"), "missing.json")):
        p = subprocess.run([TOOL, "token", "generate", bad, '{"sub": "x"}'],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and why in p.stderr and p.stdout == "", (bad, p)


try:
    t.run()
finally:
    shutil.rmtree(KEYDIR, ignore_errors=True)
