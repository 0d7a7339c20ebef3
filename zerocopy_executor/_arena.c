/*
 * zerocopy_executor._arena: a NumPy data allocator (NEP 49) that can place one large
 * array of a task in a shared segment, so that `return a * 2` in a worker is born in
 * the segment the parent lent for the result and needs no copy and no fresh pages.
 *
 * While a task runs, the worker *arms* an arena: the address and size of the lent
 * segment's mapping. The first allocation that fits it (at least min_size bytes, at
 * most its size) is served from it; every other allocation goes to the C library,
 * as with NumPy's default handler. free() of an arena's block marks the arena free
 * again; the Python side (see _allocator.py) checks that, and keeps the mapping alive
 * until then, since the array itself holds no reference to it.
 *
 * The handler is installed per context (NumPy keeps it in a context variable) around
 * the task's call only. Only Python's own headers are needed: NumPy's C API table is
 * read from its capsule, and the two NEP 49 structures are declared here as NumPy
 * defines them (ndarraytypes.h, handler version 1; PyDataMem_SetHandler is entry 304
 * of the append-only API table since NumPy 1.22).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t new_size);
    void (*free)(void *ctx, void *ptr, size_t size);
} DataMemAllocator;

typedef struct {
    char name[127];
    uint8_t version;
    DataMemAllocator allocator;
} DataMemHandler;

#define SET_HANDLER_INDEX 304
#define MAX_ARENAS 64

typedef struct {
    char *base;      /* NULL: the slot is unused */
    size_t size;
    size_t min_size;
    int armed;       /* allocations may be served from it */
    int in_use;      /* an array's data lives in it */
    size_t served;   /* that array's size in bytes (the size to lend next: not the segment's) */
} Arena;

static Arena arenas[MAX_ARENAS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static Arena *take_arena(size_t size) {
    for (int i = 0; i < MAX_ARENAS; i++) {
        Arena *a = &arenas[i];
        if (a->base && a->armed && !a->in_use && size >= a->min_size && size <= a->size) {
            a->in_use = 1;
            a->served = size;
            return a;
        }
    }
    return NULL;
}

static Arena *find_block(void *ptr) {
    for (int i = 0; i < MAX_ARENAS; i++) {
        if (arenas[i].base && arenas[i].in_use && (char *)ptr == arenas[i].base) {
            return &arenas[i];
        }
    }
    return NULL;
}

static void *arena_malloc(void *ctx, size_t size) {
    (void)ctx;
    pthread_mutex_lock(&lock);
    Arena *a = take_arena(size);
    pthread_mutex_unlock(&lock);
    return a ? a->base : malloc(size);
}

static void *arena_calloc(void *ctx, size_t nelem, size_t elsize) {
    (void)ctx;
    if (elsize && nelem > SIZE_MAX / elsize) {
        return NULL;
    }
    size_t size = nelem * elsize;
    pthread_mutex_lock(&lock);
    Arena *a = take_arena(size);
    pthread_mutex_unlock(&lock);
    if (a) {
        memset(a->base, 0, size);  /* recycled memory holds old data */
        return a->base;
    }
    return calloc(nelem, elsize);
}

static void *arena_realloc(void *ctx, void *ptr, size_t new_size) {
    (void)ctx;
    pthread_mutex_lock(&lock);
    Arena *a = ptr ? find_block(ptr) : NULL;
    if (a && new_size <= a->size) {
        a->served = new_size;
        pthread_mutex_unlock(&lock);
        return ptr;
    }
    pthread_mutex_unlock(&lock);
    if (!a) {
        return realloc(ptr, new_size);
    }
    void *moved = malloc(new_size);  /* grows past the arena: leave it */
    if (moved) {
        memcpy(moved, ptr, a->size);
        pthread_mutex_lock(&lock);
        a->in_use = 0;
        pthread_mutex_unlock(&lock);
    }
    return moved;
}

static void arena_free(void *ctx, void *ptr, size_t size) {
    (void)ctx;
    (void)size;
    pthread_mutex_lock(&lock);
    Arena *a = ptr ? find_block(ptr) : NULL;
    if (a) {
        a->in_use = 0;
    }
    pthread_mutex_unlock(&lock);
    if (!a) {
        free(ptr);
    }
}

static DataMemHandler handler = {
    "zerocopy_executor_arena",
    1,
    {NULL, arena_malloc, arena_calloc, arena_realloc, arena_free},
};

static PyObject *handler_capsule = NULL;
static PyObject *(*set_handler)(PyObject *) = NULL;

/* activate() -> the previous handler: install ours in the current context. */
static PyObject *activate(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return set_handler(handler_capsule);
}

/* restore(previous): put back the handler activate() returned. */
static PyObject *restore(PyObject *self, PyObject *previous) {
    (void)self;
    PyObject *ours = set_handler(previous);
    if (ours == NULL) {
        return NULL;
    }
    Py_DECREF(ours);
    Py_RETURN_NONE;
}

/* arm(address, size, min_size) -> slot: serve one allocation of min_size..size bytes from it. */
static PyObject *arm(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long address, size, min_size;
    if (!PyArg_ParseTuple(args, "KKK", &address, &size, &min_size)) {
        return NULL;
    }
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_ARENAS; i++) {
        if (arenas[i].base == NULL) {
            arenas[i] = (Arena){(char *)(uintptr_t)address, (size_t)size, (size_t)min_size, 1, 0, 0};
            pthread_mutex_unlock(&lock);
            return PyLong_FromLong(i);
        }
    }
    pthread_mutex_unlock(&lock);
    Py_RETURN_NONE;  /* every slot holds a block still in use: no arena this time */
}

static int slot_of(PyObject *arg) {
    long slot = PyLong_AsLong(arg);
    if (slot == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (slot < 0 || slot >= MAX_ARENAS) {
        PyErr_SetString(PyExc_ValueError, "no such arena slot");
        return -1;
    }
    return (int)slot;
}

/* disarm(slot) -> in use: no more allocations from it; whether an array still lives there. */
static PyObject *disarm(PyObject *self, PyObject *arg) {
    (void)self;
    int slot = slot_of(arg);
    if (slot < 0) {
        return NULL;
    }
    pthread_mutex_lock(&lock);
    arenas[slot].armed = 0;
    int in_use = arenas[slot].in_use;
    pthread_mutex_unlock(&lock);
    return PyBool_FromLong(in_use);
}

/* release(slot) -> released: forget a disarmed arena whose block is free (False if in use). */
static PyObject *release(PyObject *self, PyObject *arg) {
    (void)self;
    int slot = slot_of(arg);
    if (slot < 0) {
        return NULL;
    }
    pthread_mutex_lock(&lock);
    int free_now = !arenas[slot].in_use;
    if (free_now) {
        memset(&arenas[slot], 0, sizeof(Arena));
    }
    pthread_mutex_unlock(&lock);
    return PyBool_FromLong(free_now);
}

/* in_use(slot) -> the size in bytes of the array whose data lives in the arena, 0 if none. */
static PyObject *in_use(PyObject *self, PyObject *arg) {
    (void)self;
    int slot = slot_of(arg);
    if (slot < 0) {
        return NULL;
    }
    pthread_mutex_lock(&lock);
    size_t used = arenas[slot].in_use ? arenas[slot].served : 0;
    pthread_mutex_unlock(&lock);
    return PyLong_FromSize_t(used);
}

/* A fork inside a task (a nested pool, a subprocess): the child shares the lent
 * segment's pages, so it must never place its own arrays there. The lock is held
 * across the fork so that the table is consistent in the child. */
static void before_fork(void) {
    pthread_mutex_lock(&lock);
}

static void after_fork_in_parent(void) {
    pthread_mutex_unlock(&lock);
}

static void after_fork_in_child(void) {
    for (int i = 0; i < MAX_ARENAS; i++) {
        arenas[i].armed = 0;  /* in_use stays: frees of inherited arrays still find them */
    }
    pthread_mutex_unlock(&lock);
}

static PyMethodDef methods[] = {
    {"activate", activate, METH_NOARGS, "Install the arena handler in this context; return the previous one."},
    {"restore", restore, METH_O, "Install the handler activate() returned."},
    {"arm", arm, METH_VARARGS, "arm(address, size, min_size) -> slot, or None if no slot is free."},
    {"disarm", disarm, METH_O, "disarm(slot) -> whether an array still lives in the arena."},
    {"release", release, METH_O, "release(slot) -> False if an array still lives in the arena."},
    {"in_use", in_use, METH_O, "in_use(slot) -> bytes of the array living in the arena, 0 if none."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_arena", "NumPy data allocator that places a task's result in a shared segment.",
    -1, methods,
};

static void **numpy_api(void) {
    const char *names[] = {"numpy._core._multiarray_umath", "numpy.core._multiarray_umath"};
    for (int i = 0; i < 2; i++) {
        PyObject *numpy = PyImport_ImportModule(names[i]);
        if (numpy == NULL) {
            PyErr_Clear();
            continue;
        }
        PyObject *capsule = PyObject_GetAttrString(numpy, "_ARRAY_API");
        Py_DECREF(numpy);
        if (capsule == NULL) {
            return NULL;
        }
        void **api = (void **)PyCapsule_GetPointer(capsule, NULL);
        Py_DECREF(capsule);
        return api;
    }
    PyErr_SetString(PyExc_ImportError, "cannot find NumPy's C API");
    return NULL;
}

PyMODINIT_FUNC PyInit__arena(void) {
    void **api = numpy_api();
    if (api == NULL) {
        return NULL;
    }
    set_handler = (PyObject * (*)(PyObject *)) api[SET_HANDLER_INDEX];
    handler_capsule = PyCapsule_New(&handler, "mem_handler", NULL);
    if (handler_capsule == NULL) {
        return NULL;
    }
    pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
    return PyModule_Create(&module);
}
