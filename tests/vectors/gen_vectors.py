#!/usr/bin/env python3
"""Generate the shared test vectors of tests/vectors/ from first principles.

The expected encodings are computed here, in Python, by encoders written
straight from docs/protocol.md, docs/serialization.md and ksock.proto, not
by the C code under test: the C tests (tests/plugins/serde/test_vectors.c)
then check that the plugins produce exactly these bytes. Other
implementations (the JavaScript client) check themselves against the same
files.

    python3 tests/vectors/gen_vectors.py            # rewrite the files
    python3 tests/vectors/gen_vectors.py --check    # exit 1 if a file would change

With the `msgpack` package installed (pip install msgpack), --crosscheck also
compares the MessagePack encoder below with msgpack-python's packb().

No dependencies beyond the standard library.
"""

import base64
import json
import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Options of the json serializer instance the envelope vectors are encoded with.
JSON_OPTIONS = {"json_topics": ["json.*"], "json_key_topics": ["json.*"]}


class Raw(bytes):
    """Kafka bytes (an envelope's key, value or header value)."""


# ---- JSON -----------------------------------------------------------------


def j_string(s):
    # ensure_ascii=False: UTF-8 as is; json escapes " \\ \b \f \n \r \t and
    # other controls as \u00xx with lowercase hex, exactly the canonical form.
    return json.dumps(s, ensure_ascii=False)


def j_double(d):
    if math.isnan(d) or math.isinf(d):
        raise ValueError("no JSON form")
    return repr(d)  # shortest round trip; 1.0, 1e+16, 1.5e-07


def j_value(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return j_double(v)
    if isinstance(v, str):
        return j_string(v)
    if isinstance(v, bytes):
        return '{"$bytes":"' + base64.b64encode(v).decode() + '"}'
    if isinstance(v, list):
        return "[" + ",".join(j_value(x) for x in v) + "]"
    if isinstance(v, dict):
        parts = []
        for k, x in v.items():
            key = "$" + k if k.startswith("$") else k
            parts.append(j_string(key) + ":" + j_value(x))
        return "{" + ",".join(parts) + "}"
    raise TypeError(type(v))


def is_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def is_json(b):
    if not is_utf8(b):
        return False

    def no_constants(name):
        raise ValueError(name)

    try:
        json.loads(b.decode("utf-8"), parse_constant=no_constants)
        return True
    except ValueError:
        return False


def topic_listed(patterns, topic):
    for p in patterns:
        if p.endswith("*") and topic is not None and topic.startswith(p[:-1]):
            return True
        if p == topic:
            return True
    return False


def j_payload(name, b, embed):
    if b is None:
        return []
    if embed and is_json(b):
        return ['"%s_json":%s' % (name, b.decode("utf-8"))]
    if is_utf8(b):
        return ['"%s":%s' % (name, j_string(b.decode("utf-8")))]
    return ['"%s_b64":"%s"' % (name, base64.b64encode(b).decode())]


def start_written(e):
    return e["op"] == "subscribe" or e.get("start", "latest") != "latest"


def j_envelope(e):
    out = ['"op":' + j_string(e["op"])]
    for f in ("id", "topic"):
        if f in e:
            out.append('"%s":%s' % (f, j_string(e[f])))
    for f in ("partition", "offset", "timestamp"):
        if f in e:
            out.append('"%s":%d' % (f, e[f]))
    topic = e.get("topic")
    out += j_payload("key", e.get("key"), topic_listed(JSON_OPTIONS["json_key_topics"], topic))
    out += j_payload("value", e.get("value"), topic_listed(JSON_OPTIONS["json_topics"], topic))
    if e.get("headers"):
        hs = []
        for k, v in e["headers"]:
            hs.append("{" + ",".join(['"key":' + j_string(k)] + j_payload("value", v, False)) + "}")
        out.append('"headers":[' + ",".join(hs) + "]")
    if start_written(e):
        out.append('"start":' + j_string(e.get("start", "latest")))
    if e.get("offsets"):
        out.append('"offsets":[' + ",".join('{"partition":%d,"offset":%d}' % po for po in e["offsets"]) + "]")
    for f in ("start_timestamp", "error_code"):
        if f in e:
            out.append('"%s":%d' % (f, e[f]))
    if "error_message" in e:
        out.append('"error_message":' + j_string(e["error_message"]))
    return ("{" + ",".join(out) + "}").encode("utf-8")


# ---- MessagePack ------------------------------------------------------------


def mp_int(i):
    if 0 <= i < 128:
        return bytes([i])
    if -32 <= i < 0:
        return struct.pack("b", i)
    if i >= 0:
        for limit, fmt, tag in ((1 << 8, ">B", 0xCC), (1 << 16, ">H", 0xCD), (1 << 32, ">I", 0xCE)):
            if i < limit:
                return bytes([tag]) + struct.pack(fmt, i)
        return b"\xcf" + struct.pack(">Q", i)
    for limit, fmt, tag in ((1 << 7, ">b", 0xD0), (1 << 15, ">h", 0xD1), (1 << 31, ">i", 0xD2)):
        if i >= -limit:
            return bytes([tag]) + struct.pack(fmt, i)
    return b"\xd3" + struct.pack(">q", i)


def mp_str(s):
    b = s.encode("utf-8")
    n = len(b)
    if n < 32:
        head = bytes([0xA0 | n])
    elif n < 256:
        head = b"\xd9" + struct.pack(">B", n)
    elif n < 65536:
        head = b"\xda" + struct.pack(">H", n)
    else:
        head = b"\xdb" + struct.pack(">I", n)
    return head + b


def mp_bin(b):
    n = len(b)
    if n < 256:
        head = b"\xc4" + struct.pack(">B", n)
    elif n < 65536:
        head = b"\xc5" + struct.pack(">H", n)
    else:
        head = b"\xc6" + struct.pack(">I", n)
    return head + b


def mp_count(n, fix, t16, t32):
    if n < 16:
        return bytes([fix | n])
    if n < 65536:
        return bytes([t16]) + struct.pack(">H", n)
    return bytes([t32]) + struct.pack(">I", n)


def mp_value(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        return mp_int(v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        return mp_str(v)
    if isinstance(v, bytes):
        return mp_bin(v)
    if isinstance(v, list):
        return mp_count(len(v), 0x90, 0xDC, 0xDD) + b"".join(mp_value(x) for x in v)
    if isinstance(v, dict):
        return mp_count(len(v), 0x80, 0xDE, 0xDF) + b"".join(mp_str(k) + mp_value(x) for k, x in v.items())
    raise TypeError(type(v))


def mp_envelope(e):
    m = [("op", mp_str(e["op"]))]
    for f in ("id", "topic"):
        if f in e:
            m.append((f, mp_str(e[f])))
    for f in ("partition", "offset", "timestamp"):
        if f in e:
            m.append((f, mp_int(e[f])))
    for f in ("key", "value"):
        if e.get(f) is not None:
            m.append((f, mp_bin(e[f])))
    if e.get("headers"):
        hs = b""
        for k, v in e["headers"]:
            hs += mp_count(1 if v is None else 2, 0x80, 0xDE, 0xDF) + mp_str("key") + mp_str(k)
            if v is not None:
                hs += mp_str("value") + mp_bin(v)
        m.append(("headers", mp_count(len(e["headers"]), 0x90, 0xDC, 0xDD) + hs))
    if start_written(e):
        m.append(("start", mp_str(e.get("start", "latest"))))
    if e.get("offsets"):
        os_ = b"".join(b"\x82" + mp_str("partition") + mp_int(p) + mp_str("offset") + mp_int(o) for p, o in e["offsets"])
        m.append(("offsets", mp_count(len(e["offsets"]), 0x90, 0xDC, 0xDD) + os_))
    for f in ("start_timestamp", "error_code"):
        if f in e:
            m.append((f, mp_int(e[f])))
    if "error_message" in e:
        m.append(("error_message", mp_str(e["error_message"])))
    return mp_count(len(m), 0x80, 0xDE, 0xDF) + b"".join(mp_str(k) + v for k, v in m)


# ---- Protobuf (ksock.proto) ----------------------------------------------------


def pb_varint(n):
    if n < 0:
        n += 1 << 64  # int32/int64/enum: two's complement over 64 bits
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def pb_tag(field, wt):
    return pb_varint(field << 3 | wt)


def pb_len(field, payload):
    return pb_tag(field, 2) + pb_varint(len(payload)) + payload


def pb_int(field, n):
    return pb_tag(field, 0) + pb_varint(n)


def zigzag(n, bits):
    return (n << 1) ^ (n >> (bits - 1))


def pb_value(v):
    if v is None:
        return pb_int(1, 0)
    if isinstance(v, bool):
        return pb_int(2, 1 if v else 0)
    if isinstance(v, int):
        return pb_int(3, zigzag(v, 64) & ((1 << 64) - 1))
    if isinstance(v, float):
        return pb_tag(4, 1) + struct.pack("<d", v)
    if isinstance(v, str):
        return pb_len(5, v.encode("utf-8"))
    if isinstance(v, bytes):
        return pb_len(6, v)
    if isinstance(v, list):
        return pb_len(7, b"".join(pb_len(1, pb_value(x)) for x in v))
    if isinstance(v, dict):
        entries = b"".join(pb_len(1, pb_len(1, k.encode("utf-8")) + pb_len(2, pb_value(x))) for k, x in v.items())
        return pb_len(8, entries)
    raise TypeError(type(v))


OPS = ["none", "subscribe", "unsubscribe", "publish", "ack", "record", "error",
       "subscribed", "unsubscribed", "ping", "pong", "token"]
STARTS = ["latest", "earliest", "offsets", "timestamp"]


def pb_envelope(e):
    out = pb_int(1, OPS.index(e["op"]))
    if "id" in e:
        out += pb_len(2, e["id"].encode("utf-8"))
    if "topic" in e:
        out += pb_len(3, e["topic"].encode("utf-8"))
    for num, f in ((4, "partition"), (5, "offset"), (6, "timestamp")):
        if f in e:
            out += pb_int(num, e[f])
    for num, f in ((7, "key"), (8, "value")):
        if e.get(f) is not None:
            out += pb_len(num, e[f])
    for k, v in e.get("headers", []):
        h = pb_len(1, k.encode("utf-8"))
        if v is not None:
            h += pb_len(2, v)
        out += pb_len(9, h)
    if start_written(e):
        out += pb_int(10, STARTS.index(e.get("start", "latest")))
    for p, o in e.get("offsets", []):
        out += pb_len(11, pb_int(1, p) + pb_int(2, o))
    if "start_timestamp" in e:
        out += pb_int(12, e["start_timestamp"])
    if "error_code" in e:
        out += pb_int(13, zigzag(e["error_code"], 32) & 0xFFFFFFFF)
    if "error_message" in e:
        out += pb_len(14, e["error_message"].encode("utf-8"))
    return out


# ---- The vectors ------------------------------------------------------------------

NAN = float("nan")

VALUES = [
    ("null", None, "null"),
    ("true", True, ""),
    ("false", False, ""),
    ("int_zero", 0, ""),
    ("int_one", 1, ""),
    ("int_minus_one", -1, "negative fixint"),
    ("int_127", 127, "largest positive fixint"),
    ("int_128", 128, "uint8 in msgpack"),
    ("int_255", 255, ""),
    ("int_256", 256, "uint16 in msgpack"),
    ("int_minus_32", -32, "smallest negative fixint"),
    ("int_minus_33", -33, "int8 in msgpack"),
    ("int_minus_129", -129, "int16 in msgpack"),
    ("int_65536", 65536, "uint32 in msgpack"),
    ("int_minus_2p31_minus_1", -(1 << 31) - 1, "int64 in msgpack"),
    ("int_2p32", 1 << 32, "uint64 in msgpack"),
    ("int64_max", (1 << 63) - 1, ""),
    ("int64_min", -(1 << 63), ""),
    ("double_zero", 0.0, "a double, not an int: 0.0 in JSON"),
    ("double_minus_zero", -0.0, "the sign survives every format"),
    ("double_one", 1.0, ""),
    ("double_tenth", 0.1, "shortest form 0.1"),
    ("double_small", -2.5e-07, "exponent form below 1e-4"),
    ("double_1e15", 1e15, "fixed form below 1e16"),
    ("double_1e16", 1e16, "exponent form from 1e16"),
    ("double_pi", 3.141592653589793, "17 significant digits"),
    ("double_denormal", 5e-324, "smallest denormal"),
    ("double_max", 1.7976931348623157e308, ""),
    ("double_nan", NAN, "no JSON form"),
    ("double_inf", float("inf"), "no JSON form"),
    ("double_minus_inf", float("-inf"), "no JSON form"),
    ("string_empty", "", ""),
    ("string_ascii", "hello", ""),
    ("string_utf8", "h\u00e9llo w\u00f6rld \u2014 \u65e5\u672c", "2- and 3-byte UTF-8"),
    ("string_emoji", "\U0001F600", "4-byte UTF-8"),
    ("string_escapes", "quote\" back\\ slash/ nl\n cr\r tab\t bs\b ff\f ctl\x01\x1f del\x7f", "JSON escapes"),
    ("string_nul", "a\x00b", "U+0000 inside a string"),
    ("string_31", "x" * 31, "longest fixstr"),
    ("string_32", "x" * 32, "str8 in msgpack"),
    ("string_256", "y" * 256, "str16 in msgpack"),
    ("bytes_empty", b"", ""),
    ("bytes_small", b"\x00\x01\xfe\xff", ""),
    ("bytes_300", bytes(range(256)) + bytes(44), "bin16 in msgpack"),
    ("array_empty", [], ""),
    ("array_mixed", [1, "two", 3.0, None, True, b"\x04"], ""),
    ("array_nested", [[[[]]], [1, [2, [3]]]], ""),
    ("array_16", list(range(16)), "array16 in msgpack"),
    ("map_empty", {}, ""),
    ("map_one", {"a": 1}, ""),
    ("map_spec_example", {"type": "update", "content": "This is a test"}, "the spec II usage example"),
    ("map_order", {"z": 1, "a": 2, "m": 3}, "insertion order is kept"),
    ("map_dollar_keys", {"$bytes": "not bytes", "$x": 1, "$$y": 2, "plain$": 3},
     "keys starting with $ gain a $ in JSON"),
    ("map_keys_unicode", {"": 0, "\u00fc": 1, "a b": 2, "\x00": 3}, "empty, non-ASCII, space and NUL keys"),
    ("map_16", {"k%02d" % i: i for i in range(16)}, "map16 in msgpack"),
    ("map_nested", {"user": {"id": 17, "tags": ["a", "b"], "avatar": b"\x89PNG"}, "ok": True,
                    "score": -1.5, "none": None}, ""),
]

TS = 1700000000000

ENVELOPES = [
    ("subscribe_latest", {"op": "subscribe", "id": "s1", "topic": "orders"}, "start written for subscribe"),
    ("subscribe_earliest", {"op": "subscribe", "id": "s2", "topic": "orders", "start": "earliest"}, ""),
    ("subscribe_offsets", {"op": "subscribe", "id": "s3", "topic": "orders", "start": "offsets",
                           "offsets": [(0, 17), (1, 9), (2, 1 << 40)]}, "resume after reconnect"),
    ("subscribe_timestamp", {"op": "subscribe", "topic": "orders", "start": "timestamp",
                             "start_timestamp": TS}, "no id"),
    ("unsubscribe", {"op": "unsubscribe", "id": "u1", "topic": "orders"}, ""),
    ("publish", {"op": "publish", "id": "p7", "topic": "orders", "key": Raw(b"k"), "value": Raw(b"v"),
                 "headers": [("trace", Raw(b"abc"))]}, ""),
    ("publish_partition_nulls", {"op": "publish", "id": "p8", "topic": "orders", "partition": 2,
                                 "value": Raw(b""), "headers": [("h", None), ("h", Raw(b""))]},
     "null key, empty value, null and empty header values, duplicate header keys"),
    ("publish_json", {"op": "publish", "id": "p9", "topic": "json.orders",
                      "value": Raw(b'{"amount":12.50,"items":[{"sku":"A-1"}],"note":null}')},
     "value_json on a JSON topic; number text kept"),
    ("publish_many_headers", {"op": "publish", "id": "i" * 40, "topic": "t" * 249, "key": Raw(b"k" * 70),
                              "value": Raw(b"v" * 300),
                              "headers": [("h%02d" % i, Raw(b"x" * i)) for i in range(17)]},
     "16-bit counts and lengths: str8/bin8/bin16, array16 headers, a map16 envelope is not reached"),
    ("subscribe_many_offsets", {"op": "subscribe", "id": "s4", "topic": "orders", "start": "offsets",
                                "offsets": [(p, p * 1000) for p in range(20)]}, "array16 of offsets"),
    ("ack", {"op": "ack", "id": "p7", "topic": "orders", "partition": 0, "offset": 2}, ""),
    ("record", {"op": "record", "topic": "orders", "partition": 3, "offset": 1042, "timestamp": TS,
                "key": Raw(b"user-17"), "value": Raw(b"hello"),
                "headers": [("trace", Raw(b"abc")), ("bin", Raw(b"\xff\x00"))]},
     "text key and value, one binary header"),
    ("record_binary", {"op": "record", "topic": "images", "partition": 0, "offset": 0,
                       "key": Raw(b"\xff\xfe"), "value": Raw(bytes(range(256)))}, "key_b64 and value_b64 in JSON"),
    ("record_json_topic", {"op": "record", "topic": "json.orders", "partition": 1, "offset": 7,
                           "timestamp": TS, "key": Raw(b"42"), "value": Raw(b'{"sku":"A-1","qty":2}')},
     "key_json and value_json"),
    ("record_json_topic_not_json", {"op": "record", "topic": "json.orders", "partition": 1, "offset": 8,
                                    "key": Raw(b"user-17"), "value": Raw(b"{not json")},
     "declared JSON but not JSON: text"),
    ("record_tombstone", {"op": "record", "topic": "orders", "partition": 0, "offset": 1 << 40,
                          "timestamp": 0, "key": Raw(b"")}, "empty key, null value, big offset"),
    ("record_unicode", {"op": "record", "topic": "t\u00fcrkei", "partition": 2147483647, "offset": 9223372036854775807,
                        "value": Raw("caf\u00e9 \U0001F600".encode()), "headers": [("\u00fc", Raw(b"\xc3\xbc"))]},
     "non-ASCII topic and header key, int32 and int64 maxima"),
    ("error", {"op": "error", "id": "p8", "topic": "secret", "error_code": -16,
               "error_message": "not allowed on topic \"secret\""}, ""),
    ("error_no_id", {"op": "error", "error_code": -19,
                     "error_message": "json: offset 17: invalid UTF-8 in string"}, ""),
    ("subscribed", {"op": "subscribed", "id": "s1", "topic": "orders"}, ""),
    ("subscribed_offsets", {"op": "subscribed", "id": "s3", "topic": "orders", "start": "offsets",
                            "offsets": [(0, 17), (1, 0), (2, 1 << 40)]},
     "the answer to a subscribe: where it starts in each of 3 partitions"),
    ("subscribed_added", {"op": "subscribed", "topic": "orders", "start": "offsets", "offsets": [(3, 0)]},
     "no id: a partition was added to a subscribed topic"),
    ("error_skipped", {"op": "error", "topic": "orders", "start": "offsets", "offsets": [(0, 5), (2, 300)],
                       "error_code": -32, "error_message": "records deleted by retention"},
     "KSOCK_E_SKIPPED: offsets of the first records not received"),
    ("unsubscribed", {"op": "unsubscribed", "id": "u1", "topic": "orders"}, ""),
    ("ping", {"op": "ping", "id": "x"}, ""),
    ("ping_bare", {"op": "ping"}, ""),
    ("pong", {"op": "pong", "id": "x\"y\\z\n\u00e9"}, "an id that needs escapes"),
    ("pong_empty_id", {"op": "pong", "id": ""}, "an empty id is still an id"),
    ("token", {"op": "token", "id": "t1", "value": Raw(b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln")},
     "a new token on an open connection"),
    ("token_answer", {"op": "token", "id": "t1", "timestamp": 1767225600000},
     "the answer: the new token's expiry"),
    ("token_answer_no_expiry", {"op": "token", "id": "t2"}, "the answer for a token without exp"),
]

FORMATS = ("json", "msgpack", "protobuf")


# ---- Bad envelopes -------------------------------------------------------------------
#
# Frames every decoder must refuse, each with the code docs/protocol.md section 6
# gives it and the id the error reply echoes (null: none). A frame is written as a
# list of members (name, node) by the generic writers below, so that one definition
# is the same fault in every format; `formats` lists where the fault can be
# written at all (protobuf has no member names, JSON no bin, ...).

DECODE, PROTO = -19, -17
CODE_NAMES = {DECODE: "KSOCK_E_DECODE", PROTO: "KSOCK_E_PROTO"}


class S:
    """A string; `raw` bytes are written as they are (not UTF-8 on purpose)."""

    def __init__(self, s=None, raw=None):
        self.raw = raw if raw is not None else s.encode("utf-8")


class I:
    def __init__(self, n):
        self.n = n


class Name:
    """An op or start: its name in JSON and MessagePack, its number in protobuf."""

    def __init__(self, name, number):
        self.name, self.number = name, number


class M:
    def __init__(self, *members):
        self.members = members


class L:
    def __init__(self, *items):
        self.items = items


class JText:
    """JSON text written verbatim (escapes only JSON has); other formats cannot say it."""

    def __init__(self, text):
        self.text = text


NULL = None


def bad_j(node):
    if node is NULL:
        return b"null"
    if isinstance(node, JText):
        return node.text.encode("utf-8")
    if isinstance(node, S):
        if is_utf8(node.raw):
            return j_string(node.raw.decode("utf-8")).encode("utf-8")
        return b'"' + node.raw + b'"'
    if isinstance(node, I):
        return str(node.n).encode()
    if isinstance(node, Name):
        return j_string(node.name).encode("utf-8")
    if isinstance(node, M):
        return b"{" + b",".join(bad_j(k if not isinstance(k, str) else S(k)) + b":" + bad_j(v)
                                for k, v in node.members) + b"}"
    if isinstance(node, L):
        return b"[" + b",".join(bad_j(x) for x in node.items) + b"]"
    raise TypeError(node)


def bad_mp(node):
    if node is NULL:
        return b"\xc0"
    if isinstance(node, S):
        n = len(node.raw)
        return (bytes([0xA0 | n]) if n < 32 else b"\xd9" + bytes([n])) + node.raw
    if isinstance(node, I):
        return mp_int(node.n) if node.n < 1 << 63 else b"\xcf" + struct.pack(">Q", node.n)
    if isinstance(node, Name):
        return mp_str(node.name)
    if isinstance(node, M):
        return mp_count(len(node.members), 0x80, 0xDE, 0xDF) + b"".join(
            bad_mp(k if not isinstance(k, str) else S(k)) + bad_mp(v) for k, v in node.members)
    if isinstance(node, L):
        return mp_count(len(node.items), 0x90, 0xDC, 0xDD) + b"".join(bad_mp(x) for x in node.items)
    raise TypeError(node)


# ksock.proto: member name -> (field number, type or the nested message's schema).
PB_HEADER = {"key": (1, "string"), "value": (2, "bytes")}
PB_OFFSET = {"partition": (1, "int32"), "offset": (2, "int64")}
PB_ENVELOPE = {"op": (1, "enum"), "id": (2, "string"), "topic": (3, "string"),
               "partition": (4, "int32"), "offset": (5, "int64"), "timestamp": (6, "int64"),
               "key": (7, "bytes"), "value": (8, "bytes"), "headers": (9, PB_HEADER),
               "start": (10, "enum"), "offsets": (11, PB_OFFSET), "start_timestamp": (12, "int64"),
               "error_code": (13, "sint32"), "error_message": (14, "string")}
PB_UNKNOWN = 99  # the field number of a member protobuf's schema does not have


def bad_pb_field(num, kind, node):
    if node is NULL:
        return b""
    if isinstance(node, I):
        # sint32: 64-bit zigzag, which equals 32-bit zigzag for every int32 and leaves a
        # value beyond int32 beyond it on the wire too
        return pb_int(num, (node.n << 1) ^ (node.n >> 63) if kind == "sint32" else node.n)
    if isinstance(node, Name):
        return pb_int(num, node.number)
    if isinstance(node, S):
        return pb_len(num, node.raw)
    if isinstance(node, M):
        return pb_len(num, bad_pb(node.members, kind if isinstance(kind, dict) else {}))
    if isinstance(node, L):
        return b"".join(bad_pb_field(num, kind, x) for x in node.items)  # repeated
    raise TypeError(node)


def bad_pb(members, schema=PB_ENVELOPE):
    out = b""
    for name, node in members:
        num, kind = schema.get(name, (PB_UNKNOWN, None))
        out += bad_pb_field(num, kind, node)
    return out


ALL = FORMATS
TEXT_MAPS = ("json", "msgpack")  # formats with member names and typed scalars

# (name, code, id echoed or None, members or a top-level node, formats, note, extra)
# extra: {"cut": n} drops the last n bytes, {"append": {format: bytes}} adds some.
BAD = [
    # -17: a well-typed envelope that breaks a rule of section 2
    ("publish_without_topic", PROTO, "x", [("op", Name("publish", 3)), ("id", S("x")), ("value", S("v"))],
     ALL, "the op's required field missing; the id still comes back", {}),
    ("no_op", PROTO, "x", [("id", S("x")), ("topic", S("t"))], ALL, "", {}),
    ("unknown_op", PROTO, "x", [("op", Name("fly", 42)), ("id", S("x"))], ALL, "", {}),
    ("unknown_op_hostile", PROTO, None, [("op", Name("\x1b[2Jfly\u0085\u202e\x00", 4242))], ALL,
     "control characters in the op: the message escapes them", {}),
    ("negative_partition", PROTO, "x", [("op", Name("publish", 3)), ("id", S("x")), ("topic", S("t")),
                                        ("partition", I(-1))], ALL, "", {}),
    ("negative_partition_before_id", PROTO, "late",
     [("op", Name("publish", 3)), ("partition", I(-2)), ("topic", S("t")), ("id", S("late"))], ALL,
     "the frame is read to its end, so an id after the fault comes back", {}),
    ("negative_offset", PROTO, "x", [("op", Name("ack", 4)), ("id", S("x")), ("topic", S("t")),
                                     ("partition", I(0)), ("offset", I(-5))], ALL, "", {}),
    ("negative_timestamp", PROTO, None, [("op", Name("record", 5)), ("topic", S("t")), ("partition", I(0)),
                                         ("offset", I(1)), ("timestamp", I(-1))], ALL, "", {}),
    ("empty_topic", PROTO, "x", [("op", Name("publish", 3)), ("id", S("x")), ("topic", S(""))], ALL, "", {}),
    ("positive_error_code", PROTO, None, [("op", Name("error", 6)), ("error_code", I(5))], ALL, "", {}),
    ("error_without_code", PROTO, "x", [("op", Name("error", 6)), ("id", S("x"))], ALL, "", {}),
    ("ack_without_offset", PROTO, None, [("op", Name("ack", 4)), ("topic", S("t")), ("partition", I(0))],
     ALL, "", {}),
    ("unknown_start", PROTO, "s", [("op", Name("subscribe", 1)), ("id", S("s")), ("topic", S("t")),
                                   ("start", Name("soon", 7))], ALL, "", {}),
    ("offsets_without_start_offsets", PROTO, "s",
     [("op", Name("subscribe", 1)), ("id", S("s")), ("topic", S("t")),
      ("offsets", L(M(("partition", I(0)), ("offset", I(1)))))], ALL, "", {}),
    ("start_offsets_without_offsets", PROTO, "s", [("op", Name("subscribe", 1)), ("id", S("s")),
                                                   ("topic", S("t")), ("start", Name("offsets", 2))], ALL, "", {}),
    ("offsets_entry_negative", PROTO, "s",
     [("op", Name("subscribe", 1)), ("id", S("s")), ("topic", S("t")), ("start", Name("offsets", 2)),
      ("offsets", L(M(("partition", I(-1)), ("offset", I(0)))))], ALL, "", {}),
    ("offsets_entry_incomplete", PROTO, "s",
     [("op", Name("subscribe", 1)), ("id", S("s")), ("topic", S("t")), ("start", Name("offsets", 2)),
      ("offsets", L(M(("partition", I(0)))))], ALL, "", {}),
    ("start_timestamp_without_start", PROTO, None,
     [("op", Name("subscribe", 1)), ("topic", S("t")), ("start_timestamp", I(5))], ALL, "", {}),
    ("header_without_key", PROTO, "x", [("op", Name("publish", 3)), ("id", S("x")), ("topic", S("t")),
                                        ("headers", L(M(("value", S("v")))))], ALL, "", {}),
    # -19: the frame is not a well-typed envelope of the format
    ("truncated", DECODE, "x", [("op", Name("publish", 3)), ("id", S("x")), ("topic", S("orders"))], ALL,
     "the last byte cut", {"cut": 1}),
    ("trailing_bytes", DECODE, "x", [("op", Name("ping", 9)), ("id", S("x"))], ALL,
     "protobuf: a field number 0", {"append": {"json": b" x", "msgpack": b"\xc0", "protobuf": b"\x00"}}),
    ("not_a_map", DECODE, None, L(I(1)), TEXT_MAPS, "", {}),
    ("empty_frame", DECODE, None, None, TEXT_MAPS,
     "protobuf: an empty frame is an empty message, so no_op", {"cut": 0}),
    ("topic_not_a_string", DECODE, "x", [("op", Name("publish", 3)), ("id", S("x")), ("topic", I(5))], ALL,
     "protobuf: the wrong wire type", {}),
    ("partition_not_an_integer", DECODE, "x",
     [("op", Name("publish", 3)), ("topic", S("t")), ("partition", S("0")), ("id", S("x"))], ALL,
     "an id after the fault still comes back", {}),
    ("value_not_bytes", DECODE, "x", [("op", Name("publish", 3)), ("id", S("x")), ("topic", S("t")),
                                      ("value", I(1))], ALL, "", {}),
    ("partition_beyond_int32", DECODE, "x", [("op", Name("publish", 3)), ("id", S("x")), ("topic", S("t")),
                                             ("partition", I(1 << 31))], ALL, "not an int32: a type fault", {}),
    ("offset_beyond_int64", DECODE, "x", [("op", Name("ack", 4)), ("id", S("x")), ("topic", S("t")),
                                          ("partition", I(0)), ("offset", I(1 << 63))], TEXT_MAPS,
     "protobuf int64 has no such value", {}),
    ("error_code_beyond_int32", DECODE, None, [("op", Name("error", 6)), ("error_code", I(-(1 << 31) - 1))],
     ALL, "", {}),
    ("unknown_member", DECODE, "x", [("op", Name("ping", 9)), ("id", S("x")), ("color", I(1))], ALL,
     "protobuf: field 99", {}),
    ("unknown_member_before_id", DECODE, "x", [("op", Name("ping", 9)), ("color", I(1)), ("id", S("x"))], ALL,
     "", {}),
    ("duplicate_member", DECODE, "x", [("op", Name("publish", 3)), ("topic", S("a")), ("topic", S("b")),
                                       ("id", S("x"))], ALL, "", {}),
    ("duplicate_id", DECODE, "a", [("op", Name("ping", 9)), ("id", S("a")), ("id", S("b"))], ALL,
     "the first id comes back", {}),
    ("header_not_a_map", DECODE, "x", [("op", Name("publish", 3)), ("id", S("x")), ("topic", S("t")),
                                       ("headers", L(I(1)))], ALL, "", {}),
    ("invalid_utf8_topic", DECODE, "x", [("op", Name("publish", 3)), ("id", S("x")),
                                         ("topic", S(raw=b"\xff\xfe"))], ALL, "", {}),
    ("invalid_utf8_id", DECODE, None, [("op", Name("ping", 9)), ("id", S(raw=b"\xc3\x28"))], ALL,
     "an id that does not decode is not echoed", {}),
    ("member_name_not_utf8", DECODE, "x", [("op", Name("ping", 9)), ("id", S("x")), (S(raw=b"\xff\xfe"), I(1))],
     TEXT_MAPS, "the message must not copy the bytes", {}),
    ("member_name_lone_surrogate", DECODE, "x",
     [("op", Name("ping", 9)), ("id", S("x")), (JText('"\\udcff"'), I(1))], ("json",),
     "yajl turns it into bytes that are not UTF-8", {}),
    ("member_name_control_chars", DECODE, "x",
     [("op", Name("ping", 9)), ("id", S("x")), (S("\x1b[2J\x07"), I(1))], TEXT_MAPS, "", {}),
    ("bad_base64", DECODE, "x", [("op", Name("publish", 3)), ("id", S("x")), ("topic", S("t")),
                                 ("value_b64", S("@@@@"))], ("json",), "", {}),
]


def bad_encodings(node, formats, extra):
    out = {}
    for f in formats:
        if node is None:
            b = b""
        elif isinstance(node, list):
            b = {"json": lambda: bad_j(M(*node)), "msgpack": lambda: bad_mp(M(*node)),
                 "protobuf": lambda: bad_pb(node)}[f]()
        else:
            b = bad_j(node) if f == "json" else bad_mp(node)
        if extra.get("cut"):
            b = b[:-extra["cut"]]
        b += extra.get("append", {}).get(f, b"")
        out[f] = b
    return out




def encodings_value(v):
    out = {}
    try:
        out["json"] = j_value(v).encode("utf-8")
    except ValueError:
        pass
    out["msgpack"] = mp_value(v)
    out["protobuf"] = pb_value(v)
    return out


def encodings_envelope(e):
    return {"json": j_envelope(e), "msgpack": mp_envelope(e), "protobuf": pb_envelope(e)}


def files_for(kind, name, enc):
    files = {}
    for f in FORMATS:
        if f not in enc:
            continue
        if f == "json":
            files[os.path.join(kind, name + ".json")] = enc[f]
        else:
            files[os.path.join(kind, name + "." + f + ".hex")] = (enc[f].hex() + "\n").encode()
    return files


def manifest_entry(name, enc, note):
    entry = {"name": name, "formats": [f for f in FORMATS if f in enc]}
    if note:
        entry["note"] = note
    return entry


def build():
    files, manifest = {}, {
        "version": 1,
        "about": "KafkaSocks wire vectors: see tests/vectors/README.md",
        "json_options": JSON_OPTIONS,
        "values": [],
        "envelopes": [],
    }
    for name, v, note in VALUES:
        enc = encodings_value(v)
        files.update(files_for("values", name, enc))
        manifest["values"].append(manifest_entry(name, enc, note))
    for name, e, note in ENVELOPES:
        enc = encodings_envelope(e)
        files.update(files_for("envelopes", name, enc))
        manifest["envelopes"].append(manifest_entry(name, enc, note))
    manifest["bad_envelopes"] = []
    for name, code, id_, node, formats, note, extra in BAD:
        enc = bad_encodings(node, formats, extra)
        files.update(files_for("bad", name, enc))
        entry = manifest_entry(name, enc, note)
        entry.update({"code": code, "code_name": CODE_NAMES[code], "id": id_})
        manifest["bad_envelopes"].append(entry)
    files["manifest.json"] = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    return files


def crosscheck():
    import msgpack  # noqa: only for --crosscheck

    bad = 0
    for name, v, _ in VALUES:
        if mp_value(v) != msgpack.packb(v, use_bin_type=True):
            print("msgpack differs for", name)
            bad += 1
    for name, e, _ in ENVELOPES:
        if mp_envelope(e) != msgpack.packb(envelope_as_dict(e), use_bin_type=True):
            print("msgpack differs for envelope", name)
            bad += 1
    print("crosscheck: %d vector(s) differ from msgpack-python" % bad)
    return bad == 0


def envelope_as_dict(e):
    """The envelope as the map docs/protocol.md section 4 describes, for msgpack-python."""
    d = {"op": e["op"]}
    for f in ("id", "topic", "partition", "offset", "timestamp"):
        if f in e:
            d[f] = e[f]
    for f in ("key", "value"):
        if e.get(f) is not None:
            d[f] = bytes(e[f])
    if e.get("headers"):
        d["headers"] = [{"key": k} if v is None else {"key": k, "value": bytes(v)} for k, v in e["headers"]]
    if start_written(e):
        d["start"] = e.get("start", "latest")
    if e.get("offsets"):
        d["offsets"] = [{"partition": p, "offset": o} for p, o in e["offsets"]]
    for f in ("start_timestamp", "error_code", "error_message"):
        if f in e:
            d[f] = e[f]
    return d


def main(argv):
    if "--crosscheck" in argv:
        return 0 if crosscheck() else 1
    files = build()
    changed = []
    for rel, data in sorted(files.items()):
        path = os.path.join(HERE, rel)
        old = open(path, "rb").read() if os.path.exists(path) else None
        if old != data:
            changed.append(rel)
            if "--check" not in argv:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
    if "--check" in argv:
        for rel in changed:
            print("out of date:", rel)
        return 1 if changed else 0
    print("%d files, %d written" % (len(files), len(changed)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
