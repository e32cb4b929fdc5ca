/*
 * ksock.v1.csv, a serializer for small devices: one envelope per text frame,
 * ten comma-separated fields, each percent-encoded (no raw comma or newline
 * is left), empty when absent:
 *   op,id,topic,partition,offset,timestamp,key,value,error_code,error_message
 * e.g. "publish,7,sensors,,,,dev-7,21.5,," and "ack,7,sensors,0,42,,,,,".
 * No headers; an empty key or value is absent (null); subscribe starts at latest.
 * Built with nothing but `pkg-config ksock`; see README.md.
 */
#include <ksock/ksock.h>
#include <stdio.h>
#include <string.h>

enum { OP, ID, TOPIC, PART, OFFSET, TS, KEY, VALUE, CODE, MSG, NF };
typedef struct {
    const char *p;
    size_t n;
} field_t;

static int csv_encode(void *inst, const ksock_envelope_t *e, ksock_buf_t *o, char *err, size_t n)
{
    (void)inst;
    int rc = ksock_envelope_validate(e, "csv", false, err, n);
    if (rc != 0) return rc;
    int64_t v[4] = {e->partition, e->offset, e->timestamp, e->error_code};
    bool has[4] = {e->partition >= 0, e->offset >= 0, e->timestamp >= 0, e->error_code != 0};
    char num[4][24];
    for (int i = 0; i < 4; i++)
        snprintf(num[i], sizeof(num[i]), "%lld", (long long)v[i]);
    const char *op = ksock_op_name(e->op);
    field_t f[NF] = {{op, strlen(op)},
                     {e->id, e->id_len},
                     {e->topic, e->topic_len},
                     {has[0] ? num[0] : NULL, strlen(num[0])},
                     {has[1] ? num[1] : NULL, strlen(num[1])},
                     {has[2] ? num[2] : NULL, strlen(num[2])},
                     {e->key.data, e->key.len},
                     {e->value.data, e->value.len},
                     {has[3] ? num[3] : NULL, strlen(num[3])},
                     {e->error_message, e->error_message_len}};
    size_t len0 = o->len;
    for (int i = 0; i < NF && rc == 0; i++) {
        if (i > 0) rc = ksock_buf_append(o, ",", 1);
        if (rc == 0 && f[i].p) rc = ksock_percent_encode(f[i].p, f[i].n, o);
    }
    if (rc != 0) o->len = len0;
    return rc;
}

static int csv_decode(void *inst, const void *data, size_t len, const ksock_value_limits_t *lim,
                      ksock_envelope_t *e, char *err, size_t n)
{
    (void)inst, (void)lim;
    const char *s = data, *start[NF + 1] = {s};
    size_t commas = 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ',' && ++commas < NF) start[commas] = s + i + 1;
    if (commas != NF - 1)
        return ksock_errstr_set(err, n, "csv: %zu fields, expected 10", commas + 1), KSOCK_E_DECODE;
    start[NF] = s + len + 1;
    field_t f[NF];
    int64_t num[NF] = {0};
    for (int i = 0; i < NF; i++) {
        ksock_buf_t b = KSOCK_BUF_INIT;
        size_t fl = (size_t)(start[i + 1] - 1 - start[i]);
        int rc = fl ? ksock_percent_decode(start[i], fl, &b) : 0;
        char *p = fl && rc == 0 ? ksock_envelope_alloc(e, b.len) : NULL;
        if (p) memcpy(p, b.data, b.len); /* a ksock_buf_t is not NUL-terminated */
        f[i] = (field_t){p, b.len};
        ksock_buf_free(&b);
        if (rc == 0 && fl && p == NULL) return KSOCK_E_NOMEM;
        if (i == ID) e->id = p, e->id_len = f[i].n; /* an error reply echoes it */
        if (rc == 0 && p && i >= PART && i <= CODE && i != KEY && i != VALUE)
            rc = ksock_parse_int64(p, f[i].n, &num[i]);
        if (rc == 0 && (i == PART || i == CODE) && (num[i] < INT32_MIN || num[i] > INT32_MAX))
            rc = KSOCK_E_DECODE;
        if (rc)
            return ksock_errstr_set(err, n, "csv: field %d is malformed", i + 1), KSOCK_E_DECODE;
    }
    if (f[OP].p == NULL || ksock_op_parse(f[OP].p, f[OP].n, &e->op) != 0)
        return ksock_errstr_set(err, n, "csv: unknown op"), KSOCK_E_PROTO;
    e->topic = f[TOPIC].p, e->topic_len = f[TOPIC].n;
    e->partition = f[PART].p ? (int32_t)num[PART] : -1;
    e->offset = f[OFFSET].p ? num[OFFSET] : -1, e->timestamp = f[TS].p ? num[TS] : -1;
    e->key = (ksock_bytes_t){f[KEY].p, f[KEY].n, f[KEY].p != NULL};
    e->value = (ksock_bytes_t){f[VALUE].p, f[VALUE].n, f[VALUE].p != NULL};
    e->error_code = (int32_t)num[CODE], e->error_message = f[MSG].p,
    e->error_message_len = f[MSG].n;
    return ksock_envelope_validate(e, "csv", true, err, n);
}

static ksock_frame_type_t csv_frame_type(void *inst)
{
    (void)inst;
    return KSOCK_FRAME_TEXT;
}

static const ksock_serializer_vtable_t csv_vtable = {.size = sizeof(ksock_serializer_vtable_t),
                                                     .frame_type = csv_frame_type,
                                                     .encode_envelope = csv_encode,
                                                     .decode_envelope = csv_decode};

static const ksock_plugin_desc_t csv_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_SERIALIZER), .name = "csv", .version = "1.0.0",
    .description = "Comma-separated envelopes for small devices (example)", .vtable = &csv_vtable};

KSOCK_PLUGIN_DEFINE(serializer_csv, csv_desc)
