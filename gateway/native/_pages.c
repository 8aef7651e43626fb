/* A page of rows from the upstream's JSON straight to the JSON of the tool result's rows: the
 * selection of plain fields, de-identification and encoding in one pass over the bytes, with no
 * Python object made for a row or a field (gateway/spec/pages.py says when it runs).
 *
 * page(answer, path, fields, verdict, pseudonym, scrub, fragment) finds the list at `path` (a
 * tuple of keys) in `answer`, and gives, for each of its items, the JSON that selecting
 * `fields` from it (plain fields, `name: key`, or one object's plain fields, `name: {sub:
 * key.sub, ...}`; no fields: the item whole), de-identifying the result and encoding it with
 * orjson would give, byte for byte, as `fragment(bytes)` (orjson.Fragment: encoded as it is),
 * with their bytes in all and where the list starts and ends in the answer. Every decision of
 * the policy stays in Python: `verdict` (key -> 0 plain, 1 pseudonymise, 2 drop; None: every
 * key plain), `pseudonym` (text -> text, or a dict of those made that makes a missing one when
 * read) and `scrub` (text -> text, or None when text is not scrubbed) are called back, as
 * `walk` in _rows.c calls them. Everything else in the answer is checked as msgspec checks
 * what it skips.
 *
 * It declines (returns None, and the caller takes the whole path) wherever its output could
 * differ from that path's: an item that is not an object (fields selected), a float not
 * written as orjson writes it (with an exponent, say), an integer of 19 digits or more, `-0`,
 * a lone surrogate, bad UTF-8, a key the policy judges spelt with an escape or holding an
 * address, a repeated key, nesting deeper than MAX_DEPTH, a named key's object, a path that
 * is not there or not a list, or anything that is not JSON.
 */
#include "_json.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MAX_DEPTH 64     /* nesting below a row */
#define MAX_KNOWN 64     /* keys whose verdict a call remembers in C */
#define MAX_KEYS 64      /* keys of a nested object checked for repeats; more: declined */
#define MAX_FIELDS 256   /* fields of a row's selection */
#define MAX_DIGITS 18    /* an integer of more could leave 64 bits: declined */
#define MAX_FLOAT_TEXT 32  /* a float's text compared with orjson's; longer: declined */

enum { DONE = 0, DECLINED = 1, FAILED = -1 };
/* What becomes of a value: the policy's three verdicts, and SKIPPED for what the selection does
 * not read, which is only checked as msgspec checks what it skips (syntax, escapes, numbers). */
enum { PLAIN = 0, PSEUDONYMISED = 1, DROPPED = 2, SKIPPED = 3 };

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

typedef struct {
    char *data;
    Py_ssize_t size, room;
} Buffer;

typedef struct {
    const unsigned char *key;
    Py_ssize_t size;
    int verdict;
} Known;

typedef struct {
    const unsigned char *at, *end;
    Buffer out, row, text;    /* a row's values; the row; a string's decoded text */
    PyObject *verdict, *pseudonym, *scrub;
    Known known[MAX_KNOWN];
    int known_count, depth;
} Page;

/* A string as found: its bytes between the quotes, and what they hold. */
typedef struct {
    const unsigned char *start;
    Py_ssize_t size;
    int escaped, address, wide;
} Found;

static int grow(Buffer *b, Py_ssize_t more)
{
    if (more > PY_SSIZE_T_MAX / 4 - b->room) {
        PyErr_NoMemory();
        return FAILED;
    }
    Py_ssize_t room = 2 * (b->room + more);
    char *data = PyMem_Realloc(b->data, (size_t)room);
    if (data == NULL) {
        PyErr_NoMemory();
        return FAILED;
    }
    b->data = data;
    b->room = room;
    return DONE;
}

/* Room for `more` bytes: inline, as nearly every write has it already. */
static inline int reserve(Buffer *b, Py_ssize_t more)
{
    return b->room - b->size >= more ? DONE : grow(b, more);
}

static inline int put(Buffer *b, const void *bytes, Py_ssize_t size)
{
    if (reserve(b, size) != DONE)
        return FAILED;
    memcpy(b->data + b->size, bytes, (size_t)size);
    b->size += size;
    return DONE;
}

/* UTF-8 text as a JSON string, escaped as orjson escapes a str. */
static int put_text(Buffer *b, const unsigned char *text, Py_ssize_t size)
{
    if (size > (PY_SSIZE_T_MAX / 4 - 2) / 6 || reserve(b, 6 * size + 2) != DONE) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        return FAILED;
    }
    char *o = b->data + b->size;
    *o++ = '"';
    for (Py_ssize_t i = 0; i < size; i++) {
        unsigned char c = text[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            *o++ = (char)c;
        else
            o = escape_byte(o, c);
    }
    *o++ = '"';
    b->size = o - b->data;
    return DONE;
}

/* A str from Python written as JSON; declined when it is not a str or not UTF-8 (surrogates). */
static int put_str(Buffer *b, PyObject *text)
{
    if (!PyUnicode_CheckExact(text))
        return DECLINED;
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &size);
    if (utf8 == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            return FAILED;
        PyErr_Clear();
        return DECLINED;
    }
    return put_text(b, (const unsigned char *)utf8, size);
}

static inline void skip_space(Page *p)
{
    while (p->at < p->end && *p->at <= ' '
           && (*p->at == ' ' || *p->at == '\n' || *p->at == '\r' || *p->at == '\t'))
        p->at++;
}

/* Whether the bytes are UTF-8 as Python and orjson take it: no overlong forms, no surrogates,
 * nothing above U+10FFFF. */
static int is_utf8(const unsigned char *s, Py_ssize_t size)
{
    Py_ssize_t i = 0;
    while (i < size) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int more;
        unsigned char low = 0x80, high = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            more = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            more = 2;
            if (c == 0xe0) low = 0xa0;
            if (c == 0xed) high = 0x9f;
        }
        else if (c >= 0xf0 && c <= 0xf4) {
            more = 3;
            if (c == 0xf0) low = 0x90;
            if (c == 0xf4) high = 0x8f;
        }
        else
            return 0;
        if (size - i <= more || s[i + 1] < low || s[i + 1] > high)
            return 0;
        for (int k = 2; k <= more; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return 0;
        i += more + 1;
    }
    return 1;
}

/* Eight bytes at a time: a mark on each byte a string scan must look at (the quote, the
 * backslash, control characters; unless only skipping, also `@`, `%` and anything outside
 * ASCII); the lowest mark is exact. */
static inline uint64_t marks_in(uint64_t word, int skipping)
{
    uint64_t quote = word ^ (ONES * '"'), backslash = word ^ (ONES * '\\');
    uint64_t marks = ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash)
                     | ((word - ONES * 0x20) & ~word);
    if (!skipping) {
        uint64_t at = word ^ (ONES * '@'), percent = word ^ (ONES * '%');
        marks |= ((at - ONES) & ~at) | ((percent - ONES) & ~percent) | word;
    }
    return marks & HIGHS;
}

#if defined(__SSE2__)
/* The same marks sixteen bytes at a time (SSE2 is part of every x86-64), each one exact: a
 * string of up to fifteen bytes is crossed in one step. */
static inline unsigned marks_in16(const unsigned char *at, int skipping)
{
    __m128i bytes = _mm_loadu_si128((const __m128i *)at);
    __m128i marks = _mm_or_si128(_mm_cmpeq_epi8(bytes, _mm_set1_epi8('"')),
                                 _mm_cmpeq_epi8(bytes, _mm_set1_epi8('\\')));
    __m128i control = _mm_set1_epi8(0x1f);  /* a byte <= 0x1f is its own unsigned max with it */
    marks = _mm_or_si128(marks, _mm_cmpeq_epi8(_mm_max_epu8(bytes, control), control));
    if (!skipping) {
        marks = _mm_or_si128(marks, _mm_or_si128(_mm_cmpeq_epi8(bytes, _mm_set1_epi8('@')),
                                                 _mm_cmpeq_epi8(bytes, _mm_set1_epi8('%'))));
        marks = _mm_or_si128(marks, bytes);  /* the top bit: anything outside ASCII */
    }
    return (unsigned)_mm_movemask_epi8(marks);
}
#endif

/* The string at p->at (its opening quote); leaves p->at after the closing quote. */
static inline __attribute__((always_inline)) int find_string(Page *p, Found *found,
                                                             int skipping)
{
    const unsigned char *s = ++p->at, *end = p->end;
    int escaped = 0, address = 0, wide = 0;
    for (;;) {
#if defined(__SSE2__)
        if (end - p->at >= 16) {
            unsigned marks = marks_in16(p->at, skipping);
            if (marks == 0) {
                p->at += 16;
                continue;
            }
            p->at += __builtin_ctz(marks);
        }
        else {  /* the last bytes of the answer */
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (end - p->at >= 8) {
            uint64_t word;
            memcpy(&word, p->at, 8);
            uint64_t marks = marks_in(word, skipping);
            if (marks == 0) {
                p->at += 8;
                continue;
            }
            p->at += __builtin_ctzll(marks) >> 3;
        }
#endif
#if defined(__SSE2__)
        }
#endif
        if (p->at >= end)
            return DECLINED;
        unsigned char c = *p->at;
        if (c == '"')
            break;
        if (c == '\\') {
            escaped = 1;
            p->at += 2;
            continue;
        }
        if (c < 0x20)
            return DECLINED;
        if (c == '@' || c == '%')
            address = 1;
        else if (c >= 0x80)
            wide = 1;
        p->at++;
    }
    found->start = s;
    found->size = p->at - s;
    found->escaped = escaped;
    found->address = address;
    found->wide = wide;
    p->at++;
    return DONE;
}

static int hex4(const unsigned char *s, unsigned int *value)
{
    unsigned int v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return 0;
    }
    *value = v;
    return 1;
}

/* The text of an escaped string, into p->text; sets found->address from the text. */
static int unescape(Page *p, Found *found)
{
    Buffer *t = &p->text;
    t->size = 0;
    if (reserve(t, found->size) != DONE)  /* never longer than its escaped form */
        return FAILED;
    const unsigned char *s = found->start, *end = s + found->size;
    unsigned char *o = (unsigned char *)t->data;
    while (s < end) {
        if (*s != '\\') {
            *o++ = *s++;
            continue;
        }
        if (end - s < 2)
            return DECLINED;
        unsigned char c = s[1];
        s += 2;
        switch (c) {
        case '"': case '\\': case '/': *o++ = c; continue;
        case 'b': *o++ = '\b'; continue;
        case 'f': *o++ = '\f'; continue;
        case 'n': *o++ = '\n'; continue;
        case 'r': *o++ = '\r'; continue;
        case 't': *o++ = '\t'; continue;
        case 'u': break;
        default: return DECLINED;
        }
        unsigned int code, low;
        if (end - s < 4 || !hex4(s, &code))
            return DECLINED;
        s += 4;
        if (code >= 0xdc00 && code <= 0xdfff)
            return DECLINED;  /* a lone low surrogate */
        if (code >= 0xd800 && code <= 0xdbff) {
            if (end - s < 6 || s[0] != '\\' || s[1] != 'u' || !hex4(s + 2, &low)
                || low < 0xdc00 || low > 0xdfff)
                return DECLINED;  /* a high surrogate without its low half */
            s += 6;
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        }
        if (code < 0x80)
            *o++ = (unsigned char)code;
        else if (code < 0x800) {
            *o++ = (unsigned char)(0xc0 | (code >> 6));
            *o++ = (unsigned char)(0x80 | (code & 0x3f));
        }
        else if (code < 0x10000) {
            *o++ = (unsigned char)(0xe0 | (code >> 12));
            *o++ = (unsigned char)(0x80 | ((code >> 6) & 0x3f));
            *o++ = (unsigned char)(0x80 | (code & 0x3f));
        }
        else {
            *o++ = (unsigned char)(0xf0 | (code >> 18));
            *o++ = (unsigned char)(0x80 | ((code >> 12) & 0x3f));
            *o++ = (unsigned char)(0x80 | ((code >> 6) & 0x3f));
            *o++ = (unsigned char)(0x80 | (code & 0x3f));
        }
    }
    t->size = (char *)o - t->data;
    found->address = memchr(t->data, '@', (size_t)t->size) != NULL
                     || memchr(t->data, '%', (size_t)t->size) != NULL;
    return DONE;
}

/* The string's text handed to a policy function, and what it returns written. The pseudonym
 * may be a dict of those already made (that makes a missing one when read): one lookup. */
static int put_called(Page *p, PyObject *function, const char *text, Py_ssize_t size)
{
    PyObject *value = PyUnicode_DecodeUTF8(text, size, "strict");
    if (value == NULL)
        return FAILED;
    PyObject *result;
    if (PyDict_Check(function)) {
        result = Py_XNewRef(PyDict_GetItemWithError(function, value));
        if (result == NULL && !PyErr_Occurred())
            result = PyObject_GetItem(function, value);
    }
    else
        result = PyObject_CallOneArg(function, value);
    Py_DECREF(value);
    if (result == NULL)
        return FAILED;
    int outcome = put_str(&p->out, result);
    Py_DECREF(result);
    return outcome;
}

static int string_value(Page *p, int mode)
{
    Found found;
    int outcome = find_string(p, &found, mode == SKIPPED);
    if (outcome != DONE)
        return outcome;
    if (mode == SKIPPED)  /* its escapes are checked, not its UTF-8, as msgspec skips */
        return found.escaped ? unescape(p, &found) : DONE;
    const char *text = (const char *)found.start;
    Py_ssize_t size = found.size;
    if (found.escaped) {
        if ((outcome = unescape(p, &found)) != DONE)
            return outcome;
        text = p->text.data;
        size = p->text.size;
    }
    if ((found.wide || found.escaped) && !is_utf8((const unsigned char *)text, size))
        return DECLINED;
    if (mode == DROPPED)  /* selected, so decoded, and then dropped */
        return DONE;
    if (mode == PSEUDONYMISED && size > 0)
        return put_called(p, p->pseudonym, text, size);
    if (mode == PLAIN && found.address && p->scrub != Py_None)
        return put_called(p, p->scrub, text, size);
    if (!found.escaped)  /* nothing in it needs an escape: the bytes are orjson's */
        return put(&p->out, found.start - 1, found.size + 2);
    return put_text(&p->out, (const unsigned char *)text, size);
}

static const unsigned char *digits_from(const unsigned char *at, const unsigned char *end)
{
    while (at < end && *at >= '0' && *at <= '9')
        at++;
    return at;
}

/* Whether orjson writes the float that `text` reads as with that very text. Where Python's
 * repr of the float has no exponent, the two agree (each is the shortest text that reads back
 * as the same float; they differ only in how they write exponents), so a text equal to that
 * repr is kept as it is. */
static int float_kept(const unsigned char *text, Py_ssize_t size)
{
    char copy[MAX_FLOAT_TEXT + 1];
    if (size > MAX_FLOAT_TEXT)
        return 0;
    memcpy(copy, text, (size_t)size);
    copy[size] = '\0';
    char *end;
    double value = PyOS_string_to_double(copy, &end, NULL);  /* past JSON's grammar already */
    if (end != copy + size) {
        PyErr_Clear();
        return 0;
    }
    char *shown = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (shown == NULL) {
        PyErr_Clear();
        return 0;
    }
    int kept = strlen(shown) == (size_t)size && memcmp(shown, copy, (size_t)size) == 0
               && strchr(shown, 'e') == NULL;
    PyMem_Free(shown);
    return kept;
}

/* A number: one the selection reads is taken as an integer of up to MAX_DIGITS digits, or a
 * float written as orjson writes it (its bytes are then orjson's); one skipped is checked
 * against JSON's grammar. */
static int number_value(Page *p, int mode)
{
    const unsigned char *start = p->at;
    if (p->at < p->end && *p->at == '-')
        p->at++;
    const unsigned char *digits = p->at;
    p->at = digits_from(p->at, p->end);
    Py_ssize_t count = p->at - digits;
    if (count == 0 || (count > 1 && *digits == '0'))
        return DECLINED;
    int integer = 1;
    if (p->at < p->end && *p->at == '.') {
        const unsigned char *fraction = ++p->at;
        if ((p->at = digits_from(p->at, p->end)) == fraction)
            return DECLINED;
        integer = 0;
    }
    if (p->at < p->end && (*p->at == 'e' || *p->at == 'E')) {
        p->at++;
        if (p->at < p->end && (*p->at == '+' || *p->at == '-'))
            p->at++;
        const unsigned char *exponent = p->at;
        if ((p->at = digits_from(p->at, p->end)) == exponent)
            return DECLINED;
        integer = 0;
    }
    if (mode == SKIPPED)
        return DONE;
    if (!integer)
        return !float_kept(start, p->at - start) ? DECLINED  /* written otherwise by orjson */
               : mode == DROPPED ? DONE : put(&p->out, start, p->at - start);
    if (count > MAX_DIGITS)
        return DECLINED;  /* an integer that may leave 64 bits */
    if (digits > start && count == 1 && *digits == '0')
        return DECLINED;  /* -0: decoded as 0 */
    return mode == DROPPED ? DONE : put(&p->out, start, p->at - start);
}

static int literal_value(Page *p, int mode, const char *word, Py_ssize_t size)
{
    if (p->end - p->at < size || memcmp(p->at, word, (size_t)size) != 0)
        return DECLINED;
    p->at += size;
    return mode >= DROPPED ? DONE : put(&p->out, word, size);
}

static int value(Page *p, int mode);

/* The verdict on a key of a nested object, remembered for the call. */
static int verdict_of(Page *p, const unsigned char *key, Py_ssize_t size)
{
    if (p->verdict == Py_None)
        return PLAIN;
    for (int i = 0; i < p->known_count; i++)
        if (p->known[i].size == size && memcmp(p->known[i].key, key, (size_t)size) == 0)
            return p->known[i].verdict;
    PyObject *name = PyUnicode_DecodeUTF8((const char *)key, size, "strict");
    if (name == NULL)
        return FAILED;
    PyObject *answer = PyObject_CallOneArg(p->verdict, name);
    Py_DECREF(name);
    if (answer == NULL)
        return FAILED;
    long verdict = PyLong_AsLong(answer);
    Py_DECREF(answer);
    if (verdict == -1 && PyErr_Occurred())
        return FAILED;
    if (verdict < PLAIN || verdict > DROPPED) {
        PyErr_SetString(PyExc_ValueError, "a verdict is 0, 1 or 2");
        return FAILED;
    }
    if (p->known_count < MAX_KNOWN)
        p->known[p->known_count++] = (Known){key, size, (int)verdict};
    return (int)verdict;
}

/* A key and its colon. Only a key the policy may judge must be plain UTF-8 without an escape
 * or an address; a skipped object's keys are checked as msgspec skips them. */
static inline __attribute__((always_inline)) int key_of(Page *p, Found *found, int mode)
{
    if (p->at >= p->end || *p->at != '"')
        return DECLINED;
    int outcome = find_string(p, found, mode == SKIPPED);
    if (outcome != DONE)
        return outcome;
    if (mode == SKIPPED) {
        if (found->escaped && (outcome = unescape(p, found)) != DONE)
            return outcome;
    }
    else if (found->escaped || found->address
             || (found->wide && !is_utf8(found->start, found->size)))
        return DECLINED;
    skip_space(p);
    if (p->at >= p->end || *p->at != ':')
        return DECLINED;
    p->at++;
    skip_space(p);
    return DONE;
}

/* After a member or an item: DONE with p->at on the next one, or CLOSED past the bracket. */
enum { CLOSED = 2 };

static inline int next_member(Page *p, unsigned char closing)
{
    skip_space(p);
    if (p->at >= p->end)
        return DECLINED;
    if (*p->at == closing) {
        p->at++;
        return CLOSED;
    }
    if (*p->at != ',')
        return DECLINED;
    p->at++;
    skip_space(p);
    return DONE;
}

/* Past the opening bracket: DONE on the first member, or CLOSED past an empty container. */
static inline int first_member(Page *p, unsigned char closing)
{
    p->at++;
    skip_space(p);
    if (p->at < p->end && *p->at == closing) {
        p->at++;
        return CLOSED;
    }
    return DONE;
}

static int put_unless(Page *p, int mode, const char *bytes, Py_ssize_t size)
{
    return mode >= DROPPED ? DONE : put(&p->out, bytes, size);
}

/* An object below a row. Under a plain key each key's own verdict applies to its value;
 * a named key's object is declined (Python merges its entries by pseudonym). */
static int object_value(Page *p, int mode)
{
    if (mode == PSEUDONYMISED)
        return DECLINED;
    int outcome = first_member(p, '}');
    if (put_unless(p, mode, "{", 1) != DONE)
        return FAILED;
    Found keys[MAX_KEYS];
    int count = 0, kept = 0;
    while (outcome == DONE) {
        Found *key = &keys[mode == SKIPPED ? 0 : count];
        if ((outcome = key_of(p, key, mode)) != DONE)
            return outcome;
        int verdict = mode;
        if (mode < DROPPED) {
            for (int i = 0; i < count; i++)
                if (keys[i].size == key->size
                    && memcmp(keys[i].start, key->start, (size_t)key->size) == 0)
                    return DECLINED;  /* a repeated key: the last value stands where the first did */
            if (++count == MAX_KEYS)
                return DECLINED;
            if ((verdict = verdict_of(p, key->start, key->size)) == FAILED)
                return FAILED;
            if (verdict != DROPPED
                && ((kept++ && put(&p->out, ",", 1) != DONE)
                    || put(&p->out, key->start - 1, key->size + 2) != DONE
                    || put(&p->out, ":", 1) != DONE))
                return FAILED;
        }
        if ((outcome = value(p, verdict)) != DONE)
            return outcome;
        outcome = next_member(p, '}');
    }
    return outcome == CLOSED ? put_unless(p, mode, "}", 1) : outcome;
}

/* A list: under a plain key each item is walked; under a named one each is pseudonymised. */
static int array_value(Page *p, int mode)
{
    int outcome = first_member(p, ']');
    if (put_unless(p, mode, "[", 1) != DONE)
        return FAILED;
    for (int first = 1; outcome == DONE; first = 0) {
        if (!first && put_unless(p, mode, ",", 1) != DONE)
            return FAILED;
        if ((outcome = value(p, mode)) != DONE)
            return outcome;
        outcome = next_member(p, ']');
    }
    return outcome == CLOSED ? put_unless(p, mode, "]", 1) : outcome;
}

static int value(Page *p, int mode)
{
    if (p->at >= p->end)
        return DECLINED;
    switch (*p->at) {
    case '"': return string_value(p, mode);
    case 't': return literal_value(p, mode, "true", 4);
    case 'f': return literal_value(p, mode, "false", 5);
    case 'n': return literal_value(p, mode, "null", 4);
    case '{': case '[': break;
    default: return number_value(p, mode);
    }
    if (p->depth >= MAX_DEPTH)
        return DECLINED;
    p->depth++;
    int outcome = *p->at == '{' ? object_value(p, mode) : array_value(p, mode);
    p->depth--;
    return outcome;
}

/* A field of the rows' selection, and where its value was written for the row at hand. */
typedef struct {
    PyObject *name;           /* bytes: the output name, as JSON */
    const char *key;          /* the input key (UTF-8) */
    Py_ssize_t key_size;
    int verdict;
    Py_ssize_t start, size;   /* in Page.out; size -1: the row has no such key */
    Py_ssize_t sub, subs;     /* a nested selection {name: key.sub, ...}: its fields, in the
                                 same array after the row's own (subs 0: a plain field) */
} Field;

/* Which fields a row's key is, found by the key the previous row had at the same position
 * (rows of a page repeat their keys in order) or else by comparing it with every field's. */
typedef struct {
    const unsigned char *key;
    Py_ssize_t size;
    int field, again;         /* the first field with the key (-1: none), and whether another has it */
} Seen;

static const Seen *seen_as(Seen *seen, Field *fields, Py_ssize_t count, const Found *key)
{
    if (seen->key != NULL && seen->size == key->size
        && memcmp(seen->key, key->start, (size_t)key->size) == 0)
        return seen;
    seen->key = key->start;
    seen->size = key->size;
    seen->field = -1;
    seen->again = 0;
    for (Py_ssize_t i = 0; i < count; i++)
        if (fields[i].key_size == key->size
            && memcmp(fields[i].key, key->start, (size_t)key->size) == 0) {
            if (seen->field >= 0)
                seen->again = 1;
            else
                seen->field = (int)i;
        }
    return seen;
}

#define MAX_ROW_KEYS 128     /* positions of a row remembered for the next one */

static int nested(Page *p, Field *fields, const Field *field);

/* The value at `at` written for `field` (under its verdict, or as its nested selection), where
 * Page.out says; a second value for the same field is declined (the last would stand). */
static int read_value(Page *p, Field *fields, Field *field, const unsigned char *at)
{
    if (field->size >= 0)
        return DECLINED;
    p->at = at;
    field->start = p->out.size;
    int outcome = field->subs ? nested(p, fields, field) : value(p, field->verdict);
    field->size = p->out.size - field->start;
    return outcome;
}

/* The object under a nested selection's key: each of its fields' values written (under its
 * verdict) as it is met, every other one checked and passed over. null gives null to each
 * field, as the selection does; any other value that is not an object is declined. */
static int nested(Page *p, Field *fields, const Field *field)
{
    if (p->at < p->end && *p->at == 'n')
        return literal_value(p, SKIPPED, "null", 4);
    if (p->at >= p->end || *p->at != '{' || p->depth >= MAX_DEPTH)
        return DECLINED;
    p->depth++;
    int outcome = first_member(p, '}');
    while (outcome == DONE) {
        Found key;
        if ((outcome = key_of(p, &key, SKIPPED)) != DONE)
            return outcome;
        if (key.escaped)
            return DECLINED;  /* it might be a selected key, spelt with an escape */
        const unsigned char *at = p->at;
        int read = 0;
        for (Py_ssize_t i = field->sub; i < field->sub + field->subs && outcome == DONE; i++)
            if (fields[i].key_size == key.size
                && memcmp(fields[i].key, key.start, (size_t)key.size) == 0) {
                read = 1;
                outcome = read_value(p, fields, &fields[i], at);
            }
        if (!read)
            outcome = value(p, SKIPPED);
        if (outcome != DONE)
            return outcome;
        outcome = next_member(p, '}');
    }
    p->depth--;
    return outcome == CLOSED ? DONE : outcome;
}

/* The object of fields[from..to) as the row's JSON holds it: each field not dropped, with its
 * bytes in Page.out, null for a key the row lacks, or its nested selection's object. */
static int put_object(Buffer *r, const Page *p, const Field *fields, Py_ssize_t from,
                      Py_ssize_t to)
{
    if (put(r, "{", 1) != DONE)
        return FAILED;
    int kept = 0;
    for (Py_ssize_t i = from; i < to; i++) {
        const Field *field = &fields[i];
        if (field->verdict == DROPPED)
            continue;
        if ((kept++ && put(r, ",", 1) != DONE)
            || put(r, PyBytes_AS_STRING(field->name), PyBytes_GET_SIZE(field->name)) != DONE
            || put(r, ":", 1) != DONE
            || (field->subs ? put_object(r, p, fields, field->sub, field->sub + field->subs)
                : field->size < 0 ? put(r, "null", 4)
                : put(r, p->out.data + field->start, field->size)) != DONE)
            return FAILED;
    }
    return put(r, "}", 1);
}

/* One row, in one pass: each selected value is written (under its field's verdict) as it is
 * met, every other one checked and passed over; then the row is put together in the
 * selection's order, null for a key the row lacks. */
static int row(Page *p, Field *fields, Py_ssize_t count, Py_ssize_t total, Seen *seen)
{
    if (p->at >= p->end || *p->at != '{')
        return DECLINED;
    for (Py_ssize_t i = 0; i < total; i++)
        fields[i].size = -1;
    p->out.size = 0;
    int outcome = first_member(p, '}');
    for (int position = 0; outcome == DONE; position++) {
        Found key;
        if ((outcome = key_of(p, &key, SKIPPED)) != DONE)
            return outcome;
        if (key.escaped && count > 0)
            return DECLINED;  /* it might be a selected key, spelt with an escape */
        Seen lookup;
        const Seen *found = key.escaped ? NULL
            : seen_as(position < MAX_ROW_KEYS ? &seen[position] : (lookup.key = NULL, &lookup),
                      fields, count, &key);
        if (found == NULL || found->field < 0)
            outcome = value(p, SKIPPED);
        else {
            const unsigned char *at = p->at;
            Py_ssize_t last = found->again ? count - 1 : found->field;
            for (Py_ssize_t i = found->field; i <= last && outcome == DONE; i++)
                if (i == found->field || (fields[i].key_size == key.size
                    && memcmp(fields[i].key, key.start, (size_t)key.size) == 0))
                    outcome = read_value(p, fields, &fields[i], at);
        }
        if (outcome != DONE)
            return outcome;
        outcome = next_member(p, '}');
    }
    if (outcome != CLOSED)
        return outcome;
    p->row.size = 0;
    return put_object(&p->row, p, fields, 0, count);
}

#define FIELDS_ERROR "fields: a tuple of (name as JSON, key, verdict[, nested fields])"

/* One field as Python gives it: (name as JSON, key, verdict), and for a nested selection a
 * fourth item, its own fields as (name as JSON, key, verdict); those are put after the row's
 * own fields, from `*total` on. */
static int read_field(PyObject *entry, Field *fields, Py_ssize_t at, Py_ssize_t *total,
                      int nesting)
{
    Py_ssize_t size = PyTuple_CheckExact(entry) ? PyTuple_GET_SIZE(entry) : 0;
    if ((size != 3 && (size != 4 || !nesting))
        || !PyBytes_CheckExact(PyTuple_GET_ITEM(entry, 0))
        || !PyUnicode_CheckExact(PyTuple_GET_ITEM(entry, 1))
        || !PyLong_CheckExact(PyTuple_GET_ITEM(entry, 2))
        || (size == 4 && (!PyTuple_CheckExact(PyTuple_GET_ITEM(entry, 3))
                          || PyTuple_GET_SIZE(PyTuple_GET_ITEM(entry, 3)) == 0))) {
        PyErr_SetString(PyExc_TypeError, FIELDS_ERROR);
        return FAILED;
    }
    Field *field = &fields[at];
    field->name = PyTuple_GET_ITEM(entry, 0);
    field->key = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(entry, 1), &field->key_size);
    if (field->key == NULL)
        return FAILED;
    long verdict = PyLong_AsLong(PyTuple_GET_ITEM(entry, 2));
    if (verdict < PLAIN || verdict > DROPPED) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "a verdict is 0, 1 or 2");
        return FAILED;
    }
    field->verdict = (int)verdict;
    field->sub = field->subs = 0;
    if (size == 3)
        return DONE;
    PyObject *subs = PyTuple_GET_ITEM(entry, 3);
    Py_ssize_t count = PyTuple_GET_SIZE(subs);
    if (verdict != PLAIN || count > MAX_FIELDS - *total) {
        PyErr_SetString(PyExc_ValueError, "a nested selection is plain, and a row has at "
                                          "most 256 fields with those of its nested ones");
        return FAILED;
    }
    field->sub = *total;
    field->subs = count;
    *total += count;
    for (Py_ssize_t i = 0; i < count; i++)
        if (read_field(PyTuple_GET_ITEM(subs, i), fields, field->sub + i, total, 0) != DONE)
            return FAILED;
    return DONE;
}

static int read_fields(PyObject *given, Field *fields, Py_ssize_t *count, Py_ssize_t *total)
{
    if (!PyTuple_CheckExact(given) || PyTuple_GET_SIZE(given) > MAX_FIELDS) {
        PyErr_SetString(PyExc_TypeError, FIELDS_ERROR);
        return FAILED;
    }
    *count = *total = PyTuple_GET_SIZE(given);
    for (Py_ssize_t i = 0; i < *count; i++)
        if (read_field(PyTuple_GET_ITEM(given, i), fields, i, total, 1) != DONE)
            return FAILED;
    return DONE;
}

typedef struct {
    Field fields[MAX_FIELDS];
    Py_ssize_t count, total;  /* the row's own fields, and with the nested selections' */
    PyObject *fragment;       /* orjson.Fragment */
    PyObject *list;           /* the rows made */
    Py_ssize_t bytes;         /* and their bytes in all */
    Seen seen[MAX_ROW_KEYS];
    const unsigned char *start, *end;  /* where the list is in the answer */
} Rows;

/* The list at p->at, each of its objects a row made into a fragment. */
static int rows_of(Page *p, Rows *rows)
{
    if (p->at >= p->end || *p->at != '[')
        return DECLINED;  /* not a list: the projection gives null */
    rows->start = p->at;
    int outcome = first_member(p, ']');
    while (outcome == DONE) {
        /* No fields: the rows are taken whole (JMESPath has no empty selection `{}`), each
         * written as the policy leaves it, whatever its type. */
        Buffer *made_of = rows->count ? &p->row : &p->out;
        p->out.size = 0;
        if ((outcome = rows->count ? row(p, rows->fields, rows->count, rows->total, rows->seen)
                                   : value(p, PLAIN)) != DONE)
            return outcome;
        rows->bytes += made_of->size;
        PyObject *bytes = PyBytes_FromStringAndSize(made_of->data, made_of->size);
        PyObject *made = bytes == NULL ? NULL : PyObject_CallOneArg(rows->fragment, bytes);
        Py_XDECREF(bytes);
        if (made == NULL || PyList_Append(rows->list, made) < 0) {
            Py_XDECREF(made);
            return FAILED;
        }
        Py_DECREF(made);
        outcome = next_member(p, ']');
    }
    rows->end = p->at;
    return outcome == CLOSED ? DONE : outcome;
}

/* The object at p->at, one key of `path` deep: the list is made where the path ends, and
 * everything else checked as msgspec skips it. A path key met twice is declined (the last
 * would stand), and so is a path that is not there (the projection gives null). */
static int along(Page *p, PyObject *path, Py_ssize_t level, Rows *rows)
{
    if (p->at >= p->end || *p->at != '{' || p->depth >= MAX_DEPTH)
        return DECLINED;
    p->depth++;
    Py_ssize_t size;
    const char *wanted = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(path, level), &size);
    if (wanted == NULL)
        return FAILED;
    int found = 0, outcome = first_member(p, '}');
    while (outcome == DONE) {
        Found key;
        if ((outcome = key_of(p, &key, SKIPPED)) != DONE)
            return outcome;
        if (key.escaped)
            return DECLINED;  /* it might be the path's key, spelt with an escape */
        if (key.size == size && memcmp(key.start, wanted, (size_t)size) == 0) {
            if (found++)
                return DECLINED;
            outcome = level + 1 == PyTuple_GET_SIZE(path) ? rows_of(p, rows)
                      : along(p, path, level + 1, rows);
        }
        else
            outcome = value(p, SKIPPED);
        if (outcome != DONE)
            return outcome;
        outcome = next_member(p, '}');
    }
    p->depth--;
    return outcome == CLOSED && !found ? DECLINED : outcome == CLOSED ? DONE : outcome;
}

/* page(answer, path, fields, verdict, pseudonym, scrub, fragment) -> (rows, bytes, start, end)
 * or None: the rows made of the list at `path`, their bytes in all, and where the list is in
 * the answer (the rest, with the list taken out, is decoded in Python). */
PyObject *rows_page(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 7 || !PyTuple_CheckExact(args[1]) || PyTuple_GET_SIZE(args[1]) == 0) {
        PyErr_SetString(PyExc_TypeError,
                        "page(answer, path, fields, verdict, pseudonym, scrub, fragment)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args[1]); i++)
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(args[1], i))) {
            PyErr_SetString(PyExc_TypeError, "path: a tuple of keys");
            return NULL;
        }
    Rows *rows = PyMem_Calloc(1, sizeof(Rows));
    if (rows == NULL)
        return PyErr_NoMemory();
    PyObject *answer = NULL;
    Py_buffer raw = {0};
    Page page = {0};
    if (read_fields(args[2], rows->fields, &rows->count, &rows->total) != DONE
        || PyObject_GetBuffer(args[0], &raw, PyBUF_SIMPLE) < 0)
        goto done;
    rows->fragment = args[6];
    if ((rows->list = PyList_New(0)) == NULL)
        goto done;
    page.at = (const unsigned char *)raw.buf;
    page.end = page.at + raw.len;
    page.verdict = args[3];
    page.pseudonym = args[4];
    page.scrub = args[5];
    skip_space(&page);
    int outcome = along(&page, args[1], 0, rows);
    skip_space(&page);
    if (outcome == DONE && page.at != page.end)
        outcome = DECLINED;  /* more after the answer */
    if (outcome == DECLINED)
        answer = Py_NewRef(Py_None);
    else if (outcome == DONE)
        answer = Py_BuildValue("(Onnn)", rows->list, rows->bytes,
                               (Py_ssize_t)(rows->start - (const unsigned char *)raw.buf),
                               (Py_ssize_t)(rows->end - (const unsigned char *)raw.buf));
done:
    Py_XDECREF(rows->list);
    PyMem_Free(rows);
    PyMem_Free(page.out.data);
    PyMem_Free(page.row.data);
    PyMem_Free(page.text.data);
    if (raw.obj != NULL)
        PyBuffer_Release(&raw);
    return answer;
}
