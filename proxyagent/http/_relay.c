/* The sidecar's native relay: the common HTTP/1.1 exchange in C (ADR 013).
 *
 * A client connection starts here. While its requests are plain (a known
 * method, origin-form target, HTTP/1.1, no body or a Content-Length body of
 * at most MAX_FAST_BODY bytes, no upgrade, no Expect, no Transfer-Encoding,
 * every byte of the head inside a strict grammar) this module parses them,
 * writes them to a pooled upstream connection, parses the response (any
 * framing: Content-Length, chunked, close-delimited, interim 1xx), writes it
 * down and asks Python once at the start (routing) and once at the end
 * (metrics and the span) of each exchange.
 *
 * The first request that is not plain hands the whole connection, at that
 * request boundary and with its unread bytes, to the Python path
 * (DownstreamConnection), which refuses what is malformed and relays what is
 * merely unusual. Nothing ambiguous is ever decided here: the grammar below
 * only ever accepts a subset of what llhttp in strict mode accepts.
 *
 * Everything runs on the event loop's thread, holding the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define MAX_FAST_BODY (64 * 1024)
#define MAX_HEAD (16 * 1024)
#define MAX_HEADERS 64           /* a request with more goes to the Python path */
#define MAX_RESPONSE_HEADERS 512 /* a response with more is refused (502) */
#define MAX_TOKENS 64
#define MAX_IDLE_PER_HOST 64
#define MAX_PENDING_INPUT (64 * 1024 + MAX_HEAD)
#define MAX_RESPONSE_HEAD (64 * 1024)
#define MAX_CHUNK_LINE 1024
#define MAX_HOPS 8

/* ------------------------------------------------------------------ */
/* Interned names                                                      */

static PyObject *s_write, *s_close, *s_pause_reading, *s_resume_reading, *s_call_at, *s_cancel, *s_add,
    *s_discard, *s_start, *s_finish, *s_fallback, *s_connection_made, *s_data_received,
    *s_eof_received, *s_connection_lost, *s_pause_writing, *s_resume_writing, *s_is_closing, *s_on_timer,
    *s_tls_peer, *s_abort, *s_span_extra, *s_empty;

/* ------------------------------------------------------------------ */
/* Growable byte buffer                                                */

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra) cap *= 2;
    char *data = PyMem_Realloc(b->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int buf_add(Buf *b, const char *p, Py_ssize_t n) {
    if (n <= 0) return 0;
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, p, (size_t)n);
    b->len += n;
    return 0;
}

#define BUF_LIT(b, s) buf_add((b), (s), (Py_ssize_t)(sizeof(s) - 1))

static int buf_add_bytes(Buf *b, PyObject *bytes) {
    return buf_add(b, PyBytes_AS_STRING(bytes), PyBytes_GET_SIZE(bytes));
}

static int buf_add_dec(Buf *b, long long v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", v);
    return buf_add(b, tmp, n);
}

static int buf_add_hex(Buf *b, unsigned long long v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%llx", v);
    return buf_add(b, tmp, n);
}

static void buf_consume(Buf *b, Py_ssize_t n) {
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, (size_t)(b->len - n));
    b->len -= n;
}

static void buf_free(Buf *b) {
    PyMem_Free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Drop a large buffer's memory once it is empty, so an idle connection holds little. */
static void buf_shrink(Buf *b) {
    if (b->len == 0 && b->cap > 64 * 1024) buf_free(b);
}

/* ------------------------------------------------------------------ */
/* Clocks and ids                                                      */

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long long wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* xoshiro256**: ids must be unique, not secret (as in OpenTelemetry's own generator). */
static uint64_t rng_state[4];

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(void) {
    uint64_t *s = rng_state;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void rng_seed(void) {
    if (getrandom(rng_state, sizeof rng_state, 0) != (ssize_t)sizeof rng_state) {
        uint64_t x = (uint64_t)wall_ns() ^ ((uint64_t)getpid() << 32);
        for (int i = 0; i < 4; i++) {
            x += 0x9E3779B97F4A7C15ULL;
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
            rng_state[i] = z ^ (z >> 31);
        }
    }
}

static const char HEX[] = "0123456789abcdef";

static void hex64(char *out, uint64_t v) {
    for (int i = 15; i >= 0; i--) {
        out[i] = HEX[v & 15];
        v >>= 4;
    }
}

static void new_span_id(char out[16]) {
    uint64_t v;
    do v = rng_next();
    while (v == 0);
    hex64(out, v);
}

/* ------------------------------------------------------------------ */
/* Character classes (RFC 9110)                                        */

static unsigned char TCHAR[256];
static unsigned char FIELD_VCHAR[256]; /* allowed inside a field value: HTAB, SP, VCHAR, obs-text */
static unsigned char TARGET_CHAR[256];

static void init_tables(void) {
    const char *extra = "!#$%&'*+-.^_`|~";
    for (int c = '0'; c <= '9'; c++) TCHAR[c] = 1;
    for (int c = 'a'; c <= 'z'; c++) TCHAR[c] = 1;
    for (int c = 'A'; c <= 'Z'; c++) TCHAR[c] = 1;
    for (const char *p = extra; *p; p++) TCHAR[(unsigned char)*p] = 1;
    FIELD_VCHAR['\t'] = 1;
    for (int c = 0x20; c <= 0x7e; c++) FIELD_VCHAR[c] = 1;
    for (int c = 0x80; c <= 0xff; c++) FIELD_VCHAR[c] = 1;
    for (int c = 0x21; c <= 0x7e; c++) TARGET_CHAR[c] = 1;
}

static int lower_eq(const char *p, Py_ssize_t n, const char *lit) {
    size_t m = strlen(lit);
    if ((size_t)n != m) return 0;
    for (size_t i = 0; i < m; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        if (c != lit[i]) return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ */
/* Header names the relay reads or drops                               */

enum {
    H_OTHER = 0,
    H_HOST,
    H_CONNECTION,
    H_CONTENT_LENGTH,
    H_TRANSFER_ENCODING,
    H_UPGRADE,
    H_EXPECT,
    H_TRACEPARENT,
    H_HOPS,
    H_SOURCE,
    H_PROXY_CONNECTION, /* llhttp reads it as Connection */
    H_HOP_BY_HOP,       /* keep-alive, proxy-authenticate, proxy-authorization, te, trailer */
};

static int header_kind(const char *p, Py_ssize_t n) {
    switch (n) {
    case 2:
        return lower_eq(p, n, "te") ? H_HOP_BY_HOP : H_OTHER;
    case 4:
        return lower_eq(p, n, "host") ? H_HOST : H_OTHER;
    case 6:
        return lower_eq(p, n, "expect") ? H_EXPECT : H_OTHER;
    case 7:
        if (lower_eq(p, n, "upgrade")) return H_UPGRADE;
        if (lower_eq(p, n, "trailer")) return H_HOP_BY_HOP;
        return H_OTHER;
    case 10:
        if (lower_eq(p, n, "connection")) return H_CONNECTION;
        if (lower_eq(p, n, "keep-alive")) return H_HOP_BY_HOP;
        return H_OTHER;
    case 11:
        if (lower_eq(p, n, "traceparent")) return H_TRACEPARENT;
        if (lower_eq(p, n, "x-mesh-hops")) return H_HOPS;
        return H_OTHER;
    case 14:
        return lower_eq(p, n, "content-length") ? H_CONTENT_LENGTH : H_OTHER;
    case 16:
        return lower_eq(p, n, "proxy-connection") ? H_PROXY_CONNECTION : H_OTHER;
    case 17:
        return lower_eq(p, n, "transfer-encoding") ? H_TRANSFER_ENCODING : H_OTHER;
    case 18:
        return lower_eq(p, n, "proxy-authenticate") ? H_HOP_BY_HOP : H_OTHER;
    case 19:
        return lower_eq(p, n, "proxy-authorization") ? H_HOP_BY_HOP : H_OTHER;
    case 22:
        return lower_eq(p, n, "x-mesh-source-workload") ? H_SOURCE : H_OTHER;
    default:
        return H_OTHER;
    }
}

typedef struct {
    Py_ssize_t name, name_len, value, value_len;
    int kind;
} Field;

/* The tokens of Connection headers: keep-alive flags, and the names of further headers to drop
 * (pointing into the head they came from). */
typedef struct {
    int n;
    int close;
    int keep_alive;
    int upgrade;
    struct {
        const char *name;
        Py_ssize_t len;
    } names[MAX_TOKENS];
} Tokens;

static int ieq(const char *a, const char *b, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = (char)(x + 32);
        if (y >= 'A' && y <= 'Z') y = (char)(y + 32);
        if (x != y) return 0;
    }
    return 1;
}

/* Adds one Connection value's tokens; returns -1 when there are more than we track. */
static int add_tokens(Tokens *t, const char *p, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        while (i < n && (p[i] == ',' || p[i] == ' ' || p[i] == '\t')) i++;
        Py_ssize_t start = i;
        while (i < n && p[i] != ',') i++;
        Py_ssize_t end = i;
        while (end > start && (p[end - 1] == ' ' || p[end - 1] == '\t')) end--;
        Py_ssize_t len = end - start;
        if (len == 0) continue;
        if (lower_eq(p + start, len, "close")) {
            t->close = 1;
            continue;
        }
        if (lower_eq(p + start, len, "keep-alive")) {
            t->keep_alive = 1;
            continue;
        }
        if (lower_eq(p + start, len, "upgrade")) t->upgrade = 1;
        /* A Connection header may not drop the framing or the Host: that would change the message. */
        if (lower_eq(p + start, len, "content-length") || lower_eq(p + start, len, "host")) continue;
        if (t->n >= MAX_TOKENS) return -1;
        t->names[t->n].name = p + start;
        t->names[t->n].len = len;
        t->n++;
    }
    return 0;
}

static int named_by(const Tokens *t, const char *p, Py_ssize_t n) {
    for (int i = 0; i < t->n; i++) {
        if (t->names[i].len == n && ieq(p, t->names[i].name, n)) return 1;
    }
    return 0;
}

/* Parses "name: value\r\n" lines from p[start] up to the blank line at head_end (the index of its
 * CR). Returns 0, or -1 when a line is outside the grammar we relay natively. */
static int parse_fields(const char *p, Py_ssize_t start, Py_ssize_t head_end, Field *fields, int max, int *count) {
    Py_ssize_t i = start;
    int n = 0;
    while (i < head_end) {
        Py_ssize_t name = i;
        while (i < head_end && TCHAR[(unsigned char)p[i]]) i++;
        if (i == name || i >= head_end || p[i] != ':') return -1; /* obs-fold, whitespace in a name, ... */
        Py_ssize_t name_len = i - name;
        i++;
        while (i < head_end && (p[i] == ' ' || p[i] == '\t')) i++;
        Py_ssize_t value = i;
        while (i < head_end && FIELD_VCHAR[(unsigned char)p[i]]) i++;
        if (p[i] != '\r' || p[i + 1] != '\n') return -1; /* NUL, bare CR or LF, ... */
        Py_ssize_t end = i;
        while (end > value && (p[end - 1] == ' ' || p[end - 1] == '\t')) end--;
        if (n >= max) return -1;
        fields[n].name = name;
        fields[n].name_len = name_len;
        fields[n].value = value;
        fields[n].value_len = end - value;
        fields[n].kind = header_kind(p + name, name_len);
        n++;
        i += 2;
    }
    *count = n;
    return 0;
}

/* A decimal number of at most 15 significant digits (leading zeros aside). */
static int parse_digits(const char *p, Py_ssize_t n, long long *out) {
    if (n < 1) return -1;
    long long v = 0;
    int significant = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        if (v > 0 || p[i] != '0') significant++;
        if (significant > 15) return -1;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 0;
}

static Py_ssize_t find_head_end(const char *p, Py_ssize_t from, Py_ssize_t len) {
    /* The index just past "\r\n\r\n", or -1. */
    Py_ssize_t i = from < 3 ? 0 : from - 3;
    while (i + 3 < len) {
        const char *cr = memchr(p + i, '\r', (size_t)(len - i - 3));
        if (cr == NULL) return -1;
        i = cr - p;
        if (p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n') return i + 4;
        i++;
    }
    return -1;
}

/* ------------------------------------------------------------------ */
/* Types                                                               */

typedef struct {
    PyObject_HEAD
    PyObject *bridge;      /* proxyagent.http.native_relay.NativeRelay */
    PyObject *loop;
    PyObject *connections; /* the proxy's set of open client connections (drain closes them) */
    PyObject *idle;        /* (host, port) -> list of idle Upstream */
    PyObject *via_line;    /* b"via: 1.1 <agent>\r\n" */
    double idle_timeout;
    double sampling;
    /* Exchanges the bridge holds waiting for a connection (coalesced connects): while any wait, a
     * released connection is offered to the bridge before it goes idle. */
    Py_ssize_t waiters;
    /* An inbound relay: the upstream is the local app, whose response must not speak for the mesh
     * (x-mesh-error and x-mesh-policy are dropped from it, and never read as a denial). */
    int inbound;
    /* close_idle ran (the agent is stopping): a connection released later is closed, not pooled. */
    int stopped;
    /* Spans, encoded here as ScopeSpans.spans entries and taken in batches by the exporter. */
    PyObject *exporter;    /* telemetry.SpanExporter, or None: no spans */
    PyObject *blocks;      /* (edge, span_extra, method, status, mesh error) -> (span name, attributes) */
    int span_kind;
    Buf spans;
    Py_ssize_t span_count;
    Py_ssize_t span_batch;
    Py_ssize_t span_max;
    long long spans_dropped;
} Relay;

struct Upstream;

enum { R_HEAD, R_LENGTH, R_CLOSE_DELIMITED, R_CHUNK_SIZE, R_CHUNK_DATA, R_CHUNK_CRLF, R_TRAILER, R_DONE };

typedef struct Client {
    PyObject_HEAD
    Relay *relay;
    PyObject *transport;
    PyObject *slow; /* the Python DownstreamConnection this connection was handed to */
    PyObject *peer; /* str: the caller's SPIFFE id on a mutual TLS connection, "" on plaintext */
    PyObject *timer;
    double timer_at;
    Buf in;
    int closed;
    int eof;
    int reading_paused;
    int write_paused;
    int starting; /* inside client_try_start: an exchange that ends at once must not start the next itself */
    double last_done;
    unsigned long long gen;
    /* The exchange in progress, if active. */
    int active;
    PyObject *target;     /* the router's Target */
    PyObject *key;        /* pool key (host, port) */
    PyObject *host;       /* str */
    PyObject *port;       /* int */
    PyObject *raw_target; /* the request target as received (for the span) */
    PyObject *request;    /* bytes sent upstream: head and body */
    struct Upstream *up;
    char method[8];
    int method_len;
    int retryable;
    int req_keep;
    char trace_id[32];
    char span_id[16];
    char parent_id[16];
    int has_parent;
    int sampled;
    double started;
    long long started_ns;
    double timeout;
    double deadline;
    double last_data;
    long long request_bytes;
    long long response_bytes;
    int connecting;
    int retried;
    int got_bytes;
    int answered;
    int head_sent;
    int status;
    /* The callee's sidecar refused the request (403 with x-mesh-error: denied): counted on this edge. */
    int denied;
    /* The response parser. */
    int rstate;
    Buf rhead;
    Buf line;
    long long remaining;
    int crlf_seen;
    int head_only;
    int keep;
    int up_keep;
    int junk;
    Buf out;
} Client;

typedef struct Upstream {
    PyObject_HEAD
    Relay *relay;
    PyObject *transport;
    PyObject *key;
    Client *client;
    int reused;
    int closed;
} Upstream;

static PyTypeObject RelayType;
static PyTypeObject ClientType;
static PyTypeObject UpstreamType;

static const double NEVER = 1e300;

/* ------------------------------------------------------------------ */
/* Small helpers around Python calls                                   */

static void report(const char *where) {
    /* A bug of ours, or a failed allocation: print it as unraisable and carry on with the next request. */
    if (!PyErr_Occurred()) return;
    PyObject *context = PyUnicode_FromString(where);
    PyErr_WriteUnraisable(context);
    Py_XDECREF(context);
}

/* The headers with which the mesh answers for itself (mesh_errors.py): an app's own are not passed on. */
static int is_mesh_marker(const char *name, Py_ssize_t n) {
    return (n == 12 && lower_eq(name, 12, "x-mesh-error")) || (n == 13 && lower_eq(name, 13, "x-mesh-policy"));
}

static int call_method1(PyObject *obj, PyObject *name, PyObject *arg) {
    PyObject *args[2] = {obj, arg};
    PyObject *r = PyObject_VectorcallMethod(name, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

static int call_method0(PyObject *obj, PyObject *name) {
    PyObject *args[1] = {obj};
    PyObject *r = PyObject_VectorcallMethod(name, args, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

static int transport_write(PyObject *transport, const char *p, Py_ssize_t n) {
    PyObject *bytes = PyBytes_FromStringAndSize(p, n);
    if (bytes == NULL) return -1;
    int rc = call_method1(transport, s_write, bytes);
    Py_DECREF(bytes);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Upstream connections and the pool                                   */

static void upstream_close(Upstream *u) {
    u->closed = 1;
    Client *c = u->client;
    u->client = NULL;
    Py_XDECREF(c);
    if (u->transport != NULL) {
        if (call_method0(u->transport, s_close) < 0) PyErr_Clear();
    }
}

static Upstream *pool_take(Relay *relay, PyObject *key) {
    PyObject *idle = PyDict_GetItemWithError(relay->idle, key);
    if (idle == NULL) {
        PyErr_Clear();
        return NULL;
    }
    while (PyList_GET_SIZE(idle) > 0) {
        Py_ssize_t last = PyList_GET_SIZE(idle) - 1;
        Upstream *u = (Upstream *)PyList_GET_ITEM(idle, last);
        Py_INCREF(u);
        if (PyList_SetSlice(idle, last, last + 1, NULL) < 0) {
            Py_DECREF(u);
            PyErr_Clear();
            return NULL;
        }
        if (!u->closed && u->transport != NULL) {
            PyObject *closing = PyObject_CallMethodNoArgs(u->transport, s_is_closing);
            int is_closing = closing == NULL ? 1 : PyObject_IsTrue(closing);
            Py_XDECREF(closing);
            PyErr_Clear();
            if (!is_closing) {
                u->reused = 1;
                return u;
            }
        }
        Py_DECREF(u);
    }
    return NULL;
}

static void pool_release(Relay *relay, Upstream *u) {
    Client *c = u->client;
    u->client = NULL;
    Py_XDECREF(c);
    if (u->closed || u->transport == NULL || relay->stopped) {
        upstream_close(u);
        return;
    }
    if (relay->waiters > 0) {
        /* An exchange is waiting for a connection to this key, perhaps: it goes on with this one. */
        u->reused = 1;
        PyObject *taken = PyObject_CallMethod(relay->bridge, "released", "OO", u->key, (PyObject *)u);
        if (taken == NULL) {
            report("handing a connection to a waiting exchange");
        } else {
            int yes = taken == Py_True;
            Py_DECREF(taken);
            if (yes) return;
        }
    }
    PyObject *idle = PyDict_GetItemWithError(relay->idle, u->key);
    if (idle == NULL) {
        if (PyErr_Occurred()) PyErr_Clear();
        idle = PyList_New(0);
        if (idle == NULL || PyDict_SetItem(relay->idle, u->key, idle) < 0) {
            Py_XDECREF(idle);
            PyErr_Clear();
            upstream_close(u);
            return;
        }
        Py_DECREF(idle); /* the dict holds it */
    }
    if (PyList_GET_SIZE(idle) >= MAX_IDLE_PER_HOST || PyList_Append(idle, (PyObject *)u) < 0) {
        PyErr_Clear();
        upstream_close(u);
    }
}

static void pool_forget(Relay *relay, Upstream *u) {
    if (relay == NULL || u->key == NULL) return;
    PyObject *idle = PyDict_GetItemWithError(relay->idle, u->key);
    if (idle == NULL) {
        PyErr_Clear();
        return;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(idle); i++) {
        if (PyList_GET_ITEM(idle, i) == (PyObject *)u) {
            if (PyList_SetSlice(idle, i, i + 1, NULL) < 0) PyErr_Clear();
            return;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Client: forward declarations                                        */

static void client_close(Client *c);
static void client_try_start(Client *c);
static void client_fail(Client *c, const char *code, int status, PyObject *detail);
static void client_arm(Client *c, double when);
static int client_ready(Client *c);

/* ------------------------------------------------------------------ */
/* Client: reading control                                             */

enum { PAUSE_PIPELINE = 1, PAUSE_CONNECT = 2 };

static void client_pause(Client *c, int reason) {
    if (!c->reading_paused && !c->closed && c->transport != NULL) {
        if (call_method0(c->transport, s_pause_reading) < 0) PyErr_Clear();
    }
    c->reading_paused |= reason;
}

static void client_resume(Client *c, int reason) {
    if (!(c->reading_paused & reason)) return;
    c->reading_paused &= ~reason;
    if (!c->reading_paused && !c->closed && c->transport != NULL) {
        if (call_method0(c->transport, s_resume_reading) < 0) PyErr_Clear();
    }
}

static void client_write(Client *c, const char *p, Py_ssize_t n) {
    if (c->closed || c->transport == NULL || n <= 0) return;
    if (transport_write(c->transport, p, n) < 0) report("writing to a client connection");
}

/* ------------------------------------------------------------------ */
/* Client: the end of an exchange                                      */

static void drop_upstream(Client *c) {
    Upstream *u = c->up;
    c->up = NULL;
    if (u != NULL) {
        upstream_close(u);
        Py_DECREF(u);
    }
}


/* ------------------------------------------------------------------ */
/* Spans (OTLP protobuf, as otlp_wire.encode_span writes them)         */

static int buf_add_varint(Buf *b, unsigned long long v) {
    char tmp[10];
    int n = 0;
    while (v > 0x7f) {
        tmp[n++] = (char)((v & 0x7f) | 0x80);
        v >>= 7;
    }
    tmp[n++] = (char)v;
    return buf_add(b, tmp, n);
}

static int buf_add_fixed64(Buf *b, unsigned long long v) {
    char tmp[8];
    for (int i = 0; i < 8; i++) tmp[i] = (char)((v >> (8 * i)) & 0xff);
    return buf_add(b, tmp, 8);
}

static int unhex(const char *hex, int n, char *out) {
    for (int i = 0; i < n; i++) {
        int hi = hex[2 * i], lo = hex[2 * i + 1];
        hi = hi <= '9' ? hi - '0' : hi - 'a' + 10;
        lo = lo <= '9' ? lo - '0' : lo - 'a' + 10;
        out[i] = (char)(hi * 16 + lo);
    }
    return 0;
}

/* (span name, attribute block) for the parts of a span that repeat, from the bridge once per kind. */
static PyObject *span_block(Client *c, const char *mesh_error) {
    Relay *r = c->relay;
    PyObject *method = PyBytes_FromStringAndSize(c->method, c->method_len);
    PyObject *error = mesh_error ? PyUnicode_FromString(mesh_error) : Py_NewRef(Py_None);
    /* Keyed by the target's edge and its own attributes (the caller's principal), not the target: a
     * Target compares by value and is not hashable. */
    PyObject *edge = PyObject_GetAttrString(c->target, "edge");
    PyObject *extra = edge ? PyObject_GetAttr(c->target, s_span_extra) : NULL;
    PyObject *key =
        (method && error && extra) ? Py_BuildValue("(OOOiO)", edge, extra, method, c->status, error) : NULL;
    Py_XDECREF(edge);
    Py_XDECREF(extra);
    PyObject *block = NULL;
    if (key != NULL) {
        block = PyDict_GetItemWithError(r->blocks, key);
        if (block != NULL) {
            Py_INCREF(block);
        } else if (!PyErr_Occurred()) {
            block = PyObject_CallMethod(r->bridge, "span_block", "OOiO", c->target, method, c->status, error);
            if (block != NULL && (!PyTuple_Check(block) || PyTuple_GET_SIZE(block) != 2 ||
                                  !PyBytes_Check(PyTuple_GET_ITEM(block, 0)) ||
                                  !PyBytes_Check(PyTuple_GET_ITEM(block, 1)))) {
                Py_CLEAR(block);
                PyErr_SetString(PyExc_TypeError, "span_block must return (bytes, bytes)");
            }
            if (block != NULL) {
                if (PyDict_GET_SIZE(r->blocks) >= 4096) PyDict_Clear(r->blocks);
                if (PyDict_SetItem(r->blocks, key, block) < 0) PyErr_Clear();
            }
        }
    }
    Py_XDECREF(method);
    Py_XDECREF(error);
    Py_XDECREF(key);
    return block;
}

static void record_span(Client *c, const char *mesh_error, long long end_ns) {
    Relay *r = c->relay;
    if (r->exporter == Py_None || !c->sampled || !c->status) return;
    if (r->span_count >= r->span_max) {
        r->spans_dropped++; /* telemetry must never slow down or break the traffic it describes */
        return;
    }
    PyObject *block = span_block(c, mesh_error);
    if (block == NULL) {
        report("encoding a span");
        return;
    }
    PyObject *name = PyTuple_GET_ITEM(block, 0);
    PyObject *attributes = PyTuple_GET_ITEM(block, 1);
    const char *path = PyBytes_AS_STRING(c->raw_target);
    Py_ssize_t path_len = PyBytes_GET_SIZE(c->raw_target);
    const char *query = memchr(path, '?', (size_t)path_len);
    if (query != NULL) path_len = query - path;
    /* url.path: Span.attributes(9) { key(1) "url.path", value(2) AnyValue { string_value(1) path } } */
    Py_ssize_t any_len = 1 + (path_len < 0x80 ? 1 : path_len < 0x4000 ? 2 : 3) + path_len;
    Py_ssize_t kv_len = 10 + 1 + (any_len < 0x80 ? 1 : any_len < 0x4000 ? 2 : 3) + any_len;
    char ids[40];
    unhex(c->trace_id, 16, ids);
    unhex(c->span_id, 8, ids + 16);
    if (c->has_parent) unhex(c->parent_id, 8, ids + 24);
    Buf span = {0};
    int fail = BUF_LIT(&span, "\x0a\x10") < 0 || buf_add(&span, ids, 16) < 0 || BUF_LIT(&span, "\x12\x08") < 0 ||
               buf_add(&span, ids + 16, 8) < 0;
    if (!fail && c->has_parent) fail = BUF_LIT(&span, "\x22\x08") < 0 || buf_add(&span, ids + 24, 8) < 0;
    fail = fail || BUF_LIT(&span, "\x2a") < 0 || buf_add_varint(&span, (unsigned long long)PyBytes_GET_SIZE(name)) < 0 ||
           buf_add_bytes(&span, name) < 0 || BUF_LIT(&span, "\x30") < 0 ||
           buf_add_varint(&span, (unsigned long long)r->span_kind) < 0 || BUF_LIT(&span, "\x39") < 0 ||
           buf_add_fixed64(&span, (unsigned long long)c->started_ns) < 0 || BUF_LIT(&span, "\x41") < 0 ||
           buf_add_fixed64(&span, (unsigned long long)end_ns) < 0 || buf_add_bytes(&span, attributes) < 0 ||
           BUF_LIT(&span, "\x4a") < 0 || buf_add_varint(&span, (unsigned long long)kv_len) < 0 ||
           BUF_LIT(&span, "\x0a\x08url.path\x12") < 0 || buf_add_varint(&span, (unsigned long long)any_len) < 0 ||
           BUF_LIT(&span, "\x0a") < 0 || buf_add_varint(&span, (unsigned long long)path_len) < 0 ||
           buf_add(&span, path, path_len) < 0;
    if (!fail && c->status >= 500) fail = BUF_LIT(&span, "\x7a\x02\x18\x02") < 0;
    /* The entry as ScopeSpans.spans (field 2) frames it, reserved first: a half-written entry would
     * corrupt every batch after it. */
    fail = fail || buf_reserve(&r->spans, 1 + 10 + span.len) < 0 || BUF_LIT(&r->spans, "\x12") < 0 || buf_add_varint(&r->spans, (unsigned long long)span.len) < 0 ||
           buf_add(&r->spans, span.data, span.len) < 0;
    buf_free(&span);
    Py_DECREF(block);
    if (fail) {
        report("encoding a span");
        return;
    }
    r->span_count++;
    if (r->span_count == r->span_batch) {
        /* A batch is ready: wake the exporter (once per batch, not per span). */
        PyObject *done = PyObject_CallMethod(r->exporter, "wake", NULL);
        if (done == NULL) report("waking the span exporter");
        Py_XDECREF(done);
    }
}

/* Bookkeeping, once per exchange: in-flight counts, balancer and metrics (in Python), and the span. */
static void client_finish(Client *c, const char *mesh_error) {
    if (!c->active) return;
    c->active = 0;
    c->gen++;
    c->deadline = NEVER;
    c->connecting = 0;
    double elapsed = monotonic() - c->started;
    record_span(c, mesh_error, c->started_ns + (long long)(elapsed * 1e9));
    PyObject *args[7] = {c->relay->bridge, c->target, PyLong_FromLong(c->status), PyFloat_FromDouble(elapsed),
                         PyLong_FromLongLong(c->request_bytes), PyLong_FromLongLong(c->response_bytes),
                         c->denied ? Py_True : Py_False};
    PyObject *r = NULL;
    if (args[2] && args[3] && args[4] && args[5])
        r = PyObject_VectorcallMethod(s_finish, args, 7 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL) report("recording a finished request");
    Py_XDECREF(r);
    for (int i = 2; i < 6; i++) Py_XDECREF(args[i]);
    Py_CLEAR(c->target);
    Py_CLEAR(c->key);
    Py_CLEAR(c->host);
    Py_CLEAR(c->port);
    Py_CLEAR(c->raw_target);
    Py_CLEAR(c->request);
    c->rhead.len = 0;
    c->line.len = 0;
    c->out.len = 0;
    buf_shrink(&c->rhead);
    buf_shrink(&c->out);
}

/* The exchange is over and the connection may go on: the next pipelined request, or idle. */
static void client_next(Client *c, int keep) {
    if (!keep || c->closed) {
        client_close(c);
        return;
    }
    c->last_done = monotonic();
    client_resume(c, PAUSE_PIPELINE);
    if (c->in.len > 0) {
        /* Inside client_try_start its loop goes on with the next request; recursing here instead
         * would nest one call per pipelined request that fails at once. */
        if (!c->starting) client_try_start(c);
        return;
    }
    buf_shrink(&c->in);
    if (c->eof) client_close(c);
}

static void client_complete(Client *c) {
    Upstream *u = c->up;
    c->up = NULL;
    if (u != NULL) {
        if (c->write_paused && u->transport != NULL && !u->closed) {
            if (call_method0(u->transport, s_resume_reading) < 0) PyErr_Clear();
        }
        if (c->up_keep && !c->junk) {
            pool_release(c->relay, u);
        } else {
            upstream_close(u);
        }
        Py_DECREF(u);
    }
    int keep = c->keep;
    client_finish(c, NULL);
    client_next(c, keep);
}

/* The response head is out but its body cannot be finished: a truncated body, then close. */
static void client_cut_short(Client *c) {
    drop_upstream(c);
    client_finish(c, NULL);
    client_close(c);
}

/* A mesh error: answer it if nothing was answered yet, else cut the response short. */
static void client_fail(Client *c, const char *code, int status, PyObject *detail) {
    if (!c->active) return;
    drop_upstream(c);
    if (c->answered) {
        PyObject *r = PyObject_CallMethod(c->relay->bridge, "count_error", "s", code);
        if (r == NULL) report("counting a mesh error");
        Py_XDECREF(r);
        client_cut_short(c);
        return;
    }
    int keep = c->req_keep;
    PyObject *response = PyObject_CallMethod(c->relay->bridge, "error", "OsOO", c->target, code,
                                             detail ? detail : Py_None, keep ? Py_True : Py_False);
    if (response == NULL || !PyBytes_Check(response)) {
        report("answering a mesh error");
        Py_XDECREF(response);
        keep = 0;
    } else {
        client_write(c, PyBytes_AS_STRING(response), PyBytes_GET_SIZE(response));
        Py_DECREF(response);
    }
    c->status = status;
    c->answered = 1;
    client_finish(c, code);
    client_next(c, keep);
}

/* ------------------------------------------------------------------ */
/* Client: the response                                                */

/* Writes the client's response head from the upstream's; returns -1 (with *why) for a response we
 * cannot relay. */
/* One array for every response head: it is only used while the GIL is held, without calling Python. */
static Field response_fields[MAX_RESPONSE_HEADERS];

static int response_head(Client *c, const char *p, Py_ssize_t head_len, const char **why) {
    /* Status line: HTTP/1.x SP 3DIGIT [SP reason] CRLF */
    if (head_len < 14 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ') {
        *why = "malformed response: bad status line";
        return -1;
    }
    int http11 = p[7] == '1';
    if (p[9] < '0' || p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9') {
        *why = "malformed response: bad status code";
        return -1;
    }
    int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    Py_ssize_t i = 12;
    Py_ssize_t reason = i, reason_len = 0;
    if (p[i] == ' ') {
        i++;
        reason = i;
        while (i < head_len && FIELD_VCHAR[(unsigned char)p[i]]) i++;
        reason_len = i - reason;
    }
    if (i + 1 >= head_len || p[i] != '\r' || p[i + 1] != '\n') {
        *why = "malformed response: bad status line";
        return -1;
    }
    if (status >= 100 && status < 200) {
        if (status == 101) {
            *why = "upstream switched protocols without an upgrade request";
            return -1;
        }
        return 1; /* interim (100 Continue, 103 Early Hints): skipped */
    }
    Field *fields = response_fields;
    int n = 0;
    if (parse_fields(p, i + 2, head_len - 2, fields, MAX_RESPONSE_HEADERS, &n) < 0) {
        *why = "malformed response: bad header line, or too many";
        return -1;
    }
    Tokens tokens = {0}, proxy_tokens = {0};
    int chunked = 0, have_length = 0, denied = 0;
    long long length = 0;
    for (int k = 0; k < n; k++) {
        const char *v = p + fields[k].value;
        Py_ssize_t vn = fields[k].value_len;
        switch (fields[k].kind) {
        case H_CONNECTION:
        case H_PROXY_CONNECTION:
            if (add_tokens(fields[k].kind == H_CONNECTION ? &tokens : &proxy_tokens, v, vn) < 0) {
                *why = "malformed response: too many Connection tokens";
                return -1;
            }
            break;
        case H_CONTENT_LENGTH: {
            long long value;
            if (parse_digits(v, vn, &value) < 0 || (have_length && value != length)) {
                *why = "malformed response: bad Content-Length";
                return -1;
            }
            have_length = 1;
            length = value;
            break;
        }
        case H_TRANSFER_ENCODING:
            if (chunked || !lower_eq(v, vn, "chunked")) {
                *why = "unsupported response framing: only 'Transfer-Encoding: chunked' is supported";
                return -1;
            }
            chunked = 1;
            break;
        default:
            if (!c->relay->inbound && status == 403 && fields[k].name_len == 12 &&
                lower_eq(p + fields[k].name, 12, "x-mesh-error") && lower_eq(v, vn, "denied"))
                denied = 1;
            break;
        }
    }
    if (chunked && have_length) {
        *why = "malformed response: both Content-Length and Transfer-Encoding";
        return -1;
    }
    int head_only = c->head_only;
    int has_body = !(head_only || status == 204 || status == 304 || (have_length && length == 0));
    int close_delimited = has_body && !chunked && !have_length;
    /* Proxy-Connection counts as Connection for keep-alive, as llhttp reads it. */
    int close = tokens.close || proxy_tokens.close, keep_alive = tokens.keep_alive || proxy_tokens.keep_alive;
    int upstream_keep = (http11 ? !close : keep_alive) && !close_delimited;
    c->up_keep = upstream_keep && !head_only;
    c->keep = c->req_keep && upstream_keep;
    c->status = status;
    c->denied = denied;
    /* The head: status line, end-to-end headers, via, our framing. */
    Buf *out = &c->out;
    if (BUF_LIT(out, "HTTP/1.1 ") < 0 || buf_add(out, p + 9, 3) < 0 || BUF_LIT(out, " ") < 0 ||
        buf_add(out, p + reason, reason_len) < 0 || BUF_LIT(out, "\r\n") < 0)
        return -2;
    for (int k = 0; k < n; k++) {
        int kind = fields[k].kind;
        if (kind == H_CONNECTION || kind == H_CONTENT_LENGTH || kind == H_TRANSFER_ENCODING || kind == H_UPGRADE ||
            kind == H_HOP_BY_HOP || kind == H_PROXY_CONNECTION)
            continue;
        if (tokens.n && named_by(&tokens, p + fields[k].name, fields[k].name_len)) continue;
        if (c->relay->inbound && is_mesh_marker(p + fields[k].name, fields[k].name_len)) continue;
        if (buf_add(out, p + fields[k].name, fields[k].name_len) < 0 || BUF_LIT(out, ": ") < 0 ||
            buf_add(out, p + fields[k].value, fields[k].value_len) < 0 || BUF_LIT(out, "\r\n") < 0)
            return -2;
    }
    if (buf_add_bytes(out, c->relay->via_line) < 0) return -2;
    if (has_body && (chunked || close_delimited)) {
        if (BUF_LIT(out, "transfer-encoding: chunked\r\n") < 0) return -2;
    } else if (have_length) {
        if (BUF_LIT(out, "content-length: ") < 0 || buf_add_dec(out, length) < 0 || BUF_LIT(out, "\r\n") < 0)
            return -2;
    }
    if (!c->keep && BUF_LIT(out, "connection: close\r\n") < 0) return -2;
    if (BUF_LIT(out, "\r\n") < 0) return -2;
    c->answered = 1;
    if (!has_body) {
        c->rstate = R_DONE;
    } else if (chunked) {
        c->rstate = R_CHUNK_SIZE;
    } else if (close_delimited) {
        c->rstate = R_CLOSE_DELIMITED;
    } else {
        c->rstate = R_LENGTH;
        c->remaining = length;
    }
    return 0;
}

static int emit_chunk(Client *c, const char *p, Py_ssize_t n) {
    if (n <= 0) return 0;
    c->response_bytes += n;
    if (buf_add_hex(&c->out, (unsigned long long)n) < 0 || BUF_LIT(&c->out, "\r\n") < 0 || buf_add(&c->out, p, n) < 0 ||
        BUF_LIT(&c->out, "\r\n") < 0)
        return -2;
    return 0;
}

/* Runs the response parser over one read. Returns 0, -1 with *why for a response we cannot relay,
 * -2 on a failed allocation. */
static int response_feed(Client *c, const char *p, Py_ssize_t n, const char **why) {
    while (n > 0) {
        switch (c->rstate) {
        case R_HEAD: {
            Py_ssize_t before = c->rhead.len;
            if (buf_add(&c->rhead, p, n) < 0) return -2;
            Py_ssize_t end = find_head_end(c->rhead.data, before, c->rhead.len);
            if (end < 0) {
                if (c->rhead.len > MAX_RESPONSE_HEAD) {
                    *why = "malformed response: head too large";
                    return -1;
                }
                return 0;
            }
            Py_ssize_t used = end - before;
            p += used;
            n -= used;
            int rc = response_head(c, c->rhead.data, end, why);
            c->rhead.len = 0;
            if (rc < 0) return rc;
            break; /* rc 1 (interim): parse the next head */
        }
        case R_LENGTH: {
            Py_ssize_t take = n < c->remaining ? n : (Py_ssize_t)c->remaining;
            if (buf_add(&c->out, p, take) < 0) return -2;
            c->response_bytes += take;
            c->remaining -= take;
            p += take;
            n -= take;
            if (c->remaining == 0) c->rstate = R_DONE;
            break;
        }
        case R_CLOSE_DELIMITED:
            if (emit_chunk(c, p, n) < 0) return -2;
            n = 0;
            break;
        case R_CHUNK_SIZE:
        case R_TRAILER: {
            const char *lf = memchr(p, '\n', (size_t)n);
            Py_ssize_t take = lf ? (lf - p) + 1 : n;
            if (c->line.len + take > MAX_CHUNK_LINE) {
                *why = "malformed response: chunk line too long";
                return -1;
            }
            if (buf_add(&c->line, p, take) < 0) return -2;
            p += take;
            n -= take;
            if (lf == NULL) break;
            const char *s = c->line.data;
            Py_ssize_t len = c->line.len;
            c->line.len = 0;
            if (len < 2 || s[len - 2] != '\r') {
                *why = "malformed response: bare LF in chunked body";
                return -1;
            }
            len -= 2;
            if (c->rstate == R_TRAILER) {
                if (len == 0) {
                    if (BUF_LIT(&c->out, "0\r\n\r\n") < 0) return -2;
                    c->rstate = R_DONE;
                }
                break; /* trailer fields are not relayed */
            }
            unsigned long long size = 0;
            Py_ssize_t k = 0, digits = 0;
            for (; k < len; k++) {
                char ch = s[k];
                int d = (ch >= '0' && ch <= '9') ? ch - '0'
                        : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
                        : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10
                                                   : -1;
                if (d < 0) break;
                if ((size > 0 || d > 0) && ++digits > 15) {
                    *why = "malformed response: chunk size too large";
                    return -1;
                }
                size = size * 16 + (unsigned long long)d;
            }
            if (k == 0 || (k < len && s[k] != ';')) {
                *why = "malformed response: bad chunk size";
                return -1;
            }
            for (Py_ssize_t e = k; e < len; e++) {
                if (!FIELD_VCHAR[(unsigned char)s[e]]) {
                    *why = "malformed response: bad chunk extension";
                    return -1;
                }
            }
            if (size == 0) {
                c->rstate = R_TRAILER;
            } else {
                c->rstate = R_CHUNK_DATA;
                c->remaining = (long long)size;
            }
            break;
        }
        case R_CHUNK_DATA: {
            Py_ssize_t take = n < c->remaining ? n : (Py_ssize_t)c->remaining;
            if (emit_chunk(c, p, take) < 0) return -2;
            c->remaining -= take;
            p += take;
            n -= take;
            if (c->remaining == 0) {
                c->rstate = R_CHUNK_CRLF;
                c->crlf_seen = 0;
            }
            break;
        }
        case R_CHUNK_CRLF:
            if (*p != (c->crlf_seen == 0 ? '\r' : '\n')) {
                *why = "malformed response: chunk data not followed by CRLF";
                return -1;
            }
            p++;
            n--;
            if (++c->crlf_seen == 2) c->rstate = R_CHUNK_SIZE;
            break;
        case R_DONE:
            /* Bytes after a complete response: never the client's, and the connection is not reused. */
            c->junk = 1;
            return 0;
        }
    }
    return 0;
}

static void client_flush_out(Client *c) {
    if (c->out.len > 0) {
        client_write(c, c->out.data, c->out.len);
        c->out.len = 0;
        c->head_sent = 1;
    }
}

static void client_upstream_data(Client *c, const char *p, Py_ssize_t n) {
    c->got_bytes = 1;
    c->last_data = monotonic();
    const char *why = NULL;
    int rc = response_feed(c, p, n, &why);
    if (rc == -2) {
        report("relaying a response");
        why = "the sidecar failed to relay the response";
    }
    if (rc < 0) {
        c->out.len = 0;
        if (!c->head_sent) c->answered = 0; /* nothing reached the client yet: it can still get a 502 */
        PyObject *detail = PyUnicode_FromString(why);
        client_fail(c, "upstream_reset", 502, detail);
        Py_XDECREF(detail);
        return;
    }
    client_flush_out(c);
    if (c->rstate == R_DONE && c->active) client_complete(c);
}

/* The upstream sent EOF or went away. */
static void client_upstream_closed(Client *c) {
    if (!c->active) return;
    if (c->answered) {
        if (c->rstate == R_CLOSE_DELIMITED) {
            /* EOF is how a response without Content-Length or chunked framing ends. */
            if (BUF_LIT(&c->out, "0\r\n\r\n") < 0) PyErr_Clear();
            c->rstate = R_DONE;
            c->up_keep = 0;
            client_flush_out(c);
            client_complete(c);
        } else {
            client_cut_short(c);
        }
        return;
    }
    Upstream *u = c->up;
    if (u != NULL && u->reused && !c->got_bytes && !c->retried && c->retryable) {
        /* A pooled connection the upstream closed while idle fails on first use; with no body
         * sent, one retry on a fresh connection is safe. */
        c->retried = 1;
        drop_upstream(c);
        c->rstate = R_HEAD;
        c->rhead.len = 0;
        PyObject *r = PyObject_CallMethod(c->relay->bridge, "connect", "OKOOO", (PyObject *)c, c->gen, c->host,
                                          c->port, c->key);
        if (r == NULL) {
            report("reconnecting upstream");
            PyObject *detail = PyUnicode_FromString("the sidecar failed to reconnect");
            client_fail(c, "upstream_reset", 502, detail);
            Py_XDECREF(detail);
            return;
        }
        Py_DECREF(r);
        c->connecting = 1;
        return;
    }
    PyObject *detail = PyUnicode_FromString("upstream closed the connection before responding");
    client_fail(c, "upstream_reset", 502, detail);
    Py_XDECREF(detail);
}

static void client_attach(Client *c, Upstream *u) {
    /* Takes a reference to u. */
    c->up = u;
    Py_INCREF(c);
    Py_XSETREF(u->client, c);
    c->rstate = R_HEAD;
    c->rhead.len = 0;
    c->got_bytes = 0;
    c->connecting = 0;
    if (c->write_paused && u->transport != NULL) {
        if (call_method0(u->transport, s_pause_reading) < 0) PyErr_Clear();
    }
    if (call_method1(u->transport, s_write, c->request) < 0) {
        report("writing upstream");
        PyObject *detail = PyUnicode_FromString("the sidecar failed to forward the request");
        client_fail(c, "upstream_reset", 502, detail);
        Py_XDECREF(detail);
    }
}

/* ------------------------------------------------------------------ */
/* Client: the request                                                 */

typedef struct {
    Py_ssize_t method_len;
    Py_ssize_t target, target_len;
    Py_ssize_t head_len; /* through the blank line */
    Py_ssize_t total_len;
    Field fields[MAX_HEADERS];
    int n;
    Tokens tokens;
    Py_ssize_t host, host_len;
    Py_ssize_t traceparent, traceparent_len;
    Py_ssize_t source, source_len;
    long long content_length;
    int have_length;
    long long hops;
} Request;

enum { PARSE_OK, PARSE_MORE, PARSE_SLOW };

static int known_method(const char *p, Py_ssize_t n, int *retryable) {
    static const struct {
        const char *name;
        int retryable;
    } methods[] = {{"GET", 1},    {"HEAD", 1},    {"POST", 0},    {"PUT", 0},
                   {"DELETE", 0}, {"OPTIONS", 1}, {"PATCH", 0},   {"TRACE", 1}};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if ((size_t)n == strlen(methods[i].name) && memcmp(p, methods[i].name, (size_t)n) == 0) {
            *retryable = methods[i].retryable;
            return 1;
        }
    }
    return 0;
}

static int parse_request(const char *p, Py_ssize_t len, Request *r, int *retryable) {
    Py_ssize_t end = find_head_end(p, 0, len < MAX_HEAD ? len : MAX_HEAD);
    if (end < 0) return len >= MAX_HEAD ? PARSE_SLOW : PARSE_MORE;
    Py_ssize_t i = 0;
    while (i < end && p[i] >= 'A' && p[i] <= 'Z') i++;
    if (i == 0 || i > 7 || p[i] != ' ' || !known_method(p, i, retryable)) return PARSE_SLOW;
    r->method_len = i;
    i++;
    if (p[i] != '/') return PARSE_SLOW; /* absolute-form (HTTP_PROXY), asterisk-form, ... */
    r->target = i;
    while (i < end && TARGET_CHAR[(unsigned char)p[i]]) i++;
    r->target_len = i - r->target;
    if (end - i < 12 || memcmp(p + i, " HTTP/1.1\r\n", 11) != 0) return PARSE_SLOW;
    i += 11;
    if (parse_fields(p, i, end - 2, r->fields, MAX_HEADERS, &r->n) < 0) return PARSE_SLOW;
    memset(&r->tokens, 0, sizeof r->tokens);
    r->host = r->traceparent = r->source = -1;
    r->host_len = r->traceparent_len = r->source_len = 0;
    r->content_length = 0;
    r->hops = 0;
    int have_length = 0, have_hops = 0;
    for (int k = 0; k < r->n; k++) {
        const Field *f = &r->fields[k];
        const char *v = p + f->value;
        switch (f->kind) {
        case H_HOST:
            if (r->host >= 0) return PARSE_SLOW;
            r->host = f->value;
            r->host_len = f->value_len;
            break;
        case H_CONNECTION:
            if (add_tokens(&r->tokens, v, f->value_len) < 0) return PARSE_SLOW;
            break;
        case H_CONTENT_LENGTH:
            if (have_length || parse_digits(v, f->value_len, &r->content_length) < 0) return PARSE_SLOW;
            have_length = 1;
            break;
        case H_TRANSFER_ENCODING:
        case H_UPGRADE:
        case H_EXPECT:
        case H_PROXY_CONNECTION:
            return PARSE_SLOW;
        case H_TRACEPARENT:
            if (r->traceparent < 0) {
                r->traceparent = f->value;
                r->traceparent_len = f->value_len;
            }
            break;
        case H_HOPS:
            if (have_hops) break;
            if (parse_digits(v, f->value_len, &r->hops) < 0 || r->hops >= MAX_HOPS) return PARSE_SLOW;
            have_hops = 1;
            break;
        case H_SOURCE:
            if (r->source < 0) {
                r->source = f->value;
                r->source_len = f->value_len;
            }
            break;
        default:
            break;
        }
    }
    if (r->tokens.upgrade || r->host < 0) return PARSE_SLOW;
    r->have_length = have_length;
    if (r->content_length > MAX_FAST_BODY) return PARSE_SLOW;
    r->head_len = end;
    r->total_len = end + (Py_ssize_t)r->content_length;
    return r->total_len <= len ? PARSE_OK : PARSE_MORE;
}

/* The caller's trace context continued, or a new trace started. */
static void trace_context(Client *c, const char *p, const Request *r) {
    new_span_id(c->span_id);
    c->has_parent = 0;
    if (r->traceparent >= 0 && r->traceparent_len == 55) {
        const char *t = p + r->traceparent;
        char low[55];
        for (int i = 0; i < 55; i++) low[i] = (t[i] >= 'A' && t[i] <= 'Z') ? (char)(t[i] + 32) : t[i];
        int ok = low[0] == '0' && low[1] == '0' && low[2] == '-' && low[35] == '-' && low[52] == '-';
        int zero_trace = 1, zero_parent = 1;
        for (int i = 3; ok && i < 55; i++) {
            if (i == 35 || i == 52) continue;
            char ch = low[i];
            if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) ok = 0;
            if (i < 35 && ch != '0') zero_trace = 0;
            if (i > 35 && i < 52 && ch != '0') zero_parent = 0;
        }
        if (ok && !zero_trace && !zero_parent) {
            memcpy(c->trace_id, low + 3, 32);
            memcpy(c->parent_id, low + 36, 16);
            c->has_parent = 1;
            int flags = (low[53] >= 'a' ? low[53] - 'a' + 10 : low[53] - '0') * 16 +
                        (low[54] >= 'a' ? low[54] - 'a' + 10 : low[54] - '0');
            c->sampled = flags & 1;
            return;
        }
    }
    uint64_t hi, lo;
    do {
        hi = rng_next();
        lo = rng_next();
    } while (hi == 0 && lo == 0);
    hex64(c->trace_id, hi);
    hex64(c->trace_id + 16, lo);
    double rate = c->relay->sampling;
    c->sampled = rate >= 1.0 || (double)(rng_next() >> 11) * 0x1.0p-53 < rate;
}

/* Hands the connection, with its unread bytes, to the Python path for good. */
static void client_fallback(Client *c) {
    PyObject *slow = PyObject_CallMethodNoArgs(c->relay->bridge, s_fallback);
    if (slow == NULL) {
        report("handing a connection to the Python path");
        client_close(c);
        return;
    }
    c->slow = slow;
    if (c->timer != NULL) {
        if (call_method0(c->timer, s_cancel) < 0) PyErr_Clear();
        Py_CLEAR(c->timer);
    }
    c->timer_at = NEVER;
    if (call_method1(c->relay->connections, s_discard, (PyObject *)c) < 0) PyErr_Clear();
    if (c->reading_paused) {
        c->reading_paused = 0;
        if (call_method0(c->transport, s_resume_reading) < 0) PyErr_Clear();
    }
    if (call_method1(slow, s_connection_made, c->transport) < 0) report("handing over a connection");
    if (c->write_paused && call_method0(slow, s_pause_writing) < 0) report("handing over a connection");
    if (c->in.len > 0) {
        PyObject *data = PyBytes_FromStringAndSize(c->in.data, c->in.len);
        buf_free(&c->in);
        if (data == NULL || call_method1(slow, s_data_received, data) < 0) report("handing over a connection");
        Py_XDECREF(data);
    }
    buf_free(&c->in);
    if (c->eof) {
        PyObject *keep = PyObject_CallMethodNoArgs(slow, s_eof_received);
        int k = keep != NULL && PyObject_IsTrue(keep) == 1;
        Py_XDECREF(keep);
        PyErr_Clear();
        if (!k && call_method0(c->transport, s_close) < 0) PyErr_Clear();
    }
}

/* Forwards a parsed request; 0, or -1 when the Python path must take it. */
static int client_start(Client *c, const Request *r, int retryable) {
    const char *p = c->in.data;
    PyObject *target_bytes = PyBytes_FromStringAndSize(p + r->target, r->target_len);
    PyObject *host = PyBytes_FromStringAndSize(p + r->host, r->host_len);
    PyObject *source = r->source >= 0 ? PyBytes_FromStringAndSize(p + r->source, r->source_len) : Py_NewRef(Py_None);
    if (target_bytes == NULL || host == NULL || source == NULL) {
        Py_XDECREF(target_bytes);
        Py_XDECREF(host);
        Py_XDECREF(source);
        PyErr_Clear();
        return -1;
    }
    PyObject *args[5] = {c->relay->bridge, target_bytes, host, source, c->peer != NULL ? c->peer : s_empty};
    PyObject *route = PyObject_VectorcallMethod(s_start, args, 5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(host);
    Py_DECREF(source);
    if (route == NULL) {
        report("routing a request");
        Py_DECREF(target_bytes);
        return -1;
    }
    if (route == Py_None) {
        /* A mesh error (no route, no healthy upstream): the Python path answers it, with its
         * metrics and span. */
        Py_DECREF(route);
        Py_DECREF(target_bytes);
        return -1;
    }
    /* (target, path, key, host, port, timeout_s, extra header lines, drop x-mesh-source-workload) */
    int malformed = !PyTuple_Check(route) || PyTuple_GET_SIZE(route) != 8;
    PyObject *path = NULL, *extra = NULL;
    double timeout = 0.0;
    int drop_source = 0;
    if (!malformed) {
        path = PyTuple_GET_ITEM(route, 1);
        extra = PyTuple_GET_ITEM(route, 6);
        drop_source = PyObject_IsTrue(PyTuple_GET_ITEM(route, 7)) == 1;
        timeout = PyFloat_AsDouble(PyTuple_GET_ITEM(route, 5));
        malformed = !PyBytes_Check(path) || !PyBytes_Check(extra) || (timeout == -1.0 && PyErr_Occurred());
    }
    if (malformed) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "NativeRelay.start returned a malformed route");
        report("routing a request");
        if (PyTuple_Check(route) && PyTuple_GET_SIZE(route) > 0) {
            /* start counted the exchange as started: count it done before the Python path takes over. */
            c->active = 1;
            c->status = 0;
            c->target = Py_NewRef(PyTuple_GET_ITEM(route, 0));
            c->raw_target = target_bytes;
            target_bytes = NULL;
            client_finish(c, NULL);
        }
        Py_XDECREF(target_bytes);
        Py_DECREF(route);
        return -1;
    }
    c->active = 1;
    c->target = Py_NewRef(PyTuple_GET_ITEM(route, 0));
    c->key = Py_NewRef(PyTuple_GET_ITEM(route, 2));
    c->host = Py_NewRef(PyTuple_GET_ITEM(route, 3));
    c->port = Py_NewRef(PyTuple_GET_ITEM(route, 4));
    c->raw_target = target_bytes;
    c->timeout = timeout;
    c->started = monotonic();
    c->started_ns = wall_ns();
    memcpy(c->method, p, (size_t)r->method_len);
    c->method_len = (int)r->method_len;
    c->head_only = r->method_len == 4 && memcmp(p, "HEAD", 4) == 0;
    c->retryable = retryable && r->content_length == 0;
    c->req_keep = !r->tokens.close;
    c->request_bytes = r->content_length;
    c->response_bytes = 0;
    c->retried = c->got_bytes = c->answered = c->head_sent = c->status = c->denied = c->junk = 0;
    c->keep = c->up_keep = 0;
    c->rstate = R_HEAD;
    trace_context(c, p, r);

    /* The head that goes up: the request line, end-to-end headers, the route's, ours. */
    Buf b = {0};
    int fail = buf_reserve(&b, r->total_len + 256) < 0 || buf_add(&b, p, r->method_len + 1) < 0 ||
               buf_add_bytes(&b, path) < 0 || BUF_LIT(&b, " HTTP/1.1\r\n") < 0;
    for (int k = 0; !fail && k < r->n; k++) {
        const Field *f = &r->fields[k];
        if (f->kind != H_OTHER && f->kind != H_HOST && !(f->kind == H_SOURCE && !drop_source)) continue;
        if (r->tokens.n && f->kind != H_HOST && named_by(&r->tokens, p + f->name, f->name_len)) continue;
        fail = buf_add(&b, p + f->name, f->name_len) < 0 || BUF_LIT(&b, ": ") < 0 ||
               buf_add(&b, p + f->value, f->value_len) < 0 || BUF_LIT(&b, "\r\n") < 0;
    }
    char traceparent[55 + 2];
    memcpy(traceparent, "00-", 3);
    memcpy(traceparent + 3, c->trace_id, 32);
    traceparent[35] = '-';
    memcpy(traceparent + 36, c->span_id, 16);
    memcpy(traceparent + 52, c->sampled ? "-01" : "-00", 3);
    fail = fail || buf_add_bytes(&b, extra) < 0 || BUF_LIT(&b, "traceparent: ") < 0 ||
           buf_add(&b, traceparent, 55) < 0 || BUF_LIT(&b, "\r\n") < 0 ||
           buf_add_bytes(&b, c->relay->via_line) < 0 || BUF_LIT(&b, "x-mesh-hops: ") < 0 ||
           buf_add_dec(&b, r->hops + 1) < 0 || BUF_LIT(&b, "\r\n") < 0;
    if (!fail && r->have_length) {
        fail = BUF_LIT(&b, "content-length: ") < 0 || buf_add_dec(&b, r->content_length) < 0 ||
               BUF_LIT(&b, "\r\n") < 0;
    }
    fail = fail || BUF_LIT(&b, "\r\n") < 0 || buf_add(&b, p + r->head_len, (Py_ssize_t)r->content_length) < 0;
    Py_DECREF(route);
    if (!fail) {
        c->request = PyBytes_FromStringAndSize(b.data, b.len);
        fail = c->request == NULL;
    }
    buf_free(&b);
    buf_consume(&c->in, r->total_len);
    if (fail) {
        report("building an upstream request");
        PyObject *detail = PyUnicode_FromString("the sidecar failed to forward the request");
        client_fail(c, "upstream_reset", 502, detail);
        Py_XDECREF(detail);
        return 0;
    }
    c->deadline = c->started + timeout;
    if (c->deadline < c->timer_at) client_arm(c, c->deadline);
    Upstream *u = pool_take(c->relay, c->key);
    if (u != NULL) {
        client_attach(c, u);
        return 0;
    }
    PyObject *r2 = PyObject_CallMethod(c->relay->bridge, "connect", "OKOOO", (PyObject *)c, c->gen, c->host, c->port,
                                       c->key);
    if (r2 == NULL) {
        report("connecting upstream");
        PyObject *detail = PyUnicode_FromString("the sidecar failed to connect");
        client_fail(c, "upstream_connect_failed", 503, detail);
        Py_XDECREF(detail);
        return 0;
    }
    Py_DECREF(r2);
    c->connecting = 1;
    return 0;
}

static void client_try_start(Client *c) {
    if (c->starting) return;
    c->starting = 1;
    while (!c->active && !c->closed && c->slow == NULL && c->in.len > 0) {
        Request r;
        int retryable = 0;
        int rc = parse_request(c->in.data, c->in.len, &r, &retryable);
        if (rc == PARSE_MORE) {
            if (c->eof) client_close(c); /* EOF in the middle of a request: nothing more will come */
            break;
        }
        if (rc == PARSE_SLOW || client_start(c, &r, retryable) < 0) {
            client_fallback(c);
            break;
        }
    }
    c->starting = 0;
    if (c->active && c->in.len > MAX_PENDING_INPUT) client_pause(c, PAUSE_PIPELINE);
    if (!c->active && c->in.len == 0 && c->eof && c->slow == NULL) client_close(c);
}

/* ------------------------------------------------------------------ */
/* Client: timer                                                       */

static void client_arm(Client *c, double when) {
    if (c->timer != NULL) {
        if (call_method0(c->timer, s_cancel) < 0) PyErr_Clear();
        Py_CLEAR(c->timer);
    }
    c->timer_at = when;
    /* CLOCK_MONOTONIC is the loop's clock for both asyncio (time.monotonic) and uvloop (uv_hrtime). */
    PyObject *callback = PyObject_GetAttr((PyObject *)c, s_on_timer);
    PyObject *at = PyFloat_FromDouble(when);
    if (callback != NULL && at != NULL) {
        PyObject *args[3] = {c->relay->loop, at, callback};
        c->timer = PyObject_VectorcallMethod(s_call_at, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    if (c->timer == NULL) {
        report("arming a connection timer");
        c->timer_at = NEVER;
    }
    Py_XDECREF(callback);
    Py_XDECREF(at);
}

static PyObject *Client_on_timer(Client *c, PyObject *unused) {
    if (client_ready(c) < 0) return NULL;
    Py_CLEAR(c->timer);
    c->timer_at = NEVER;
    if (c->closed || c->slow != NULL) Py_RETURN_NONE;
    double now = monotonic();
    if (c->active && c->deadline <= now) {
        if (!c->answered) {
            client_fail(c, "timeout", 504, NULL);
        } else if (now - c->last_data >= c->timeout) {
            /* Answered: the deadline catches a response body that stalls. */
            client_cut_short(c);
        } else {
            c->deadline = c->last_data + c->timeout;
        }
        if (c->closed || c->slow != NULL) Py_RETURN_NONE;
    }
    double due;
    if (!c->active) {
        due = c->last_done + c->relay->idle_timeout;
        if (now >= due) {
            client_close(c);
            Py_RETURN_NONE;
        }
    } else {
        due = c->deadline < now + c->relay->idle_timeout ? c->deadline : now + c->relay->idle_timeout;
    }
    client_arm(c, due > now + 0.001 ? due : now + 0.001);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ */
/* Client: asyncio.Protocol                                            */

static void client_close(Client *c) {
    if (c->slow != NULL) {
        if (call_method0(c->slow, s_close) < 0) PyErr_Clear();
        return;
    }
    if (c->transport != NULL && !c->closed) {
        /* close() sends what is buffered first, so an answer written just before still goes out. */
        if (call_method0(c->transport, s_close) < 0) PyErr_Clear();
    }
    c->closed = 1;
}

static int client_ready(Client *c) {
    if (c->relay != NULL) return 0;
    PyErr_SetString(PyExc_RuntimeError, "Client() needs its Relay");
    return -1;
}

static PyObject *Client_connection_made(Client *c, PyObject *transport) {
    if (client_ready(c) < 0) return NULL;
    Py_XSETREF(c->transport, Py_NewRef(transport));
    if (c->relay->inbound) {
        /* Callers' sidecars may speak mutual TLS: whom the handshake verified, or None to refuse. */
        PyObject *peer = PyObject_CallMethodOneArg(c->relay->bridge, s_tls_peer, transport);
        if (peer == NULL) return NULL;
        if (peer == Py_None) {
            Py_DECREF(peer);
            c->closed = 1;
            if (call_method0(transport, s_abort) < 0) return NULL;
            Py_RETURN_NONE;
        }
        if (!PyUnicode_Check(peer)) {
            Py_DECREF(peer);
            PyErr_SetString(PyExc_TypeError, "NativeRelay.tls_peer must return str or None");
            return NULL;
        }
        Py_XSETREF(c->peer, peer);
    }
    if (call_method1(c->relay->connections, s_add, (PyObject *)c) < 0) return NULL;
    c->last_done = monotonic();
    client_arm(c, c->last_done + c->relay->idle_timeout);
    Py_RETURN_NONE;
}

static PyObject *Client_data_received(Client *c, PyObject *data) {
    if (client_ready(c) < 0) return NULL;
    if (c->slow != NULL) return PyObject_CallMethodOneArg(c->slow, s_data_received, data);
    if (c->closed) Py_RETURN_NONE;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    int rc = buf_add(&c->in, view.buf, view.len);
    PyBuffer_Release(&view);
    if (rc < 0) return NULL;
    if (!c->active) {
        client_try_start(c);
    } else if (c->in.len > MAX_PENDING_INPUT) {
        client_pause(c, PAUSE_PIPELINE);
    }
    Py_RETURN_NONE;
}

static PyObject *Client_eof_received(Client *c, PyObject *unused) {
    if (client_ready(c) < 0) return NULL;
    if (c->slow != NULL) return PyObject_CallMethodNoArgs(c->slow, s_eof_received);
    if (c->active || c->in.len > 0) {
        /* The client half-closed after its request: answer it, then close. */
        c->eof = 1;
        if (!c->active) client_try_start(c);
        if (c->closed) Py_RETURN_FALSE;
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static PyObject *Client_connection_lost(Client *c, PyObject *exc) {
    if (client_ready(c) < 0) return NULL;
    if (c->slow != NULL) return PyObject_CallMethodOneArg(c->slow, s_connection_lost, exc);
    c->closed = 1;
    if (call_method1(c->relay->connections, s_discard, (PyObject *)c) < 0) PyErr_Clear();
    if (c->timer != NULL) {
        if (call_method0(c->timer, s_cancel) < 0) PyErr_Clear();
        Py_CLEAR(c->timer);
    }
    if (c->active) {
        drop_upstream(c);
        if (!c->answered) c->status = 0; /* the client left before an answer: nothing to record */
        client_finish(c, NULL);
    }
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->rhead);
    buf_free(&c->line);
    Py_CLEAR(c->transport);
    Py_RETURN_NONE;
}

static PyObject *Client_pause_writing(Client *c, PyObject *unused) {
    if (c->slow != NULL) return PyObject_CallMethodNoArgs(c->slow, s_pause_writing);
    c->write_paused = 1;
    if (c->up != NULL && c->up->transport != NULL && !c->up->closed) {
        if (call_method0(c->up->transport, s_pause_reading) < 0) return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Client_resume_writing(Client *c, PyObject *unused) {
    if (c->slow != NULL) return PyObject_CallMethodNoArgs(c->slow, s_resume_writing);
    c->write_paused = 0;
    if (c->up != NULL && c->up->transport != NULL && !c->up->closed) {
        if (call_method0(c->up->transport, s_resume_reading) < 0) return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Client_close(Client *c, PyObject *unused) {
    client_close(c);
    Py_RETURN_NONE;
}

/* connected(gen, upstream): the connection the bridge opened for exchange ``gen``. */
static PyObject *Client_connected(Client *c, PyObject *const *args, Py_ssize_t nargs) {
    if (client_ready(c) < 0) return NULL;
    if (nargs != 2 || !PyObject_TypeCheck(args[1], &UpstreamType)) {
        PyErr_SetString(PyExc_TypeError, "connected(gen, upstream)");
        return NULL;
    }
    unsigned long long gen = PyLong_AsUnsignedLongLong(args[0]);
    if (gen == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    Upstream *u = (Upstream *)args[1];
    if (gen != c->gen || !c->active || c->closed || !c->connecting) {
        /* The exchange is gone: the connection serves another (one waiting for it, or the next from idle). */
        pool_release(c->relay, u);
        Py_RETURN_NONE;
    }
    if (u->transport == NULL || u->closed) {
        PyObject *detail = PyUnicode_FromString("the upstream closed the new connection at once");
        client_fail(c, "upstream_connect_failed", 503, detail);
        Py_XDECREF(detail);
        Py_RETURN_NONE;
    }
    Py_INCREF(u);
    client_attach(c, u);
    Py_RETURN_NONE;
}

/* connect_failed(gen, detail) */
static PyObject *Client_connect_failed(Client *c, PyObject *const *args, Py_ssize_t nargs) {
    if (client_ready(c) < 0) return NULL;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "connect_failed(gen, detail)");
        return NULL;
    }
    unsigned long long gen = PyLong_AsUnsignedLongLong(args[0]);
    if (gen == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    if (gen == c->gen && c->active && c->connecting) client_fail(c, "upstream_connect_failed", 503, args[1]);
    Py_RETURN_NONE;
}

/* waiting(gen): whether exchange ``gen`` is still waiting for its upstream connection. */
static PyObject *Client_waiting(Client *c, PyObject *arg) {
    unsigned long long gen = PyLong_AsUnsignedLongLong(arg);
    if (gen == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    return PyBool_FromLong(gen == c->gen && c->active && !c->closed && c->connecting);
}

static PyObject *Client_get_native(Client *c, void *unused) { return PyBool_FromLong(c->slow == NULL); }

static PyObject *Client_get_peer_identity(Client *c, void *unused) {
    return Py_NewRef(c->peer != NULL ? c->peer : s_empty);
}

static int Client_init(Client *c, PyObject *args, PyObject *kwds) {
    Relay *relay;
    if (!PyArg_ParseTuple(args, "O!", &RelayType, &relay)) return -1;
    Py_XSETREF(c->relay, (Relay *)Py_NewRef(relay));
    c->timer_at = NEVER;
    c->deadline = NEVER;
    return 0;
}

static int Client_traverse(Client *c, visitproc visit, void *arg) {
    Py_VISIT(c->relay);
    Py_VISIT(c->transport);
    Py_VISIT(c->slow);
    Py_VISIT(c->peer);
    Py_VISIT(c->timer);
    Py_VISIT(c->target);
    Py_VISIT(c->key);
    Py_VISIT(c->host);
    Py_VISIT(c->port);
    Py_VISIT(c->up);
    return 0;
}

static int Client_clear(Client *c) {
    Py_CLEAR(c->relay);
    Py_CLEAR(c->transport);
    Py_CLEAR(c->slow);
    Py_CLEAR(c->peer);
    Py_CLEAR(c->timer);
    Py_CLEAR(c->target);
    Py_CLEAR(c->key);
    Py_CLEAR(c->host);
    Py_CLEAR(c->port);
    Py_CLEAR(c->raw_target);
    Py_CLEAR(c->request);
    Py_CLEAR(c->up);
    return 0;
}

static void Client_dealloc(Client *c) {
    PyObject_GC_UnTrack(c);
    Client_clear(c);
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->rhead);
    buf_free(&c->line);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyMethodDef Client_methods[] = {
    {"connection_made", (PyCFunction)Client_connection_made, METH_O, NULL},
    {"data_received", (PyCFunction)Client_data_received, METH_O, NULL},
    {"eof_received", (PyCFunction)Client_eof_received, METH_NOARGS, NULL},
    {"connection_lost", (PyCFunction)Client_connection_lost, METH_O, NULL},
    {"pause_writing", (PyCFunction)Client_pause_writing, METH_NOARGS, NULL},
    {"resume_writing", (PyCFunction)Client_resume_writing, METH_NOARGS, NULL},
    {"close", (PyCFunction)Client_close, METH_NOARGS, NULL},
    {"connected", (PyCFunction)(void (*)(void))Client_connected, METH_FASTCALL, NULL},
    {"connect_failed", (PyCFunction)(void (*)(void))Client_connect_failed, METH_FASTCALL, NULL},
    {"waiting", (PyCFunction)Client_waiting, METH_O, NULL},
    {"_on_timer", (PyCFunction)Client_on_timer, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Client_getset[] = {
    {"native", (getter)Client_get_native, NULL, "whether the native relay still serves this connection", NULL},
    {"peer_identity", (getter)Client_get_peer_identity, NULL,
     "the caller's SPIFFE id when this connection is mutual TLS, else \"\"", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ClientType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "proxyagent.http._relay.Client",
    .tp_doc = "A client connection served by the native relay (an asyncio protocol).",
    .tp_basicsize = sizeof(Client),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Client_init,
    .tp_dealloc = (destructor)Client_dealloc,
    .tp_traverse = (traverseproc)Client_traverse,
    .tp_clear = (inquiry)Client_clear,
    .tp_methods = Client_methods,
    .tp_getset = Client_getset,
};

/* ------------------------------------------------------------------ */
/* Upstream: asyncio.Protocol                                          */

static PyObject *Upstream_connection_made(Upstream *u, PyObject *transport) {
    Py_XSETREF(u->transport, Py_NewRef(transport));
    Py_RETURN_NONE;
}

static PyObject *Upstream_data_received(Upstream *u, PyObject *data) {
    Client *c = u->client;
    if (c == NULL) {
        /* Bytes while idle (a 408, say) would be taken for the next request's response. */
        pool_forget(u->relay, u);
        upstream_close(u);
        Py_RETURN_NONE;
    }
    Py_INCREF(c);
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(c);
        return NULL;
    }
    client_upstream_data(c, view.buf, view.len);
    PyBuffer_Release(&view);
    Py_DECREF(c);
    Py_RETURN_NONE;
}

static void upstream_gone(Upstream *u) {
    u->closed = 1;
    pool_forget(u->relay, u);
    Client *c = u->client;
    if (c != NULL && c->up == u) {
        Py_INCREF(c);
        client_upstream_closed(c);
        Py_DECREF(c);
    }
}

static PyObject *Upstream_eof_received(Upstream *u, PyObject *unused) {
    upstream_gone(u);
    Py_RETURN_FALSE;
}

static PyObject *Upstream_connection_lost(Upstream *u, PyObject *exc) {
    upstream_gone(u);
    Client *c = u->client;
    u->client = NULL;
    Py_XDECREF(c);
    Py_CLEAR(u->transport);
    Py_RETURN_NONE;
}

static PyObject *Upstream_noop(Upstream *u, PyObject *unused) { Py_RETURN_NONE; }

static int Upstream_init(Upstream *u, PyObject *args, PyObject *kwds) {
    Relay *relay;
    PyObject *key;
    if (!PyArg_ParseTuple(args, "O!O", &RelayType, &relay, &key)) return -1;
    Py_XSETREF(u->relay, (Relay *)Py_NewRef(relay));
    Py_XSETREF(u->key, Py_NewRef(key));
    return 0;
}

static int Upstream_traverse(Upstream *u, visitproc visit, void *arg) {
    Py_VISIT(u->relay);
    Py_VISIT(u->transport);
    Py_VISIT(u->key);
    Py_VISIT(u->client);
    return 0;
}

static int Upstream_clear(Upstream *u) {
    Py_CLEAR(u->relay);
    Py_CLEAR(u->transport);
    Py_CLEAR(u->key);
    Py_CLEAR(u->client);
    return 0;
}

static void Upstream_dealloc(Upstream *u) {
    PyObject_GC_UnTrack(u);
    Upstream_clear(u);
    Py_TYPE(u)->tp_free((PyObject *)u);
}

static PyObject *Upstream_close(Upstream *u, PyObject *unused) {
    pool_forget(u->relay, u);
    upstream_close(u);
    Py_RETURN_NONE;
}

static PyMethodDef Upstream_methods[] = {
    {"connection_made", (PyCFunction)Upstream_connection_made, METH_O, NULL},
    {"data_received", (PyCFunction)Upstream_data_received, METH_O, NULL},
    {"eof_received", (PyCFunction)Upstream_eof_received, METH_NOARGS, NULL},
    {"connection_lost", (PyCFunction)Upstream_connection_lost, METH_O, NULL},
    {"pause_writing", (PyCFunction)Upstream_noop, METH_NOARGS, NULL},
    {"resume_writing", (PyCFunction)Upstream_noop, METH_NOARGS, NULL},
    {"close", (PyCFunction)Upstream_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject UpstreamType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "proxyagent.http._relay.Upstream",
    .tp_doc = "A connection to an upstream, pooled by the native relay (an asyncio protocol).",
    .tp_basicsize = sizeof(Upstream),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Upstream_init,
    .tp_dealloc = (destructor)Upstream_dealloc,
    .tp_traverse = (traverseproc)Upstream_traverse,
    .tp_clear = (inquiry)Upstream_clear,
    .tp_methods = Upstream_methods,
};

/* ------------------------------------------------------------------ */
/* Relay                                                               */

static int Relay_init(Relay *r, PyObject *args, PyObject *kwds) {
    PyObject *bridge, *loop, *connections, *via_line, *exporter;
    double idle_timeout, sampling;
    int span_kind;
    Py_ssize_t span_batch, span_max;
    if (!PyArg_ParseTuple(args, "OOO!O!ddOinn", &bridge, &loop, &PySet_Type, &connections, &PyBytes_Type, &via_line,
                          &idle_timeout, &sampling, &exporter, &span_kind, &span_batch, &span_max))
        return -1;
    Py_XSETREF(r->exporter, Py_NewRef(exporter));
    Py_XSETREF(r->blocks, PyDict_New());
    if (r->blocks == NULL) return -1;
    r->span_kind = span_kind;
    r->span_batch = span_batch;
    r->span_max = span_max;
    Py_XSETREF(r->bridge, Py_NewRef(bridge));
    Py_XSETREF(r->loop, Py_NewRef(loop));
    Py_XSETREF(r->connections, Py_NewRef(connections));
    Py_XSETREF(r->via_line, Py_NewRef(via_line));
    Py_XSETREF(r->idle, PyDict_New());
    if (r->idle == NULL) return -1;
    r->idle_timeout = idle_timeout;
    r->sampling = sampling;
    return 0;
}

static PyObject *Relay_close_idle(Relay *r, PyObject *unused) {
    /* Closes every pooled connection (the agent is stopping), and any released from now on. */
    r->stopped = 1;
    PyObject *idle = r->idle;
    r->idle = PyDict_New();
    if (r->idle == NULL) {
        r->idle = idle;
        return NULL;
    }
    PyObject *key, *list;
    Py_ssize_t pos = 0;
    while (PyDict_Next(idle, &pos, &key, &list)) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) upstream_close((Upstream *)PyList_GET_ITEM(list, i));
    }
    Py_DECREF(idle);
    Py_RETURN_NONE;
}

/* take_spans(limit) -> (framed ScopeSpans.spans entries, how many): the oldest up to ``limit``. */
static PyObject *Relay_take_spans(Relay *r, PyObject *arg) {
    Py_ssize_t limit = PyLong_AsSsize_t(arg);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t at = 0, n = 0;
    while (at < r->spans.len && n < limit) {
        /* Each entry: 0x12, a varint length, the span. */
        Py_ssize_t i = at + 1;
        unsigned long long len = 0;
        int shift = 0;
        unsigned char byte;
        do {
            byte = (unsigned char)r->spans.data[i++];
            len |= (unsigned long long)(byte & 0x7f) << shift;
            shift += 7;
        } while (byte & 0x80);
        at = i + (Py_ssize_t)len;
        n++;
    }
    PyObject *blob = PyBytes_FromStringAndSize(r->spans.data, at);
    if (blob == NULL) return NULL;
    buf_consume(&r->spans, at);
    r->span_count -= n;
    buf_shrink(&r->spans);
    return Py_BuildValue("(Nn)", blob, n);
}

static PyObject *Relay_get_spans_dropped(Relay *r, void *unused) { return PyLong_FromLongLong(r->spans_dropped); }

static int Relay_traverse(Relay *r, visitproc visit, void *arg) {
    Py_VISIT(r->bridge);
    Py_VISIT(r->loop);
    Py_VISIT(r->connections);
    Py_VISIT(r->idle);
    Py_VISIT(r->via_line);
    Py_VISIT(r->exporter);
    Py_VISIT(r->blocks);
    return 0;
}

static int Relay_clear(Relay *r) {
    Py_CLEAR(r->bridge);
    Py_CLEAR(r->loop);
    Py_CLEAR(r->connections);
    Py_CLEAR(r->idle);
    Py_CLEAR(r->via_line);
    Py_CLEAR(r->exporter);
    Py_CLEAR(r->blocks);
    return 0;
}

static void Relay_dealloc(Relay *r) {
    PyObject_GC_UnTrack(r);
    Relay_clear(r);
    buf_free(&r->spans);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyMethodDef Relay_methods[] = {
    {"close_idle", (PyCFunction)Relay_close_idle, METH_NOARGS, NULL},
    {"take_spans", (PyCFunction)Relay_take_spans, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyObject *Relay_get_waiters(Relay *r, void *unused) { return PyLong_FromSsize_t(r->waiters); }

static int Relay_set_waiters(Relay *r, PyObject *value, void *unused) {
    Py_ssize_t n = value == NULL ? -1 : PyLong_AsSsize_t(value);
    if (n == -1 && PyErr_Occurred()) return -1;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "waiters is a count");
        return -1;
    }
    r->waiters = n;
    return 0;
}

static PyObject *Relay_get_inbound(Relay *r, void *unused) { return PyBool_FromLong(r->inbound); }

static int Relay_set_inbound(Relay *r, PyObject *value, void *unused) {
    int yes = value == NULL ? -1 : PyObject_IsTrue(value);
    if (yes < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "inbound is a bool");
        return -1;
    }
    r->inbound = yes;
    return 0;
}

static PyGetSetDef Relay_getset[] = {
    {"spans_dropped", (getter)Relay_get_spans_dropped, NULL, "spans dropped because the queue was full", NULL},
    {"inbound", (getter)Relay_get_inbound, (setter)Relay_set_inbound,
     "whether the upstream is the local app, whose x-mesh-error and x-mesh-policy are dropped", NULL},
    {"waiters", (getter)Relay_get_waiters, (setter)Relay_set_waiters,
     "exchanges the bridge holds waiting for a connection: released connections are offered to it first", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RelayType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "proxyagent.http._relay.Relay",
    .tp_doc = "One listener's native relay: its bridge to Python and its pool of upstream connections.",
    .tp_basicsize = sizeof(Relay),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Relay_init,
    .tp_dealloc = (destructor)Relay_dealloc,
    .tp_traverse = (traverseproc)Relay_traverse,
    .tp_clear = (inquiry)Relay_clear,
    .tp_methods = Relay_methods,
    .tp_getset = Relay_getset,
};

/* ------------------------------------------------------------------ */
/* Module                                                              */

static struct PyModuleDef relay_module = {
    PyModuleDef_HEAD_INIT, "_relay", "The sidecar's native HTTP/1.1 relay (ADR 013).", -1, NULL,
};

#define INTERN(var, text)                                                                                              \
    do {                                                                                                               \
        var = PyUnicode_InternFromString(text);                                                                        \
        if (var == NULL) return NULL;                                                                                  \
    } while (0)

PyMODINIT_FUNC PyInit__relay(void) {
    init_tables();
    rng_seed();
    INTERN(s_write, "write");
    INTERN(s_close, "close");
    INTERN(s_pause_reading, "pause_reading");
    INTERN(s_resume_reading, "resume_reading");
    INTERN(s_call_at, "call_at");
    INTERN(s_cancel, "cancel");
    INTERN(s_add, "add");
    INTERN(s_discard, "discard");
    INTERN(s_start, "start");
    INTERN(s_finish, "finish");
    INTERN(s_fallback, "fallback");
    INTERN(s_connection_made, "connection_made");
    INTERN(s_data_received, "data_received");
    INTERN(s_eof_received, "eof_received");
    INTERN(s_connection_lost, "connection_lost");
    INTERN(s_pause_writing, "pause_writing");
    INTERN(s_resume_writing, "resume_writing");
    INTERN(s_is_closing, "is_closing");
    INTERN(s_on_timer, "_on_timer");
    INTERN(s_tls_peer, "tls_peer");
    INTERN(s_abort, "abort");
    INTERN(s_span_extra, "span_extra");
    INTERN(s_empty, "");
    if (PyType_Ready(&RelayType) < 0 || PyType_Ready(&ClientType) < 0 || PyType_Ready(&UpstreamType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&relay_module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Relay", (PyObject *)&RelayType) < 0 ||
        PyModule_AddObjectRef(m, "Client", (PyObject *)&ClientType) < 0 ||
        PyModule_AddObjectRef(m, "Upstream", (PyObject *)&UpstreamType) < 0 ||
        PyModule_AddIntConstant(m, "MAX_FAST_BODY", MAX_FAST_BODY) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
