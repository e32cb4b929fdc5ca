/*
 * include/ksock/codec.h: the encodings serializer authors use. Known
 * answers from the RFCs, round trips over every byte value, and each kind
 * of malformed input refused without touching the output buffer.
 */
#include "test.h"

#include <ksock/ksock.h>

#include <string.h>

typedef int (*enc_fn)(const void *, size_t, ksock_buf_t *);
typedef int (*dec_fn)(const char *, size_t, ksock_buf_t *);

static int b64_enc(const void *p, size_t n, ksock_buf_t *o)
{
    return ksock_base64_encode(p, n, false, o);
}
static int b64_dec(const char *s, size_t n, ksock_buf_t *o)
{
    return ksock_base64_decode(s, n, false, o);
}
static int b64url_enc(const void *p, size_t n, ksock_buf_t *o)
{
    return ksock_base64_encode(p, n, true, o);
}
static int b64url_dec(const char *s, size_t n, ksock_buf_t *o)
{
    return ksock_base64_decode(s, n, true, o);
}

/* enc(in) == want, and dec(want) == in. */
static void known(enc_fn enc, dec_fn dec, const char *in, const char *want)
{
    ksock_buf_t b = KSOCK_BUF_INIT;
    ASSERT_OK(enc(in, strlen(in), &b));
    ASSERT_EQ(b.len, strlen(want));
    ASSERT_MEM_EQ(b.data, want, b.len);
    ksock_buf_free(&b);
    ASSERT_OK(dec(want, strlen(want), &b));
    ASSERT_EQ(b.len, strlen(in));
    if (b.len) ASSERT_MEM_EQ(b.data, in, b.len);
    ksock_buf_free(&b);
}

/* dec(bad) fails with KSOCK_E_DECODE and leaves what the buffer held. */
static void refused(dec_fn dec, const char *bad)
{
    ksock_buf_t b = KSOCK_BUF_INIT;
    ASSERT_OK(ksock_buf_append(&b, "kept", 4));
    ASSERT_EQ(dec(bad, strlen(bad), &b), KSOCK_E_DECODE);
    ASSERT_EQ(b.len, 4);
    ksock_buf_free(&b);
}

/* Every byte value through enc then dec, appended after existing content. */
static void round_trip(enc_fn enc, dec_fn dec)
{
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    for (size_t n = 0; n <= sizeof(all); n += n < 8 ? 1 : 61) {
        ksock_buf_t e = KSOCK_BUF_INIT, d = KSOCK_BUF_INIT;
        ASSERT_OK(ksock_buf_append(&d, "x", 1));
        ASSERT_OK(enc(all, n, &e));
        ASSERT_OK(dec(e.data ? e.data : "", e.len, &d));
        ASSERT_EQ(d.len, n + 1);
        if (n) ASSERT_MEM_EQ(d.data + 1, all, n);
        ksock_buf_free(&e);
        ksock_buf_free(&d);
    }
}

TEST(base64_rfc4648_vectors)
{
    /* RFC 4648 section 10. */
    known(b64_enc, b64_dec, "", "");
    known(b64_enc, b64_dec, "f", "Zg==");
    known(b64_enc, b64_dec, "fo", "Zm8=");
    known(b64_enc, b64_dec, "foo", "Zm9v");
    known(b64_enc, b64_dec, "foob", "Zm9vYg==");
    known(b64_enc, b64_dec, "fooba", "Zm9vYmE=");
    known(b64_enc, b64_dec, "foobar", "Zm9vYmFy");
    known(b64url_enc, b64url_dec, "f", "Zg");
    known(b64url_enc, b64url_dec, "fo", "Zm8");
    known(b64url_enc, b64url_dec, "\xfb\xff", "-_8");
    known(b64_enc, b64_dec, "\xfb\xff", "+/8=");
    round_trip(b64_enc, b64_dec);
    round_trip(b64url_enc, b64url_dec);
}

TEST(base64_strictness)
{
    refused(b64_dec, "Zg=");      /* length not a multiple of 4 */
    refused(b64_dec, "Zg");       /* padding missing */
    refused(b64_dec, "Zh==");     /* unused bits set */
    refused(b64_dec, "Z===");     /* one character cannot hold a byte */
    refused(b64_dec, "Zm 9v");    /* whitespace */
    refused(b64_dec, "Zm9v\n");   /* newline */
    refused(b64_dec, "Z=9v");     /* padding inside */
    refused(b64_dec, "-_8=");     /* url alphabet in standard */
    refused(b64url_dec, "+/8");   /* standard alphabet in url */
    refused(b64url_dec, "Zg==");  /* padding in url */
    refused(b64url_dec, "Zm9vY"); /* 4n+1 characters */
}

TEST(hex)
{
    known(ksock_hex_encode, ksock_hex_decode, "\x01\xab\xff", "01abff");
    ksock_buf_t b = KSOCK_BUF_INIT;
    ASSERT_OK(ksock_hex_decode("01ABff", 6, &b));
    ASSERT_MEM_EQ(b.data, "\x01\xab\xff", 3);
    ksock_buf_free(&b);
    refused(ksock_hex_decode, "abc");
    refused(ksock_hex_decode, "zz");
    refused(ksock_hex_decode, "0x12");
    round_trip(ksock_hex_encode, ksock_hex_decode);
}

TEST(percent)
{
    known(ksock_percent_encode, ksock_percent_decode, "a,b c%\n~_.-", "a%2Cb%20c%25%0A~_.-");
    ksock_buf_t b = KSOCK_BUF_INIT;
    ASSERT_OK(ksock_percent_decode("%2c+", 4, &b)); /* lower case hex; '+' stays '+' */
    ASSERT_MEM_EQ(b.data, ",+", 2);
    ksock_buf_free(&b);
    refused(ksock_percent_decode, "%");
    refused(ksock_percent_decode, "%4");
    refused(ksock_percent_decode, "abc%4"); /* a truncated escape at the very end */
    refused(ksock_percent_decode, "%zz");
    round_trip(ksock_percent_encode, ksock_percent_decode);
}

TEST(parse_int64)
{
    int64_t v = 7;
    ASSERT_OK(ksock_parse_int64("0", 1, &v));
    ASSERT_EQ(v, 0);
    ASSERT_OK(ksock_parse_int64("-42x", 3, &v)); /* only len bytes are read */
    ASSERT_EQ(v, -42);
    ASSERT_OK(ksock_parse_int64("9223372036854775807", 19, &v));
    ASSERT(v == INT64_MAX);
    ASSERT_OK(ksock_parse_int64("-9223372036854775808", 20, &v));
    ASSERT(v == INT64_MIN);
    ASSERT_EQ(ksock_parse_int64("9223372036854775808", 19, &v), KSOCK_E_LIMIT);
    ASSERT_EQ(ksock_parse_int64("-9223372036854775809", 20, &v), KSOCK_E_LIMIT);
    ASSERT_EQ(ksock_parse_int64("99999999999999999999", 20, &v), KSOCK_E_LIMIT);
    static const char *const bad[] = {"", "-", "+1", " 1", "1 ", "01", "-0", "1e3", "0x10", "1.0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ASSERT_EQ(ksock_parse_int64(bad[i], strlen(bad[i]), &v), KSOCK_E_DECODE);
}

TEST(envelope_validate)
{
    char err[256];
    ksock_envelope_t e;
    ksock_envelope_init(&e);
    e.op = KSOCK_OP_PUBLISH; /* no topic */
    ASSERT_EQ(ksock_envelope_validate(&e, "csv", true, err, sizeof(err)), KSOCK_E_PROTO);
    ASSERT(strncmp(err, "csv: ", 5) == 0);
    ASSERT_CONTAINS(err, "topic");
    ASSERT_EQ(ksock_envelope_validate(&e, "csv", false, err, sizeof(err)), KSOCK_E_ENCODE);
    e.topic = "t";
    e.topic_len = 1;
    ASSERT_OK(ksock_envelope_validate(&e, "csv", true, err, sizeof(err)));
}

TEST_LIST(TEST_ENTRY(base64_rfc4648_vectors), TEST_ENTRY(base64_strictness), TEST_ENTRY(hex),
          TEST_ENTRY(percent), TEST_ENTRY(parse_int64), TEST_ENTRY(envelope_validate))
