/*
 * OTLP ExportTraceServiceRequest (protobuf wire format) to span-table column buffers.
 *
 * The collector's Python decoder (_decode.py) holds the GIL for most of a span's cost (figures
 * in benchmarks/BENCHMARKS.md); this reads the wire format directly and writes Arrow-layout buffers (int32 offsets + UTF-8 data,
 * little-endian integers) that pyarrow wraps without copying, with the values the Python
 * decoder would produce.
 *
 * It handles the common shape of a request and declines (returns None) anything else:
 * validation failures, attribute kinds it does not convert (bytes, key-value lists, mixed
 * arrays, non-finite doubles), duplicate attribute keys, repeated singular messages. The
 * caller then runs the Python decoder, which produces the exact result or error message, so
 * declining is always safe. The caller has already parsed the body with protobuf (upb), so
 * the wire format is known to be valid; the checks here only guard this code's own reads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ growable buffers */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} Buf;

typedef struct {
    int failed;   /* declined: the request needs the Python decoder */
    int no_memory;
} Status;

static int buf_reserve(Status *st, Buf *b, size_t extra) {
    if (extra > SIZE_MAX - b->len) {
        st->no_memory = 1;
        return -1;
    }
    size_t need = b->len + extra;
    if (need <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    char *data = realloc(b->data, cap);
    if (data == NULL) {
        st->no_memory = 1;
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int buf_put(Status *st, Buf *b, const void *src, size_t n) {
    if (buf_reserve(st, b, n) < 0) {
        return -1;
    }
    if (n) {
        memcpy(b->data + b->len, src, n);
    }
    b->len += n;
    return 0;
}

static int buf_i32(Status *st, Buf *b, int32_t v) { return buf_put(st, b, &v, sizeof v); }
static int buf_i64(Status *st, Buf *b, int64_t v) { return buf_put(st, b, &v, sizeof v); }
static int buf_u64(Status *st, Buf *b, uint64_t v) { return buf_put(st, b, &v, sizeof v); }

/* A string column: int32 offsets (count + 1 of them) and UTF-8 data. */
typedef struct {
    Buf offsets;
    Buf data;
} StrCol;

static int32_t strcol_count(const StrCol *c) { return (int32_t)(c->offsets.len / 4) - 1; }

static int strcol_init(Status *st, StrCol *c) { return buf_i32(st, &c->offsets, 0); }

/* Ends the current value (whose bytes were written to data). */
static int strcol_end(Status *st, StrCol *c) {
    if (c->data.len > INT32_MAX) {
        st->failed = 1;
        return -1;
    }
    return buf_i32(st, &c->offsets, (int32_t)c->data.len);
}

static int strcol_add(Status *st, StrCol *c, const void *s, size_t n) {
    if (buf_put(st, &c->data, s, n) < 0) {
        return -1;
    }
    return strcol_end(st, c);
}

static const char *strcol_value(const StrCol *c, int32_t i, size_t *n) {
    const int32_t *off = (const int32_t *)c->offsets.data;
    *n = (size_t)(off[i + 1] - off[i]);
    /* data stays NULL while every value is empty: never hand out NULL + 0 (memcmp's UB) */
    return c->data.data ? c->data.data + off[i] : "";
}

/* A Map(String, String) column: int32 entry offsets per row, keys and values. */
typedef struct {
    Buf offsets;
    StrCol keys;
    StrCol values;
} MapCol;

static int mapcol_init(Status *st, MapCol *m) {
    if (buf_i32(st, &m->offsets, 0) < 0 || strcol_init(st, &m->keys) < 0) {
        return -1;
    }
    return strcol_init(st, &m->values);
}

static int mapcol_end_row(Status *st, MapCol *m) {
    if (m->keys.offsets.len / 4 - 1 > INT32_MAX) { /* entry offsets are int32 */
        st->failed = 1;
        return -1;
    }
    return buf_i32(st, &m->offsets, strcol_count(&m->keys));
}

static void buf_free(Buf *b) { free(b->data); }
static void strcol_free(StrCol *c) { buf_free(&c->offsets); buf_free(&c->data); }
static void mapcol_free(MapCol *m) { buf_free(&m->offsets); strcol_free(&m->keys); strcol_free(&m->values); }

/* ------------------------------------------------------------------ wire format */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Reader;

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static int read_varint(Reader *r, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) {
            return -1;
        }
        uint8_t byte = *r->p++;
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return 0;
        }
    }
    return -1;
}

static int read_tag(Reader *r, uint32_t *field, int *wire_type) {
    uint64_t tag;
    if (read_varint(r, &tag) < 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) {
        return -1;
    }
    *field = (uint32_t)(tag >> 3);
    *wire_type = (int)(tag & 7);
    return 0;
}

static int read_len(Reader *r, Reader *inner) {
    uint64_t n;
    if (read_varint(r, &n) < 0 || n > (uint64_t)(r->end - r->p)) {
        return -1;
    }
    inner->p = r->p;
    inner->end = r->p + n;
    r->p += n;
    return 0;
}

static int read_fixed64(Reader *r, uint64_t *out) {
    if (r->end - r->p < 8) {
        return -1;
    }
    memcpy(out, r->p, 8); /* little-endian hosts only: checked at import */
    r->p += 8;
    return 0;
}

static int skip_field(Reader *r, int wire_type) {
    uint64_t ignored;
    Reader inner;
    switch (wire_type) {
    case WT_VARINT:
        return read_varint(r, &ignored);
    case WT_I64:
        if (r->end - r->p < 8) return -1;
        r->p += 8;
        return 0;
    case WT_LEN:
        return read_len(r, &inner);
    case WT_I32:
        if (r->end - r->p < 4) return -1;
        r->p += 4;
        return 0;
    default:
        return -1; /* groups: not in OTLP */
    }
}

/* Strict UTF-8, as protobuf requires of string fields (no overlongs, surrogates or > U+10FFFF). */
static int valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t extra;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + extra >= n) {
            return 0;
        }
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((extra == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (extra == 3 && (cp < 0x10000 || cp > 0x10ffff))) {
            return 0;
        }
        i += extra + 1;
    }
    return 1;
}

/* ------------------------------------------------------------------ value text */

static const char HEX[] = "0123456789abcdef";

static int put_hex(Status *st, Buf *b, const uint8_t *s, size_t n) {
    if (buf_reserve(st, b, 2 * n) < 0) return -1;
    char *out = b->data + b->len;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = HEX[s[i] >> 4];
        out[2 * i + 1] = HEX[s[i] & 15];
    }
    b->len += 2 * n;
    return 0;
}

/* A double as Go's encoding/json writes it (what _decode._go_float returns). */
static int put_go_float(Status *st, Buf *b, double x) {
    if (!isfinite(x)) {
        st->failed = 1;
        return -1;
    }
    char *repr = PyOS_double_to_string(x, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (repr == NULL) {
        PyErr_Clear();
        st->no_memory = 1;
        return -1;
    }
    int result = 0;
    size_t n = strlen(repr);
    double magnitude = fabs(x);
    if (magnitude != 0 && (magnitude < 1e-6 || magnitude >= 1e21)) {
        /* repr's exponent form, with a one-digit negative exponent unpadded (e-07 -> e-7). */
        if (n >= 4 && repr[n - 4] == 'e' && repr[n - 3] == '-' && repr[n - 2] == '0') {
            result = buf_put(st, b, repr, n - 2) < 0 || buf_put(st, b, repr + n - 1, 1) < 0 ? -1 : 0;
        } else {
            result = buf_put(st, b, repr, n);
        }
        PyMem_Free(repr);
        return result;
    }
    /* Fixed notation of repr's digits (Decimal(repr) formatted with 'f'), trailing zeros off. */
    char digits[64];
    size_t n_digits = 0;
    long exponent = 0;
    int negative = 0;
    int after_point = 0;
    long fraction_digits = 0;
    for (size_t i = 0; i < n; i++) {
        char c = repr[i];
        if (c == '-') {
            negative = 1;
        } else if (c == '.') {
            after_point = 1;
        } else if (c == 'e') {
            exponent = strtol(repr + i + 1, NULL, 10);
            break;
        } else if (c >= '0' && c <= '9') {
            if (n_digits >= sizeof digits) {
                PyMem_Free(repr);
                st->failed = 1;
                return -1;
            }
            digits[n_digits++] = c;
            fraction_digits += after_point;
        }
    }
    PyMem_Free(repr);
    exponent -= fraction_digits;
    size_t start = 0;
    while (start + 1 < n_digits && digits[start] == '0') start++;
    const char *coefficient = digits + start;
    long length = (long)(n_digits - start);
    char text[512];
    size_t t = 0;
    if (negative) text[t++] = '-';
    if (exponent >= 0) {
        if ((size_t)length + (size_t)exponent + 2 > sizeof text) {
            st->failed = 1;
            return -1;
        }
        memcpy(text + t, coefficient, (size_t)length);
        t += (size_t)length;
        memset(text + t, '0', (size_t)exponent);
        t += (size_t)exponent;
        return buf_put(st, b, text, t);
    }
    long before = length + exponent;
    if ((size_t)(length - exponent) + 4 > sizeof text) {
        st->failed = 1;
        return -1;
    }
    if (before > 0) {
        memcpy(text + t, coefficient, (size_t)before);
        t += (size_t)before;
        text[t++] = '.';
        memcpy(text + t, coefficient + before, (size_t)(length - before));
        t += (size_t)(length - before);
    } else {
        text[t++] = '0';
        text[t++] = '.';
        memset(text + t, '0', (size_t)(-before));
        t += (size_t)(-before);
        memcpy(text + t, coefficient, (size_t)length);
        t += (size_t)length;
    }
    while (t > 0 && text[t - 1] == '0') t--;
    if (t > 0 && text[t - 1] == '.') t--;
    return buf_put(st, b, text, t);
}

/* A JSON string as Go's encoding/json writes it: HTML characters and U+2028/9 escaped. */
static int put_go_json_string(Status *st, Buf *b, const uint8_t *s, size_t n) {
    if (buf_put(st, b, "\"", 1) < 0) return -1;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        const char *escape = NULL;
        char unicode[8];
        switch (c) {
        case '"': escape = "\\\""; break;
        case '\\': escape = "\\\\"; break;
        case '\n': escape = "\\n"; break;
        case '\r': escape = "\\r"; break;
        case '\t': escape = "\\t"; break;
        case '\b': escape = "\\b"; break;
        case '\f': escape = "\\f"; break;
        case '<': escape = "\\u003c"; break;
        case '>': escape = "\\u003e"; break;
        case '&': escape = "\\u0026"; break;
        default:
            if (c < 0x20) {
                snprintf(unicode, sizeof unicode, "\\u%04x", c);
                escape = unicode;
            } else if (c == 0xe2 && i + 2 < n && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)) {
                escape = s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029";
                i += 2;
            }
        }
        if (escape != NULL) {
            if (buf_put(st, b, escape, strlen(escape)) < 0) return -1;
        } else if (buf_put(st, b, &c, 1) < 0) {
            return -1;
        }
    }
    return buf_put(st, b, "\"", 1);
}

enum { KIND_NONE, KIND_STRING, KIND_BOOL, KIND_INT, KIND_DOUBLE, KIND_ARRAY };

typedef struct {
    int kind;
    Reader bytes; /* string or array payload */
    uint64_t number;
    int array_seen;
} AnyValue;

static int read_any_value(Status *st, Reader r, AnyValue *v) {
    v->kind = KIND_NONE;
    v->array_seen = 0;
    while (r.p < r.end) {
        uint32_t field;
        int wt;
        if (read_tag(&r, &field, &wt) < 0) goto fail;
        if (field == 1 && wt == WT_LEN) {
            if (read_len(&r, &v->bytes) < 0) goto fail;
            v->kind = KIND_STRING;
        } else if ((field == 2 || field == 3) && wt == WT_VARINT) {
            if (read_varint(&r, &v->number) < 0) goto fail;
            v->kind = field == 2 ? KIND_BOOL : KIND_INT;
        } else if (field == 4 && wt == WT_I64) {
            if (read_fixed64(&r, &v->number) < 0) goto fail;
            v->kind = KIND_DOUBLE;
        } else if (field == 5 && wt == WT_LEN) {
            if (v->array_seen || read_len(&r, &v->bytes) < 0) goto fail; /* repeated: merged */
            v->array_seen = 1;
            v->kind = KIND_ARRAY;
        } else if (field >= 1 && field <= 8) {
            goto fail; /* kvlist, bytes, string index, or a wire type protobuf would not use */
        } else if (skip_field(&r, wt) < 0) {
            goto fail;
        }
    }
    return 0;
fail:
    st->failed = 1;
    return -1;
}

/* An array of non-empty strings as Go's JSON (what _decode._convert writes); others decline. */
static int put_string_array(Status *st, Buf *b, Reader r) {
    if (buf_put(st, b, "[", 1) < 0) return -1;
    int first = 1;
    while (r.p < r.end) {
        uint32_t field;
        int wt;
        Reader item;
        AnyValue v;
        if (read_tag(&r, &field, &wt) < 0) goto fail;
        if (field != 1) {
            if (skip_field(&r, wt) < 0) goto fail;
            continue;
        }
        if (wt != WT_LEN || read_len(&r, &item) < 0) goto fail;
        if (read_any_value(st, item, &v) < 0) return -1;
        if (v.kind != KIND_STRING || v.bytes.p == v.bytes.end) goto fail;
        size_t n = (size_t)(v.bytes.end - v.bytes.p);
        if (!valid_utf8(v.bytes.p, n)) goto fail;
        if (!first && buf_put(st, b, ",", 1) < 0) return -1;
        first = 0;
        if (put_go_json_string(st, b, v.bytes.p, n) < 0) return -1;
    }
    return buf_put(st, b, "]", 1);
fail:
    st->failed = 1;
    return -1;
}

/* An attribute value as _decode.value_to_string converts it, appended to col's data. */
static int put_value(Status *st, Buf *b, const AnyValue *v) {
    char number[32];
    switch (v->kind) {
    case KIND_NONE:
        return 0;
    case KIND_STRING: {
        size_t n = (size_t)(v->bytes.end - v->bytes.p);
        if (!valid_utf8(v->bytes.p, n)) {
            st->failed = 1;
            return -1;
        }
        return buf_put(st, b, v->bytes.p, n);
    }
    case KIND_BOOL:
        return v->number ? buf_put(st, b, "true", 4) : buf_put(st, b, "false", 5);
    case KIND_INT:
        snprintf(number, sizeof number, "%lld", (long long)(int64_t)v->number);
        return buf_put(st, b, number, strlen(number));
    case KIND_DOUBLE: {
        double x;
        memcpy(&x, &v->number, sizeof x);
        return put_go_float(st, b, x);
    }
    case KIND_ARRAY:
        return put_string_array(st, b, v->bytes);
    default:
        st->failed = 1;
        return -1;
    }
}

/* ------------------------------------------------------------------ decoder state */

#define N_PRICE_GROUPS 6 /* model, provider, input, output, cache read, cache write tokens */
enum { G_MODEL, G_PROVIDER, G_INPUT, G_OUTPUT, G_CACHE_READ, G_CACHE_WRITE };
#define MAX_KEYS_PER_GROUP 16
#define MAX_PRICE_PAIRS 256 /* distinct (model, provider) per request; real ones have a handful */

typedef struct {
    const char *key[MAX_KEYS_PER_GROUP];
    size_t len[MAX_KEYS_PER_GROUP];
    int count;
} KeyGroup;

typedef struct {
    /* offsets into the span attribute values' data */
    int32_t model_off, model_len, provider_off, provider_len;
} PricePair;

typedef struct {
    Status st;
    long long max_spans, max_attributes, max_value_bytes, max_events, max_links;
    long long max_resource_bytes, max_scope_bytes;
    /* Bytes key and model comparisons may still read: crafted requests (thousands of long,
     * distinct model names; hundreds of same-length keys) would otherwise cost quadratic time
     * under the GIL. Past it the request is declined; the Python decoder hashes instead. */
    long long compare_budget;
    KeyGroup groups[N_PRICE_GROUPS];
    long long n_spans;

    Buf timestamp, duration;
    StrCol trace_id, span_id, parent_span_id, trace_state, span_name, span_kind, service_name;
    StrCol scope_name, scope_version, status_code, status_message;
    MapCol resource_attributes, span_attributes;
    Buf events_offsets, events_timestamp;
    StrCol events_name;
    MapCol events_attributes;
    Buf links_offsets;
    StrCol links_trace_id, links_span_id, links_trace_state;
    MapCol links_attributes;
    Buf price_index, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens;
    Buf price_pairs;

    MapCol resource; /* the current resource's attributes, one row */
} Decoder;

/* The decoder's string and map output columns, for setting them up and freeing them. */
#define STRING_COLUMNS(d)                                                                 \
    &(d)->trace_id, &(d)->span_id, &(d)->parent_span_id, &(d)->trace_state, &(d)->span_name, \
        &(d)->span_kind, &(d)->service_name, &(d)->scope_name, &(d)->scope_version,          \
        &(d)->status_code, &(d)->status_message, &(d)->events_name, &(d)->links_trace_id,    \
        &(d)->links_span_id, &(d)->links_trace_state
#define MAP_COLUMNS(d)                                                                    \
    &(d)->resource_attributes, &(d)->span_attributes, &(d)->events_attributes,           \
        &(d)->links_attributes

static int decoder_init(Decoder *d) {
    Status *st = &d->st;
    StrCol *strings[] = {STRING_COLUMNS(d)};
    MapCol *maps[] = {MAP_COLUMNS(d)};
    for (size_t i = 0; i < sizeof strings / sizeof *strings; i++) {
        if (strcol_init(st, strings[i]) < 0) return -1;
    }
    for (size_t i = 0; i < sizeof maps / sizeof *maps; i++) {
        if (mapcol_init(st, maps[i]) < 0) return -1;
    }
    if (buf_i32(st, &d->events_offsets, 0) < 0 || buf_i32(st, &d->links_offsets, 0) < 0) return -1;
    return 0;
}

static void decoder_free(Decoder *d) {
    StrCol *strings[] = {STRING_COLUMNS(d)};
    MapCol *maps[] = {MAP_COLUMNS(d), &d->resource};
    Buf *bufs[] = {&d->timestamp, &d->duration, &d->events_offsets, &d->events_timestamp,
                   &d->links_offsets, &d->price_index, &d->input_tokens, &d->output_tokens,
                   &d->cache_read_tokens, &d->cache_write_tokens, &d->price_pairs};
    for (size_t i = 0; i < sizeof strings / sizeof *strings; i++) strcol_free(strings[i]);
    for (size_t i = 0; i < sizeof maps / sizeof *maps; i++) mapcol_free(maps[i]);
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) buf_free(bufs[i]);
}

/* One KeyValue appended as an entry of map m's current row. */
static int read_key_value(Decoder *d, MapCol *m, Reader r) {
    Status *st = &d->st;
    Reader key = {NULL, NULL};
    Reader value = {NULL, NULL};
    int value_seen = 0;
    while (r.p < r.end) {
        uint32_t field;
        int wt;
        if (read_tag(&r, &field, &wt) < 0) goto fail;
        if (field == 1 && wt == WT_LEN) {
            if (read_len(&r, &key) < 0) goto fail;
        } else if (field == 2 && wt == WT_LEN) {
            if (value_seen || read_len(&r, &value) < 0) goto fail;
            value_seen = 1;
        } else if (field <= 2) {
            goto fail;
        } else if (skip_field(&r, wt) < 0) {
            goto fail;
        }
    }
    size_t key_len = (size_t)(key.end - key.p);
    if (key.p != NULL && !valid_utf8(key.p, key_len)) goto fail;
    if (strcol_add(st, &m->keys, key.p, key.p ? key_len : 0) < 0) return -1;
    AnyValue v = {KIND_NONE, {NULL, NULL}, 0, 0};
    if (value_seen && read_any_value(st, value, &v) < 0) return -1;
    size_t before = m->values.data.len;
    if (put_value(st, &m->values.data, &v) < 0) return -1;
    if ((long long)(m->values.data.len - before) > d->max_value_bytes) goto fail;
    return strcol_end(st, &m->values);
fail:
    st->failed = 1;
    return -1;
}

/* Rows of a map end with this: count within the limit and no key given twice (a dict keeps
 * the last value of a repeated key at its first position: the Python decoder handles that). */
static int end_map_row(Decoder *d, MapCol *m, int32_t first_entry) {
    Status *st = &d->st;
    int32_t last = strcol_count(&m->keys);
    if (last - first_entry > d->max_attributes) goto fail;
    for (int32_t i = first_entry + 1; i < last; i++) {
        size_t n_i;
        const char *k_i = strcol_value(&m->keys, i, &n_i);
        for (int32_t j = first_entry; j < i; j++) {
            size_t n_j;
            const char *k_j = strcol_value(&m->keys, j, &n_j);
            if (--d->compare_budget < 0) goto fail;
            if (n_i != n_j) continue;
            if ((d->compare_budget -= (long long)n_i) < 0) goto fail;
            if (memcmp(k_i, k_j, n_i) == 0) goto fail;
        }
    }
    return mapcol_end_row(st, m);
fail:
    st->failed = 1;
    return -1;
}

static int put_string_field(Status *st, StrCol *c, Reader s) {
    size_t n = (size_t)(s.end - s.p);
    if (s.p != NULL && !valid_utf8(s.p, n)) {
        st->failed = 1;
        return -1;
    }
    return strcol_add(st, c, s.p, s.p ? n : 0);
}

static int put_hex_field(Status *st, StrCol *c, Reader s) {
    if (s.p != NULL && put_hex(st, &c->data, s.p, (size_t)(s.end - s.p)) < 0) return -1;
    return strcol_end(st, c);
}

static int read_event(Decoder *d, Reader r) {
    Status *st = &d->st;
    uint64_t time = 0;
    Reader name = {NULL, NULL};
    int32_t first = strcol_count(&d->events_attributes.keys);
    while (r.p < r.end) {
        uint32_t field;
        int wt;
        Reader inner;
        if (read_tag(&r, &field, &wt) < 0) goto fail;
        if (field == 1 && wt == WT_I64) {
            if (read_fixed64(&r, &time) < 0) goto fail;
        } else if (field == 2 && wt == WT_LEN) {
            if (read_len(&r, &name) < 0) goto fail;
        } else if (field == 3 && wt == WT_LEN) {
            if (read_len(&r, &inner) < 0) goto fail;
            if (read_key_value(d, &d->events_attributes, inner) < 0) return -1;
        } else if (field <= 3) {
            goto fail;
        } else if (skip_field(&r, wt) < 0) {
            goto fail;
        }
    }
    if (time > INT64_MAX) goto fail;
    if (buf_i64(st, &d->events_timestamp, (int64_t)time) < 0) return -1;
    if (put_string_field(st, &d->events_name, name) < 0) return -1;
    return end_map_row(d, &d->events_attributes, first);
fail:
    st->failed = 1;
    return -1;
}

static int read_link(Decoder *d, Reader r) {
    Status *st = &d->st;
    Reader trace_id = {NULL, NULL}, span_id = {NULL, NULL}, state = {NULL, NULL};
    int32_t first = strcol_count(&d->links_attributes.keys);
    while (r.p < r.end) {
        uint32_t field;
        int wt;
        Reader inner;
        if (read_tag(&r, &field, &wt) < 0) goto fail;
        if (field >= 1 && field <= 4 && wt != WT_LEN) goto fail;
        if (field == 1) {
            if (read_len(&r, &trace_id) < 0) goto fail;
        } else if (field == 2) {
            if (read_len(&r, &span_id) < 0) goto fail;
        } else if (field == 3) {
            if (read_len(&r, &state) < 0) goto fail;
        } else if (field == 4) {
            if (read_len(&r, &inner) < 0) goto fail;
            if (read_key_value(d, &d->links_attributes, inner) < 0) return -1;
        } else if (skip_field(&r, wt) < 0) {
            goto fail;
        }
    }
    if (put_hex_field(st, &d->links_trace_id, trace_id) < 0) return -1;
    if (put_hex_field(st, &d->links_span_id, span_id) < 0) return -1;
    if (put_string_field(st, &d->links_trace_state, state) < 0) return -1;
    return end_map_row(d, &d->links_attributes, first);
fail:
    st->failed = 1;
    return -1;
}

/* The first non-empty value among a group's keys in the span's attributes, as an index. */
static int32_t first_value(const Decoder *d, int group, int32_t first, int32_t last) {
    const KeyGroup *g = &d->groups[group];
    const MapCol *m = &d->span_attributes;
    for (int k = 0; k < g->count; k++) {
        for (int32_t i = first; i < last; i++) {
            size_t n;
            const char *key = strcol_value(&m->keys, i, &n);
            if (n == g->len[k] && memcmp(key, g->key[k], n) == 0) {
                size_t value_len;
                strcol_value(&m->values, i, &value_len);
                if (value_len > 0) return i;
                break; /* keys are unique within a span */
            }
        }
    }
    return -1;
}

/* Token count as the collector reads it (toUInt64OrZero: optional '+', ASCII digits). */
static uint64_t tokens(const Decoder *d, int group, int32_t first, int32_t last) {
    int32_t i = first_value(d, group, first, last);
    if (i < 0) return 0;
    size_t n;
    const char *s = strcol_value(&d->span_attributes.values, i, &n);
    if (n > 0 && s[0] == '+') {
        s++;
        n--;
    }
    if (n == 0) return 0;
    uint64_t value = 0;
    for (size_t k = 0; k < n; k++) {
        if (s[k] < '0' || s[k] > '9') return 0;
        uint64_t next_digit = (uint64_t)(s[k] - '0');
        if (value > (UINT64_MAX - next_digit) / 10) return 0; /* beyond UInt64 */
        value = value * 10 + next_digit;
    }
    return value;
}

static int price_inputs(Decoder *d, int32_t first, int32_t last) {
    Status *st = &d->st;
    uint64_t input = tokens(d, G_INPUT, first, last);
    uint64_t output = tokens(d, G_OUTPUT, first, last);
    int32_t index = -1;
    uint64_t cache_read = 0, cache_write = 0;
    if (input != 0 || output != 0) {
        cache_read = tokens(d, G_CACHE_READ, first, last);
        cache_write = tokens(d, G_CACHE_WRITE, first, last);
        int32_t model = first_value(d, G_MODEL, first, last);
        int32_t provider = first_value(d, G_PROVIDER, first, last);
        const int32_t *off = (const int32_t *)d->span_attributes.values.offsets.data;
        PricePair pair = {0, 0, 0, 0};
        if (model >= 0) {
            pair.model_off = off[model];
            pair.model_len = off[model + 1] - off[model];
        }
        if (provider >= 0) {
            pair.provider_off = off[provider];
            pair.provider_len = off[provider + 1] - off[provider];
        }
        const char *data = d->span_attributes.values.data.data;
        PricePair *pairs = (PricePair *)d->price_pairs.data;
        int32_t n_pairs = (int32_t)(d->price_pairs.len / sizeof(PricePair));
        for (int32_t i = 0; i < n_pairs; i++) {
            if (--d->compare_budget < 0) {
                st->failed = 1;
                return -1;
            }
            if (pairs[i].model_len != pair.model_len || pairs[i].provider_len != pair.provider_len) {
                continue;
            }
            if ((d->compare_budget -= (long long)pair.model_len + pair.provider_len) < 0) {
                st->failed = 1;
                return -1;
            }
            if (memcmp(data + pairs[i].model_off, data + pair.model_off, (size_t)pair.model_len) == 0 &&
                memcmp(data + pairs[i].provider_off, data + pair.provider_off, (size_t)pair.provider_len) == 0) {
                index = i;
                break;
            }
        }
        if (index < 0) {
            if (n_pairs >= MAX_PRICE_PAIRS) {
                st->failed = 1;
                return -1;
            }
            index = n_pairs;
            if (buf_put(st, &d->price_pairs, &pair, sizeof pair) < 0) return -1;
        }
    }
    if (buf_i32(st, &d->price_index, index) < 0) return -1;
    if (buf_u64(st, &d->input_tokens, input) < 0) return -1;
    if (buf_u64(st, &d->output_tokens, output) < 0) return -1;
    if (buf_u64(st, &d->cache_read_tokens, cache_read) < 0) return -1;
    return buf_u64(st, &d->cache_write_tokens, cache_write);
}

static const char *const SPAN_KINDS[] = {"Unspecified", "Internal", "Server", "Client", "Producer", "Consumer"};
static const char *const STATUS_CODES[] = {"Unset", "Ok", "Error"};

static int all_zero(Reader s) {
    for (const uint8_t *p = s.p; p < s.end; p++) {
        if (*p) return 0;
    }
    return 1;
}

static int read_span(Decoder *d, Reader r, Reader scope_name, Reader scope_version) {
    Status *st = &d->st;
    Reader trace_id = {NULL, NULL}, span_id = {NULL, NULL}, parent = {NULL, NULL};
    Reader state = {NULL, NULL}, name = {NULL, NULL}, status = {NULL, NULL};
    uint64_t start = 0, end = 0, kind = 0;
    int status_seen = 0;
    long long n_events = 0, n_links = 0;
    int32_t first_attribute = strcol_count(&d->span_attributes.keys);
    while (r.p < r.end) {
        uint32_t field;
        int wt;
        Reader inner;
        if (read_tag(&r, &field, &wt) < 0) goto fail;
        switch (field) {
        case 1: case 2: case 3: case 4: case 5: case 9: case 11: case 13: case 15:
            if (wt != WT_LEN || read_len(&r, &inner) < 0) goto fail;
            break;
        case 6:
            if (wt != WT_VARINT || read_varint(&r, &kind) < 0) goto fail;
            continue;
        case 7: case 8:
            if (wt != WT_I64 || read_fixed64(&r, field == 7 ? &start : &end) < 0) goto fail;
            continue;
        default:
            if (skip_field(&r, wt) < 0) goto fail;
            continue;
        }
        switch (field) {
        case 1: trace_id = inner; break;
        case 2: span_id = inner; break;
        case 3: state = inner; break;
        case 4: parent = inner; break;
        case 5: name = inner; break;
        case 9:
            if (read_key_value(d, &d->span_attributes, inner) < 0) return -1;
            break;
        case 11:
            if (++n_events > d->max_events || read_event(d, inner) < 0) goto fail;
            break;
        case 13:
            if (++n_links > d->max_links || read_link(d, inner) < 0) goto fail;
            break;
        case 15:
            if (status_seen) goto fail; /* repeated: merged */
            status_seen = 1;
            status = inner;
            break;
        }
    }
    size_t trace_len = (size_t)(trace_id.end - trace_id.p), span_len = (size_t)(span_id.end - span_id.p);
    size_t parent_len = (size_t)(parent.end - parent.p);
    if (trace_id.p == NULL || trace_len != 16 || all_zero(trace_id)) goto fail;
    if (span_id.p == NULL || span_len != 8 || all_zero(span_id)) goto fail;
    if (parent.p != NULL && parent_len != 0 && (parent_len != 8 || all_zero(parent))) goto fail;
    if (start == 0 || start > INT64_MAX) goto fail;
    if (++d->n_spans > d->max_spans) goto fail;

    uint64_t status_code = 0;
    Reader status_message = {NULL, NULL};
    while (status.p != NULL && status.p < status.end) {
        uint32_t field;
        int wt;
        if (read_tag(&status, &field, &wt) < 0) goto fail;
        if (field == 2 && wt == WT_LEN) {
            if (read_len(&status, &status_message) < 0) goto fail;
        } else if (field == 3 && wt == WT_VARINT) {
            if (read_varint(&status, &status_code) < 0) goto fail;
        } else if (field == 2 || field == 3) {
            goto fail;
        } else if (skip_field(&status, wt) < 0) {
            goto fail;
        }
    }
    int32_t code = (int32_t)status_code, span_kind = (int32_t)kind; /* enums are int32 */
    const char *kind_text = span_kind >= 0 && span_kind < 6 ? SPAN_KINDS[span_kind] : "Unspecified";
    const char *code_text = code >= 0 && code < 3 ? STATUS_CODES[code] : "Unset";

    if (end_map_row(d, &d->span_attributes, first_attribute) < 0) return -1;
    if (buf_i64(st, &d->timestamp, (int64_t)start) < 0) return -1;
    if (buf_u64(st, &d->duration, end >= start ? end - start : 0) < 0) return -1;
    if (put_hex_field(st, &d->trace_id, trace_id) < 0) return -1;
    if (put_hex_field(st, &d->span_id, span_id) < 0) return -1;
    if (put_hex_field(st, &d->parent_span_id, parent) < 0) return -1;
    if (put_string_field(st, &d->trace_state, state) < 0) return -1;
    if (put_string_field(st, &d->span_name, name) < 0) return -1;
    if (strcol_add(st, &d->span_kind, kind_text, strlen(kind_text)) < 0) return -1;
    if (put_string_field(st, &d->scope_name, scope_name) < 0) return -1;
    if (put_string_field(st, &d->scope_version, scope_version) < 0) return -1;
    if (strcol_add(st, &d->status_code, code_text, strlen(code_text)) < 0) return -1;
    if (put_string_field(st, &d->status_message, status_message) < 0) return -1;
    if (buf_i32(st, &d->events_offsets, strcol_count(&d->events_name)) < 0) return -1;
    if (buf_i32(st, &d->links_offsets, strcol_count(&d->links_trace_id)) < 0) return -1;

    /* The resource's attributes, copied from the one row decoded for it. */
    MapCol *res = &d->resource_attributes;
    int32_t n_entries = strcol_count(&d->resource.keys);
    StrCol *from[] = {&d->resource.keys, &d->resource.values};
    StrCol *to[] = {&res->keys, &res->values};
    for (int c = 0; c < 2; c++) {
        int32_t base = (int32_t)to[c]->data.len;
        const int32_t *off = (const int32_t *)from[c]->offsets.data;
        if (from[c]->data.len + to[c]->data.len > INT32_MAX) goto fail;
        if (buf_put(st, &to[c]->data, from[c]->data.data, from[c]->data.len) < 0) return -1;
        if (buf_reserve(st, &to[c]->offsets, 4 * (size_t)n_entries) < 0) return -1;
        int32_t *out = (int32_t *)(to[c]->offsets.data + to[c]->offsets.len);
        for (int32_t i = 0; i < n_entries; i++) out[i] = base + off[i + 1];
        to[c]->offsets.len += 4 * (size_t)n_entries;
    }
    if (mapcol_end_row(st, res) < 0) return -1;

    /* service.name, or unknown_service when the resource has none. */
    int found = 0;
    for (int32_t i = 0; i < n_entries; i++) {
        size_t n;
        const char *key = strcol_value(&d->resource.keys, i, &n);
        if (n == 12 && memcmp(key, "service.name", 12) == 0) {
            const char *value = strcol_value(&d->resource.values, i, &n);
            if (strcol_add(st, &d->service_name, value, n) < 0) return -1;
            found = 1;
            break;
        }
    }
    if (!found && strcol_add(st, &d->service_name, "unknown_service", 15) < 0) return -1;
    return price_inputs(d, first_attribute, strcol_count(&d->span_attributes.keys));
fail:
    st->failed = 1;
    return -1;
}

/* Message field 1 of r (the scope of a ScopeSpans, the resource of a ResourceSpans), read
 * before the spans whatever the field order; {NULL, NULL} when absent. -1 when it repeats
 * (protobuf merges repeats: the Python decoder handles that) or is not length-delimited. */
static int find_message_field_1(Reader r, Reader *out) {
    int seen = 0;
    out->p = out->end = NULL;
    while (r.p < r.end) {
        uint32_t field;
        int wt;
        if (read_tag(&r, &field, &wt) < 0) return -1;
        if (field == 1) {
            if (wt != WT_LEN || seen || read_len(&r, out) < 0) return -1;
            seen = 1;
        } else if (skip_field(&r, wt) < 0) {
            return -1;
        }
    }
    return 0;
}

static int read_scope_spans(Decoder *d, Reader r) {
    Status *st = &d->st;
    Reader scope, name = {NULL, NULL}, version = {NULL, NULL};
    /* Pass 1: the scope (fields may come in any order). */
    if (find_message_field_1(r, &scope) < 0) goto fail;
    while (scope.p != NULL && scope.p < scope.end) {
        uint32_t field;
        int wt;
        if (read_tag(&scope, &field, &wt) < 0) goto fail;
        if ((field == 1 || field == 2) && wt == WT_LEN) {
            if (read_len(&scope, field == 1 ? &name : &version) < 0) goto fail;
        } else if (field == 1 || field == 2) {
            goto fail;
        } else if (skip_field(&scope, wt) < 0) {
            goto fail;
        }
    }
    if ((name.p != NULL && name.end - name.p > d->max_scope_bytes) ||
        (version.p != NULL && version.end - version.p > d->max_scope_bytes)) {
        goto fail; /* copied into every span's row, like the resource */
    }
    /* Pass 2: the spans. */
    while (r.p < r.end) {
        uint32_t field;
        int wt;
        Reader inner;
        if (read_tag(&r, &field, &wt) < 0) goto fail;
        if (field == 2) {
            if (wt != WT_LEN || read_len(&r, &inner) < 0) goto fail;
            if (read_span(d, inner, name, version) < 0) return -1;
        } else if (skip_field(&r, wt) < 0) {
            goto fail;
        }
    }
    return 0;
fail:
    st->failed = 1;
    return -1;
}

static int read_resource_spans(Decoder *d, Reader r) {
    Status *st = &d->st;
    Reader resource;
    if (find_message_field_1(r, &resource) < 0) goto fail;
    /* The resource's attributes as one map row, reused by each of its spans. */
    mapcol_free(&d->resource);
    memset(&d->resource, 0, sizeof d->resource);
    if (mapcol_init(st, &d->resource) < 0) return -1;
    while (resource.p != NULL && resource.p < resource.end) {
        uint32_t field;
        int wt;
        Reader inner;
        if (read_tag(&resource, &field, &wt) < 0) goto fail;
        if (field == 1) {
            if (wt != WT_LEN || read_len(&resource, &inner) < 0) goto fail;
            if (read_key_value(d, &d->resource, inner) < 0) return -1;
        } else if (skip_field(&resource, wt) < 0) {
            goto fail;
        }
    }
    if (end_map_row(d, &d->resource, 0) < 0) return -1;
    /* Copied into every span's row: bounded, or a small body could decode into gigabytes. */
    if ((long long)(d->resource.keys.data.len + d->resource.values.data.len) > d->max_resource_bytes) {
        goto fail;
    }
    while (r.p < r.end) {
        uint32_t field;
        int wt;
        Reader inner;
        if (read_tag(&r, &field, &wt) < 0) goto fail;
        if (field == 2) {
            if (wt != WT_LEN || read_len(&r, &inner) < 0) goto fail;
            if (read_scope_spans(d, inner) < 0) return -1;
        } else if (skip_field(&r, wt) < 0) {
            goto fail;
        }
    }
    return 0;
fail:
    st->failed = 1;
    return -1;
}

/* ------------------------------------------------------------------ Python interface */

static PyObject *bytes_of(const Buf *b) {
    return PyBytes_FromStringAndSize(b->data ? b->data : "", (Py_ssize_t)b->len);
}

static PyObject *string_column(const StrCol *c) {
    return Py_BuildValue("(NN)", bytes_of(&c->offsets), bytes_of(&c->data));
}

static PyObject *map_column(const MapCol *m) {
    return Py_BuildValue("(NNN)", bytes_of(&m->offsets), string_column(&m->keys), string_column(&m->values));
}

static PyObject *price_pairs(const Decoder *d) {
    const PricePair *pairs = (const PricePair *)d->price_pairs.data;
    Py_ssize_t n = (Py_ssize_t)(d->price_pairs.len / sizeof(PricePair));
    const char *data = d->span_attributes.values.data.data;
    PyObject *list = PyList_New(n);
    if (list == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = Py_BuildValue("(s#s#)", data + pairs[i].model_off, (Py_ssize_t)pairs[i].model_len,
                                       data + pairs[i].provider_off, (Py_ssize_t)pairs[i].provider_len);
        if (pair == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, pair);
    }
    return list;
}

static int read_key_groups(Decoder *d, PyObject *groups) {
    if (!PyTuple_Check(groups) || PyTuple_GET_SIZE(groups) != N_PRICE_GROUPS) {
        PyErr_SetString(PyExc_TypeError, "price_keys must be a tuple of 6 tuples of str");
        return -1;
    }
    for (int g = 0; g < N_PRICE_GROUPS; g++) {
        PyObject *keys = PyTuple_GET_ITEM(groups, g);
        if (!PyTuple_Check(keys) || PyTuple_GET_SIZE(keys) > MAX_KEYS_PER_GROUP) {
            PyErr_SetString(PyExc_TypeError, "each price key group must be a tuple of at most 16 str");
            return -1;
        }
        d->groups[g].count = (int)PyTuple_GET_SIZE(keys);
        for (int k = 0; k < d->groups[g].count; k++) {
            Py_ssize_t n;
            const char *key = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(keys, k), &n);
            if (key == NULL) return -1;
            d->groups[g].key[k] = key; /* kept alive by the caller's tuple */
            d->groups[g].len[k] = (size_t)n;
        }
    }
    return 0;
}

PyDoc_STRVAR(decode_doc,
"decode_traces(body, max_spans, max_attributes, max_value_bytes, max_events, max_links,\n"
"              max_resource_bytes, max_scope_bytes, price_keys)\n"
"--\n\n"
"Column buffers of an OTLP ExportTraceServiceRequest already parsed once by protobuf, or None\n"
"when the request needs the Python decoder (an invalid span, an unusual value, ...).");

static PyObject *decode_traces(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer body;
    PyObject *groups;
    Decoder *d = calloc(1, sizeof(Decoder));
    if (d == NULL) return PyErr_NoMemory();
    if (!PyArg_ParseTuple(args, "y*LLLLLLLO!", &body, &d->max_spans, &d->max_attributes, &d->max_value_bytes,
                          &d->max_events, &d->max_links, &d->max_resource_bytes, &d->max_scope_bytes,
                          &PyTuple_Type, &groups)) {
        free(d);
        return NULL;
    }
    PyObject *result = NULL;
    d->compare_budget = 64 * (long long)body.len + (1 << 20);
    if (read_key_groups(d, groups) < 0) {
        goto done;
    }
    if (decoder_init(d) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    Reader r = {(const uint8_t *)body.buf, (const uint8_t *)body.buf + body.len};
    while (r.p < r.end) {
        uint32_t field;
        int wt;
        Reader inner;
        if (read_tag(&r, &field, &wt) < 0) {
            d->st.failed = 1;
            break;
        }
        if (field == 1) {
            if (wt != WT_LEN || read_len(&r, &inner) < 0) {
                d->st.failed = 1;
                break;
            }
            if (read_resource_spans(d, inner) < 0) break;
        } else if (skip_field(&r, wt) < 0) {
            d->st.failed = 1;
            break;
        }
    }
    if (d->st.no_memory) {
        PyErr_NoMemory();
        goto done;
    }
    if (d->st.failed) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = Py_BuildValue(
        "{s:L,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N,"
        "s:N,s:N,s:N,s:N,s:N,s:N,s:N,s:N}",
        "count", d->n_spans,
        "Timestamp", bytes_of(&d->timestamp),
        "Duration", bytes_of(&d->duration),
        "TraceId", string_column(&d->trace_id),
        "SpanId", string_column(&d->span_id),
        "ParentSpanId", string_column(&d->parent_span_id),
        "TraceState", string_column(&d->trace_state),
        "SpanName", string_column(&d->span_name),
        "SpanKind", string_column(&d->span_kind),
        "ServiceName", string_column(&d->service_name),
        "ResourceAttributes", map_column(&d->resource_attributes),
        "ScopeName", string_column(&d->scope_name),
        "ScopeVersion", string_column(&d->scope_version),
        "SpanAttributes", map_column(&d->span_attributes),
        "StatusCode", string_column(&d->status_code),
        "StatusMessage", string_column(&d->status_message),
        "Events", bytes_of(&d->events_offsets),
        "Events.Timestamp", bytes_of(&d->events_timestamp),
        "Events.Name", string_column(&d->events_name),
        "Events.Attributes", map_column(&d->events_attributes),
        "Links", bytes_of(&d->links_offsets),
        "Links.TraceId", string_column(&d->links_trace_id),
        "Links.SpanId", string_column(&d->links_span_id),
        "Links.TraceState", string_column(&d->links_trace_state),
        "Links.Attributes", map_column(&d->links_attributes),
        "price_index", bytes_of(&d->price_index),
        "input_tokens", bytes_of(&d->input_tokens),
        "output_tokens", bytes_of(&d->output_tokens),
        "cache_read_tokens", bytes_of(&d->cache_read_tokens),
        "cache_write_tokens", bytes_of(&d->cache_write_tokens),
        "price_pairs", price_pairs(d));
done:
    decoder_free(d);
    free(d);
    PyBuffer_Release(&body);
    return result;
}

static PyMethodDef methods[] = {
    {"decode_traces", decode_traces, METH_VARARGS, decode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_otlp_native",
    "Native OTLP trace decoding for the collector (see _native_rows.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__otlp_native(void) {
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1) {
        PyErr_SetString(PyExc_ImportError, "the native OTLP decoder supports little-endian hosts only");
        return NULL;
    }
    return PyModule_Create(&module_def);
}
