/* What the two sources of the row loops share: JSON text escaped as orjson escapes a str, and
 * the page transcoder's entry point (_pages.c) for the method table in _rows.c. */
#ifndef GATEWAY_NATIVE_JSON_H
#define GATEWAY_NATIVE_JSON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static const char HEX[] = "0123456789abcdef";

/* Write the escape of one byte that JSON text may not hold as it is (`"`, `\` or a control
 * character), as orjson writes it: the short forms \b \t \n \f \r, else \u00XX. At most six
 * bytes; returns where writing goes on. */
static inline char *escape_byte(char *o, unsigned char c)
{
    *o++ = '\\';
    switch (c) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '\b': *o++ = 'b'; break;
    case '\t': *o++ = 't'; break;
    case '\n': *o++ = 'n'; break;
    case '\f': *o++ = 'f'; break;
    case '\r': *o++ = 'r'; break;
    default:
        *o++ = 'u'; *o++ = '0'; *o++ = '0';
        *o++ = HEX[c >> 4]; *o++ = HEX[c & 0xf];
    }
    return o;
}

PyObject *rows_page(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
