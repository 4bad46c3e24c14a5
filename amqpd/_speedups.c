/* amqpd._speedups: optional compiled versions of the broker's per-frame and per-message code.
 *
 * Contract: every function and type here returns exactly what its pure-Python twin returns
 * (amqpd/wire/frames.py, content.py, methods.py, amqpd/store/records.py) and fails where it
 * fails, with the same exception types; the Python modules pick these at import unless
 * AMQPD_PURE_PYTHON=1 (see amqpd/accel.py). tests/test_speedups.py checks both on the same
 * inputs. Nothing here holds state between calls except the objects a caller creates and
 * the CRC tables, computed once when the module is loaded and only read after that.
 * Build: setup.py (an optional extension: without a compiler the pure-Python code runs).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define FRAME_END 0xCE
#define FRAME_OVERHEAD 8

/* ------------------------------------------------------------------ byte helpers */

static inline uint16_t be16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static inline uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t be64(const unsigned char *p)
{
    return ((uint64_t)be32(p) << 32) | be32(p + 4);
}

static inline void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline void put_le64(unsigned char *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

/* ------------------------------------------------------------------------- CRC32 */
/* The zlib/IEEE CRC-32 (reflected polynomial 0xEDB88320), slicing by 8; the tables are
 * computed once at module initialisation and only read afterwards. */

static uint32_t crc_table[8][256];

static void crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc_table[0][n];
        for (int t = 1; t < 8; t++) {
            c = crc_table[0][c & 0xFF] ^ (c >> 8);
            crc_table[t][n] = c;
        }
    }
}

static uint32_t crc_update(uint32_t crc, const unsigned char *p, Py_ssize_t n)
{
    crc = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if PY_BIG_ENDIAN
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= crc;
        crc = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
              crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^
              crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
              crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* Large bodies are checksummed without the GIL, so the loop thread keeps running while the
 * store's writer thread encodes a batch. */
#define CRC_NOGIL_BYTES 65536

static uint32_t crc_buffer(uint32_t crc, const unsigned char *p, Py_ssize_t n)
{
    if (n >= CRC_NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        crc = crc_update(crc, p, n);
        Py_END_ALLOW_THREADS
        return crc;
    }
    return crc_update(crc, p, n);
}

static PyObject *py_crc32(PyObject *self, PyObject *args)
{
    Py_buffer view;
    unsigned long start = 0;
    if (!PyArg_ParseTuple(args, "y*|k:crc32", &view, &start))
        return NULL;
    uint32_t crc = crc_buffer((uint32_t)start, view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(crc);
}

/* ------------------------------------------------------------------- FrameReader */

typedef struct {
    PyObject_HEAD
    PyObject *chunks;     /* list of bytes: an incomplete frame's pieces */
    Py_ssize_t have;      /* bytes held in chunks */
    Py_ssize_t need;      /* bytes needed before parsing can make progress */
    long long frame_max;  /* 0: unlimited */
} FrameReaderObject;

static int FrameReader_init(FrameReaderObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"frame_max", NULL};
    long long frame_max = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|L:FrameReader", kwlist, &frame_max))
        return -1;
    PyObject *chunks = PyList_New(0);
    if (chunks == NULL)
        return -1;
    Py_XSETREF(self->chunks, chunks);
    self->have = 0;
    self->need = 0;
    self->frame_max = frame_max;
    return 0;
}

static int FrameReader_traverse(FrameReaderObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->chunks);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int FrameReader_clear(FrameReaderObject *self)
{
    Py_CLEAR(self->chunks);
    return 0;
}

static void FrameReader_dealloc(FrameReaderObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    FrameReader_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Raise the exception the subclass's `_frame_error(frame_type, size, limit, payload, end)`
 * returns; payload is None for a frame that is too large. */
static void raise_frame_error(PyObject *self, int frame_type, Py_ssize_t size, long long limit,
                              PyObject *payload, int end)
{
    PyObject *error = PyObject_CallMethod(self, "_frame_error", "inLOi", frame_type, size, limit,
                                          payload, end);
    if (error == NULL)
        return;
    PyErr_SetObject((PyObject *)Py_TYPE(error), error);
    Py_DECREF(error);
}

static PyObject *FrameReader_feed(FrameReaderObject *self, PyObject *data)
{
    PyObject *buffer;
    if (self->chunks == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FrameReader not initialised");
        return NULL;
    }
    if (PyList_GET_SIZE(self->chunks)) {
        Py_ssize_t len = PyObject_Length(data);
        if (len < 0)
            return NULL;
        if (PyBytes_CheckExact(data)) {
            if (PyList_Append(self->chunks, data) < 0)
                return NULL;
        } else {
            PyObject *copy = PyBytes_FromObject(data);
            if (copy == NULL || PyList_Append(self->chunks, copy) < 0) {
                Py_XDECREF(copy);
                return NULL;
            }
            Py_DECREF(copy);
        }
        self->have += len;
        if (self->have < self->need)
            return PyList_New(0);
        PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
        if (empty == NULL)
            return NULL;
        buffer = _PyBytes_Join(empty, self->chunks);
        Py_DECREF(empty);
        if (buffer == NULL)
            return NULL;
        PyObject *fresh = PyList_New(0);
        if (fresh == NULL) {
            Py_DECREF(buffer);
            return NULL;
        }
        Py_SETREF(self->chunks, fresh);
    } else if (PyBytes_CheckExact(data)) {
        buffer = Py_NewRef(data);
    } else {
        buffer = PyBytes_FromObject(data);
        if (buffer == NULL)
            return NULL;
    }
    PyObject *frames = PyList_New(0);
    if (frames == NULL) {
        Py_DECREF(buffer);
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(buffer);
    Py_ssize_t available = PyBytes_GET_SIZE(buffer);
    Py_ssize_t offset = 0;
    Py_ssize_t need = 7;
    long long limit = self->frame_max;
    while (available - offset >= 7) {
        int frame_type = p[offset];
        int channel = be16(p + offset + 1);
        Py_ssize_t size = (Py_ssize_t)be32(p + offset + 3);
        if (limit && size > limit) {
            raise_frame_error((PyObject *)self, frame_type, size, limit, Py_None, 0);
            goto error;
        }
        Py_ssize_t end = offset + 7 + size;
        if (end >= available) {
            need = size + FRAME_OVERHEAD;
            break;
        }
        PyObject *payload = PyBytes_FromStringAndSize((const char *)p + offset + 7, size);
        if (payload == NULL)
            goto error;
        if (p[end] != FRAME_END) {
            raise_frame_error((PyObject *)self, frame_type, size, limit, payload, p[end]);
            Py_DECREF(payload);
            goto error;
        }
        PyObject *frame = PyTuple_New(3);
        if (frame == NULL) {
            Py_DECREF(payload);
            goto error;
        }
        PyTuple_SET_ITEM(frame, 0, PyLong_FromLong(frame_type));
        PyTuple_SET_ITEM(frame, 1, PyLong_FromLong(channel));
        PyTuple_SET_ITEM(frame, 2, payload);
        if (PyTuple_GET_ITEM(frame, 0) == NULL || PyTuple_GET_ITEM(frame, 1) == NULL ||
            PyList_Append(frames, frame) < 0) {
            Py_DECREF(frame);
            goto error;
        }
        Py_DECREF(frame);
        offset = end + 1;
    }
    if (offset < available) {
        PyObject *rest;
        if (offset)
            rest = PyBytes_FromStringAndSize((const char *)p + offset, available - offset);
        else
            rest = Py_NewRef(buffer);
        if (rest == NULL || PyList_Append(self->chunks, rest) < 0) {
            Py_XDECREF(rest);
            goto error;
        }
        Py_DECREF(rest);
        self->have = available - offset;
        self->need = need;
    } else {
        self->have = 0;
    }
    Py_DECREF(buffer);
    return frames;
error:
    Py_DECREF(buffer);
    Py_DECREF(frames);
    return NULL;
}

static PyObject *FrameReader_buffered(FrameReaderObject *self, void *closure)
{
    Py_ssize_t held = (self->chunks && PyList_GET_SIZE(self->chunks)) ? self->have : 0;
    return PyLong_FromSsize_t(held);
}

static PyMethodDef FrameReader_methods[] = {
    {"feed", (PyCFunction)FrameReader_feed, METH_O,
     "Every complete frame in the data seen so far, as (frame_type, channel, payload)."},
    {NULL}};

static PyMemberDef FrameReader_members[] = {
    {"frame_max", T_LONGLONG, offsetof(FrameReaderObject, frame_max), 0,
     "largest accepted frame size, 0 for no limit"},
    {NULL}};

static PyGetSetDef FrameReader_getset[] = {
    {"buffered", (getter)FrameReader_buffered, NULL, "bytes held of an incomplete frame", NULL},
    {NULL}};

static PyType_Slot FrameReader_slots[] = {
    {Py_tp_doc, "Incremental AMQP frame splitter (compiled twin of wire.frames.FrameReader)."},
    {Py_tp_init, FrameReader_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, FrameReader_dealloc},
    {Py_tp_traverse, FrameReader_traverse},
    {Py_tp_clear, FrameReader_clear},
    {Py_tp_methods, FrameReader_methods},
    {Py_tp_members, FrameReader_members},
    {Py_tp_getset, FrameReader_getset},
    {0, NULL}};

static PyType_Spec FrameReader_spec = {
    "amqpd._speedups.FrameReader", sizeof(FrameReaderObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, FrameReader_slots};

/* ------------------------------------------------------------------ MethodDecoder */
/* decode_method with basic.publish/ack/nack/reject decoded here and every other method
 * handed to `fallback(payload)`; a malformed hot method raises syntax_error(index, payload). */

#define BASIC_PUBLISH 0x003C0028
#define BASIC_ACK 0x003C0050
#define BASIC_REJECT 0x003C005A
#define BASIC_NACK 0x003C0078

typedef struct {
    PyObject_HEAD
    PyObject *fallback;
    PyObject *syntax_error;
    vectorcallfunc vectorcall;
} MethodDecoderObject;

static PyObject *syntax_error(MethodDecoderObject *self, long index, PyObject *payload)
{
    PyObject *error = PyObject_CallFunction(self->syntax_error, "lO", index, payload);
    if (error != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(error), error);
        Py_DECREF(error);
    }
    return NULL;
}

static PyObject *pair(long index, PyObject *args)
{
    if (args == NULL)
        return NULL;
    PyObject *idx = PyLong_FromLong(index);
    if (idx == NULL) {
        Py_DECREF(args);
        return NULL;
    }
    PyObject *result = PyTuple_New(2);
    if (result == NULL) {
        Py_DECREF(idx);
        Py_DECREF(args);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, idx);
    PyTuple_SET_ITEM(result, 1, args);
    return result;
}

static PyObject *decode_hot(MethodDecoderObject *self, PyObject *payload)
{
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(payload);
    Py_ssize_t n = PyBytes_GET_SIZE(payload);
    if (n < 4)
        return syntax_error(self, 0, payload);
    long index = ((long)be16(p) << 16) | be16(p + 2);
    switch (index) {
    case BASIC_PUBLISH: {
        Py_ssize_t pos = 6;
        if (pos >= n)
            return syntax_error(self, index, payload);
        Py_ssize_t size = p[pos];
        if (pos + 1 + size >= n)
            return syntax_error(self, index, payload);
        PyObject *exchange = PyUnicode_DecodeUTF8((const char *)p + pos + 1, size, NULL);
        if (exchange == NULL) {
            PyErr_Clear();
            return syntax_error(self, index, payload);
        }
        pos += 1 + size;
        size = p[pos];
        if (pos + 1 + size + 1 != n) {
            Py_DECREF(exchange);
            return syntax_error(self, index, payload);
        }
        PyObject *routing_key = PyUnicode_DecodeUTF8((const char *)p + pos + 1, size, NULL);
        if (routing_key == NULL) {
            PyErr_Clear();
            Py_DECREF(exchange);
            return syntax_error(self, index, payload);
        }
        int bits = p[n - 1];
        PyObject *args = PyTuple_New(4);
        if (args == NULL) {
            Py_DECREF(exchange);
            Py_DECREF(routing_key);
            return NULL;
        }
        PyTuple_SET_ITEM(args, 0, exchange);
        PyTuple_SET_ITEM(args, 1, routing_key);
        PyTuple_SET_ITEM(args, 2, Py_NewRef(bits & 1 ? Py_True : Py_False));
        PyTuple_SET_ITEM(args, 3, Py_NewRef(bits & 2 ? Py_True : Py_False));
        return pair(index, args);
    }
    case BASIC_ACK:
    case BASIC_REJECT:
    case BASIC_NACK: {
        if (n != 13)
            return syntax_error(self, index, payload);
        PyObject *tag = PyLong_FromUnsignedLongLong(be64(p + 4));
        if (tag == NULL)
            return NULL;
        int bits = p[12];
        PyObject *args;
        if (index == BASIC_NACK)
            args = PyTuple_Pack(3, tag, bits & 1 ? Py_True : Py_False,
                                bits & 2 ? Py_True : Py_False);
        else
            args = PyTuple_Pack(2, tag, bits & 1 ? Py_True : Py_False);
        Py_DECREF(tag);
        return pair(index, args);
    }
    default:
        return PyObject_CallOneArg(self->fallback, payload);
    }
}

static PyObject *MethodDecoder_vectorcall(PyObject *callable, PyObject *const *args,
                                          size_t nargsf, PyObject *kwnames)
{
    MethodDecoderObject *self = (MethodDecoderObject *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "decode_method takes one payload argument");
        return NULL;
    }
    PyObject *payload = args[0];
    if (!PyBytes_CheckExact(payload))
        return PyObject_CallOneArg(self->fallback, payload);
    return decode_hot(self, payload);
}

static int MethodDecoder_init(MethodDecoderObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *fallback, *error;
    if (!PyArg_ParseTuple(args, "OO:MethodDecoder", &fallback, &error))
        return -1;
    Py_XSETREF(self->fallback, Py_NewRef(fallback));
    Py_XSETREF(self->syntax_error, Py_NewRef(error));
    self->vectorcall = MethodDecoder_vectorcall;
    return 0;
}

static int MethodDecoder_traverse(MethodDecoderObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    Py_VISIT(self->syntax_error);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int MethodDecoder_clear(MethodDecoderObject *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->syntax_error);
    return 0;
}

static void MethodDecoder_dealloc(MethodDecoderObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    MethodDecoder_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMemberDef MethodDecoder_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(MethodDecoderObject, vectorcall), READONLY},
    {NULL}};

static PyType_Slot MethodDecoder_slots[] = {
    {Py_tp_doc, "decode_method(payload) -> (index, args), hot methods decoded in C."},
    {Py_tp_init, MethodDecoder_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_dealloc, MethodDecoder_dealloc},
    {Py_tp_traverse, MethodDecoder_traverse},
    {Py_tp_clear, MethodDecoder_clear},
    {Py_tp_members, MethodDecoder_members},
    {0, NULL}};

static PyType_Spec MethodDecoder_spec = {
    "amqpd._speedups.MethodDecoder", sizeof(MethodDecoderObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL, MethodDecoder_slots};

/* ------------------------------------------------------------------ peek_header */
/* peek_header(info_type, error_type, payload) -> info_type(class_id, weight, body_size,
 * delivery_mode, priority, expiration, headers_raw, user_id); raises error_type for a header
 * that does not parse. */

#define P_CONTENT_TYPE (1 << 15)
#define P_CONTENT_ENCODING (1 << 14)
#define P_HEADERS (1 << 13)
#define P_DELIVERY_MODE (1 << 12)
#define P_PRIORITY (1 << 11)
#define P_CORRELATION_ID (1 << 10)
#define P_REPLY_TO (1 << 9)
#define P_EXPIRATION (1 << 8)
#define P_MESSAGE_ID (1 << 7)
#define P_TIMESTAMP (1 << 6)
#define P_TYPE (1 << 5)
#define P_USER_ID (1 << 4)

static PyObject *peek_header(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "peek_header(info_type, error_type, payload)");
        return NULL;
    }
    PyObject *info_type = args[0], *error_type = args[1];
    Py_buffer view;
    if (PyObject_GetBuffer(args[2], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *p = view.buf;
    Py_ssize_t n = view.len, pos = 14, size;
    PyObject *headers_raw = NULL, *expiration = NULL, *user_id = NULL, *result = NULL;
    int delivery_mode = 0, priority = -1;
    if (n < 14)
        goto bad;
    int class_id = be16(p), weight = be16(p + 2);
    uint64_t body_size = be64(p + 4);
    unsigned flags = be16(p + 12);
    if (flags & 1) {
        for (;;) {
            if (pos + 2 > n)
                goto bad;
            unsigned more = be16(p + pos);
            pos += 2;
            if (!(more & 1))
                break;
        }
    }
#define SKIP_SHORTSTR()        \
    do {                       \
        if (pos >= n)          \
            goto bad;          \
        pos += 1 + p[pos];     \
    } while (0)
    if (flags & P_CONTENT_TYPE)
        SKIP_SHORTSTR();
    if (flags & P_CONTENT_ENCODING)
        SKIP_SHORTSTR();
    if (flags & P_HEADERS) {
        if (pos + 4 > n)
            goto bad;
        size = (Py_ssize_t)be32(p + pos);
        if (pos + 4 + size > n)
            goto bad;
        headers_raw = PyBytes_FromStringAndSize((const char *)p + pos, 4 + size);
        if (headers_raw == NULL)
            goto done;
        pos += 4 + size;
    }
    if (flags & P_DELIVERY_MODE) {
        if (pos >= n)
            goto bad;
        delivery_mode = p[pos++];
    }
    if (flags & P_PRIORITY) {
        if (pos >= n)
            goto bad;
        priority = p[pos++];
    }
    if (flags & (P_EXPIRATION | P_USER_ID)) {
        if (flags & P_CORRELATION_ID)
            SKIP_SHORTSTR();
        if (flags & P_REPLY_TO)
            SKIP_SHORTSTR();
        if (flags & P_EXPIRATION) {
            if (pos >= n || pos + 1 + p[pos] > n)
                goto bad;
            size = p[pos];
            expiration = PyUnicode_DecodeUTF8((const char *)p + pos + 1, size, NULL);
            if (expiration == NULL)
                goto bad;
            pos += 1 + size;
        }
        if (flags & P_USER_ID) {
            if (flags & P_MESSAGE_ID)
                SKIP_SHORTSTR();
            if (flags & P_TIMESTAMP)
                pos += 8;
            if (flags & P_TYPE)
                SKIP_SHORTSTR();
            if (pos >= n || pos + 1 + p[pos] > n)
                goto bad;
            size = p[pos];
            user_id = PyUnicode_DecodeUTF8((const char *)p + pos + 1, size, NULL);
            if (user_id == NULL)
                goto bad;
            pos += 1 + size;
        }
    }
#undef SKIP_SHORTSTR
    if (pos > n)
        goto bad;
    {
        PyObject *priority_obj = priority < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(priority);
        PyObject *fields[8] = {
            PyLong_FromLong(class_id),
            PyLong_FromLong(weight),
            PyLong_FromUnsignedLongLong(body_size),
            PyLong_FromLong(delivery_mode),
            priority_obj,
            expiration ? expiration : Py_None,
            headers_raw ? headers_raw : Py_None,
            user_id ? user_id : Py_None};
        int ok = fields[0] && fields[1] && fields[2] && fields[3] && fields[4];
        if (ok && PyType_Check(info_type) &&
            PyType_IsSubtype((PyTypeObject *)info_type, &PyTuple_Type)) {
            /* a named tuple: allocate it as tuple.__new__ does, skipping its Python __new__ */
            PyTypeObject *tp = (PyTypeObject *)info_type;
            result = tp->tp_alloc(tp, 8);
            if (result != NULL) {
                for (int i = 0; i < 8; i++)
                    PyTuple_SET_ITEM(result, i, Py_NewRef(fields[i]));
            }
        } else if (ok) {
            result = PyObject_Vectorcall(info_type, fields, 8, NULL);
        }
        for (int i = 0; i < 5; i++)
            Py_XDECREF(fields[i]);
    }
    goto done;
bad:
    PyErr_Clear();
    PyErr_SetString(error_type, "malformed content header");
done:
    Py_XDECREF(headers_raw);
    Py_XDECREF(expiration);
    Py_XDECREF(user_id);
    PyBuffer_Release(&view);
    return result;
}

/* ------------------------------------------------------------- merge_publishes */
/* (see merge_publishes below) */

static int is_frame(PyObject *item, long type, PyObject *channel, PyObject **payload)
{
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 3)
        return 0;
    PyObject *t = PyTuple_GET_ITEM(item, 0), *p = PyTuple_GET_ITEM(item, 2);
    if (!PyLong_CheckExact(t) || PyLong_AsLong(t) != type || !PyBytes_CheckExact(p))
        return 0;
    if (channel != NULL) {
        PyObject *c = PyTuple_GET_ITEM(item, 1);
        if (!PyLong_CheckExact(c) || PyLong_AsLong(c) != PyLong_AsLong(channel))
            return 0;
    }
    *payload = p;
    return 1;
}

/* merge_publishes(item_type, acks_type, frames) -> list: the frames of FrameReader.feed with
 * each run "basic.publish method frame, its content header frame, and (unless the header
 * announces an empty body) one body frame holding the whole body, all on one channel"
 * replaced by (item_type, channel, (method_payload, header_payload, body_payload)), and each
 * run of consecutive basic.ack frames with multiple=false (no other bit set) on one channel,
 * at most MAX_ACK_RUN of them, by (acks_type, channel, [delivery tags]). Anything else is
 * kept as it is; the list is returned unchanged (the same object) when nothing merges. */

#define MAX_ACK_RUN 512

static const char ACK_METHOD[4] = {0x00, 0x3c, 0x00, 0x50};

/* A single basic.ack (multiple=false) method frame on `channel` (any channel if NULL). */
static int is_single_ack(PyObject *item, PyObject *channel, PyObject **payload)
{
    if (!is_frame(item, 1, channel, payload))
        return 0;
    const char *p = PyBytes_AS_STRING(*payload);
    return PyBytes_GET_SIZE(*payload) == 13 && memcmp(p, ACK_METHOD, 4) == 0 && p[12] == 0;
}

static PyObject *merge_publishes(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyList_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "merge_publishes(item_type, acks_type, frames: list)");
        return NULL;
    }
    PyObject *item_type = args[0], *acks_type = args[1], *frames = args[2];
    Py_ssize_t n = PyList_GET_SIZE(frames);
    PyObject *out = NULL;
    Py_ssize_t i = 0, copied = 0; /* frames[:copied] are in out already */
    while (i < n) {
        PyObject *method, *header, *body = NULL;
        PyObject *first = PyList_GET_ITEM(frames, i);
        if (is_single_ack(first, NULL, &method)) {
            PyObject *channel = PyTuple_GET_ITEM(first, 1);
            if (!PyLong_CheckExact(channel)) {
                i++;
                continue;
            }
            Py_ssize_t end = i + 1;
            while (end < n && end - i < MAX_ACK_RUN &&
                   is_single_ack(PyList_GET_ITEM(frames, end), channel, &header))
                end++;
            if (out == NULL && (out = PyList_New(0)) == NULL)
                return NULL;
            for (; copied < i; copied++)
                if (PyList_Append(out, PyList_GET_ITEM(frames, copied)) < 0)
                    goto error;
            PyObject *tags = PyList_New(end - i);
            if (tags == NULL)
                goto error;
            for (Py_ssize_t k = i; k < end; k++) {
                PyObject *p = PyTuple_GET_ITEM(PyList_GET_ITEM(frames, k), 2);
                PyObject *tag = PyLong_FromUnsignedLongLong(
                    be64((const unsigned char *)PyBytes_AS_STRING(p) + 4));
                if (tag == NULL) {
                    Py_DECREF(tags);
                    goto error;
                }
                PyList_SET_ITEM(tags, k - i, tag);
            }
            PyObject *merged = PyTuple_Pack(3, acks_type, channel, tags);
            Py_DECREF(tags);
            if (merged == NULL || PyList_Append(out, merged) < 0) {
                Py_XDECREF(merged);
                goto error;
            }
            Py_DECREF(merged);
            i = copied = end;
            continue;
        }
        if (i + 1 >= n || !is_frame(first, 1, NULL, &method) || PyBytes_GET_SIZE(method) < 4 ||
            memcmp(PyBytes_AS_STRING(method), "\x00\x3c\x00\x28", 4) != 0) {
            i++;
            continue;
        }
        PyObject *channel = PyTuple_GET_ITEM(first, 1);
        if (!PyLong_CheckExact(channel) ||
            !is_frame(PyList_GET_ITEM(frames, i + 1), 2, channel, &header) ||
            PyBytes_GET_SIZE(header) < 14) {
            i++;
            continue;
        }
        uint64_t size = be64((const unsigned char *)PyBytes_AS_STRING(header) + 4);
        Py_ssize_t span = 2;
        if (size) {
            if (i + 2 >= n || !is_frame(PyList_GET_ITEM(frames, i + 2), 3, channel, &body) ||
                (uint64_t)PyBytes_GET_SIZE(body) != size) {
                i++;
                continue;
            }
            span = 3;
        }
        if (out == NULL && (out = PyList_New(0)) == NULL)
            return NULL;
        for (; copied < i; copied++)
            if (PyList_Append(out, PyList_GET_ITEM(frames, copied)) < 0)
                goto error;
        PyObject *parts = body != NULL ? PyTuple_Pack(3, method, header, body) : NULL;
        if (body == NULL) {
            PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
            if (empty == NULL)
                goto error;
            parts = PyTuple_Pack(3, method, header, empty);
            Py_DECREF(empty);
        }
        if (parts == NULL)
            goto error;
        PyObject *merged = PyTuple_Pack(3, item_type, channel, parts);
        Py_DECREF(parts);
        if (merged == NULL || PyList_Append(out, merged) < 0) {
            Py_XDECREF(merged);
            goto error;
        }
        Py_DECREF(merged);
        i += span;
        copied = i;
    }
    if (out == NULL)
        return Py_NewRef(frames);
    for (; copied < n; copied++)
        if (PyList_Append(out, PyList_GET_ITEM(frames, copied)) < 0)
            goto error;
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

/* --------------------------------------------------------------- content frames */
/* content_frames(fallback, channel, header, body, frame_max) -> (pieces, size): the content
 * header frame and the body frames of one delivery. A body that fits one frame and is at
 * most SMALL_CONTENT bytes gives one bytes holding both frames; anything else is handed to
 * `fallback(channel, header, body, frame_max)`. */

#define SMALL_CONTENT 4096 /* larger bodies are not copied: the message keeps its frames */

static PyObject *content_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "content_frames(fallback, channel, header, body, frame_max)");
        return NULL;
    }
    PyObject *header = args[2], *body = args[3];
    long channel = PyLong_AsLong(args[1]);
    if (channel == -1 && PyErr_Occurred())
        return NULL;
    long long frame_max = PyLong_AsLongLong(args[4]);
    if (frame_max == -1 && PyErr_Occurred())
        return NULL;
    if (!PyBytes_CheckExact(header) || !PyBytes_CheckExact(body) || channel < 0 ||
        channel > 0xFFFF || PyBytes_GET_SIZE(body) > SMALL_CONTENT ||
        PyBytes_GET_SIZE(body) > frame_max - FRAME_OVERHEAD ||
        PyBytes_GET_SIZE(header) > 0xFFFFFFFFLL)
        return PyObject_Vectorcall(args[0], args + 1, 4, NULL);
    Py_ssize_t hsize = PyBytes_GET_SIZE(header), bsize = PyBytes_GET_SIZE(body);
    Py_ssize_t total = FRAME_OVERHEAD + hsize + (bsize ? FRAME_OVERHEAD + bsize : 0);
    PyObject *frames = PyBytes_FromStringAndSize(NULL, total);
    if (frames == NULL)
        return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(frames);
    o[0] = 2;
    o[1] = (unsigned char)(channel >> 8);
    o[2] = (unsigned char)channel;
    o[3] = (unsigned char)(hsize >> 24);
    o[4] = (unsigned char)(hsize >> 16);
    o[5] = (unsigned char)(hsize >> 8);
    o[6] = (unsigned char)hsize;
    memcpy(o + 7, PyBytes_AS_STRING(header), hsize);
    o += 7 + hsize;
    *o++ = FRAME_END;
    if (bsize) {
        o[0] = 3;
        o[1] = (unsigned char)(channel >> 8);
        o[2] = (unsigned char)channel;
        o[3] = (unsigned char)(bsize >> 24);
        o[4] = (unsigned char)(bsize >> 16);
        o[5] = (unsigned char)(bsize >> 8);
        o[6] = (unsigned char)bsize;
        memcpy(o + 7, PyBytes_AS_STRING(body), bsize);
        o[7 + bsize] = FRAME_END;
    }
    PyObject *pieces = PyList_New(1);
    if (pieces == NULL) {
        Py_DECREF(frames);
        return NULL;
    }
    PyList_SET_ITEM(pieces, 0, frames);
    PyObject *size = PyLong_FromSsize_t(total);
    if (size == NULL) {
        Py_DECREF(pieces);
        return NULL;
    }
    PyObject *result = PyTuple_New(2);
    if (result == NULL) {
        Py_DECREF(pieces);
        Py_DECREF(size);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, pieces);
    PyTuple_SET_ITEM(result, 1, size);
    return result;
}

/* -------------------------------------------------------------- join_delivery */
/* join_delivery(fallback, prefix, tag, redelivered, suffix, content) -> bytes: a basic.deliver
 * frame (prefix + u64 tag + u8 redelivered + suffix) and the content frames after it, in one
 * buffer. Anything but bytes parts and a tag in 0..2**64-1 goes to `fallback` with the same
 * arguments (the pure function), so the results and errors are the pure ones. */

/* prefix + big-endian u64 tag + redelivered octet + suffix at o: a basic.deliver frame
 * from its precomputed parts; returns the end. */
static inline unsigned char *put_deliver_method(unsigned char *o, PyObject *prefix,
                                                unsigned long long tag, int redelivered,
                                                PyObject *suffix)
{
    Py_ssize_t np = PyBytes_GET_SIZE(prefix), ns = PyBytes_GET_SIZE(suffix);
    memcpy(o, PyBytes_AS_STRING(prefix), np);
    o += np;
    for (int i = 7; i >= 0; i--)
        *o++ = (unsigned char)(tag >> (8 * i));
    *o++ = (unsigned char)redelivered;
    memcpy(o, PyBytes_AS_STRING(suffix), ns);
    return o + ns;
}

static PyObject *join_delivery(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "join_delivery(fallback, prefix, tag, redelivered, suffix, content)");
        return NULL;
    }
    PyObject *prefix = args[1], *tag_obj = args[2], *suffix = args[4], *content = args[5];
    if (!PyBytes_CheckExact(prefix) || !PyBytes_CheckExact(suffix) ||
        !PyBytes_CheckExact(content) || !PyLong_CheckExact(tag_obj) ||
        !(args[3] == Py_True || args[3] == Py_False))
        return PyObject_Vectorcall(args[0], args + 1, 5, NULL);
    unsigned long long tag = PyLong_AsUnsignedLongLong(tag_obj);
    if (tag == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return PyObject_Vectorcall(args[0], args + 1, 5, NULL);
    }
    Py_ssize_t np = PyBytes_GET_SIZE(prefix), ns = PyBytes_GET_SIZE(suffix),
               nc = PyBytes_GET_SIZE(content);
    PyObject *out = PyBytes_FromStringAndSize(NULL, np + 9 + ns + nc);
    if (out == NULL)
        return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    o = put_deliver_method(o, prefix, tag, args[3] == Py_True, suffix);
    memcpy(o, PyBytes_AS_STRING(content), nc);
    return out;
}

/* -------------------------------------------------------------- deliver_small */
/* deliver_small(prefix, tag, suffix, channel, header, body, frame_max) -> bytes | None: a
 * basic.deliver frame (prefix + u64 tag + redelivered 0 + suffix), the content header
 * frame and the body frame, in one buffer, for a body of at most SMALL_CONTENT bytes that
 * fits one frame; None for anything else (a larger body, parts that are not bytes, a tag or
 * channel out of range): the caller then builds the frames piece by piece. */

static inline unsigned char *put_frame_head(unsigned char *o, int type, long channel,
                                            Py_ssize_t size)
{
    o[0] = (unsigned char)type;
    o[1] = (unsigned char)(channel >> 8);
    o[2] = (unsigned char)channel;
    o[3] = (unsigned char)(size >> 24);
    o[4] = (unsigned char)(size >> 16);
    o[5] = (unsigned char)(size >> 8);
    o[6] = (unsigned char)size;
    return o + 7;
}

static PyObject *deliver_small(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "deliver_small(prefix, tag, suffix, channel, header, body, frame_max)");
        return NULL;
    }
    PyObject *prefix = args[0], *tag_obj = args[1], *suffix = args[2], *header = args[4],
             *body = args[5];
    if (!PyBytes_CheckExact(prefix) || !PyBytes_CheckExact(suffix) ||
        !PyBytes_CheckExact(header) || !PyBytes_CheckExact(body) || !PyLong_CheckExact(tag_obj) ||
        !PyLong_CheckExact(args[3]) || !PyLong_CheckExact(args[6]))
        Py_RETURN_NONE;
    unsigned long long tag = PyLong_AsUnsignedLongLong(tag_obj);
    long channel = PyLong_AsLong(args[3]);
    long long frame_max = PyLong_AsLongLong(args[6]);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    Py_ssize_t np = PyBytes_GET_SIZE(prefix), ns = PyBytes_GET_SIZE(suffix),
               hsize = PyBytes_GET_SIZE(header), bsize = PyBytes_GET_SIZE(body);
    if (channel < 0 || channel > 0xFFFF || bsize > SMALL_CONTENT ||
        bsize > frame_max - FRAME_OVERHEAD || hsize > SMALL_CONTENT)
        Py_RETURN_NONE;
    Py_ssize_t total = np + 9 + ns + FRAME_OVERHEAD + hsize + (bsize ? FRAME_OVERHEAD + bsize : 0);
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL)
        return NULL;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    o = put_deliver_method(o, prefix, tag, 0, suffix);
    o = put_frame_head(o, 2, channel, hsize);
    memcpy(o, PyBytes_AS_STRING(header), hsize);
    o += hsize;
    *o++ = FRAME_END;
    if (bsize) {
        o = put_frame_head(o, 3, channel, bsize);
        memcpy(o, PyBytes_AS_STRING(body), bsize);
        o[bsize] = FRAME_END;
    }
    return out;
}

/* --------------------------------------------------------------- store records */

#define RECORD_MARK 0xC71DA9F3u
#define REC_PUBLISH 7
#define STRINGS_MAX 4096

/* The u16-length-prefixed UTF-8 encoding of `name`, from or into the `strings` cache. */
static PyObject *encoded_str(PyObject *strings, PyObject *name)
{
    PyObject *cached = PyDict_GetItemWithError(strings, name);
    if (cached != NULL)
        return Py_NewRef(cached);
    if (PyErr_Occurred())
        return NULL;
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(name, &size);
    if (utf8 == NULL)
        return NULL;
    if (size > 0xFFFF) {
        PyErr_SetString(PyExc_OverflowError, "name longer than 65535 bytes");
        return NULL;
    }
    PyObject *raw = PyBytes_FromStringAndSize(NULL, 2 + size);
    if (raw == NULL)
        return NULL;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(raw);
    out[0] = (unsigned char)size;
    out[1] = (unsigned char)(size >> 8);
    memcpy(out + 2, utf8, size);
    if (PyDict_GET_SIZE(strings) >= STRINGS_MAX)
        PyDict_Clear(strings);
    if (PyDict_SetItem(strings, name, raw) < 0) {
        Py_DECREF(raw);
        return NULL;
    }
    return raw;
}

/* encode_publish(message_id, queues, exchange, routing_key, header, body, strings=None)
 * -> [marker + crc + length + type, head, body]: one framed PUBLISH record. */
static PyObject *encode_publish(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 6 || nargs > 7) {
        PyErr_SetString(PyExc_TypeError, "encode_publish takes 6 or 7 arguments");
        return NULL;
    }
    unsigned long long message_id = PyLong_AsUnsignedLongLong(args[0]);
    if (message_id == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    PyObject *queues = args[1], *header = args[4], *body = args[5];
    if (!PyDict_Check(queues) || !PyBytes_Check(header)) {
        PyErr_SetString(PyExc_TypeError, "queues must be a dict and header bytes");
        return NULL;
    }
    PyObject *strings = nargs == 7 ? args[6] : Py_None;
    PyObject *result = NULL, *ex = NULL, *rk = NULL, *head = NULL, *first = NULL;
    PyObject *names = NULL; /* list of (encoded name, delivered) pairs, flattened */
    Py_buffer body_view = {0};
    if (strings == Py_None) {
        strings = PyDict_New();
        if (strings == NULL)
            return NULL;
    } else {
        if (!PyDict_Check(strings)) {
            PyErr_SetString(PyExc_TypeError, "strings must be a dict");
            return NULL;
        }
        Py_INCREF(strings);
    }
    if (PyObject_GetBuffer(body, &body_view, PyBUF_SIMPLE) < 0)
        goto done;
    ex = encoded_str(strings, args[2]);
    if (ex == NULL)
        goto done;
    rk = encoded_str(strings, args[3]);
    if (rk == NULL)
        goto done;
    Py_ssize_t count = PyDict_GET_SIZE(queues);
    if (count > 0xFFFF) {
        PyErr_SetString(PyExc_OverflowError, "too many queues");
        goto done;
    }
    names = PyList_New(0);
    if (names == NULL)
        goto done;
    Py_ssize_t hsize = PyBytes_GET_SIZE(header);
    Py_ssize_t total = 8 + PyBytes_GET_SIZE(ex) + PyBytes_GET_SIZE(rk) + 2 + 4 + hsize;
    {
        Py_ssize_t i = 0;
        PyObject *name, *delivered;
        while (PyDict_Next(queues, &i, &name, &delivered)) {
            PyObject *q = encoded_str(strings, name);
            if (q == NULL)
                goto done;
            int truth = PyObject_IsTrue(delivered);
            if (truth < 0 || PyList_Append(names, q) < 0) {
                Py_DECREF(q);
                goto done;
            }
            Py_DECREF(q);
            if (PyList_Append(names, truth ? Py_True : Py_False) < 0)
                goto done;
            total += 1 + PyBytes_GET_SIZE(q);
        }
    }
    if (hsize > 0xFFFFFFFFLL || total + body_view.len > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_OverflowError, "record too large");
        goto done;
    }
    head = PyBytes_FromStringAndSize(NULL, total);
    if (head == NULL)
        goto done;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(head);
    put_le64(o, message_id);
    o += 8;
    memcpy(o, PyBytes_AS_STRING(ex), PyBytes_GET_SIZE(ex));
    o += PyBytes_GET_SIZE(ex);
    memcpy(o, PyBytes_AS_STRING(rk), PyBytes_GET_SIZE(rk));
    o += PyBytes_GET_SIZE(rk);
    o[0] = (unsigned char)count;
    o[1] = (unsigned char)(count >> 8);
    o += 2;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(names); i += 2) {
        PyObject *q = PyList_GET_ITEM(names, i);
        *o++ = PyList_GET_ITEM(names, i + 1) == Py_True ? 1 : 0;
        memcpy(o, PyBytes_AS_STRING(q), PyBytes_GET_SIZE(q));
        o += PyBytes_GET_SIZE(q);
    }
    put_le32(o, (uint32_t)hsize);
    o += 4;
    memcpy(o, PyBytes_AS_STRING(header), hsize);
    first = PyBytes_FromStringAndSize(NULL, 13);
    if (first == NULL)
        goto done;
    unsigned char *f = (unsigned char *)PyBytes_AS_STRING(first);
    put_le32(f + 8, (uint32_t)(total + body_view.len));
    f[12] = REC_PUBLISH;
    uint32_t crc = crc_update(0, f + 8, 5);
    crc = crc_update(crc, (const unsigned char *)PyBytes_AS_STRING(head), total);
    crc = crc_buffer(crc, body_view.buf, body_view.len);
    put_le32(f, RECORD_MARK);
    put_le32(f + 4, crc);
    result = PyList_New(3);
    if (result == NULL)
        goto done;
    PyList_SET_ITEM(result, 0, Py_NewRef(first));
    PyList_SET_ITEM(result, 1, Py_NewRef(head));
    PyList_SET_ITEM(result, 2, Py_NewRef(body));
done:
    if (body_view.obj)
        PyBuffer_Release(&body_view);
    Py_XDECREF(first);
    Py_XDECREF(head);
    Py_XDECREF(names);
    Py_XDECREF(ex);
    Py_XDECREF(rk);
    Py_DECREF(strings);
    return result;
}

/* encode_ref(rtype, queue, message_id) -> bytes: a DELIVERED or REMOVED record, `queue`
 * already encoded as a str field. */
static PyObject *encode_ref(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "encode_ref takes 3 arguments");
        return NULL;
    }
    long rtype = PyLong_AsLong(args[0]);
    if (rtype == -1 && PyErr_Occurred())
        return NULL;
    unsigned long long message_id = PyLong_AsUnsignedLongLong(args[2]);
    if (message_id == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (rtype < 0 || rtype > 255) {
        PyErr_SetString(PyExc_OverflowError, "record type out of range");
        return NULL;
    }
    Py_buffer queue;
    if (PyObject_GetBuffer(args[1], &queue, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_ssize_t size = 21 + queue.len; /* marker, crc, length, type, id, queue */
    PyObject *record = PyBytes_FromStringAndSize(NULL, size);
    if (record != NULL) {
        unsigned char *o = (unsigned char *)PyBytes_AS_STRING(record);
        put_le32(o, RECORD_MARK);
        put_le32(o + 8, (uint32_t)(8 + queue.len));
        o[12] = (unsigned char)rtype;
        put_le64(o + 13, message_id);
        memcpy(o + 21, queue.buf, queue.len);
        put_le32(o + 4, crc_update(0, o + 8, size - 8));
    }
    PyBuffer_Release(&queue);
    return record;
}

/* ----------------------------------------------------------------------- module */

static PyMethodDef module_methods[] = {
    {"crc32", py_crc32, METH_VARARGS, "crc32(data, start=0): zlib's CRC-32."},
    {"peek_header", (PyCFunction)(void (*)(void))peek_header, METH_FASTCALL,
     "peek_header(info_type, error_type, payload): the content header fields."},
    {"content_frames", (PyCFunction)(void (*)(void))content_frames, METH_FASTCALL,
     "content_frames(fallback, channel, header, body, frame_max) -> (pieces, size)."},
    {"encode_publish", (PyCFunction)(void (*)(void))encode_publish, METH_FASTCALL,
     "One framed PUBLISH store record as three byte chunks."},
    {"encode_ref", (PyCFunction)(void (*)(void))encode_ref, METH_FASTCALL,
     "One framed DELIVERED/REMOVED store record."},
    {"join_delivery", (PyCFunction)(void (*)(void))join_delivery, METH_FASTCALL,
     "join_delivery(fallback, prefix, tag, redelivered, suffix, content) -> bytes."},
    {"deliver_small", (PyCFunction)(void (*)(void))deliver_small, METH_FASTCALL,
     "deliver_small(prefix, tag, suffix, channel, header, body, frame_max): a small "
     "delivery's frames in one bytes, or None."},
    {"merge_publishes", (PyCFunction)(void (*)(void))merge_publishes, METH_FASTCALL,
     "merge_publishes(item_type, acks_type, frames): publish + header + body frames as one "
     "item, runs of single basic.acks as one."},
    {NULL}};

static int module_exec(PyObject *module)
{
    crc_init();
    PyObject *reader = PyType_FromModuleAndSpec(module, &FrameReader_spec, NULL);
    if (reader == NULL || PyModule_AddObjectRef(module, "FrameReader", reader) < 0) {
        Py_XDECREF(reader);
        return -1;
    }
    Py_DECREF(reader);
    PyObject *decoder = PyType_FromModuleAndSpec(module, &MethodDecoder_spec, NULL);
    if (decoder == NULL || PyModule_AddObjectRef(module, "MethodDecoder", decoder) < 0) {
        Py_XDECREF(decoder);
        return -1;
    }
    Py_DECREF(decoder);
    return 0;
}

static PyModuleDef_Slot module_slots[] = {{Py_mod_exec, module_exec}, {0, NULL}};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "amqpd._speedups",
    "Compiled twins of amqpd's hot wire and store functions (optional).", 0, module_methods,
    module_slots};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModuleDef_Init(&speedups_module); }
