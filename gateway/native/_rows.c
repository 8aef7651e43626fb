/* The per-row hot loops of a tool result, in C: de-identification (`walk`) and the selection of
 * plain fields (`pick`). Each mirrors a pure-Python function that stays the reference and the
 * fallback (gateway/calls/redaction.py `redact`, gateway/spec/jmes.py `_select_dict`); the same
 * tests run against both. Everything a policy decides (which key is named, what a pseudonym is,
 * how an address in text is replaced, how renamed keys merge) stays in Python and is called back:
 * C only walks the containers and makes the copies. Beside them, `quoted`: the text copy of a
 * tool result, escaped from its JSON bytes (gateway/protocol/replies.py `json_text`).
 */
#include "_json.h"

typedef struct {
    PyObject *plain;      /* set: keys the policy does not name */
    PyObject *special;    /* set: keys it names */
    PyObject *dropped;    /* set: keys it names to drop */
    PyObject *renamed;    /* dict: plain keys holding an address -> the key with it replaced */
    PyObject *learn;      /* learn(key) -> bool: whether the policy names the key (remembered) */
    PyObject *pseudonym;  /* pseudonym(text) -> text */
    PyObject *other;      /* other(value) -> value: a named key's list or object */
    PyObject *scrub;      /* scrub(text) -> text, or None when text is not scrubbed */
    PyObject *merged;     /* merged(list of (key, value)) -> dict */
} Policy;

static PyObject *walk(Policy *p, PyObject *value);

static inline int is_scalar(PyObject *v)
{
    return v == Py_None || PyLong_CheckExact(v) || PyFloat_CheckExact(v) || PyBool_Check(v);
}

/* 1 when the text may hold an address ('@' or a percent escape), 0 if not, -1 on error. */
static int may_hold_address(PyObject *text)
{
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    if (length == 0)
        return 0;
    if (PyUnicode_KIND(text) == PyUnicode_1BYTE_KIND) {
        const char *data = (const char *)PyUnicode_1BYTE_DATA(text);
        return memchr(data, '@', (size_t)length) != NULL || memchr(data, '%', (size_t)length) != NULL;
    }
    Py_ssize_t at = PyUnicode_FindChar(text, '@', 0, length, 1);
    if (at == -2)
        return -1;
    if (at >= 0)
        return 1;
    Py_ssize_t percent = PyUnicode_FindChar(text, '%', 0, length, 1);
    return percent == -2 ? -1 : percent >= 0;
}

/* The text as the policy leaves it: new reference. */
static PyObject *scrubbed(Policy *p, PyObject *text)
{
    if (p->scrub == Py_None)
        return Py_NewRef(text);
    int hit = may_hold_address(text);
    if (hit < 0)
        return NULL;
    return hit ? PyObject_CallOneArg(p->scrub, text) : Py_NewRef(text);
}

/* out[key] = fresh (steals fresh). */
static int put(PyObject *out, PyObject *key, PyObject *fresh)
{
    if (fresh == NULL)
        return -1;
    int failed = PyDict_SetItem(out, key, fresh);
    Py_DECREF(fresh);
    return failed;
}

/* A named key's value: a non-empty text becomes its pseudonym, containers go to Python, other
 * values (null, numbers, flags, empty text) stay. */
static int named(Policy *p, PyObject *out, PyObject *key, PyObject *item)
{
    if (PyUnicode_CheckExact(item)) {
        if (PyUnicode_GET_LENGTH(item) == 0)
            return 0;
        return put(out, key, PyObject_CallOneArg(p->pseudonym, item));
    }
    if (is_scalar(item))
        return 0;
    return put(out, key, PyObject_CallOneArg(p->other, item));
}

static int is_named(Policy *p, PyObject *key)
{
    int found = PySet_Contains(p->plain, key);
    if (found != 0)
        return found < 0 ? -1 : 0;
    found = PySet_Contains(p->special, key);
    if (found != 0)
        return found;
    PyObject *verdict = PyObject_CallOneArg(p->learn, key);
    if (verdict == NULL)
        return -1;
    int truth = PyObject_IsTrue(verdict);
    Py_DECREF(verdict);
    return truth;
}

static int one_entry(Policy *p, PyObject *out, PyObject *key, PyObject *item)
{
    int policy_names = is_named(p, key);
    if (policy_names < 0)
        return -1;
    if (policy_names) {
        int drop = PySet_Contains(p->dropped, key);
        if (drop < 0)
            return -1;
        return drop ? PyDict_DelItem(out, key) : named(p, out, key, item);
    }
    if (PyUnicode_CheckExact(item)) {
        if (p->scrub == Py_None)
            return 0;
        int hit = may_hold_address(item);
        if (hit <= 0)
            return hit;
        return put(out, key, PyObject_CallOneArg(p->scrub, item));
    }
    if (is_scalar(item))
        return 0;
    int truth = PyObject_IsTrue(item);
    if (truth <= 0)
        return truth;
    return put(out, key, walk(p, item));
}

/* After the walk of an object: its entries with renamed keys merged, or the object itself. */
static PyObject *with_renamed_keys(Policy *p, PyObject *out)
{
    if (PyDict_GET_SIZE(p->renamed) == 0)
        return out;
    Py_ssize_t pos = 0;
    PyObject *key, *item;
    int touched = 0;
    while (!touched && PyDict_Next(p->renamed, &pos, &key, &item)) {
        touched = PyDict_Contains(out, key);
        if (touched < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    if (!touched)
        return out;
    PyObject *entries = PyList_New(0);
    pos = 0;
    while (entries != NULL && PyDict_Next(out, &pos, &key, &item)) {
        PyObject *name = PyDict_GetItemWithError(p->renamed, key);
        if (name == NULL && PyErr_Occurred()) {
            Py_CLEAR(entries);
            break;
        }
        PyObject *pair = PyTuple_Pack(2, name ? name : key, item);
        if (pair == NULL || PyList_Append(entries, pair) < 0)
            Py_CLEAR(entries);
        Py_XDECREF(pair);
    }
    Py_DECREF(out);
    if (entries == NULL)
        return NULL;
    PyObject *result = PyObject_CallOneArg(p->merged, entries);
    Py_DECREF(entries);
    return result;
}

static PyObject *walk_dict(Policy *p, PyObject *value)
{
    PyObject *out = PyDict_Copy(value);
    if (out == NULL)
        return NULL;
    Py_ssize_t pos = 0;
    PyObject *key, *item;
    while (PyDict_Next(value, &pos, &key, &item)) {
        Py_INCREF(key);
        Py_INCREF(item);
        int failed = one_entry(p, out, key, item);
        Py_DECREF(key);
        Py_DECREF(item);
        if (failed) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return with_renamed_keys(p, out);
}

static PyObject *walk_list(Policy *p, PyObject *value)
{
    Py_ssize_t size = PyList_GET_SIZE(value);
    PyObject *out = PyList_New(size);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < size; i++) {
        if (i >= PyList_GET_SIZE(value)) {  /* a callback shortened it: never read past */
            Py_DECREF(out);
            PyErr_SetString(PyExc_RuntimeError, "a list changed size while being de-identified");
            return NULL;
        }
        PyObject *item = Py_NewRef(PyList_GET_ITEM(value, i));
        PyObject *fresh = is_scalar(item) ? Py_NewRef(item) : walk(p, item);
        Py_DECREF(item);
        if (fresh == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, fresh);
    }
    return out;
}

/* Any value, as redaction.py's `walk` treats it: new reference. */
static PyObject *walk(Policy *p, PyObject *value)
{
    if (Py_EnterRecursiveCall(" while de-identifying a result"))
        return NULL;
    PyObject *result;
    if (PyDict_CheckExact(value))
        result = walk_dict(p, value);
    else if (PyList_CheckExact(value))
        result = walk_list(p, value);
    else if (PyUnicode_Check(value))
        result = scrubbed(p, value);
    else if (PyDict_Check(value) || PyList_Check(value) || PyTuple_Check(value)) {
        PyObject *plain = PyDict_Check(value) ? PyDict_Copy(value) : PySequence_List(value);
        result = plain == NULL ? NULL : walk(p, plain);
        Py_XDECREF(plain);
    }
    else
        result = Py_NewRef(value);
    Py_LeaveRecursiveCall();
    return result;
}

static PyObject *rows_walk(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError,
                        "walk(value, plain, special, dropped, renamed, learn, pseudonym, other, "
                        "scrub, merged)");
        return NULL;
    }
    Policy policy = {args[1], args[2], args[3], args[4], args[5], args[6], args[7], args[8],
                     args[9]};
    if (!PySet_Check(policy.plain) || !PySet_Check(policy.special) ||
        !PySet_Check(policy.dropped) || !PyDict_Check(policy.renamed)) {
        PyErr_SetString(PyExc_TypeError, "plain, special and dropped are sets, renamed a dict");
        return NULL;
    }
    return walk(&policy, args[0]);
}

/* pick(fields, value): {key: value.get(name) for key, name in fields} for a dict, every key
 * null for any other value but None, None for None (jmes.py `_select_dict`, plain fields).
 * The fields come first so that functools.partial(pick, fields) is the compiled selection. */
static PyObject *rows_pick(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyTuple_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "pick(fields: tuple of (key, name) pairs, value)");
        return NULL;
    }
    PyObject *fields = args[0], *value = args[1];
    if (value == Py_None)
        Py_RETURN_NONE;
    int is_dict = PyDict_Check(value);
    Py_ssize_t count = PyTuple_GET_SIZE(fields);
#if PY_VERSION_HEX < 0x030D0000
    /* Sized once: a row of 20 fields would otherwise be resized three times as it fills. */
    PyObject *out = _PyDict_NewPresized(count);
#else
    PyObject *out = PyDict_New();
#endif
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PyTuple_GET_ITEM(fields, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_TypeError, "pick: each field is a (key, name) pair");
            return NULL;
        }
        PyObject *found = NULL;
        if (is_dict) {
            found = PyDict_GetItemWithError(value, PyTuple_GET_ITEM(pair, 1));
            if (found == NULL && PyErr_Occurred()) {
                Py_DECREF(out);
                return NULL;
            }
        }
        if (PyDict_SetItem(out, PyTuple_GET_ITEM(pair, 0), found ? found : Py_None) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

/* Whether a decoded JSON value holds an integer outside [-2**63, 2**64): orjson reads such a
 * number as a float and msgspec as an exact int, so an answer holding one is decoded again
 * whole (gateway/spec/reads.py). 1 or 0, -1 with an exception set. */
static int has_wide_int(PyObject *value)
{
    if (PyLong_CheckExact(value)) {
        int overflow = 0;
        PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow == 0)
            return PyErr_Occurred() ? -1 : 0;
        if (overflow < 0)
            return 1;
        PyLong_AsUnsignedLongLong(value);
        if (!PyErr_Occurred())
            return 0;
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
        return 1;
    }
    if (!PyDict_CheckExact(value) && !PyList_CheckExact(value))
        return 0;
    if (Py_EnterRecursiveCall(" while checking a decoded answer"))
        return -1;
    int found = 0;
    if (PyDict_CheckExact(value)) {
        Py_ssize_t position = 0;
        PyObject *key, *item;
        while (!found && PyDict_Next(value, &position, &key, &item))
            found = has_wide_int(item);
    }
    else {
        for (Py_ssize_t i = 0; !found && i < PyList_GET_SIZE(value); i++)
            found = has_wide_int(PyList_GET_ITEM(value, i));
    }
    Py_LeaveRecursiveCall();
    return found;
}

static PyObject *rows_wide_ints(PyObject *module, PyObject *value)
{
    int found = has_wide_int(value);
    if (found < 0)
        return NULL;
    return PyBool_FromLong(found);
}

/* quoted(data): the JSON string whose text is `data` (UTF-8, as orjson writes it), quotes
   included, escaped as orjson escapes a str: `"` and `\`, the short forms \b \t \n \f \r, and
   \u00XX for the other control characters; every other byte as it is. A tool result's text copy
   is its structuredContent's JSON: made from the bytes, it is never decoded into a str that
   orjson would then encode back to UTF-8.

   Eight bytes at a time: `escapes_in` marks each byte that needs an escape (the lowest mark is
   exact, which is the only one read), and a word without any is copied whole. */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static inline uint64_t escapes_in(uint64_t word)
{
    uint64_t quote = word ^ (ONES * '"'), backslash = word ^ (ONES * '\\');
    return (((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash)
            | ((word - ONES * 0x20) & ~word)) & HIGHS;
}

/* A mark on each zero byte of a word, exact for every byte (no borrow between bytes). */
static inline uint64_t exact_zeros(uint64_t word)
{
    const uint64_t lows = 0x7f7f7f7f7f7f7f7fULL;
    return ~(((word & lows) + lows) | word | lows);
}

static PyObject *rows_quoted(PyObject *module, PyObject *arg)
{
    if (!PyBytes_CheckExact(arg)) {
        PyErr_Format(PyExc_TypeError, "quoted() takes bytes, not %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    const unsigned char *in = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t size = PyBytes_GET_SIZE(arg);
    /* Room for the quotes, 8 bytes copied past the end of what is kept, and one escape in four
       bytes (JSON text has a quote in about seven); grown when a text has more. */
    if (size > (PY_SSIZE_T_MAX - 64) / 2)
        return PyErr_NoMemory();
    Py_ssize_t room = size + size / 4 + 64;
    PyObject *out = PyBytes_FromStringAndSize(NULL, room);
    if (out == NULL)
        return NULL;
    char *o = PyBytes_AS_STRING(out);
    *o++ = '"';
    Py_ssize_t i = 0;
    while (i < size) {
        Py_ssize_t written = o - PyBytes_AS_STRING(out);
        if (room - written < 24) {  /* a word of escapes (16), or an escape (6) and a word (8) */
            room = room + room / 2 + 16;
            if (_PyBytes_Resize(&out, room) < 0)
                return NULL;
            o = PyBytes_AS_STRING(out) + written;
        }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (size - i >= 8) {
            uint64_t word, marks;
            memcpy(&word, in + i, 8);
            marks = escapes_in(word);
            if (marks == 0) {
                memcpy(o, &word, 8);
                o += 8;
                i += 8;
                continue;
            }
            if (size - i >= 16 && (((word - ONES * 0x20) & ~word) & HIGHS) == 0) {
                /* Quotes and backslashes only (JSON text holds no control character), a quote
                   every eight bytes or so: each run of plain bytes before one is copied as a
                   word (reading past the run, within the text) and the escape written after. */
                uint64_t exact = exact_zeros(word ^ (ONES * '"'))
                                 | exact_zeros(word ^ (ONES * '\\'));
                const unsigned char *from = in + i;
                int at = 0;
                while (exact) {
                    int next = __builtin_ctzll(exact) >> 3;
                    memcpy(o, from + at, 8);
                    o += next - at;
                    *o++ = '\\';
                    *o++ = (char)from[next];
                    at = next + 1;
                    exact &= exact - 1;
                }
                memcpy(o, from + at, 8);
                o += 8 - at;
                i += 8;
                continue;
            }
            memcpy(o, &word, 8);
            Py_ssize_t plain = __builtin_ctzll(marks) >> 3;  /* little-endian: first byte lowest */
            o += plain;
            i += plain;
        }
#endif
        unsigned char c = in[i++];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        o = escape_byte(o, c);
    }
    *o++ = '"';
    if (_PyBytes_Resize(&out, o - PyBytes_AS_STRING(out)) < 0)
        return NULL;
    return out;
}

static PyMethodDef methods[] = {
    {"walk", (PyCFunction)(void (*)(void))rows_walk, METH_FASTCALL,
     "A de-identified copy of a JSON-like value (see gateway/calls/redaction.py)."},
    {"pick", (PyCFunction)(void (*)(void))rows_pick, METH_FASTCALL,
     "An object of the named fields of a value (see gateway/spec/jmes.py)."},
    {"wide_ints", rows_wide_ints, METH_O,
     "Whether a decoded value holds an integer outside [-2**63, 2**64)."},
    {"quoted", rows_quoted, METH_O,
     "The JSON string of UTF-8 text, escaped as orjson escapes a str."},
    {"page", (PyCFunction)(void (*)(void))rows_page, METH_FASTCALL,
     "The selected, de-identified rows of a JSON list, each a fragment (see _pages.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "gateway.native._rows",
    "The per-row hot loops of a tool result in C; pure-Python twins are the reference.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__rows(void)
{
    return PyModule_Create(&module);
}
