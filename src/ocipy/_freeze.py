"""Code objects as static C data, for the embedded launcher (build time only).

A `create` imports ~30 ocipy modules, and unmarshalling their .pyc files
(~480 KB) was ~10% of its CPU time on the test VM: every string, tuple and
code object built on the heap, every name hashed and looked up for
interning.  CPython freezes its own start-up modules the same way ("deep
freeze", Tools/build/deepfreeze.py in its tree): each object is written out
as an initialised C struct, so loading a module is a pointer, and what is
left at run time is interning the code objects' names.

The objects follow the layout of the CPython these headers are of (3.11:
launcher.c refuses another), which is why this runs in the interpreter the
launcher embeds.  What they share with the interpreter's own (None, small
ints, the empty tuple, bytes and string, one-character strings) are its
singletons, as the unmarshalled code would have them.  Frozensets (the
constants `x in {...}` compiles to) cannot be static: each is written as a
tuple of its items, and the module's first load turns it into a frozenset
in place before any of its code runs.

The launcher's finder (ocipy/_pycfinder.py) uses this code only while the
module's source is byte for byte the one it was built from (same mtime and
size); otherwise the module loads from its .pyc as before.  A module holding
a constant of another type (a complex number, an infinite float) is left
out and loads from its .pyc.
"""
from __future__ import annotations

import dis
import math
import sys
import types

# The objects' own sections: the code of the modules a create, run or exec
# imports, and of the others (launcher.c copies in the first at start, as
# nearly all of it is written to, and leaves the second to fault in if used)
SECTION = "ocipy_code"
COLD_SECTION = "ocipy_code_cold"
_REFCNT = 999999999  # never freed: CPython's value for its static objects
# the CPython whose object layouts this writes (3.11's code objects, strings
# with wstr, ...): another one gets no static code (available)
LAYOUT = (3, 11)
_RESUME = dis.opmap.get("RESUME", -1)
_CO_FAST_LOCAL, _CO_FAST_CELL, _CO_FAST_FREE = 0x20, 0x40, 0x80


def available() -> bool:
    """Whether this interpreter is one whose objects this module can write."""
    return sys.version_info[:2] == LAYOUT


class Unsupported(Exception):
    """A constant this writer has no static form for."""


def _c_string(data: bytes) -> str:
    """A C string literal of data, split into lines; octal escapes (at most
    three digits, so the next character is never taken in)."""
    out, line = [], []
    for i, b in enumerate(data):
        c = chr(b)
        line.append(c if 32 <= b < 127 and c not in '\\"?' else f"\\{b:03o}")
        if (i + 1) % 64 == 0:
            out.append('"' + "".join(line) + '"')
            line = []
    if line or not out:
        out.append('"' + "".join(line) + '"')
    return "\n        ".join(out)


class Writer:
    """Writes static objects and hands back the C expression of a PyObject *
    for each; equal constants are written once, for all modules."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.section = SECTION  # of the module being written
        self._refs: dict[object, str] = {}
        self._alive: list[object] = []  # what the keys name by id, kept from reuse
        self._count = 0
        # of the module being written: its code objects, its frozensets to make
        self.codes: list[str] = []
        self.fixups: list[tuple[str, str]] = []

    def _name(self, kind: str) -> str:
        self._count += 1
        return f"ocipy_{kind}{self._count}"

    def _static(self, decl: str, name: str, init: list[str]) -> None:
        self.lines.append(f"static {decl} {name} __attribute__((section(\"{self.section}\"))) = {{")
        self.lines.extend(f"    {item}," for item in init)
        self.lines.append("};")

    @staticmethod
    def _head(type_name: str) -> str:
        return f".ob_refcnt = {_REFCNT}, .ob_type = &{type_name}"

    def ref(self, obj: object) -> str:
        kind = type(obj)
        if obj is None:
            return "Py_None"
        if obj is Ellipsis:
            return "Py_Ellipsis"
        if kind is bool:
            return "Py_True" if obj else "Py_False"
        if kind is types.CodeType:
            return self._code(obj)
        key = self._key(obj)
        ref = self._refs.get(key)
        if ref is None:
            ref = self._refs[key] = self._write(obj)
        return ref

    def _key(self, obj: object) -> object:
        kind = type(obj)
        if kind is float:
            return (float, obj.hex())  # tells 0.0 from -0.0
        if kind is tuple:
            # a tuple holding a frozenset is changed in place: one per code object
            if any(type(item) is frozenset for item in obj):
                self._alive.append(obj)
                return (tuple, id(obj))
            return (tuple, tuple(self._key(item) for item in obj))
        if kind in (str, bytes, int, bool) or obj is None or obj is Ellipsis:
            return (kind, obj)
        self._alive.append(obj)  # code objects
        return (kind, id(obj))

    def _write(self, obj: object) -> str:
        kind = type(obj)
        if kind is str:
            return self._str(obj)
        if kind is bytes:
            return self._bytes(obj)
        if kind is int:
            return self._int(obj)
        if kind is float:
            name = self._name("float")
            self._static("PyFloatObject", name, [f".ob_base = {{{self._head('PyFloat_Type')}}}",
                                                 f".ob_fval = {obj.hex()}"])
            return f"((PyObject *)&{name})"
        return self._tuple(obj)

    def _str(self, text: str) -> str:
        if not text:
            return "((PyObject *)&_Py_STR(empty))"
        top = max(map(ord, text))
        if len(text) == 1 and top < 128:
            return f"((PyObject *)&_Py_SINGLETON(strings).ascii[{top}]._ascii.ob_base)"
        if len(text) == 1 and top < 256:
            return f"((PyObject *)&_Py_SINGLETON(strings).latin1[{top - 128}]._latin1._base.ob_base)"
        name = self._name("str")
        state = ".hash = -1, .state = {{.kind = {kind}, .compact = 1, .ascii = {ascii}, .ready = 1}}"
        if top < 128:
            head = (f"._ascii = {{.ob_base = {{{self._head('PyUnicode_Type')}}}, "
                    f".length = {len(text)}, {state.format(kind=1, ascii=1)}}}")
            self._static(f"struct {{ PyASCIIObject _ascii; uint8_t _data[{len(text) + 1}]; }}",
                         name, [head, f"._data = {_c_string(text.encode('ascii'))}"])
            return f"((PyObject *)&{name}._ascii.ob_base)"
        width = 1 if top < 256 else 2 if top < 65536 else 4
        # PyUnicode_New: a string of wchar_t's width shares its data as wstr
        shared = (f", .wstr = (wchar_t *){name}._data}}, .wstr_length = {len(text)}"
                  if width == 4 else "}")
        head = (f"._compact = {{._base = {{.ob_base = {{{self._head('PyUnicode_Type')}}}, "
                f".length = {len(text)}, {state.format(kind=width, ascii=0)}{shared}}}")
        points = ", ".join(str(ord(c)) for c in text)
        self._static(f"struct {{ PyCompactUnicodeObject _compact; uint{width * 8}_t "
                     f"_data[{len(text) + 1}]; }}", name, [head, f"._data = {{{points}, 0}}"])
        return f"((PyObject *)&{name}._compact._base.ob_base)"

    def _bytes(self, data: bytes) -> str:
        if not data:
            return "((PyObject *)&_Py_SINGLETON(bytes_empty))"
        name = self._name("bytes")
        self._static(f"struct {{ PyObject_VAR_HEAD Py_hash_t ob_shash; char ob_sval[{len(data) + 1}]; }}",
                     name, [f".ob_base = {{.ob_base = {{{self._head('PyBytes_Type')}}}, .ob_size = {len(data)}}}",
                            ".ob_shash = -1", f".ob_sval = {_c_string(data)}"])
        return f"((PyObject *)&{name})"

    def _int(self, value: int) -> str:
        if -5 <= value <= 256:
            return f"((PyObject *)&_Py_SINGLETON(small_ints)[_PY_NSMALLNEGINTS + {value}])"
        bits = sys.int_info.bits_per_digit
        digits, rest = [], abs(value)
        while rest:
            digits.append(rest & ((1 << bits) - 1))
            rest >>= bits
        name = self._name("int")
        size = len(digits) if value > 0 else -len(digits)
        self._static(f"struct {{ PyObject_VAR_HEAD digit ob_digit[{len(digits)}]; }}", name,
                     [f".ob_base = {{.ob_base = {{{self._head('PyLong_Type')}}}, .ob_size = {size}}}",
                      f".ob_digit = {{{', '.join(map(str, digits))}}}"])
        return f"((PyObject *)&{name})"

    def _tuple(self, items: tuple) -> str:
        if not items:
            return "((PyObject *)&_Py_SINGLETON(tuple_empty))"
        refs = []
        sets = []
        for index, item in enumerate(items):
            if type(item) is frozenset:
                # its items, in an order of their own (a set has none)
                members = tuple(sorted(item, key=lambda m: (type(m).__name__, repr(m))))
                sets.append(index)
                refs.append(self.ref(members))
            else:
                refs.append(self.ref(item))
        name = self._name("tuple")
        # a zeroed GC header before it, as every tuple has: the collector
        # reads it when it meets the tuple (untracked: it is never collected)
        head = f".ob_base = {{.ob_base = {{{self._head('PyTuple_Type')}}}, .ob_size = {len(items)}}}"
        self._static(f"struct {{ PyGC_Head _gc_head; struct {{ PyObject_VAR_HEAD "
                     f"PyObject *ob_item[{len(items)}]; }} _object; }}", name,
                     [f"._object = {{{head}, .ob_item = {{{', '.join(refs)}}}}}"])
        for index in sets:
            self.fixups.append((f"&{name}._object.ob_item[{index}]", refs[index]))
        return f"((PyObject *)&{name}._object)"

    def _code(self, code: types.CodeType) -> str:
        # the local variables as 3.11's compiler lays them out
        # (compute_localsplus_info): its locals, a cell that is one of them
        # merged into it; then the other cells; then every free variable in
        # a slot of its own, even one named as a cell (a class body in a
        # method, reading __class__ while its own methods use super())
        cells = set(code.co_cellvars)
        names = list(code.co_varnames)
        kinds = [_CO_FAST_LOCAL | (_CO_FAST_CELL if local in cells else 0) for local in names]
        for cell in code.co_cellvars:
            if cell not in code.co_varnames:
                names.append(cell)
                kinds.append(_CO_FAST_CELL)
        names += code.co_freevars
        kinds += [_CO_FAST_FREE] * len(code.co_freevars)
        bytecode = code.co_code
        units = len(bytecode) // 2
        first = next((i for i in range(units) if bytecode[2 * i] == _RESUME), units)
        fields = {
            "co_consts": self.ref(code.co_consts),
            "co_names": self.ref(code.co_names),
            "co_exceptiontable": self.ref(code.co_exceptiontable),
            "co_flags": code.co_flags,
            "co_warmup": "QUICKENING_INITIAL_WARMUP_VALUE",
            "co_argcount": code.co_argcount,
            "co_posonlyargcount": code.co_posonlyargcount,
            "co_kwonlyargcount": code.co_kwonlyargcount,
            "co_stacksize": code.co_stacksize,
            "co_firstlineno": code.co_firstlineno,
            "co_nlocalsplus": len(names),
            "co_nlocals": len(code.co_varnames),
            "co_nplaincellvars": kinds.count(_CO_FAST_CELL),
            "co_ncellvars": len(code.co_cellvars),
            "co_nfreevars": len(code.co_freevars),
            "co_localsplusnames": self.ref(tuple(names)),
            "co_localspluskinds": self.ref(bytes(kinds)),
            "co_filename": self.ref(code.co_filename),
            "co_name": self.ref(code.co_name),
            "co_qualname": self.ref(code.co_qualname),
            "co_linetable": self.ref(code.co_linetable),
            "_co_firsttraceable": first,
            "co_code_adaptive": _c_string(bytecode),
        }
        name = self._name("code")
        self._static(f"struct _PyCode_DEF({len(bytecode)})", name,
                     [f".ob_base = {{.ob_base = {{{self._head('PyCode_Type')}}}, .ob_size = {units}}}",
                      *(f".{field} = {value}" for field, value in fields.items())])
        self.codes.append(f"(PyCodeObject *)&{name}")
        return f"((PyObject *)&{name})"


_PRELUDE = """\
/* Written by ocipy/_freeze.py at build time: ocipy's modules as static code
 * objects (see there).  Needs CPython's internal headers. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include "internal/pycore_code.h"
#include "internal/pycore_runtime.h"

#if PY_VERSION_HEX != {hexversion:#x}
#error "ocipy_code.c was written by another Python than these headers are of"
#endif
#if PYLONG_BITS_IN_DIGIT != {digit_bits} || SIZEOF_WCHAR_T != 4
#error "ocipy_code.c was written for other int digits or another wchar_t"
#endif

struct ocipy_fixup {{
    PyObject **slot;  /* a tuple's item: the items of a frozenset to make */
    PyObject *items;
}};

/* A module's objects, made ready before its code first runs: its
 * frozensets made, and the names its code looks up (co_names: globals,
 * attributes, imports) interned, so that dict and type-cache lookups find
 * them by identity.  Unmarshalling also interns the local variables' names
 * and the name-like string constants: ~0.3 ms more for a create's modules,
 * where interning is most of what is left of loading them, for a pointer
 * compare instead of a string compare when a keyword argument is matched
 * or a constant used as a key.  Once only: a slot already changed keeps its
 * frozenset. */
static int ocipy_ready(PyCodeObject *const *codes, size_t ncodes,
                       const struct ocipy_fixup *fixups, size_t nfixups)
{{
    for (size_t i = 0; i < nfixups; i++) {{
        if (*fixups[i].slot != fixups[i].items)
            continue;
        PyObject *set = PyFrozenSet_New(fixups[i].items);
        if (set == NULL)
            return -1;
        *fixups[i].slot = set;
    }}
    for (size_t i = 0; i < ncodes; i++) {{
        PyObject *names = codes[i]->co_names;
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(names); j++) {{
            PyObject *name = PyTuple_GET_ITEM(names, j), *was = name;
            /* as intern_strings does: the tuple's reference handed over;
             * written back only if another string is now the one (the
             * tuple's page stays untouched otherwise) */
            PyUnicode_InternInPlace(&name);
            if (name != was)
                PyTuple_SET_ITEM(names, j, name);
        }}
    }}
    return 0;
}}
"""


def supported(code: types.CodeType) -> bool:
    """Whether every constant of code has a static form here."""
    try:
        _check(code)
    except Unsupported:
        return False
    return True


def _check(obj: object) -> None:
    """Unsupported if obj is or holds a constant with no static form here."""
    kind = type(obj)
    if kind is types.CodeType:
        for const in obj.co_consts:
            _check(const)
    elif kind in (tuple, frozenset):
        for item in obj:
            if type(item) is frozenset and kind is frozenset:
                raise Unsupported("a frozenset in a frozenset")
            _check(item)
    elif kind is float:
        if not math.isfinite(obj):
            raise Unsupported("an infinite or NaN float")
    elif not (kind in (str, bytes, int, bool) or obj is None or obj is Ellipsis):
        raise Unsupported(f"a constant of type {kind.__name__}")


def write_c(modules: list[tuple[str, types.CodeType]], hexversion: int,
            hot: int | None = None) -> tuple[str, list[str]]:
    """C source of static code for modules ((name in the frozen table, code)
    each): the source, and the names of the modules it holds (the ones with
    a constant it has no static form for are left out).  Each module's
    `PyObject *ocipy_get_code_<i>(void)`, i its index in the names, returns
    a new reference to its code.  The first `hot` modules (all by default)
    go to SECTION, the others to COLD_SECTION, but for what they share
    with the first."""
    writer = Writer()
    frozen: list[str] = []
    for position, (name, code) in enumerate(modules):
        if not supported(code):
            continue
        index = len(frozen)
        frozen.append(name)
        writer.section = SECTION if hot is None or position < hot else COLD_SECTION
        writer.codes, writer.fixups = [], []
        top = writer.ref(code)
        lines = writer.lines
        lines.append(f"static PyCodeObject *const ocipy_codes_{index}[] = {{")
        lines.extend(f"    {c}," for c in writer.codes)
        lines.append("};")
        lines.append(f"static const struct ocipy_fixup ocipy_fixups_{index}[] = {{")
        lines.extend(f"    {{{slot}, {items}}}," for slot, items in writer.fixups)
        lines.append("    {NULL, NULL},")
        lines.append("};")
        lines += [
            f"PyObject *ocipy_get_code_{index}(void)",
            "{",
            "    static int ready;",
            "    if (!ready) {",
            (f"        if (ocipy_ready(ocipy_codes_{index}, {len(writer.codes)}, "
             f"ocipy_fixups_{index}, {len(writer.fixups)}) < 0)"),
            "            return NULL;",
            "        ready = 1;",
            "    }",
            f"    return Py_NewRef({top});",
            "}",
        ]
    return (_PRELUDE.format(hexversion=hexversion, digit_bits=sys.int_info.bits_per_digit)
            + "\n".join(writer.lines) + "\n", frozen)
