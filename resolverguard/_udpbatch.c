/* Many UDP datagrams per system call: recvmmsg and sendmmsg for `resolverguard.udpbatch` (#17).

Why: on never-seen names the standalone server's process spent a fifth of its samples in the
reply's `sendto` alone (bench/results/miss_spy_handoff.md): on loopback each send runs the whole
stack and wakes the client in the sender's own system call, and asyncio's (and uvloop's) datagram
transport makes one `recvfrom` per datagram and one `sendto` per reply. Here a batch is one call
each way. Linux only (recvmmsg/sendmmsg); elsewhere the module has no functions and the pure-Python
loop of `udpbatch` does the same, one datagram per call.

Addresses come and go as Python's socket module writes them: (host, port) for IPv4 and
(host, port, flowinfo, scope_id) for IPv6, the host as text ("%zone" added for a link-local
address with a scope), so the fallback and this code hand the server the very same tuples.
No module state (multi-phase init), as `_ngramc.c`.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if defined(__linux__)
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#define CHUNK 64 /* messages per system call (the stack arrays below) */

static PyObject *address_of(const struct sockaddr_storage *ss, socklen_t len) {
    if (len == 0) Py_RETURN_NONE; /* (a connected peer without an address: a socketpair) */
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        if (inet_ntop(AF_INET, &in->sin_addr, host, sizeof host) == NULL) return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, (int)ntohs(in->sin_port));
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        if (inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host) == NULL) return PyErr_SetFromErrno(PyExc_OSError);
        if (in6->sin6_scope_id && IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr)) { /* as getnameinfo writes it */
            size_t at = strlen(host);
            char name[IF_NAMESIZE];
            if (if_indextoname(in6->sin6_scope_id, name) != NULL)
                snprintf(host + at, sizeof host - at, "%%%s", name);
            else
                snprintf(host + at, sizeof host - at, "%%%u", (unsigned)in6->sin6_scope_id);
        }
        return Py_BuildValue("(siII)", host, (int)ntohs(in6->sin6_port), (unsigned)ntohl(in6->sin6_flowinfo),
                             (unsigned)in6->sin6_scope_id);
    }
    Py_RETURN_NONE; /* (not on a UDP/IP socket) */
}

/* Writes `addr` (a tuple as above) into `ss` for a socket of `family`; 0, or -1 (no Python error
   set: the caller counts the datagram as failed). An IPv4 host on an IPv6 socket is v4-mapped.
   None: no address (`*len` 0), the socket's connected peer. */
static int sockaddr_of(PyObject *addr, int family, struct sockaddr_storage *ss, socklen_t *len) {
    if (addr == Py_None) {
        *len = 0;
        return 0;
    }
    if (!PyTuple_Check(addr) || PyTuple_GET_SIZE(addr) < 2) return -1;
    const char *host = PyUnicode_Check(PyTuple_GET_ITEM(addr, 0)) ? PyUnicode_AsUTF8(PyTuple_GET_ITEM(addr, 0)) : NULL;
    if (host == NULL) {
        PyErr_Clear();
        return -1;
    }
    long port = PyLong_AsLong(PyTuple_GET_ITEM(addr, 1));
    if (port < 0 || port > 65535) {
        PyErr_Clear();
        return -1;
    }
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1) return -1;
        in->sin_family = AF_INET;
        in->sin_port = htons((unsigned short)port);
        *len = sizeof *in;
        return 0;
    }
    if (family != AF_INET6) return -1;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    char bare[INET6_ADDRSTRLEN + 1];
    const char *zone = strchr(host, '%');
    size_t n = zone ? (size_t)(zone - host) : strlen(host);
    if (n >= sizeof bare) return -1;
    memcpy(bare, host, n);
    bare[n] = '\0';
    if (inet_pton(AF_INET6, bare, &in6->sin6_addr) != 1) {
        struct in_addr v4;
        if (inet_pton(AF_INET, bare, &v4) != 1) return -1;
        memset(&in6->sin6_addr, 0, sizeof in6->sin6_addr);
        in6->sin6_addr.s6_addr[10] = in6->sin6_addr.s6_addr[11] = 0xff;
        memcpy(&in6->sin6_addr.s6_addr[12], &v4, 4);
    }
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((unsigned short)port);
    if (PyTuple_GET_SIZE(addr) >= 4) {
        in6->sin6_flowinfo = htonl((uint32_t)PyLong_AsUnsignedLongMask(PyTuple_GET_ITEM(addr, 2)));
        in6->sin6_scope_id = (uint32_t)PyLong_AsUnsignedLongMask(PyTuple_GET_ITEM(addr, 3));
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
    }
    if (in6->sin6_scope_id == 0 && zone != NULL) in6->sin6_scope_id = if_nametoindex(zone + 1);
    *len = sizeof *in6;
    return 0;
}

PyDoc_STRVAR(recv_many_doc,
"recv_many(fd, buffer, slot, count) -> (datagrams, too_large)\n\n"
"Up to `count` datagrams waiting on non-blocking socket `fd`, read by one recvmmsg into `buffer`\n"
"(writable, at least slot * count bytes; each datagram gets `slot` bytes): a list of (bytes,\n"
"address), empty when nothing waits. A datagram longer than `slot` is left out and counted in\n"
"`too_large`. OSError for any other failure (nothing read).");

/* recv_many's and recv_connected's read: parses (fd, buffer, slot, count), points an iovec of `slot`
   bytes of the buffer (and an address slot where `addrs`) at each of `count` messages, and reads them
   with one non-blocking recvmmsg. Returns how many were read (the caller then releases `buf`), or -1
   with the buffer released: a Python error set, or none when nothing waits (EAGAIN). */
static int recv_into(PyObject *args, Py_buffer *buf, struct mmsghdr *msgs, struct iovec *iovs,
                     struct sockaddr_storage *addrs) {
    int fd;
    Py_ssize_t slot, count;
    if (!PyArg_ParseTuple(args, "iw*nn", &fd, buf, &slot, &count)) return -1;
    if (slot <= 0 || count <= 0 || count > CHUNK || slot * count > buf->len) {
        PyBuffer_Release(buf);
        PyErr_Format(PyExc_ValueError, "need 0 < count <= %d and slot * count <= len(buffer)", CHUNK);
        return -1;
    }
    memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)count);
    for (Py_ssize_t i = 0; i < count; i++) {
        iovs[i].iov_base = (char *)buf->buf + i * slot;
        iovs[i].iov_len = (size_t)slot;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        if (addrs != NULL) {
            msgs[i].msg_hdr.msg_name = &addrs[i];
            msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
        }
    }
    int got;
    Py_BEGIN_ALLOW_THREADS
    do {
        got = recvmmsg(fd, msgs, (unsigned)count, MSG_DONTWAIT, NULL);
    } while (got < 0 && errno == EINTR);
    Py_END_ALLOW_THREADS
    if (got < 0) {
        PyBuffer_Release(buf);
        if (errno != EAGAIN && errno != EWOULDBLOCK) PyErr_SetFromErrno(PyExc_OSError);
    }
    return got;
}

static PyObject *recv_many(PyObject *self, PyObject *args) {
    Py_buffer buf;
    struct mmsghdr msgs[CHUNK];
    struct iovec iovs[CHUNK];
    struct sockaddr_storage addrs[CHUNK];
    int got = recv_into(args, &buf, msgs, iovs, addrs);
    if (got < 0) return PyErr_Occurred() ? NULL : Py_BuildValue("([]i)", 0);
    PyObject *out = PyList_New(0);
    int too_large = 0;
    for (int i = 0; out != NULL && i < got; i++) {
        if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
            too_large++;
            continue;
        }
        PyObject *data = PyBytes_FromStringAndSize(iovs[i].iov_base, (Py_ssize_t)msgs[i].msg_len);
        PyObject *addr = data ? address_of(&addrs[i], msgs[i].msg_hdr.msg_namelen) : NULL;
        PyObject *pair = addr ? PyTuple_Pack(2, data, addr) : NULL;
        Py_XDECREF(data);
        Py_XDECREF(addr);
        if (pair == NULL || PyList_Append(out, pair) < 0) Py_CLEAR(out);
        Py_XDECREF(pair);
    }
    PyBuffer_Release(&buf);
    if (out == NULL) return NULL;
    return Py_BuildValue("(Ni)", out, too_large);
}

PyDoc_STRVAR(send_many_doc,
"send_many(fd, family, items, start) -> (next, failed)\n\n"
"Sends items[start:] (a list of (bytes, address); address None: the connected peer) from non-blocking socket `fd` of `family`, in\n"
"sendmmsg calls of up to 64. Stops at the first datagram the socket cannot take now (its send\n"
"buffer is full: EAGAIN), whose index is `next` (len(items) once all are done). A datagram the\n"
"kernel refuses for any other reason (an address it cannot reach, one that is not an address, a\n"
"datagram too long) is skipped and counted in `failed`, as one failed sendto would be.");

static PyObject *send_many(PyObject *self, PyObject *args) {
    int fd, family;
    PyObject *items;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "iiO!n", &fd, &family, &PyList_Type, &items, &start)) return NULL;
    Py_ssize_t total = PyList_GET_SIZE(items), at = start < 0 ? 0 : start;
    int failed = 0;
    struct mmsghdr msgs[CHUNK];
    struct iovec iovs[CHUNK];
    struct sockaddr_storage addrs[CHUNK];
    while (at < total) {
        /* The chunk: the run of items from `at` whose address reads (at most CHUNK); an item that
           does not read, met first, is one failed datagram, in the order they would have been sent. */
        int n = 0;
        Py_ssize_t i = at;
        for (; i < total && n < CHUNK; i++) {
            PyObject *item = PyList_GET_ITEM(items, i);
            char *data;
            Py_ssize_t size;
            socklen_t len;
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
                PyBytes_AsStringAndSize(PyTuple_GET_ITEM(item, 0), &data, &size) < 0 ||
                sockaddr_of(PyTuple_GET_ITEM(item, 1), family, &addrs[n], &len) < 0) {
                PyErr_Clear();
                if (n == 0) {
                    failed++;
                    at = i + 1;
                    continue;
                }
                break;
            }
            iovs[n].iov_base = data;
            iovs[n].iov_len = (size_t)size;
            memset(&msgs[n], 0, sizeof msgs[n]);
            msgs[n].msg_hdr.msg_iov = &iovs[n];
            msgs[n].msg_hdr.msg_iovlen = 1;
            msgs[n].msg_hdr.msg_name = len ? &addrs[n] : NULL;
            msgs[n].msg_hdr.msg_namelen = len;
            n++;
        }
        int done = 0;
        while (done < n) {
            /* The GIL is kept: the call never blocks (MSG_DONTWAIT), and the iovecs point into
               bytes objects that only the list holds, which another thread could change meanwhile. */
            int sent, err = 0;
            do {
                sent = sendmmsg(fd, msgs + done, (unsigned)(n - done), MSG_DONTWAIT);
            } while (sent < 0 && errno == EINTR);
            err = errno;
            if (sent > 0) {
                done += sent;
            } else if (err == EAGAIN || err == EWOULDBLOCK) {
                return Py_BuildValue("(ni)", at + done, failed); /* the rest waits for room */
            } else {
                failed++; /* this one datagram: the kernel refused it */
                done++;
            }
        }
        at += n;
    }
    return Py_BuildValue("(ni)", total, failed);
}


PyDoc_STRVAR(recv_connected_doc,
"recv_connected(fd, buffer, slot, count) -> datagrams\n\n"
"Up to `count` datagrams waiting on non-blocking connected socket `fd`, read by one recvmmsg into\n"
"`buffer` (writable, at least slot * count bytes): a list of bytes, empty when nothing waits. No\n"
"addresses (the kernel lets only the connected peer's datagrams in). A datagram longer than `slot`\n"
"is left out (give 65536 to take any). OSError when the socket reports an error before any datagram\n"
"(an ICMP port unreachable for an earlier query), as recv() would raise it.");

static PyObject *recv_connected(PyObject *self, PyObject *args) {
    Py_buffer buf;
    struct mmsghdr msgs[CHUNK];
    struct iovec iovs[CHUNK];
    int got = recv_into(args, &buf, msgs, iovs, NULL);
    if (got < 0) return PyErr_Occurred() ? NULL : PyList_New(0);
    PyObject *out = PyList_New(0);
    for (int i = 0; out != NULL && i < got; i++) {
        if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) continue;
        PyObject *data = PyBytes_FromStringAndSize(iovs[i].iov_base, (Py_ssize_t)msgs[i].msg_len);
        if (data == NULL || PyList_Append(out, data) < 0) Py_CLEAR(out);
        Py_XDECREF(data);
    }
    PyBuffer_Release(&buf);
    return out;
}

PyDoc_STRVAR(send_connected_doc,
"send_connected(fd, datagrams, start) -> (next, errno)\n\n"
"Sends datagrams[start:] (a list of bytes) from non-blocking connected socket `fd` to its peer,\n"
"in sendmmsg calls of up to 64, in order. Stops at the first datagram the kernel does not take\n"
"(EAGAIN included): `next` is its index and `errno` why; (len(datagrams), 0) once all are sent.\n"
"So each datagram's fate is known, as with one send() each: the upstream forwarder's batch\n"
"(`steps.upstream.UpstreamForwarder.hold`) fails that one query and goes on with the next.");

static PyObject *send_connected(PyObject *self, PyObject *args) {
    int fd;
    PyObject *items;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "iO!n", &fd, &PyList_Type, &items, &start)) return NULL;
    Py_ssize_t total = PyList_GET_SIZE(items), at = start < 0 ? 0 : start;
    struct mmsghdr msgs[CHUNK];
    struct iovec iovs[CHUNK];
    while (at < total) {
        int n = 0;
        for (Py_ssize_t i = at; i < total && n < CHUNK; i++, n++) {
            char *data;
            Py_ssize_t size;
            if (PyBytes_AsStringAndSize(PyList_GET_ITEM(items, i), &data, &size) < 0) return NULL;
            iovs[n].iov_base = data;
            iovs[n].iov_len = (size_t)size;
            memset(&msgs[n], 0, sizeof msgs[n]);
            msgs[n].msg_hdr.msg_iov = &iovs[n];
            msgs[n].msg_hdr.msg_iovlen = 1;
        }
        /* The GIL is kept, as in send_many: MSG_DONTWAIT never blocks, and the iovecs point into
           bytes objects that only the list holds. */
        int sent;
        do {
            sent = sendmmsg(fd, msgs, (unsigned)n, MSG_DONTWAIT);
        } while (sent < 0 && errno == EINTR);
        if (sent < 0) return Py_BuildValue("(ni)", at, errno); /* the datagram at `at` was refused */
        at += sent;
        if (sent < n) { /* stopped short: the next one's error, from a call of its own */
            struct mmsghdr *next = msgs + sent;
            do {
                sent = sendmmsg(fd, next, 1, MSG_DONTWAIT);
            } while (sent < 0 && errno == EINTR);
            if (sent < 0) return Py_BuildValue("(ni)", at, errno);
            at += sent;
        }
    }
    return Py_BuildValue("(ni)", total, 0);
}

static PyMethodDef methods[] = {
    {"recv_many", recv_many, METH_VARARGS, recv_many_doc},
    {"send_many", send_many, METH_VARARGS, send_many_doc},
    {"send_connected", send_connected, METH_VARARGS, send_connected_doc},
    {"recv_connected", recv_connected, METH_VARARGS, recv_connected_doc},
    {NULL, NULL, 0, NULL},
};
#else
static PyMethodDef methods[] = {{NULL, NULL, 0, NULL}};
#endif

static PyModuleDef_Slot module_slots[] = {{0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "resolverguard._udpbatch",
    .m_doc = "recvmmsg/sendmmsg for the UDP listener (see _udpbatch.c); no functions off Linux.", .m_size = 0,
    .m_methods = methods, .m_slots = module_slots,
};

PyMODINIT_FUNC PyInit__udpbatch(void) { return PyModuleDef_Init(&module); }
