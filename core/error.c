/*
 * Error names, messages and classes, all generated from KSOCK_ERRNO_MAP.
 */
#include "internal.h"

#include <errno.h>

const char *ksock_err_name(int err)
{
    switch (err) {
    case 0:
        return "KSOCK_OK";
#define XX(name, num, cls, msg)                                                                    \
    case (num):                                                                                    \
        return "KSOCK_E_" #name;
        KSOCK_ERRNO_MAP(XX)
#undef XX
    default:
        return "KSOCK_E_UNKNOWN";
    }
}

const char *ksock_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define XX(name, num, cls, msg)                                                                    \
    case (num):                                                                                    \
        return msg;
        KSOCK_ERRNO_MAP(XX)
#undef XX
    default:
        return "unknown error";
    }
}

ksock_errclass_t ksock_err_class(int err)
{
    switch (err) {
#define XX(name, num, cls, msg)                                                                    \
    case (num):                                                                                    \
        return KSOCK_ERRCLASS_##cls;
        KSOCK_ERRNO_MAP(XX)
#undef XX
    default:
        return KSOCK_ERRCLASS_FATAL;
    }
}

bool ksock_err_is_retriable(int err)
{
    return ksock_err_class(err) == KSOCK_ERRCLASS_RETRIABLE;
}

int ksock_err_from_errno(int errnum)
{
    switch (errnum) {
    case 0:
        return 0;
    case ENOMEM:
        return KSOCK_E_NOMEM;
    case ENOENT:
    case ENOTDIR:
        return KSOCK_E_NOENT;
    case EEXIST:
        return KSOCK_E_EXIST;
    case EAGAIN:
        return KSOCK_E_AGAIN;
    case ETIMEDOUT:
        return KSOCK_E_TIMEDOUT;
    case ECONNREFUSED:
        return KSOCK_E_CONNREFUSED;
    case ECONNRESET:
    case EPIPE:
        return KSOCK_E_CONNRESET;
    case EACCES:
    case EPERM:
        return KSOCK_E_FORBIDDEN;
    case EINVAL:
        return KSOCK_E_INVAL;
    case EMSGSIZE:
    case E2BIG:
        return KSOCK_E_TOOBIG;
    case ECANCELED:
        return KSOCK_E_CANCELED;
    default:
        return KSOCK_E_IO;
    }
}
