/* The native half of schemas.fastpath.decode_result_row: the common result, vouched for in C.
 *
 * row(raw, *extra) parses `raw` with orjson and, when the message is a fleetrun.result/1 of the
 * common shape (both outputs "utf-8", neither truncated, integers as JSON integers, timestamps as
 * ...Z with at most 6 fraction digits), checks every rule of the contract that applies to it and
 * returns the stored row plus `extra`, exactly as the Python path would. Whenever it cannot vouch
 * for a message -- invalid, or valid but of a rarer shape -- it returns None and the Python path
 * decides (and words the error). So this module never rejects anything and never words an error;
 * it must only never accept what the Python path refuses. tests/unit/test_codec_fastpath.py checks
 * both paths on generated and mutated documents, and test_native_fastrow.py pins every fact of
 * schemas/result.schema.json this file relies on (a schema change fails that test first).
 *
 * Why C: the sink is CPU-bound, and in Python validating and flattening a parsed 1 KiB result
 * took ~7 us of its ~20 us per row; here it takes ~1 us (orjson's parse, ~1.5 us, is the same
 * either way). bench/bench_sink.py runs the sink with and without it side by side.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <string.h>

/* Set by configure(): orjson.loads, orjson.dumps, limits.MAX_OUTPUT_BYTES, the status enum. */
static PyObject *loads_fn, *dumps_fn, *statuses;
static long long max_output = -1;

static PyObject *empty_labels; /* "{}" */

enum {
    K_SCHEMA, K_REQUEST_ID, K_HOST, K_PORT, K_USER, K_ATTEMPT, K_STATUS, K_EXIT_STATUS,
    K_EXIT_SIGNAL, K_STDOUT, K_STDERR, K_STDOUT_ENCODING, K_STDERR_ENCODING, K_STDOUT_BYTES,
    K_STDERR_BYTES, K_STDOUT_TRUNCATED, K_STDERR_TRUNCATED, K_STDOUT_SHA256, K_STDERR_SHA256,
    K_STARTED_AT, K_FINISHED_AT, K_DURATION_MS, K_ERROR, K_COLLECTOR, K_LABELS, K_TYPE,
    K_MESSAGE, N_KEYS
};
static const char *const key_names[N_KEYS] = {
    "schema", "request_id", "host", "port", "user", "attempt", "status", "exit_status",
    "exit_signal", "stdout", "stderr", "stdout_encoding", "stderr_encoding", "stdout_bytes",
    "stderr_bytes", "stdout_truncated", "stderr_truncated", "stdout_sha256", "stderr_sha256",
    "started_at", "finished_at", "duration_ms", "error", "collector", "labels", "type",
    "message",
};
static PyObject *keys[N_KEYS];

#define ROW_FIELDS 25       /* schemas.fastpath.RESULT_ROW_FIELDS */
#define MAX_SAFE_INT 9007199254740991LL
#define MAX_OUTPUT_CHARS 1398104 /* #/$defs/output maxLength */

/* Character classes of the schema's ASCII patterns. */
enum {
    C_DIGIT = 1, C_HEX = 2, C_ALNUM = 4, C_HOST = 8, C_SIGNAL = 16, C_LABEL = 32, C_HOST0 = 64
};
static unsigned char cls[256];

static void init_classes(void)
{
    for (int c = 0; c < 128; c++) {
        unsigned char m = 0;
        int digit = c >= '0' && c <= '9';
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (digit)
            m |= C_DIGIT;
        if (digit || (c >= 'a' && c <= 'f'))
            m |= C_HEX; /* lowercase only, as the uuid and sha256 patterns say */
        if (digit || alpha)
            m |= C_ALNUM | C_HOST0 | C_HOST | C_SIGNAL | C_LABEL;
        if (c == ':')
            m |= C_HOST0; /* the first character of a host: [A-Za-z0-9:] */
        if (c == '.' || c == '_' || c == ':' || c == '-')
            m |= C_HOST; /* [A-Za-z0-9._:-] */
        if (c == '@' || c == '.' || c == '_' || c == '+' || c == '-')
            m |= C_SIGNAL; /* [A-Za-z0-9@._+-] */
        if (c == '_' || c == '.' || c == '/' || c == '-')
            m |= C_LABEL; /* [A-Za-z0-9_./-] */
        cls[c] = m;
    }
}

/* An exact str that is ASCII: its bytes and length; NULL otherwise. */
static const unsigned char *ascii(PyObject *s, Py_ssize_t *n)
{
    if (!PyUnicode_CheckExact(s) || !PyUnicode_IS_ASCII(s))
        return NULL;
    *n = PyUnicode_GET_LENGTH(s);
    return PyUnicode_1BYTE_DATA(s);
}

/* ASCII, min..max characters, every one in class `rest` and the first also in `first`. */
static int ascii_word(PyObject *s, Py_ssize_t min, Py_ssize_t max, int first, int rest)
{
    Py_ssize_t n;
    const unsigned char *p = ascii(s, &n);
    if (p == NULL || n < min || n > max)
        return 0;
    if (n > 0 && !(cls[p[0]] & first))
        return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (!(cls[p[i]] & rest))
            return 0;
    return 1;
}

static int is_uuid(PyObject *s)
{
    Py_ssize_t n;
    const unsigned char *p = ascii(s, &n);
    if (p == NULL || n != 36)
        return 0;
    for (Py_ssize_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (p[i] != '-')
                return 0;
        } else if (!(cls[p[i]] & C_HEX)) {
            return 0;
        }
    }
    return 1;
}

/* A str of min..max characters (code points) without NUL, any script. */
static int text(PyObject *s, Py_ssize_t min, Py_ssize_t max)
{
    if (!PyUnicode_CheckExact(s))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (n < min || n > max)
        return 0;
    if (PyUnicode_IS_ASCII(s))
        return memchr(PyUnicode_1BYTE_DATA(s), 0, (size_t)n) == NULL;
    Py_ssize_t at = PyUnicode_FindChar(s, 0, 0, n, 1);
    if (at == -2)
        PyErr_Clear();
    return at == -1;
}

/* Size in bytes of `s` as UTF-8 (what the collector captured), or -1 if it holds NUL or a
 * surrogate (never in orjson's output, but this function takes any str). */
static Py_ssize_t utf8_size(PyObject *s)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (PyUnicode_IS_ASCII(s))
        return memchr(PyUnicode_1BYTE_DATA(s), 0, (size_t)n) == NULL ? n : -1;
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    Py_ssize_t size = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c == 0 || (c >= 0xD800 && c <= 0xDFFF))
            return -1;
        size += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    }
    return size;
}

/* An exact int (not bool, not a float) in lo..hi. */
static int int_in(PyObject *o, long long lo, long long hi, long long *out)
{
    if (!PyLong_CheckExact(o))
        return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    if (v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

static int digits(const unsigned char *p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!(cls[p[i]] & C_DIGIT))
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 1;
}

/* YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z as an aware UTC datetime (new reference), else NULL with no
 * exception: other offsets, 7-9 fraction digits and impossible dates are the Python path's. */
static PyObject *timestamp(PyObject *s)
{
    Py_ssize_t n;
    const unsigned char *p = ascii(s, &n);
    if (p == NULL || (n != 20 && (n < 22 || n > 27)) || p[n - 1] != 'Z')
        return NULL;
    int year, month, day, hour, minute, second, us = 0;
    if (!digits(p, 4, &year) || p[4] != '-' || !digits(p + 5, 2, &month) || p[7] != '-' ||
        !digits(p + 8, 2, &day) || p[10] != 'T' || !digits(p + 11, 2, &hour) || p[13] != ':' ||
        !digits(p + 14, 2, &minute) || p[16] != ':' || !digits(p + 17, 2, &second))
        return NULL;
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59)
        return NULL;
    if (n > 20) {
        int fraction = (int)n - 21;
        if (p[19] != '.' || !digits(p + 20, fraction, &us))
            return NULL;
        for (int i = fraction; i < 6; i++)
            us *= 10;
    }
    PyObject *dt = PyDateTimeAPI->DateTime_FromDateAndTime(
        year, month, day, hour, minute, second, us, PyDateTime_TimeZone_UTC,
        PyDateTimeAPI->DateTimeType);
    if (dt == NULL)
        PyErr_Clear(); /* year 0, 30 February: the Python path says which */
    return dt;
}

/* The labels object as stored: "{}" or orjson's text of it (new reference), or NULL. */
static PyObject *labels_json(PyObject *labels)
{
    if (!PyDict_CheckExact(labels) || PyDict_GET_SIZE(labels) > 32)
        return NULL;
    if (PyDict_GET_SIZE(labels) == 0)
        return Py_NewRef(empty_labels);
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    while (PyDict_Next(labels, &pos, &name, &value))
        if (!ascii_word(name, 1, 63, C_ALNUM, C_LABEL) || !text(value, 0, 256))
            return NULL;
    PyObject *json = PyObject_CallOneArg(dumps_fn, labels);
    if (json == NULL || !PyBytes_Check(json)) {
        PyErr_Clear();
        Py_XDECREF(json);
        return NULL;
    }
    PyObject *out = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(json), PyBytes_GET_SIZE(json), NULL);
    Py_DECREF(json);
    if (out == NULL)
        PyErr_Clear();
    return out;
}

/* One output stream: "utf-8", whole (not truncated), its UTF-8 size equal to *_bytes. */
static int whole_text_output(PyObject *out, PyObject *encoding, PyObject *size, PyObject *truncated)
{
    long long total;
    if (!PyUnicode_CheckExact(out) || PyUnicode_GET_LENGTH(out) > MAX_OUTPUT_CHARS)
        return 0;
    if (!PyUnicode_CheckExact(encoding) || PyUnicode_CompareWithASCIIString(encoding, "utf-8"))
        return 0;
    if (truncated != Py_False || !int_in(size, 0, max_output, &total))
        return 0;
    return utf8_size(out) == total;
}

/* The row for a parsed document (borrowed `d`), or NULL with no exception set. */
static PyObject *row_of(PyObject *d, PyObject *const *extra, Py_ssize_t n_extra)
{
    PyObject *v[N_KEYS];
    for (int i = 0; i < K_TYPE; i++) {
        v[i] = PyDict_GetItemWithError(d, keys[i]); /* borrowed */
        if (v[i] == NULL) {
            PyErr_Clear();
            return NULL; /* missing: the Python path names it */
        }
    }
    long long ignored, exit_status = -1;
    if (!PyUnicode_CheckExact(v[K_SCHEMA]) ||
        PyUnicode_CompareWithASCIIString(v[K_SCHEMA], "fleetrun.result/1"))
        return NULL;
    if (!is_uuid(v[K_REQUEST_ID]) || !ascii_word(v[K_HOST], 1, 253, C_HOST0, C_HOST) ||
        !int_in(v[K_PORT], 1, 65535, &ignored) || !text(v[K_USER], 1, 64) ||
        !int_in(v[K_ATTEMPT], 1, 100, &ignored))
        return NULL;
    if (!PyUnicode_CheckExact(v[K_STATUS]))
        return NULL;
    int known = PySet_Contains(statuses, v[K_STATUS]);
    if (known != 1) {
        if (known < 0)
            PyErr_Clear();
        return NULL;
    }
    if (v[K_EXIT_STATUS] != Py_None && !int_in(v[K_EXIT_STATUS], 0, 4294967295LL, &exit_status))
        return NULL;
    if (v[K_EXIT_SIGNAL] != Py_None && !ascii_word(v[K_EXIT_SIGNAL], 1, 64, C_SIGNAL, C_SIGNAL))
        return NULL;
    if (!PyUnicode_CompareWithASCIIString(v[K_STATUS], "ok") &&
        (exit_status != 0 || v[K_EXIT_SIGNAL] != Py_None))
        return NULL;
    if (!whole_text_output(v[K_STDOUT], v[K_STDOUT_ENCODING], v[K_STDOUT_BYTES],
                           v[K_STDOUT_TRUNCATED]) ||
        !whole_text_output(v[K_STDERR], v[K_STDERR_ENCODING], v[K_STDERR_BYTES],
                           v[K_STDERR_TRUNCATED]))
        return NULL;
    if (!ascii_word(v[K_STDOUT_SHA256], 64, 64, C_HEX, C_HEX) ||
        !ascii_word(v[K_STDERR_SHA256], 64, 64, C_HEX, C_HEX) ||
        !int_in(v[K_DURATION_MS], 0, MAX_SAFE_INT, &ignored) || !text(v[K_COLLECTOR], 1, 128))
        return NULL;
    PyObject *error_type = Py_None, *error_message = Py_None;
    if (v[K_ERROR] != Py_None) {
        if (!PyDict_CheckExact(v[K_ERROR]))
            return NULL;
        error_type = PyDict_GetItemWithError(v[K_ERROR], keys[K_TYPE]);
        error_message = error_type ? PyDict_GetItemWithError(v[K_ERROR], keys[K_MESSAGE]) : NULL;
        if (error_message == NULL) {
            PyErr_Clear();
            return NULL;
        }
        if (!text(error_type, 1, 128) || !text(error_message, 0, 4096))
            return NULL;
    } else if (!PyUnicode_CompareWithASCIIString(v[K_STATUS], "error")) {
        return NULL; /* status "error" must say what went wrong */
    }
    /* Everything is checked but the calendar; build what the row needs new. */
    PyObject *started_at = timestamp(v[K_STARTED_AT]);
    PyObject *finished_at = started_at ? timestamp(v[K_FINISHED_AT]) : NULL;
    PyObject *labels = finished_at ? labels_json(v[K_LABELS]) : NULL;
    PyObject *row = labels ? PyTuple_New(ROW_FIELDS + n_extra) : NULL;
    if (row == NULL) {
        PyErr_Clear();
        Py_XDECREF(started_at);
        Py_XDECREF(finished_at);
        Py_XDECREF(labels);
        return NULL;
    }
    PyObject *fields[ROW_FIELDS] = {
        v[K_REQUEST_ID], v[K_HOST], v[K_ATTEMPT], finished_at, v[K_PORT], v[K_USER],
        v[K_STATUS], v[K_EXIT_STATUS], v[K_EXIT_SIGNAL], v[K_STDOUT], v[K_STDOUT_ENCODING],
        v[K_STDERR], v[K_STDERR_ENCODING], v[K_STDOUT_BYTES], v[K_STDERR_BYTES],
        v[K_STDOUT_TRUNCATED], v[K_STDERR_TRUNCATED], v[K_STDOUT_SHA256], v[K_STDERR_SHA256],
        started_at, v[K_DURATION_MS], error_type, error_message, v[K_COLLECTOR], labels,
    };
    for (int i = 0; i < ROW_FIELDS; i++)
        PyTuple_SET_ITEM(row, i, Py_NewRef(fields[i]));
    for (Py_ssize_t i = 0; i < n_extra; i++)
        PyTuple_SET_ITEM(row, ROW_FIELDS + i, Py_NewRef(extra[i]));
    Py_DECREF(started_at);
    Py_DECREF(finished_at);
    Py_DECREF(labels);
    return row;
}

static PyObject *row(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError, "row(raw, *extra) takes the raw message");
        return NULL;
    }
    if (loads_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "schemas._fastrow.configure() first");
        return NULL;
    }
    PyObject *d = PyObject_CallOneArg(loads_fn, args[0]);
    PyObject *out = NULL;
    if (d == NULL)
        PyErr_Clear(); /* not JSON (or not bytes): the Python path says what */
    else if (PyDict_CheckExact(d))
        out = row_of(d, args + 1, nargs - 1);
    Py_XDECREF(d);
    if (out == NULL)
        Py_RETURN_NONE;
    return out;
}

static PyObject *configure(PyObject *module, PyObject *args)
{
    PyObject *loads, *dumps, *known;
    long long max;
    if (!PyArg_ParseTuple(args, "OOLO!:configure", &loads, &dumps, &max, &PyFrozenSet_Type,
                          &known))
        return NULL;
    Py_XSETREF(loads_fn, Py_NewRef(loads));
    Py_XSETREF(dumps_fn, Py_NewRef(dumps));
    Py_XSETREF(statuses, Py_NewRef(known));
    max_output = max;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"row", (PyCFunction)(void (*)(void))row, METH_FASTCALL,
     "row(raw, *extra) -> the stored row of a common, valid result message plus extra; None when "
     "the message needs the Python path (invalid, or a rarer shape)."},
    {"configure", configure, METH_VARARGS,
     "configure(loads, dumps, max_output_bytes, statuses: frozenset) -- once, before row()."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "schemas._fastrow",
    .m_doc = "Native fast path of schemas.fastpath.decode_result_row (see schemas/_fastrow.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fastrow(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    init_classes();
    for (int i = 0; i < N_KEYS; i++) {
        keys[i] = PyUnicode_InternFromString(key_names[i]);
        if (keys[i] == NULL)
            return NULL;
    }
    empty_labels = PyUnicode_InternFromString("{}");
    if (empty_labels == NULL)
        return NULL;
    return PyModule_Create(&module_def);
}
