/* Mutual TLS records in C: an asyncio transport over a plain TCP transport (ADR 019).
 *
 * asyncio's TLS (uvloop's SSLProtocol) makes several Python-level calls per
 * record and raises an exception to learn that a read is drained; on the
 * mesh's small requests that costs more than the cryptography. This type is
 * the protocol of the TCP transport and the transport of the application's
 * protocol (the relay's Client or Upstream, or the Python path), with OpenSSL
 * reading and writing through memory BIOs in between: one SSL_read loop per
 * TCP read, one SSL_write per application write.
 *
 * The SSL_CTX is the one inside the agent's ssl.SSLContext (its certificate,
 * key, bundle, TLS 1.3 floor and verify mode), taken from CPython's
 * _SSLContext object whose first field it is. That is only sound when this
 * module and Python's _ssl use the same OpenSSL, so `compatible()` checks
 * the library's version and reads the context's settings back through it;
 * where it does not match, the agent keeps asyncio's TLS.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* CPython's _ssl._SSLContext: the SSL_CTX pointer is its first field (Modules/_ssl.c). */
typedef struct {
    PyObject_HEAD
    SSL_CTX *ctx;
} PySSLContextHead;

enum { NEW, HANDSHAKING, OPEN, CLOSING, CLOSED };

typedef struct {
    PyObject_HEAD
    PyObject *context;  /* the ssl.SSLContext whose SSL_CTX this connection uses */
    PyObject *app;      /* the application's protocol (NULL once the connection is lost) */
    PyObject *check;    /* called with this transport after the handshake; raises to refuse the peer */
    PyObject *waiter;   /* a future: the handshake's outcome (None once told) */
    PyObject *loop;
    PyObject *raw;      /* the TCP transport (NULL before connection_made and after connection_lost) */
    PyObject *peercert; /* {"subjectAltName": (("URI", ...), ...)} after the handshake */
    PyObject *error;    /* why TLS failed, for the application's connection_lost */
    SSL *ssl;
    BIO *rbio, *wbio;   /* ciphertext in from the peer, out to the peer; owned by ssl */
    int server_side;
    int state;
    int app_connected;
    int reading_paused;
    int drain_scheduled;
} Tls;

static PyTypeObject TlsType;
static PyObject *SSLError, *SSLCertVerificationError, *ssl_context_type;
static PyObject *s_write, *s_close, *s_abort, *s_data_received, *s_eof_received, *s_connection_made,
    *s_connection_lost, *s_pause_writing, *s_resume_writing, *s_pause_reading, *s_resume_reading,
    *s_get_extra_info, *s_get_write_buffer_size, *s_set_write_buffer_limits, *s_done, *s_set_result,
    *s_set_exception, *s_call_soon, *s_drain, *s_reason, *s_library, *s_verify_message, *s_verify_code;

/* An exception in a callback is reported (as asyncio reports a callback's) rather than left set in the loop's C. */
static void report(const char *where) {
    PyObject *context = PyUnicode_FromString(where);
    PyErr_WriteUnraisable(context);
    Py_XDECREF(context);
}

/* An ssl.SSLError (or SSLCertVerificationError) for what OpenSSL's error queue says went wrong. */
static PyObject *tls_error(Tls *t, const char *fallback) {
    unsigned long code = ERR_peek_last_error();
    const char *reason = code ? ERR_reason_error_string(code) : NULL;
    const char *library = code ? ERR_lib_error_string(code) : NULL;
    int verify = code && ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED;
    long verify_code = (verify && t->ssl != NULL) ? SSL_get_verify_result(t->ssl) : X509_V_OK;
    char message[512];
    if (verify && verify_code != X509_V_OK)
        snprintf(message, sizeof message, "certificate verify failed: %s", X509_verify_cert_error_string(verify_code));
    else
        snprintf(message, sizeof message, "%s", reason ? reason : fallback);
    ERR_clear_error();
    PyObject *cls = verify ? SSLCertVerificationError : SSLError;
    PyObject *exc = PyObject_CallFunction(cls, "is", code ? (int)ERR_GET_REASON(code) : 0, message);
    if (exc == NULL) return NULL;
    PyObject *r = reason ? PyUnicode_FromString(reason) : PyUnicode_FromString(fallback);
    PyObject *l = library ? PyUnicode_FromString(library) : (Py_INCREF(Py_None), Py_None);
    if (r == NULL || l == NULL || PyObject_SetAttr(exc, s_reason, r) < 0 || PyObject_SetAttr(exc, s_library, l) < 0) {
        Py_XDECREF(r);
        Py_XDECREF(l);
        Py_DECREF(exc);
        return NULL;
    }
    Py_DECREF(r);
    Py_DECREF(l);
    if (verify) {
        PyObject *vc = PyLong_FromLong(verify_code);
        PyObject *vm = PyUnicode_FromString(X509_verify_cert_error_string(verify_code));
        if (vc == NULL || vm == NULL || PyObject_SetAttr(exc, s_verify_code, vc) < 0 ||
            PyObject_SetAttr(exc, s_verify_message, vm) < 0) {
            Py_XDECREF(vc);
            Py_XDECREF(vm);
            Py_DECREF(exc);
            return NULL;
        }
        Py_DECREF(vc);
        Py_DECREF(vm);
    }
    return exc;
}

/* Tell the waiter, once: exc NULL for success. */
static void tell_waiter(Tls *t, PyObject *exc) {
    PyObject *waiter = t->waiter;
    if (waiter == NULL || waiter == Py_None) return;
    t->waiter = NULL;
    PyObject *done = PyObject_CallMethodNoArgs(waiter, s_done);
    if (done == NULL) {
        report("waiter.done");
    } else {
        int is_done = PyObject_IsTrue(done);
        Py_DECREF(done);
        if (!is_done) {
            PyObject *r = exc ? PyObject_CallMethodOneArg(waiter, s_set_exception, exc)
                              : PyObject_CallMethodOneArg(waiter, s_set_result, Py_None);
            if (r == NULL) report("waiter outcome");
            Py_XDECREF(r);
        }
    }
    Py_DECREF(waiter);
}

/* Send what OpenSSL has written to the outgoing BIO (records, alerts, handshake messages). */
static int flush(Tls *t) {
    if (t->raw == NULL || t->wbio == NULL) return 0;
    size_t pending = BIO_ctrl_pending(t->wbio);
    if (pending == 0) return 0;
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)pending);
    if (bytes == NULL) return -1;
    int n = BIO_read(t->wbio, PyBytes_AS_STRING(bytes), (int)pending);
    if (n != (int)pending) {
        Py_DECREF(bytes);
        PyErr_SetString(PyExc_RuntimeError, "the TLS output buffer read short");
        return -1;
    }
    PyObject *r = PyObject_CallMethodOneArg(t->raw, s_write, bytes);
    Py_DECREF(bytes);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

static void raw_call(Tls *t, PyObject *name) {
    if (t->raw == NULL) return;
    PyObject *r = PyObject_CallMethodNoArgs(t->raw, name);
    if (r == NULL) report("the TCP transport");
    Py_XDECREF(r);
}

/* A fatal TLS error: the peer is told with whatever alert OpenSSL wrote, the connection is dropped. */
static void fail(Tls *t, PyObject *exc) {
    if (t->state >= CLOSING) return;
    if (flush(t) < 0) PyErr_Clear();
    if (exc != NULL && t->error == NULL) t->error = Py_NewRef(exc);
    t->state = CLOSING;
    tell_waiter(t, exc);
    raw_call(t, s_close);
}

static int peer_names(Tls *t) {
    X509 *cert = SSL_get1_peer_certificate(t->ssl);
    PyObject *uris = PyList_New(0);
    if (uris == NULL) {
        X509_free(cert);
        return -1;
    }
    if (cert != NULL) {
        GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
        for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
            const GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
            if (name->type != GEN_URI) continue;
            const ASN1_STRING *s = name->d.uniformResourceIdentifier;
            PyObject *entry = Py_BuildValue("(s s#)", "URI", (const char *)ASN1_STRING_get0_data(s),
                                            (Py_ssize_t)ASN1_STRING_length(s));
            if (entry == NULL || PyList_Append(uris, entry) < 0) {
                Py_XDECREF(entry);
                GENERAL_NAMES_free(names);
                X509_free(cert);
                Py_DECREF(uris);
                return -1;
            }
            Py_DECREF(entry);
        }
        GENERAL_NAMES_free(names);
        X509_free(cert);
    }
    PyObject *tuple = PyList_AsTuple(uris);
    Py_DECREF(uris);
    if (tuple == NULL) return -1;
    PyObject *dict = cert != NULL ? Py_BuildValue("{s:N}", "subjectAltName", tuple) : (Py_DECREF(tuple), PyDict_New());
    if (dict == NULL) return -1;
    Py_XSETREF(t->peercert, dict);
    return 0;
}

static void read_records(Tls *t);

/* The handshake finished: check the peer, then the application's protocol takes the connection. */
static void handshake_done(Tls *t) {
    if (peer_names(t) < 0) {
        report("reading the peer certificate");
        fail(t, NULL);
        return;
    }
    if (t->check != Py_None) {
        PyObject *r = PyObject_CallOneArg(t->check, (PyObject *)t);
        if (r == NULL) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            SSL_shutdown(t->ssl); /* a close_notify: the peer learns the connection is refused */
            fail(t, value);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            return;
        }
        Py_DECREF(r);
    }
    t->state = OPEN;
    t->app_connected = 1;
    PyObject *r = PyObject_CallMethodOneArg(t->app, s_connection_made, (PyObject *)t);
    if (r == NULL) report("connection_made");
    Py_XDECREF(r);
    tell_waiter(t, NULL);
}

static void do_handshake(Tls *t) {
    ERR_clear_error();
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        if (flush(t) < 0) report("sending the handshake");
        handshake_done(t);
        if (t->state == OPEN) read_records(t); /* application data that came with the last flight */
        return;
    }
    int err = SSL_get_error(t->ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        if (flush(t) < 0) report("sending the handshake");
        return;
    }
    PyObject *exc = tls_error(t, "the TLS handshake failed");
    if (exc == NULL) report("the handshake error");
    fail(t, exc);
    Py_XDECREF(exc);
}

static void app_eof(Tls *t) {
    if (!t->app_connected || t->app == NULL) return;
    PyObject *r = PyObject_CallMethodNoArgs(t->app, s_eof_received);
    if (r == NULL) report("eof_received");
    Py_XDECREF(r);
}

/* Decrypt what has arrived and hand it to the application in one call. */
static void read_records(Tls *t) {
    while (t->state == OPEN && !t->reading_paused) {
        size_t available = BIO_ctrl_pending(t->rbio) + (size_t)SSL_pending(t->ssl);
        if (available == 0) return;
        PyObject *plain = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)available);
        if (plain == NULL) {
            report("a read buffer");
            return;
        }
        size_t filled = 0;
        int err = SSL_ERROR_NONE;
        ERR_clear_error();
        while (filled < available) {
            size_t n = 0;
            if (SSL_read_ex(t->ssl, PyBytes_AS_STRING(plain) + filled, available - filled, &n)) {
                filled += n;
                continue;
            }
            err = SSL_get_error(t->ssl, 0);
            break;
        }
        /* OpenSSL may have written meanwhile (a KeyUpdate answer, an alert). */
        if (flush(t) < 0) report("sending TLS output");
        if (filled) {
            if (_PyBytes_Resize(&plain, (Py_ssize_t)filled) < 0) {
                report("a read buffer");
                return;
            }
            PyObject *r = PyObject_CallMethodOneArg(t->app, s_data_received, plain);
            if (r == NULL) report("data_received");
            Py_XDECREF(r);
        }
        Py_DECREF(plain);
        if (err == SSL_ERROR_NONE || err == SSL_ERROR_WANT_READ) {
            if (err == SSL_ERROR_WANT_READ) return;
            continue; /* the buffer filled: more may be there */
        }
        if (err == SSL_ERROR_ZERO_RETURN) { /* the peer's close_notify */
            if (t->state == OPEN) {
                app_eof(t);
                t->state = CLOSING;
                raw_call(t, s_close);
            }
            return;
        }
        PyObject *exc = tls_error(t, "a TLS record was refused");
        if (exc == NULL) report("the record error");
        fail(t, exc);
        Py_XDECREF(exc);
        return;
    }
}

/* ---- the TCP transport's protocol ---- */

static PyObject *Tls_connection_made(Tls *t, PyObject *raw) {
    if (t->raw != NULL || t->state != NEW) {
        PyErr_SetString(PyExc_RuntimeError, "connection_made called twice");
        return NULL;
    }
    SSL_CTX *ctx = ((PySSLContextHead *)t->context)->ctx;
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        t->rbio = t->wbio = NULL;
        return PyErr_NoMemory();
    }
    /* An empty read BIO means "wait for the peer", not end of file. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_mode(t->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_AUTO_RETRY);
    if (t->server_side)
        SSL_set_accept_state(t->ssl);
    else
        SSL_set_connect_state(t->ssl);
    Py_INCREF(raw);
    t->raw = raw;
    t->state = HANDSHAKING;
    if (!t->server_side) do_handshake(t);
    Py_RETURN_NONE;
}

static PyObject *Tls_data_received(Tls *t, PyObject *data) {
    if (t->state != HANDSHAKING && t->state != OPEN) Py_RETURN_NONE;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    int n = view.len > 0 ? BIO_write(t->rbio, view.buf, (int)view.len) : 0;
    PyBuffer_Release(&view);
    if (n < 0) return PyErr_NoMemory();
    if (t->state == HANDSHAKING)
        do_handshake(t);
    else
        read_records(t);
    Py_RETURN_NONE;
}

static PyObject *Tls_eof_received(Tls *t, PyObject *unused) {
    if (t->state == HANDSHAKING) {
        PyObject *exc = PyObject_CallFunction(PyExc_ConnectionResetError, "s", "the peer closed during the TLS handshake");
        if (exc == NULL) return NULL;
        t->state = CLOSING;
        tell_waiter(t, exc);
        Py_DECREF(exc);
    } else if (t->state == OPEN) {
        read_records(t);
        app_eof(t);
        t->state = CLOSING;
    }
    Py_RETURN_FALSE; /* the TCP transport closes; connection_lost follows */
}

static PyObject *Tls_connection_lost(Tls *t, PyObject *exc) {
    int was_open = t->app_connected;
    t->state = CLOSED;
    if (t->waiter != NULL && t->waiter != Py_None) {
        PyObject *why = exc != Py_None ? (Py_INCREF(exc), exc)
                                       : PyObject_CallFunction(PyExc_ConnectionResetError, "s",
                                                               "the connection closed during the TLS handshake");
        if (why == NULL) return NULL;
        tell_waiter(t, why);
        Py_DECREF(why);
    }
    Py_CLEAR(t->raw);
    PyObject *app = t->app;
    t->app = NULL;
    if (was_open && app != NULL) {
        PyObject *r = PyObject_CallMethodOneArg(app, s_connection_lost,
                                                exc == Py_None && t->error != NULL ? t->error : exc);
        if (r == NULL) report("connection_lost");
        Py_XDECREF(r);
    }
    Py_XDECREF(app);
    if (t->ssl != NULL) {
        SSL_free(t->ssl); /* and its BIOs */
        t->ssl = NULL;
        t->rbio = t->wbio = NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Tls_pause_writing(Tls *t, PyObject *unused) {
    if (t->app_connected && t->app != NULL) return PyObject_CallMethodNoArgs(t->app, s_pause_writing);
    Py_RETURN_NONE;
}

static PyObject *Tls_resume_writing(Tls *t, PyObject *unused) {
    if (t->app_connected && t->app != NULL) return PyObject_CallMethodNoArgs(t->app, s_resume_writing);
    Py_RETURN_NONE;
}

/* ---- the application's transport ---- */

static PyObject *Tls_write(Tls *t, PyObject *data) {
    if (t->state != OPEN) Py_RETURN_NONE; /* closing: asyncio's transports drop late writes too */
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    int ok = 1;
    if (view.len > 0) {
        size_t written = 0;
        ERR_clear_error();
        ok = SSL_write_ex(t->ssl, view.buf, (size_t)view.len, &written);
    }
    PyBuffer_Release(&view);
    if (!ok) {
        PyObject *exc = tls_error(t, "a TLS write failed");
        if (exc == NULL) return NULL;
        fail(t, exc);
        Py_DECREF(exc);
        Py_RETURN_NONE;
    }
    if (flush(t) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Tls_writelines(Tls *t, PyObject *lines) {
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    if (empty == NULL) return NULL;
    PyObject *joined = _PyBytes_Join(empty, lines);
    Py_DECREF(empty);
    if (joined == NULL) return NULL;
    PyObject *r = Tls_write(t, joined);
    Py_DECREF(joined);
    return r;
}

static PyObject *Tls_close(Tls *t, PyObject *unused) {
    if (t->state == OPEN) {
        ERR_clear_error();
        SSL_shutdown(t->ssl); /* our close_notify */
        if (flush(t) < 0) PyErr_Clear();
    }
    if (t->state < CLOSING) {
        t->state = CLOSING;
        raw_call(t, s_close);
    }
    Py_RETURN_NONE;
}

static PyObject *Tls_abort(Tls *t, PyObject *unused) {
    if (t->state < CLOSED) {
        t->state = CLOSING;
        raw_call(t, s_abort);
    }
    Py_RETURN_NONE;
}

static PyObject *Tls_is_closing(Tls *t, PyObject *unused) { return PyBool_FromLong(t->state >= CLOSING); }

static PyObject *Tls_is_reading(Tls *t, PyObject *unused) {
    return PyBool_FromLong(t->state == OPEN && !t->reading_paused);
}

static PyObject *Tls_pause_reading(Tls *t, PyObject *unused) {
    if (!t->reading_paused) {
        t->reading_paused = 1;
        raw_call(t, s_pause_reading);
    }
    Py_RETURN_NONE;
}

static PyObject *Tls_resume_reading(Tls *t, PyObject *unused) {
    if (t->reading_paused) {
        t->reading_paused = 0;
        raw_call(t, s_resume_reading);
        /* Records that arrived before the pause are delivered from the loop, not inside the caller. */
        if (!t->drain_scheduled && t->loop != NULL) {
            PyObject *drain = PyObject_GetAttr((PyObject *)t, s_drain);
            PyObject *h = drain ? PyObject_CallMethodOneArg(t->loop, s_call_soon, drain) : NULL;
            Py_XDECREF(drain);
            if (h == NULL) return NULL;
            Py_DECREF(h);
            t->drain_scheduled = 1;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *Tls_drain(Tls *t, PyObject *unused) {
    t->drain_scheduled = 0;
    read_records(t);
    Py_RETURN_NONE;
}

static PyObject *Tls_get_extra_info(Tls *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "get_extra_info(name, default=None)");
        return NULL;
    }
    PyObject *fallback = nargs == 2 ? args[1] : Py_None;
    if (PyUnicode_CompareWithASCIIString(args[0], "sslcontext") == 0) {
        Py_INCREF(t->context);
        return t->context;
    }
    if (PyUnicode_CompareWithASCIIString(args[0], "peercert") == 0) {
        PyObject *v = t->peercert != NULL ? t->peercert : fallback;
        Py_INCREF(v);
        return v;
    }
    if (PyUnicode_CompareWithASCIIString(args[0], "cipher") == 0 && t->ssl != NULL && t->state >= OPEN) {
        const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
        if (c != NULL)
            return Py_BuildValue("(ssi)", SSL_CIPHER_get_name(c), SSL_get_version(t->ssl),
                                 SSL_CIPHER_get_bits(c, NULL));
    }
    if (t->raw == NULL) {
        Py_INCREF(fallback);
        return fallback;
    }
    return PyObject_CallMethodObjArgs(t->raw, s_get_extra_info, args[0], fallback, NULL);
}

static PyObject *Tls_get_write_buffer_size(Tls *t, PyObject *unused) {
    if (t->raw == NULL) return PyLong_FromLong(0);
    return PyObject_CallMethodNoArgs(t->raw, s_get_write_buffer_size);
}

static PyObject *Tls_set_write_buffer_limits(Tls *t, PyObject *args, PyObject *kwds) {
    if (t->raw == NULL) Py_RETURN_NONE;
    PyObject *method = PyObject_GetAttr(t->raw, s_set_write_buffer_limits);
    if (method == NULL) return NULL;
    PyObject *r = PyObject_Call(method, args, kwds);
    Py_DECREF(method);
    return r;
}

static PyObject *Tls_can_write_eof(Tls *t, PyObject *unused) { Py_RETURN_FALSE; }

static PyObject *Tls_write_eof(Tls *t, PyObject *unused) {
    PyErr_SetString(PyExc_NotImplementedError, "TLS connections cannot half-close; close() sends close_notify");
    return NULL;
}

static PyObject *Tls_get_protocol(Tls *t, PyObject *unused) {
    PyObject *app = t->app != NULL ? t->app : Py_None;
    Py_INCREF(app);
    return app;
}

static PyObject *Tls_set_protocol(Tls *t, PyObject *protocol) {
    Py_INCREF(protocol);
    Py_XSETREF(t->app, protocol);
    Py_RETURN_NONE;
}

/* ---- the type ---- */

static int Tls_init(Tls *t, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"context", "server_side", "protocol", "check", "waiter", "loop", NULL};
    PyObject *context, *app, *check, *waiter, *loop;
    int server_side;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OpOOOO", kwlist, &context, &server_side, &app, &check, &waiter,
                                     &loop))
        return -1;
    int is_context = PyObject_IsInstance(context, ssl_context_type);
    if (is_context <= 0) {
        if (is_context == 0) PyErr_SetString(PyExc_TypeError, "context must be an ssl.SSLContext");
        return -1;
    }
    if (t->state != NEW || t->context != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a TLS transport is initialized once");
        return -1;
    }
    Py_INCREF(context);
    t->context = context;
    Py_INCREF(app);
    t->app = app;
    Py_INCREF(check);
    t->check = check;
    Py_INCREF(waiter);
    t->waiter = waiter;
    Py_INCREF(loop);
    t->loop = loop;
    t->server_side = server_side;
    return 0;
}

static int Tls_traverse(Tls *t, visitproc visit, void *arg) {
    Py_VISIT(t->context);
    Py_VISIT(t->app);
    Py_VISIT(t->check);
    Py_VISIT(t->waiter);
    Py_VISIT(t->loop);
    Py_VISIT(t->raw);
    Py_VISIT(t->peercert);
    Py_VISIT(t->error);
    return 0;
}

static int Tls_clear(Tls *t) {
    Py_CLEAR(t->app);
    Py_CLEAR(t->check);
    Py_CLEAR(t->waiter);
    Py_CLEAR(t->loop);
    Py_CLEAR(t->raw);
    Py_CLEAR(t->peercert);
    Py_CLEAR(t->error);
    return 0;
}

static void Tls_dealloc(Tls *t) {
    PyObject_GC_UnTrack(t);
    Tls_clear(t);
    if (t->ssl != NULL) SSL_free(t->ssl);
    t->ssl = NULL;
    Py_CLEAR(t->context); /* after SSL_free: the SSL_CTX outlives its connections either way (refcounted) */
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyObject *Tls_get_server_side(Tls *t, void *unused) { return PyBool_FromLong(t->server_side); }

static PyMethodDef Tls_methods[] = {
    {"connection_made", (PyCFunction)Tls_connection_made, METH_O, NULL},
    {"data_received", (PyCFunction)Tls_data_received, METH_O, NULL},
    {"eof_received", (PyCFunction)Tls_eof_received, METH_NOARGS, NULL},
    {"connection_lost", (PyCFunction)Tls_connection_lost, METH_O, NULL},
    {"pause_writing", (PyCFunction)Tls_pause_writing, METH_NOARGS, NULL},
    {"resume_writing", (PyCFunction)Tls_resume_writing, METH_NOARGS, NULL},
    {"write", (PyCFunction)Tls_write, METH_O, NULL},
    {"writelines", (PyCFunction)Tls_writelines, METH_O, NULL},
    {"close", (PyCFunction)Tls_close, METH_NOARGS, NULL},
    {"abort", (PyCFunction)Tls_abort, METH_NOARGS, NULL},
    {"is_closing", (PyCFunction)Tls_is_closing, METH_NOARGS, NULL},
    {"is_reading", (PyCFunction)Tls_is_reading, METH_NOARGS, NULL},
    {"pause_reading", (PyCFunction)Tls_pause_reading, METH_NOARGS, NULL},
    {"resume_reading", (PyCFunction)Tls_resume_reading, METH_NOARGS, NULL},
    {"_drain", (PyCFunction)Tls_drain, METH_NOARGS, NULL},
    {"get_extra_info", (PyCFunction)(void (*)(void))Tls_get_extra_info, METH_FASTCALL, NULL},
    {"get_write_buffer_size", (PyCFunction)Tls_get_write_buffer_size, METH_NOARGS, NULL},
    {"set_write_buffer_limits", (PyCFunction)(void (*)(void))Tls_set_write_buffer_limits,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"can_write_eof", (PyCFunction)Tls_can_write_eof, METH_NOARGS, NULL},
    {"write_eof", (PyCFunction)Tls_write_eof, METH_NOARGS, NULL},
    {"get_protocol", (PyCFunction)Tls_get_protocol, METH_NOARGS, NULL},
    {"set_protocol", (PyCFunction)Tls_set_protocol, METH_O, NULL},
    {NULL},
};

static PyGetSetDef Tls_getset[] = {
    {"server_side", (getter)Tls_get_server_side, NULL, NULL, NULL},
    {NULL},
};

static PyTypeObject TlsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "proxyagent.tls._transport.TlsTransport",
    .tp_basicsize = sizeof(Tls),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Tls_init,
    .tp_traverse = (traverseproc)Tls_traverse,
    .tp_clear = (inquiry)Tls_clear,
    .tp_dealloc = (destructor)Tls_dealloc,
    .tp_methods = Tls_methods,
    .tp_getset = Tls_getset,
};

/* Whether `context`'s SSL_CTX reads back as Python configured it, through this module's OpenSSL: the proof
 * that the pointer is what we take it for and that both sides share one library. */
static PyObject *compatible(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    long verify_mode, minimum_version, num_tickets, python_openssl;
    PyObject *context;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "compatible() takes 5 arguments");
        return NULL;
    }
    context = args[0];
    verify_mode = PyLong_AsLong(args[1]);
    minimum_version = PyLong_AsLong(args[2]);
    num_tickets = PyLong_AsLong(args[3]);
    python_openssl = PyLong_AsLong(args[4]);
    if (PyErr_Occurred()) return NULL;
    int is_context = PyObject_IsInstance(context, ssl_context_type);
    if (is_context < 0) return NULL;
    if (!is_context || (unsigned long)python_openssl != OpenSSL_version_num()) Py_RETURN_FALSE;
    SSL_CTX *ctx = ((PySSLContextHead *)context)->ctx;
    if (ctx == NULL) Py_RETURN_FALSE;
    int expected_verify = verify_mode == 0   ? SSL_VERIFY_NONE
                          : verify_mode == 1 ? SSL_VERIFY_PEER
                                             : SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    return PyBool_FromLong(SSL_CTX_get_verify_mode(ctx) == expected_verify &&
                           SSL_CTX_get_min_proto_version(ctx) == minimum_version &&
                           (long)SSL_CTX_get_num_tickets(ctx) == num_tickets);
}

static PyMethodDef module_methods[] = {
    {"compatible", (PyCFunction)(void (*)(void))compatible, METH_FASTCALL,
     "compatible(context, verify_mode, minimum_version, num_tickets, openssl_version_number) -> bool"},
    {NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_transport", NULL, -1, module_methods};

#define INTERN(var, text) \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL

PyMODINIT_FUNC PyInit__transport(void) {
    INTERN(s_write, "write");
    INTERN(s_close, "close");
    INTERN(s_abort, "abort");
    INTERN(s_data_received, "data_received");
    INTERN(s_eof_received, "eof_received");
    INTERN(s_connection_made, "connection_made");
    INTERN(s_connection_lost, "connection_lost");
    INTERN(s_pause_writing, "pause_writing");
    INTERN(s_resume_writing, "resume_writing");
    INTERN(s_pause_reading, "pause_reading");
    INTERN(s_resume_reading, "resume_reading");
    INTERN(s_get_extra_info, "get_extra_info");
    INTERN(s_get_write_buffer_size, "get_write_buffer_size");
    INTERN(s_set_write_buffer_limits, "set_write_buffer_limits");
    INTERN(s_done, "done");
    INTERN(s_set_result, "set_result");
    INTERN(s_set_exception, "set_exception");
    INTERN(s_call_soon, "call_soon");
    INTERN(s_drain, "_drain");
    INTERN(s_reason, "reason");
    INTERN(s_library, "library");
    INTERN(s_verify_message, "verify_message");
    INTERN(s_verify_code, "verify_code");
    PyObject *ssl_module = PyImport_ImportModule("_ssl");
    if (ssl_module == NULL) return NULL;
    SSLError = PyObject_GetAttrString(ssl_module, "SSLError");
    SSLCertVerificationError = PyObject_GetAttrString(ssl_module, "SSLCertVerificationError");
    ssl_context_type = PyObject_GetAttrString(ssl_module, "_SSLContext");
    Py_DECREF(ssl_module);
    if (SSLError == NULL || SSLCertVerificationError == NULL || ssl_context_type == NULL) return NULL;
    if (PyType_Ready(&TlsType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    Py_INCREF(&TlsType);
    if (PyModule_AddObject(m, "TlsTransport", (PyObject *)&TlsType) < 0) {
        Py_DECREF(&TlsType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
